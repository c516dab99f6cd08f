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
100, 2000 rollouts per iteration; MOREC-MOBILE: temperature from 0.1, entropy term kept in the
target (``deterministic_backup=False``), 10 averaged discriminators (every 40th of 400) instead
of MOREC-MOPO's 40 (every 10th). :func:`mopo_config` / :func:`mobile_config` build them.

Usage::

    agent = morec.agent("mopo", dataset)                 # trains ensemble and dynamics reward
    config = morec.mopo_config(total_steps=100_000)
    train = rlx.run.make_train(agent, config, env, env_params)
"""

from __future__ import annotations

import jax

from rlx.agents import mobile, model_based, mopo
from rlx.core.config import ConfigError
from rlx.models import dynamics_reward as drw
from rlx.models.filter import FilterConfig, make_filter

BASES = {"mopo": mopo, "mobile": mobile}
MOREC_ROLLOUTS = dict(rollout_length=100, rollout_batch_size=2_000)


def mopo_config(**overrides) -> mopo.MOPOConfig:
    """MOPO's config with MOREC-MOPO's rollouts (h = 100, 2000 starts); ``overrides`` win."""
    return mopo.MOPOConfig(**{**MOREC_ROLLOUTS, **overrides})


def mobile_config(**overrides) -> mobile.MOBILEConfig:
    """MOBILE's config with MOREC-MOBILE's settings (h = 100, 2000 starts, alpha 0.1, entropy backup)."""
    return mobile.MOBILEConfig(**{**MOREC_ROLLOUTS, "init_alpha": 0.1, "deterministic_backup": False, **overrides})


def reward_config(base: str, **overrides) -> drw.DynamicsRewardConfig:
    """The discriminator history of the base: every 10th of 400 (MOPO) or every 40th (MOBILE)."""
    keep_every = {"mopo": 10, "mobile": 40}[_base(base).NAME]
    return drw.DynamicsRewardConfig(**{"keep_every": keep_every, **overrides})


def _base(base):
    if isinstance(base, str):
        if base not in BASES:
            raise ConfigError(f"base={base!r}; allowed: {', '.join(BASES)}")
        return BASES[base]
    if base not in BASES.values():
        raise ConfigError(f"base must be one of {', '.join(BASES)} (name or module), got {base!r}")
    return base


def agent(
    base,
    dataset,
    dynamics=None,
    *,
    dynamics_reward: drw.DynamicsReward | None = None,
    reward_config: drw.DynamicsRewardConfig | None = None,
    filter_config: FilterConfig | None = None,
    key=None,
    **kwargs,
) -> model_based.OfflineAgent:
    """The base agent (``"mopo"`` / ``"mobile"``) bound to ``dataset`` with MOREC's filter.

    Trains what is not given: the dynamics ensemble (``build_agent``) and the dynamics reward
    (``reward_config``, default :func:`reward_config` of the base). ``kwargs`` go to
    :func:`rlx.agents.model_based.build_agent` (``config``, ``info``, ``env_name``, ``progress``).
    """
    module = _base(base)
    filter_config = (filter_config or FilterConfig()).validate()  # refused before any training
    if dynamics_reward is None:
        rcfg = (reward_config or globals()["reward_config"](module.NAME)).validate()
        k_reward = jax.random.fold_in(jax.random.PRNGKey(0) if key is None else key, 1)
        dynamics_reward, _ = drw.train_dynamics_reward(dataset, rcfg, k_reward)
    obs_dim = int(dataset.observations.shape[-1])
    if int(dynamics_reward.obs_mean.shape[-1]) != obs_dim:
        raise ConfigError(
            f"dynamics_reward scores observations of size {int(dynamics_reward.obs_mean.shape[-1])}; the dataset has {obs_dim}"
        )
    return model_based.build_agent(
        module, dataset, dynamics, key=key, transition_fn=make_filter(dynamics_reward, filter_config), **kwargs
    )
