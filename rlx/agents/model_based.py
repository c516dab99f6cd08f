"""The offline model-based SAC loop MOPO and MOBILE share (MBPO-style, no env interaction).

One iteration (one "epoch" of the papers' codes, ``rollout_freq`` = 1000 gradient steps):

1. draw ``rollout_batch_size`` (50,000) start states uniformly from the offline dataset and roll
   them ``rollout_length`` steps in the learned ensemble with the current stochastic policy
   (:func:`rlx.models.rollout.rollout`); the transitions of live branches enter a FIFO model
   buffer of ``rollout_batch_size * rollout_length * model_retain_epochs`` transitions;
2. ``rollout_freq`` SAC gradient steps, each on a minibatch of ``int(batch_size * real_ratio)``
   real transitions (12 of 256) and the rest (244) from the model buffer; the algorithm's
   ``learn`` turns the two halves into one SAC step (:func:`rlx.agents.sac.gradient_step`).

The dataset and the trained dynamics are fixed inputs of training, so they belong to the agent
object (:class:`OfflineAgent`, built by ``mopo.agent(dataset, dynamics)``, or from files by
``mopo.from_inputs(config, dataset=PATH, dynamics=PATH)``), not to the per-seed
train state: the arrays live on the device once and every vmapped seed reads the same copy
(jit passes them to the program as arguments, they are not embedded as constants), and a
checkpoint holds what training changes (learner, model buffer, key, counters), not the
dataset. The runner's step counter (``step`` in the metrics, ``total_steps``, ``eval_every``)
counts gradient steps; evaluation runs the deterministic policy in the real environment and
reports D4RL's normalized score when the dataset's metadata has reference returns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlx import envs as rlx_envs
from rlx.agents import sac
from rlx.buffers.replay import ReplayBuffer, add_masked, init_buffer
from rlx.buffers.replay import sample as sample_buffer
from rlx.core import contract
from rlx.core.config import ConfigError, TrainConfig, config_dataclass, static
from rlx.core.types import Transition
from rlx.models import ensemble as ens
from rlx.models import termination as term_rules
from rlx.models.rollout import TransitionFn, clip_next_obs, rollout, rollout_stats, sample_elite

_widths = dict(check=lambda v: None if len(v) > 0 and all(int(w) >= 1 for w in v) else "need >= 1 positive width")


@config_dataclass
class RolloutConfig(TrainConfig):
    """The shared loop's own fields: step counting, model rollouts and data mixing.

    ``total_steps`` and ``eval_every`` count gradient steps: offline training takes no env step.
    """

    total_steps: int = static(1_000_000, "gradient steps in total (offline: no env steps are taken)", low=1)
    eval_every: int = static(1_000, "gradient steps between evaluations in the real env (a multiple of rollout_freq)", low=1)
    # --- data mixing and model rollouts (MBPO / OfflineRL-Kit) --------------------------------
    rollout_freq: int = static(1_000, "gradient steps between model rollouts (one iteration)", low=1)
    rollout_batch_size: int = static(50_000, "start states per rollout, drawn from the dataset", low=1)
    rollout_length: int = static(5, "model rollout horizon h", low=1)
    clip_to_data: bool = static(
        True, "clip model next states to the dataset's per-dimension observation range (False: the "
        "papers' codes, which let rollouts leave it)", choices=(False, True),
    )
    model_retain_epochs: int = static(5, "rollouts the model buffer holds (capacity = batch * h * retain)", low=1)
    real_ratio: float = static(0.05, "fraction of every minibatch drawn from the real dataset", low=0.0, high=1.0)
    batch_size: int = static(256, "SAC minibatch (real + model rows)", low=2)


@config_dataclass
class ModelBasedConfig(sac.SACFields, RolloutConfig):
    """Fields of the shared loop, in this order (dataclass fields come base by base, the last
    base first): its own (:class:`RolloutConfig`), SAC's learner (:class:`rlx.agents.sac.SACFields`,
    with SAC's defaults), the dynamics ensemble's."""

    # --- dynamics ensemble (rlx.models.ensemble) --------------------------------------------
    ensemble_size: int = static(7, "members of the dynamics ensemble", low=1)
    num_elites: int = static(5, "elite members (lowest holdout MSE)", low=1)
    model_hidden_sizes: tuple[int, ...] = static((200, 200, 200, 200), "hidden widths of every ensemble member", **_widths)
    model_lr: float = static(1e-3, "dynamics learning rate (Adam)", low=0.0, low_inclusive=False)
    model_batch_size: int = static(256, "dynamics minibatch per member", low=1)
    model_max_epochs: int = static(0, "cap on dynamics epochs (0: early stopping only)", low=0)
    model_max_holdout: int = static(1000, "largest holdout split of the dynamics data", low=1)
    model_max_epochs_since_update: int = static(5, "dynamics early-stopping patience in epochs", low=1)
    model_min_steps_per_epoch: int = static(1000, "dynamics gradient steps per epoch at least", low=0)
    model_epochs_per_chunk: int = static(1, "dynamics epochs per compiled call between progress updates", low=1)

    def _check_consistency(self) -> list[str]:
        problems = []
        if self.num_envs != 1:
            problems.append(f"num_envs={self.num_envs}: offline training takes no env steps; leave it at 1")
        if self.normalize_observations:
            problems.append("normalize_observations=True: the dynamics model standardizes its own inputs; leave it False")
        problems.extend(super()._check_consistency())  # SAC's (log-std bounds)
        if self.eval_every % self.rollout_freq:
            problems.append(
                f"eval_every={self.eval_every} must be a multiple of rollout_freq={self.rollout_freq} "
                "(one iteration = one rollout + rollout_freq gradient steps)"
            )
        if self.num_elites > self.ensemble_size:
            problems.append(f"num_elites={self.num_elites} must be <= ensemble_size={self.ensemble_size}")
        if self.model_batch_size_real < 1 and self.real_ratio > 0:
            problems.append(f"batch_size={self.batch_size} x real_ratio={self.real_ratio} leaves no real row")
        if self.model_rows < 1 and self.real_ratio < 1:
            problems.append(f"batch_size={self.batch_size} x (1 - real_ratio={self.real_ratio}) leaves no model row")
        return problems

    # --- derived --------------------------------------------------------------------------
    @property
    def model_batch_size_real(self) -> int:
        """Real rows per minibatch: int(batch_size * real_ratio) (12 of 256 at 0.05)."""
        return int(self.batch_size * self.real_ratio)

    @property
    def model_rows(self) -> int:
        return self.batch_size - self.model_batch_size_real

    @property
    def model_buffer_capacity(self) -> int:
        return self.rollout_batch_size * self.rollout_length * self.model_retain_epochs

    @property
    def env_steps_per_iteration(self) -> int:  # the runner's step counter: gradient steps
        return self.rollout_freq

    @property
    def warmup_env_steps(self) -> int:
        return 0

    @property
    def step_unit(self) -> str:  # what total_steps, eval_every and the metrics' "step" count
        return "gradient steps"

    def sac_config(self) -> sac.SACConfig:
        """The SAC settings of the policy learner: every field of :class:`rlx.agents.sac.SACFields`
        as this config has it, no warm-up (built in the trace: tunable leaves stay traced)."""
        learner = {f.name: getattr(self, f.name) for f in dataclasses.fields(sac.SACFields)}
        learner = {k: tuple(v) if isinstance(v, list) else v for k, v in learner.items()}
        return sac.SACConfig(**learner, total_steps=self.total_steps, batch_size=self.batch_size, learning_starts=0)

    def dynamics_config(self) -> ens.EnsembleConfig:
        n_layers = len(self.model_hidden_sizes) + 1
        default = ens.EnsembleConfig()
        decays = default.weight_decays if n_layers == len(default.weight_decays) else (
            tuple(np.linspace(default.weight_decays[0], default.weight_decays[-1], n_layers).tolist())
        )
        return ens.EnsembleConfig(
            ensemble_size=self.ensemble_size, num_elites=self.num_elites, hidden_sizes=tuple(self.model_hidden_sizes),
            weight_decays=decays, learning_rate=self.model_lr, batch_size=self.model_batch_size,
            max_epochs=self.model_max_epochs, max_holdout=self.model_max_holdout,
            epochs_per_chunk=self.model_epochs_per_chunk, max_epochs_since_update=self.model_max_epochs_since_update,
            min_steps_per_epoch=self.model_min_steps_per_epoch,
        )


@struct.dataclass
class ModelBasedState:
    learner: sac.SACLearner
    model_buffer: ReplayBuffer
    key: jax.Array
    env_steps: jax.Array  # int32: gradient steps (the runner's x axis; offline takes no env step)
    gradient_steps: jax.Array  # int32


def dataset_transitions(dataset) -> Transition:
    """A :class:`rlx.buffers.dataset.Dataset` as float32 device :class:`Transition` arrays."""
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return Transition(
        obs=f32(dataset.observations), action=f32(dataset.actions), reward=f32(dataset.rewards),
        next_obs=f32(dataset.next_observations), terminated=f32(dataset.terminals),
        truncated=f32(dataset.timeouts),
    )


def dataset_name(info=None, path=None) -> str:
    """How messages name a dataset: its path, else its source / kind and env from ``info``."""
    if path is not None:
        return f"dataset {path}"
    source = getattr(info, "source", None)
    if source and ":" in source:  # d4rl:PATH, minari:PATH
        return f"dataset {source}"
    if info is not None:
        return f"the {info.kind} dataset of {info.env}"
    return "the dataset"


def check_data(
    observations, actions, env=None, env_params=None, *, dynamics=None, name: str = "the dataset", env_name: str | None = None,
) -> None:
    """Refuse data the agent cannot learn from, before anything is trained (ConfigError naming
    ``name``, the field, what it holds and what is allowed): observations and actions that are
    not one row per transition, actions outside [-1, 1] (the range the agents act in), and,
    given the evaluation ``env`` (an env or a registered name) or a trained ``dynamics`` model,
    observation and action sizes other than theirs. ``env_name`` names the env in the messages
    (default: the registered name given as ``env``, else the env's own name)."""
    shapes = {"observations": tuple(np.shape(observations)), "actions": tuple(np.shape(actions))}
    for field, shape in shapes.items():
        if len(shape) != 2:
            raise ConfigError(
                f"{name}: field {field!r} holds an array of shape {shape}; allowed: (N, size), one row per "
                "transition" + (" (one-dimensional actions: reshape them to (N, 1))" if field == "actions" and len(shape) == 1 else "")
            )
    data_obs, data_act = shapes["observations"][1], shapes["actions"][1]
    host = np.asarray(jax.device_get(actions))
    if host.size:
        low, high = float(np.min(host)), float(np.max(host))
        if max(-low, high) > 1.0 + 1e-4:
            row = int(np.argmax(np.max(np.abs(host), axis=1) > 1.0 + 1e-4))
            raise ConfigError(
                f"{name}: field 'actions' holds values in [{low:.4g}, {high:.4g}] (the first outside [-1, 1] in row "
                f"{row}); allowed: [-1, 1], the range the agent acts in (rlx envs rescale actions to it): rescale "
                "the dataset's actions to [-1, 1]"
            )
    if env is not None:
        if isinstance(env, str):
            env_name = env_name or env
            env, default_params = rlx_envs.make(env)
            env_params = default_params if env_params is None else env_params
        env_name = env_name or getattr(env, "name", None) or type(env).__name__
        space = env.action_space(env_params)
        if not rlx_envs.is_continuous(space):
            raise ConfigError(f"the env {env_name} has {type(space).__name__} actions; {name} is for continuous actions in [-1, 1]")
        obs_dim = int(np.prod(env.observation_space(env_params).shape))
        act_dim = rlx_envs.action_dim(space)
        if data_obs != obs_dim:
            raise ConfigError(
                f"{name}: field 'observations' holds observations of size {data_obs}; allowed: {obs_dim}, the "
                f"observation size of the env {env_name}"
            )
        if data_act != act_dim:
            raise ConfigError(
                f"{name}: field 'actions' holds actions of size {data_act}; allowed: {act_dim}, the action size "
                f"of the env {env_name}"
            )
    if dynamics is not None and (dynamics.obs_dim, dynamics.action_dim) != (data_obs, data_act):
        raise ConfigError(
            f"dynamics model predicts observations of size {dynamics.obs_dim} from actions of size "
            f"{dynamics.action_dim}; {name} has {data_obs} and {data_act}"
        )


def check_dataset(dataset, env=None, env_params=None, *, dynamics=None, info=None, path=None, env_name=None) -> None:
    """:func:`check_data` of a :class:`rlx.buffers.dataset.Dataset`, named by ``path`` / ``info``."""
    for field in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        if not hasattr(dataset, field):
            raise ConfigError(f"dataset has no {field!r}: pass a rlx.buffers.dataset.Dataset (D4RL keys)")
    check_data(
        dataset.observations, dataset.actions, env, env_params, dynamics=dynamics, name=dataset_name(info, path), env_name=env_name,
    )


def concat(a: Transition, b: Transition) -> Transition:
    return jax.tree.map(lambda x, y: jnp.concatenate([x.astype(jnp.float32), y.astype(jnp.float32)]), a, b)


# ---------------------------------------------------------------------------------------------
# The agent object: dataset + dynamics + one algorithm module (mopo / mobile)
# ---------------------------------------------------------------------------------------------
class BoundAlgorithm:
    """An algorithm module bound to its inputs (``self.algorithm``, ``self.data``): the agent
    contract's name, config class and presets are the algorithm's."""

    @property
    def NAME(self) -> str:  # noqa: N802  (the agent contract's name)
        return self.algorithm.NAME

    @property
    def Config(self):  # noqa: N802
        return self.algorithm.Config

    @property
    def PRESETS(self):  # noqa: N802
        return contract.optional(self.algorithm, "PRESETS")

    @property
    def size(self) -> int:
        """Transitions in the dataset."""
        return int(self.data.obs.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class OfflineAgent(BoundAlgorithm):
    """An offline model-based agent bound to its data; fits :func:`rlx.run.make_train`.

    ``algorithm`` is the module with ``NAME``, ``Config``, ``learn(config, agent, action_dim,
    learner, real, model, key, step)`` and ``rollout_penalty(config)``. ``transition_fn`` is the
    rollout slot of :mod:`rlx.models.rollout` (default: a random elite's sample).
    """

    algorithm: ModuleType
    data: Transition
    dynamics: ens.Dynamics
    obs_low: jax.Array  # the dataset's per-dimension observation range (obs and next_obs),
    obs_high: jax.Array  # the bounds of ``clip_to_data``
    random_return: float | None = None
    expert_return: float | None = None
    transition_fn: TransitionFn = sample_elite

    # --- the agent contract -----------------------------------------------------------------
    def check_env(self, config, env, env_params) -> None:
        """The evaluation env must be continuous and match the dataset's and model's shapes."""
        if not isinstance(config, ModelBasedConfig):
            raise ConfigError(f"{self.NAME} needs a {self.Config.__name__}, got {type(config).__name__}")
        space = env.action_space(env_params)
        if not rlx_envs.is_continuous(space):
            raise ConfigError(f"{self.NAME} acts in continuous action spaces; {getattr(env, 'name', env)} has {type(space).__name__}")
        check_data(self.data.obs, self.data.action, env, env_params, dynamics=self.dynamics, name=f"{self.NAME}'s dataset")
        if self.dynamics.num_elites > self.dynamics.ensemble_size:
            raise ConfigError("dynamics model has more elites than members")
        if config.model_batch_size_real > 0 and self.size < 1:
            raise ConfigError("dataset is empty")

    def init(self, config: ModelBasedConfig, env, env_params, key) -> ModelBasedState:
        k_learner, key = jax.random.split(key)
        action_dim = int(self.data.action.shape[-1])
        learner = sac.init_learner(config.sac_config(), self.data.obs[:1], action_dim, k_learner)
        example = jax.tree.map(lambda x: jnp.zeros(x.shape[1:], jnp.float32), self.data)
        return ModelBasedState(
            learner=learner,
            model_buffer=init_buffer(example, config.model_buffer_capacity),
            key=key,
            env_steps=jnp.int32(0),
            gradient_steps=jnp.int32(0),
        )

    def update(self, config: ModelBasedConfig, env, env_params, state: ModelBasedState):
        """One rollout into the model buffer, then ``rollout_freq`` mixed-batch SAC steps."""
        sac_config = config.sac_config()
        action_dim = int(self.data.action.shape[-1])
        key, k_start, k_roll, k_learn = jax.random.split(state.key, 4)
        start = self.data.obs[jax.random.randint(k_start, (config.rollout_batch_size,), 0, self.size)]
        transition_fn = self.transition_fn
        if config.clip_to_data:
            transition_fn = clip_next_obs(transition_fn, self.obs_low, self.obs_high)
        out = rollout(
            k_roll, self.dynamics, lambda obs, k: sac.act(sac_config, state.learner, obs, k), start,
            config.rollout_length, transition_fn, self.algorithm.rollout_penalty(config),
        )
        model_buffer = add_masked(state.model_buffer, out.transitions, out.valid)
        n_real = config.model_batch_size_real

        def one_step(carry, key):
            learner, step = carry
            k_real, k_model, k_step = jax.random.split(key, 3)
            rows = jax.random.randint(k_real, (n_real,), 0, self.size)  # one draw, the same rows for every field
            real = jax.tree.map(lambda x: x[rows], self.data)
            model = sample_buffer(model_buffer, k_model, config.model_rows)
            learner, metrics = self.algorithm.learn(config, self, action_dim, learner, real, model, k_step, step)
            return (learner, step + 1), metrics

        (learner, gradient_steps), metrics = jax.lax.scan(
            one_step, (state.learner, state.gradient_steps), jax.random.split(k_learn, config.rollout_freq)
        )
        metrics = {k: jnp.mean(v) for k, v in metrics.items()}
        metrics.update(rollout_stats(out))
        metrics["model/buffer_size"] = model_buffer.size.astype(jnp.float32)
        state = state.replace(
            learner=learner, model_buffer=model_buffer, key=key,
            env_steps=state.env_steps + config.rollout_freq, gradient_steps=gradient_steps,
        )
        return state, metrics

    def make_policy(self, config: ModelBasedConfig, state: ModelBasedState, deterministic: bool = True):
        return sac.make_policy(config.sac_config(), state, deterministic)

    def observation_stats(self, state):
        return None

    def eval_metrics(self, returns) -> dict[str, jax.Array]:
        """D4RL's normalized score 100 (R - random) / (expert - random) when references are known."""
        if self.random_return is None or self.expert_return is None:
            return {}
        score = 100.0 * (returns - self.random_return) / (self.expert_return - self.random_return)
        return {"eval/normalized_score": jnp.mean(score)}

    def q_estimate(self, config, state, obs, action):
        return sac.twin_critic(config.sac_config()).apply(state.learner.critic_params, obs, action)


def build_agent(
    algorithm: ModuleType,
    dataset,
    dynamics: ens.Dynamics | None = None,
    *,
    config: ModelBasedConfig | None = None,
    info=None,
    env_name: str | None = None,
    key=None,
    progress: bool = True,
    transition_fn: TransitionFn = sample_elite,
    env=None,
    env_params=None,
    path=None,
) -> OfflineAgent:
    """``algorithm`` bound to ``dataset``; trains the dynamics ensemble first when not given.

    ``info`` (a :class:`rlx.buffers.dataset.DatasetInfo`) supplies the env name (for the
    termination rule) and the reference returns of the normalized score. Before anything is
    trained the dataset is checked (:func:`check_dataset`): actions in [-1, 1] and, given the
    evaluation ``env`` (an env or a registered name, with ``env_params``), the env's observation
    and action sizes; ``path`` names the dataset in the messages.
    """
    config = (config or algorithm.Config()).validate()
    check_dataset(dataset, env, env_params, dynamics=dynamics, info=info, path=path, env_name=env_name)
    env_name = env_name or getattr(info, "env", None)
    if dynamics is None:
        rule = term_rules.rule_for_env(env_name)
        dynamics, _ = ens.train_dynamics(
            dataset, config.dynamics_config(), jax.random.PRNGKey(0) if key is None else key,
            termination=rule, progress=progress,
        )
    data = dataset_transitions(dataset)
    return OfflineAgent(
        algorithm=algorithm,
        data=data,
        dynamics=dynamics,
        obs_low=jnp.minimum(jnp.min(data.obs, axis=0), jnp.min(data.next_obs, axis=0)),
        obs_high=jnp.maximum(jnp.max(data.obs, axis=0), jnp.max(data.next_obs, axis=0)),
        random_return=getattr(info, "random_return", None),
        expert_return=getattr(info, "expert_return", None),
        transition_fn=transition_fn,
    )


def no_dataset(name: str) -> Callable[..., Any]:
    """The module-level contract functions of an offline agent without its data: a clear error."""

    def refuse(*args, **kwargs):
        raise ConfigError(
            f"{name} trains from an offline dataset: build the agent with rlx.agents.{name}.agent(dataset) "
            f"or from_inputs(config, dataset=PATH) (Python), or pass --dataset PATH (`rlx train {name} --dataset PATH --env ENV`)"
        )

    return refuse


INPUTS = ("dataset", "dynamics")  # the file inputs of from_inputs (`rlx train mopo --dataset PATH --dynamics PATH`)


def load_dataset(path):
    """``(dataset, info)`` of the dataset at ``path``: the rlx format, or D4RL / Minari files."""
    from rlx.buffers import dataset as ds

    loader = getattr(ds, "load", None)
    try:
        from rlx.buffers.loaders import open_dataset  # D4RL / Minari files as well
        loader = open_dataset
    except ImportError:
        pass
    loaded = loader(path)
    return loaded if isinstance(loaded, tuple) else (loaded, None)


def from_inputs(
    algorithm: ModuleType,
    config: ModelBasedConfig,
    *,
    dataset=None,
    dynamics=None,
    save_dynamics=None,
    env: str | None = None,
    env_kwargs: dict | None = None,
    seed: int = 0,
    progress: bool = True,
    build: Callable[..., OfflineAgent] | None = None,
) -> OfflineAgent:
    """``algorithm``'s agent built from files, as ``rlx train mopo|mobile --dataset PATH
    [--dynamics PATH] [--save-dynamics PATH]`` builds it.

    ``dataset``: the dataset's path (refused, naming ``--dataset``, when None); ``dynamics``: a
    saved dynamics model (None: one is trained, and saved to ``save_dynamics`` when given);
    ``env`` / ``env_kwargs``: the evaluation env the dataset is checked against before anything
    is loaded or trained (None: no such check); ``seed``: the key of what is trained here.
    ``build(dataset, dynamics, config=, info=, env_name=, key=, env=, env_params=, path=,
    progress=)`` makes the agent (default :func:`build_agent` of ``algorithm``; MOREC passes its
    own, which adds the filter; the model-free offline agents of :mod:`rlx.agents.offline` pass
    theirs, which takes no dynamics model).
    """
    if not dataset:
        no_dataset(algorithm.NAME)()
    loaded, info = load_dataset(dataset)
    env_name = env or None
    env_obj, env_params = rlx_envs.make(env_name, **(env_kwargs or {})) if env_name else (None, None)
    check_dataset(loaded, env_obj, env_params, info=info, path=dataset, env_name=env_name)  # before anything is loaded or trained
    model = ens.load_dynamics(dynamics) if dynamics else None
    if model is not None:
        check_dataset(loaded, dynamics=model, info=info, path=dataset)
    build = build or (lambda *a, **kw: build_agent(algorithm, *a, **kw))
    agent = build(
        loaded, model, config=config, info=info, env_name=env_name, key=jax.random.PRNGKey(seed),
        env=env_obj, env_params=env_params, path=dataset, progress=progress,
    )
    if save_dynamics:
        ens.save_dynamics(save_dynamics, agent.dynamics)
    return agent
