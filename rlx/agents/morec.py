"""MOREC-MOPO and MOREC-MOBILE: MOPO / MOBILE with MOREC's transition filter in their rollouts
(Luo, Xu, Cao, Yu, ICLR 2024, arXiv 2310.05422; ``../shared/algorithms.md`` Sec. 4).

Nothing of the base algorithms is copied: a MOREC agent is :func:`rlx.agents.model_based.build_agent`
of :mod:`rlx.agents.mopo` or :mod:`rlx.agents.mobile` with the rollout slot ``transition_fn`` set
to :func:`rlx.models.filter.make_filter` of a learned dynamics reward
(:mod:`rlx.models.dynamics_reward`). Pipeline, every stage compiled:

1. dynamics ensemble (:func:`rlx.models.ensemble.train_dynamics`, as for the base);
2. dynamics reward by adversarial IRL on the same data (:func:`train_dynamics_reward`);
3. the base's policy learning, whose rollouts keep the highest-r_D of 2 samples per elite and cut
   a branch whose kept r_D < 0.6; because bad transitions are cut, rollouts are long.

Defaults that differ from the bases (the official code's generators, Sec. 4.3): rollout length
100, 2000 rollouts per iteration; MOREC-MOBILE: entropy term kept in the
target (``deterministic_backup=False``), 10 averaged discriminators (every 40th of 400) instead
of MOREC-MOPO's 40 (every 10th). :func:`mopo_config` / :func:`mobile_config` build them.

The two variants are registered agents with their own configs (:class:`MORECMOPOConfig`,
:class:`MORECMOBILEConfig`: the base's fields, MOREC's defaults, and the filter's and dynamics
reward's settings as ``filter_*`` / ``reward_*`` fields) and per-task presets of the official
code (``../shared/algorithms.md`` Sec. 4.3)::

    rlx train morec_mopo --env brax/hopper --dataset data/hopper-medium --preset hopper-medium

Python::

    agent = morec.agent("mopo", dataset)                 # trains ensemble and dynamics reward
    config = morec.mopo_config(total_steps=100_000)
    train = rlx.run.make_train(agent, config, env, env_params)
"""

from __future__ import annotations

import dataclasses
from types import ModuleType

import jax

from rlx.agents import mobile, model_based, mopo
from rlx.core.config import Config, ConfigError, config_dataclass, static
from rlx.models import dynamics_reward as drw
from rlx.models.filter import SELECTIONS, FilterConfig, make_filter

BASES = {"mopo": mopo, "mobile": mobile}
MOREC_ROLLOUTS = dict(rollout_length=100, rollout_batch_size=2_000)


# ---------------------------------------------------------------------------------------------
# Configs: the base's fields with MOREC's defaults, plus the filter and the dynamics reward
# ---------------------------------------------------------------------------------------------
@config_dataclass
class MORECFields(Config):
    """The settings MOREC adds to its base (defaults: the official code's)."""

    filter_samples_per_elite: int = static(2, "filter: candidate next states each elite draws per step", low=1)
    filter_selection: str = static("argmax", "filter: keep the argmax-r_D candidate or draw one by softmax(r_D / 0.1)", choices=SELECTIONS)
    filter_terminal_reward: float = static(0.6, "filter: end a branch whose kept candidate has r_D below this (0: never)", low=0.0)
    reward_iterations: int = static(400, "dynamics reward: adversarial iterations", low=1)
    reward_keep_last: int = static(400, "dynamics reward: the last this-many discriminators are candidates for the average", low=1)
    # The official code's generators set k = 10 for MOREC-MOPO (40 averaged discriminators) and
    # k = 40 for MOREC-MOBILE (10); the paper gives no reason, we keep each variant's value
    # (../shared/algorithms.md Sec. 4, "dynamics reward").
    reward_keep_every: int = static(
        10, "dynamics reward: average every k-th of them (the official code's value: 10 for MOREC-MOPO, "
        "40 for MOREC-MOBILE)", low=1,
    )

    def filter_config(self) -> FilterConfig:
        return FilterConfig(
            samples_per_elite=self.filter_samples_per_elite, selection=self.filter_selection,
            terminal_reward=self.filter_terminal_reward,
        )

    def reward_config(self) -> drw.DynamicsRewardConfig:
        return drw.DynamicsRewardConfig(
            iterations=self.reward_iterations, keep_last=self.reward_keep_last, keep_every=self.reward_keep_every,
        )

    def _check_consistency(self) -> list[str]:
        problems = super()._check_consistency()
        if self.reward_keep_last > self.reward_iterations:
            problems.append(f"reward_keep_last={self.reward_keep_last} must be <= reward_iterations={self.reward_iterations}")
        if self.reward_keep_last % self.reward_keep_every:
            problems.append(f"reward_keep_last={self.reward_keep_last} must be a multiple of reward_keep_every={self.reward_keep_every}")
        return problems


@config_dataclass
class MORECMOPOConfig(MORECFields, mopo.MOPOConfig):
    """MOPO's fields; rollouts of h = 100 from 2000 starts; 40 averaged discriminators."""

    rollout_length: int = static(100, "model rollout horizon h (MOREC: long, bad branches are cut)", low=1)
    rollout_batch_size: int = static(2_000, "start states per rollout, drawn from the dataset", low=1)


@config_dataclass
class MORECMOBILEConfig(MORECFields, mobile.MOBILEConfig):
    """MOBILE's fields; h = 100 from 2000 starts, entropy term in the target, softmax selection, 10
    averaged discriminators. The temperature starts at 1 (log_alpha = 0) as MOBILE's: the official
    generator sets ``alpha=0.1`` with ``auto_alpha=True``, and run_morec_mobile.py then starts
    log_alpha at 0 (0.1 is used only with auto_alpha off)."""

    rollout_length: int = static(100, "model rollout horizon h (MOREC: long, bad branches are cut)", low=1)
    rollout_batch_size: int = static(2_000, "start states per rollout, drawn from the dataset", low=1)
    deterministic_backup: bool = static(False, "critic target without the -alpha log pi term", choices=(False, True))
    filter_selection: str = static("softmax", "filter: keep the argmax-r_D candidate or draw one by softmax(r_D / 0.1)", choices=SELECTIONS)
    reward_keep_every: int = static(
        40, "dynamics reward: average every k-th of them (the official code's value: 10 for MOREC-MOPO, "
        "40 for MOREC-MOBILE)", low=1,
    )


def _presets(base_name: str, table: dict) -> dict:
    presets = {
        name: {"_doc": f"MOREC-{base_name} paper code, {name}: " + ", ".join(f"{k}={v}" for k, v in values.items())
               + ", rollouts not clipped to the data", **values, "clip_to_data": False}
        for name, values in table.items()
    }
    presets["paper"] = {"_doc": f"MOREC-{base_name} paper code's defaults: rollouts not clipped to the data's range", "clip_to_data": False}
    return presets


# Per-task settings of the official code's generators (D4RL v2; ../shared/algorithms.md Sec. 4.3).
_MOPO_TASKS = {
    f"{env}-{kind}": {"penalty_coef": lam, "filter_selection": sel}
    for env, row in {
        "halfcheetah": {"random": (0.5, "softmax"), "medium": (0.5, "argmax"), "medium-replay": (0.5, "softmax"), "medium-expert": (0.5, "argmax")},
        "hopper": {"random": (10.0, "argmax"), "medium": (15.0, "softmax"), "medium-replay": (15.0, "softmax"), "medium-expert": (15.0, "softmax")},
        "walker2d": {"random": (1.0, "softmax"), "medium": (0.5, "softmax"), "medium-replay": (0.25, "argmax"), "medium-expert": (1.0, "softmax")},
    }.items()
    for kind, (lam, sel) in row.items()
}
_MOBILE_TASKS = {
    "halfcheetah-random": {"penalty_coef": 0.25}, "halfcheetah-medium": {"penalty_coef": 0.25},
    "halfcheetah-medium-replay": {"penalty_coef": 0.25}, "halfcheetah-medium-expert": {"penalty_coef": 1.0, "real_ratio": 0.5},
    "hopper-random": {"penalty_coef": 7.5, "deterministic_backup": True}, "hopper-medium": {"penalty_coef": 1.5},
    "hopper-medium-replay": {"penalty_coef": 0.5}, "hopper-medium-expert": {"penalty_coef": 1.5},
    "walker2d-random": {"penalty_coef": 1.0}, "walker2d-medium": {"penalty_coef": 0.75, "model_max_epochs": 30},
    "walker2d-medium-replay": {"penalty_coef": 0.1}, "walker2d-medium-expert": {"penalty_coef": 0.25},
}


# ---------------------------------------------------------------------------------------------
# The registered agents: the base's learning, MOREC's config, the filter in the rollout slot
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class MORECAlgorithm:
    """MOREC on ``base``: the ``algorithm`` of :class:`rlx.agents.model_based.OfflineAgent`
    (``learn`` and ``rollout_penalty`` are the base's own) and the agent module contract of
    ``rlx train`` (which, as for the bases, needs ``--dataset``)."""

    base: ModuleType
    NAME: str  # noqa: N815  (the agent contract's names)
    Config: type  # noqa: N815
    PRESETS: dict  # noqa: N815

    def learn(self, *args):
        return self.base.learn(*args)

    def rollout_penalty(self, config):
        return self.base.rollout_penalty(config)

    def check_env(self, *args, **kwargs):
        model_based.no_dataset(self.NAME)()

    init = update = make_policy = check_env

    INPUTS = (*model_based.INPUTS, "dynamics_reward")  # from_inputs' file inputs (a class attribute, not a field)

    def from_inputs(self, config, *, dynamics_reward=None, save_dynamics_reward=None, **inputs) -> model_based.OfflineAgent:
        """The agent built from files, as ``rlx train morec_*`` builds it: the base's inputs
        (:func:`rlx.agents.model_based.from_inputs`) plus a saved dynamics reward
        (``dynamics_reward``; None: one is trained, and saved to ``save_dynamics_reward`` when given)."""
        reward = drw.load_dynamics_reward(dynamics_reward) if dynamics_reward else None

        def build(dataset, dynamics, *, config, key=None, **kw):
            nonlocal reward
            check_inputs(self, config, dynamics_reward=reward, obs_dim=int(dataset.observations.shape[-1]))
            if reward is None:  # trained here as agent() would, and kept for saving
                reward = train_reward(self, config, dataset, key, progress=kw.get("progress", True))
            return agent(self, dataset, dynamics, config=config, key=key, dynamics_reward=reward, **kw)

        built = model_based.from_inputs(self, config, build=build, **inputs)
        if save_dynamics_reward:
            drw.save_dynamics_reward(save_dynamics_reward, reward)
        return built

    @staticmethod
    def observation_stats(state):
        return None


MOREC_MOPO = MORECAlgorithm(mopo, "morec_mopo", MORECMOPOConfig, _presets("MOPO", _MOPO_TASKS))
MOREC_MOBILE = MORECAlgorithm(mobile, "morec_mobile", MORECMOBILEConfig, _presets("MOBILE", _MOBILE_TASKS))
VARIANTS = {"mopo": MOREC_MOPO, "mobile": MOREC_MOBILE}


def mopo_config(**overrides) -> MORECMOPOConfig:
    """MOREC-MOPO's config (h = 100, 2000 starts); ``overrides`` win."""
    return MORECMOPOConfig(**overrides)


def mobile_config(**overrides) -> MORECMOBILEConfig:
    """MOREC-MOBILE's config (h = 100, 2000 starts, entropy backup, softmax selection)."""
    return MORECMOBILEConfig(**overrides)


def reward_config(base, **overrides) -> drw.DynamicsRewardConfig:
    """The discriminator history of the base: every 10th of 400 (MOPO) or every 40th (MOBILE)."""
    return drw.DynamicsRewardConfig(**{**_variant(base).Config().reward_config().to_dict(), **overrides})


def _variant(base) -> MORECAlgorithm:
    """The MOREC variant of ``base``: a name ("mopo", "morec_mopo"), a base module, or a variant."""
    if isinstance(base, MORECAlgorithm):
        return base
    if isinstance(base, str):
        name = base.lower().removeprefix("morec_")
        if name not in VARIANTS:
            raise ConfigError(f"base={base!r}; allowed: {', '.join(VARIANTS)}")
        return VARIANTS[name]
    for name, module in BASES.items():
        if base is module:
            return VARIANTS[name]
    raise ConfigError(f"base must be one of {', '.join(BASES)} (name or module), got {base!r}")


def train_reward(
    base, config, dataset, key=None, reward_config: drw.DynamicsRewardConfig | None = None, *, progress: bool = True
) -> drw.DynamicsReward:
    """The dynamics reward of ``dataset``: ``reward_config``, else ``config``'s ``reward_*``
    fields (a MOREC config), else the variant's defaults; key ``fold_in(key, 1)``."""
    fields = config if isinstance(config, MORECFields) else _variant(base).Config()
    rcfg = (reward_config or fields.reward_config()).validate()
    k_reward = jax.random.fold_in(jax.random.PRNGKey(0) if key is None else key, 1)
    return drw.train_dynamics_reward(dataset, rcfg, k_reward, progress=progress)[0]


def check_inputs(
    base, config=None, *, reward_config: drw.DynamicsRewardConfig | None = None,
    filter_config: FilterConfig | None = None, dynamics_reward: drw.DynamicsReward | None = None, obs_dim: int | None = None,
) -> None:
    """Every problem of a MOREC run's settings at once, in one :class:`ConfigError`, before any
    training: the config (its base's fields and the ``filter_*`` / ``reward_*`` ones), an explicit
    ``reward_config`` / ``filter_config``, and a given dynamics reward against the dataset's
    observation size."""
    variant = _variant(base)
    problems: list[str] = []
    # The config's own check covers its filter_* / reward_* fields; explicit ones replace them.
    checks = [config or variant.Config(), *(c for c in (filter_config, reward_config) if c is not None)]
    for cfg in checks:
        try:
            cfg.validate()
        except ConfigError as err:  # "invalid NAME:\n  problem\n  problem": one entry per problem
            head, *lines = str(err).splitlines()
            if head.startswith("invalid ") and head.endswith(":") and lines:
                problems += [f"{head[len('invalid '):-1]}: {line.strip()}" for line in lines]
            else:
                problems.append(str(err))
    if dynamics_reward is not None and obs_dim is not None and int(dynamics_reward.obs_mean.shape[-1]) != obs_dim:
        problems.append(
            f"dynamics_reward scores observations of size {int(dynamics_reward.obs_mean.shape[-1])}; the dataset has {obs_dim}"
        )
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} problems with the {variant.NAME} settings:\n  " + "\n  ".join(problems))


def agent(
    base,
    dataset,
    dynamics=None,
    *,
    config: model_based.ModelBasedConfig | None = None,
    dynamics_reward: drw.DynamicsReward | None = None,
    reward_config: drw.DynamicsRewardConfig | None = None,
    filter_config: FilterConfig | None = None,
    key=None,
    **kwargs,
) -> model_based.OfflineAgent:
    """The base agent (``"mopo"`` / ``"mobile"``) bound to ``dataset`` with MOREC's filter.

    Trains what is not given: the dynamics ensemble (``build_agent``) and the dynamics reward.
    The filter and the dynamics reward's settings come from ``filter_config`` / ``reward_config``
    when given, else from ``config`` (a MOREC config's ``filter_*`` / ``reward_*`` fields), else
    from the variant's defaults. ``kwargs`` go to :func:`rlx.agents.model_based.build_agent`
    (``info``, ``env_name``, ``progress``; ``env`` / ``env_params`` / ``path`` for the dataset's
    check, which comes before any training).
    """
    variant = _variant(base)
    check_inputs(  # every problem at once, before any training
        variant, config, reward_config=reward_config, filter_config=filter_config, dynamics_reward=dynamics_reward,
        obs_dim=int(dataset.observations.shape[-1]),
    )
    config = config or variant.Config()
    model_based.check_dataset(
        dataset, kwargs.get("env"), kwargs.get("env_params"), dynamics=dynamics, info=kwargs.get("info"),
        path=kwargs.get("path"), env_name=kwargs.get("env_name"),
    )
    fields = config if isinstance(config, MORECFields) else variant.Config()
    filter_config = (filter_config or fields.filter_config()).validate()
    if dynamics_reward is None:
        dynamics_reward = train_reward(variant, config, dataset, key, reward_config, progress=kwargs.get("progress", True))
    obs_dim = int(dataset.observations.shape[-1])
    if int(dynamics_reward.obs_mean.shape[-1]) != obs_dim:
        raise ConfigError(
            f"dynamics_reward scores observations of size {int(dynamics_reward.obs_mean.shape[-1])}; the dataset has {obs_dim}"
        )
    return model_based.build_agent(
        variant, dataset, dynamics, config=config, key=key,
        transition_fn=make_filter(dynamics_reward, filter_config), **kwargs,
    )
