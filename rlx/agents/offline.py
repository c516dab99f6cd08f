"""The model-free offline loop BC, TD3+BC and IQL share: gradient steps on dataset minibatches.

There is no environment interaction and no model: one iteration of the runner is one gradient
step on a minibatch of ``batch_size`` transitions drawn uniformly (with replacement) from the
dataset, so ``total_steps``, ``eval_every`` and the metrics' ``step`` count gradient steps, as
for the model-based agents (:mod:`rlx.agents.model_based`). Evaluation runs the deterministic
policy in the real environment and reports D4RL's normalized score when the dataset's metadata
has reference returns.

State normalisation (TD3+BC paper Sec. 5, CORL): with ``normalize_states`` every observation
the networks see is ``(s - mu) / (sigma + 1e-3)``, mu and sigma the dataset's per-dimension mean
and std; the dataset is stored normalized once, when the agent is built, and the evaluation
policy normalizes the env's observations with the same constants.

Like MOPO's, the dataset belongs to the agent object (:class:`DatasetAgent`, built by
``td3_bc.agent(dataset)``), not to the per-seed train state: every vmapped seed reads the same
device copy and a checkpoint holds only what training changes (learner, key, counters).
``td3_bc.from_inputs(config, dataset=PATH)`` builds the agent from a dataset folder as the
command line (``rlx train td3_bc --dataset PATH``) and a resumed run do; the dataset checks and
the loaders are MOPO's (:func:`rlx.agents.model_based.from_inputs`).

An algorithm module provides ``NAME``, ``Config`` (an :class:`OfflineConfig`) and

    init_learner(config, obs, action_dim, key) -> learner       # obs: a batch of observations
    learn(config, action_dim, learner, batch, key, step) -> (learner, metrics)
    act(config, action_dim, learner, obs) -> deterministic actions in [-1, 1]

and optionally ``q_estimate(config, action_dim, learner, obs, action)`` and ``reward_scale(dataset)``: the
constant the rewards are multiplied by before training when the config has
``normalize_rewards=True`` (IQL's normalisation).
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from rlx import envs as rlx_envs
from rlx.agents import model_based
from rlx.agents.sac import polyak  # noqa: F401  (theta_bar <- tau theta + (1 - tau) theta_bar, SAC's)
from rlx.core.config import ConfigError, TrainConfig, config_dataclass, static
from rlx.core.types import Transition

INPUTS = ("dataset",)  # the file inputs of from_inputs: `rlx train td3_bc --dataset PATH`, and a resume
STATE_STD_EPS = 1e-3  # added to the dataset's observation std (TD3+BC's code, CORL)

_widths = dict(check=lambda v: None if len(v) > 0 and all(int(w) >= 1 for w in v) else "need >= 1 positive width")


@config_dataclass
class OfflineConfig(TrainConfig):
    """Fields of the shared loop. ``total_steps`` and ``eval_every`` count gradient steps.

    The defaults are a short run that learns on a small dataset on a CPU; ``--preset paper``
    of each agent sets the paper's 1M gradient steps.
    """

    total_steps: int = static(20_000, "gradient steps in total (offline: no env steps are taken)", low=1)
    eval_every: int = static(2_000, "gradient steps between evaluations in the real env", low=1)
    batch_size: int = static(256, "dataset transitions per gradient step (drawn with replacement)", low=1)
    hidden_sizes: tuple[int, ...] = static((256, 256), "hidden layer widths of every network", **_widths)
    activation: str = static("relu", "hidden activation of every network", choices=("relu", "tanh", "gelu", "silu", "elu"))
    normalize_states: bool = static(
        True, "standardize observations with the dataset's per-dimension mean and std (+1e-3), in training "
        "and evaluation", choices=(False, True),
    )

    def _check_consistency(self) -> list[str]:
        problems = []
        if self.num_envs != 1:
            problems.append(f"num_envs={self.num_envs}: offline training takes no env steps; leave it at 1")
        if self.normalize_observations:
            problems.append(
                "normalize_observations=True: offline agents standardize with the dataset's statistics; "
                "use normalize_states"
            )
        return problems

    @property
    def env_steps_per_iteration(self) -> int:  # the runner's step counter: gradient steps
        return 1

    @property
    def warmup_env_steps(self) -> int:
        return 0

    @property
    def step_unit(self) -> str:
        return "gradient steps"


@struct.dataclass
class OfflineState:
    learner: Any
    key: jax.Array
    env_steps: jax.Array  # int32: the runner's step counter, here gradient steps
    gradient_steps: jax.Array  # int32


# ---------------------------------------------------------------------------------------------
# Pieces every algorithm module uses
# ---------------------------------------------------------------------------------------------
def adam_step(grads, opt_state, params, learning_rate):
    """One Adam step with a learning rate given per call (a traced tunable, or a schedule's value):
    ``optax.scale_by_adam`` then ``-learning_rate``, the chain ``optax.adam`` is made of."""
    direction, opt_state = optax.scale_by_adam().update(grads, opt_state, params)
    return jax.tree.map(lambda p, d: p - learning_rate * d, params, direction), opt_state


def adam_init(params):
    return optax.scale_by_adam().init(params)


def state_statistics(observations, normalize: bool) -> tuple[jax.Array, jax.Array]:
    """(mu, sigma + 1e-3) of the dataset's observations, or (0, 1) without normalisation."""
    obs = np.asarray(jax.device_get(observations), np.float64)
    if not normalize:
        return jnp.zeros(obs.shape[1:], jnp.float32), jnp.ones(obs.shape[1:], jnp.float32)
    return jnp.asarray(obs.mean(axis=0), jnp.float32), jnp.asarray(obs.std(axis=0) + STATE_STD_EPS, jnp.float32)


# ---------------------------------------------------------------------------------------------
# The agent object: dataset + one algorithm module (bc / td3_bc / iql)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class DatasetAgent(model_based.BoundAlgorithm):
    """A model-free offline agent bound to its data; fits :func:`rlx.run.make_train`."""

    algorithm: ModuleType
    data: Transition  # observations normalized, rewards scaled, as training sees them
    obs_mean: jax.Array
    obs_std: jax.Array
    normalize_states: bool
    normalize_rewards: bool = False
    reward_scale: float = 1.0
    random_return: float | None = None
    expert_return: float | None = None

    def normalize(self, obs):
        return (obs - self.obs_mean) / self.obs_std

    # --- the agent contract -----------------------------------------------------------------
    def check_env(self, config, env, env_params) -> None:
        """The config must be the one the data was prepared for; the env continuous and of the
        dataset's observation and action sizes."""
        if not isinstance(config, self.Config):
            raise ConfigError(f"{self.NAME} needs a {self.Config.__name__}, got {type(config).__name__}")
        if bool(config.normalize_states) != self.normalize_states:
            raise ConfigError(
                f"normalize_states={config.normalize_states}: the agent was built with normalize_states="
                f"{self.normalize_states}; build it with this config ({self.NAME}.agent(dataset, config=config))"
            )
        if bool(getattr(config, "normalize_rewards", False)) != self.normalize_rewards:
            raise ConfigError(
                f"normalize_rewards={config.normalize_rewards}: the agent was built with normalize_rewards="
                f"{self.normalize_rewards}; build it with this config ({self.NAME}.agent(dataset, config=config))"
            )
        space = env.action_space(env_params)
        if not rlx_envs.is_continuous(space):
            raise ConfigError(f"{self.NAME} acts in continuous action spaces; {getattr(env, 'name', env)} has {type(space).__name__}")
        model_based.check_data(self.data.obs, self.data.action, env, env_params, name=f"{self.NAME}'s dataset")
        if self.size < 1:
            raise ConfigError("dataset is empty")

    def init(self, config: OfflineConfig, env, env_params, key) -> OfflineState:
        k_learner, key = jax.random.split(key)
        action_dim = int(self.data.action.shape[-1])
        learner = self.algorithm.init_learner(config, self.data.obs[:1], action_dim, k_learner)
        return OfflineState(learner=learner, key=key, env_steps=jnp.int32(0), gradient_steps=jnp.int32(0))

    def update(self, config: OfflineConfig, env, env_params, state: OfflineState):
        """One gradient step on a uniform minibatch of the dataset."""
        key, k_rows, k_learn = jax.random.split(state.key, 3)
        rows = jax.random.randint(k_rows, (config.batch_size,), 0, self.size)  # the same rows for every field
        batch = jax.tree.map(lambda x: x[rows], self.data)
        learner, metrics = self.algorithm.learn(
            config, int(self.data.action.shape[-1]), state.learner, batch, k_learn, state.gradient_steps
        )
        state = state.replace(
            learner=learner, key=key, env_steps=state.env_steps + 1, gradient_steps=state.gradient_steps + 1
        )
        return state, metrics

    def make_policy(self, config: OfflineConfig, state: OfflineState, deterministic: bool = True):
        """(obs, key) -> action in [-1, 1]^|A| from the env's raw observations (normalized here).
        Every policy here is evaluated deterministically (the papers' evaluations)."""
        learner, action_dim = state.learner, int(self.data.action.shape[-1])
        return lambda obs, key: self.algorithm.act(config, action_dim, learner, self.normalize(obs))

    def observation_stats(self, state):
        return None  # the policy normalizes with the dataset's constants itself

    def eval_metrics(self, returns) -> dict[str, jax.Array]:
        """D4RL's normalized score 100 (R - random) / (expert - random) when references are known."""
        if self.random_return is None or self.expert_return is None:
            return {}
        score = 100.0 * (returns - self.random_return) / (self.expert_return - self.random_return)
        return {"eval/normalized_score": jnp.mean(score)}

    @property
    def q_estimate(self):
        """``(config, state, obs, action) -> Q(s, a)``: the critics' values of raw observations, in
        the dataset's reward units (a reward scale is undone); absent for an agent without a
        critic (BC), so ``rlx.core.contract.optional(agent, "q_estimate")`` is None there."""
        if not hasattr(self.algorithm, "q_estimate"):
            raise AttributeError(f"{self.NAME} learns no Q function")
        action_dim = int(self.data.action.shape[-1])

        def q_estimate(config, state, obs, action):
            q = self.algorithm.q_estimate(config, action_dim, state.learner, self.normalize(obs), action)
            return q / jnp.float32(self.reward_scale)

        return q_estimate


def build_agent(
    algorithm: ModuleType, dataset, *, config: OfflineConfig | None = None, info=None, env=None, env_params=None,
    path=None, env_name=None, **unused,
) -> DatasetAgent:
    """``algorithm`` bound to ``dataset`` (a :class:`rlx.buffers.dataset.Dataset`).

    The dataset is checked first (:func:`rlx.agents.model_based.check_dataset`: actions in
    [-1, 1] and, given the evaluation ``env`` (an env or a registered name), its sizes), then
    stored as float32 device arrays, observations normalized when ``config.normalize_states``
    and rewards scaled by the algorithm's rule. ``info`` (a
    :class:`rlx.buffers.dataset.DatasetInfo`) supplies the reference returns of the normalized
    score. ``unused`` takes what the shared command line passes to model-based builders
    (``dynamics``, ``key``, ``progress``).
    """
    config = (config or algorithm.Config()).validate()
    model_based.check_dataset(dataset, env, env_params, info=info, path=path, env_name=env_name)
    data = model_based.dataset_transitions(dataset)
    mean, std = state_statistics(data.obs, bool(config.normalize_states))
    normalize_rewards = bool(getattr(config, "normalize_rewards", False))
    scale = float(algorithm.reward_scale(dataset)) if normalize_rewards else 1.0
    data = data._replace(
        obs=(data.obs - mean) / std, next_obs=(data.next_obs - mean) / std, reward=data.reward * jnp.float32(scale)
    )
    return DatasetAgent(
        algorithm=algorithm, data=data, obs_mean=mean, obs_std=std, normalize_states=bool(config.normalize_states),
        normalize_rewards=normalize_rewards, reward_scale=scale, random_return=getattr(info, "random_return", None),
        expert_return=getattr(info, "expert_return", None),
    )


def from_inputs(
    algorithm: ModuleType, config: OfflineConfig, *, dataset=None, env: str | None = None, env_kwargs: dict | None = None,
    seed: int = 0, progress: bool = True,
) -> DatasetAgent:
    """``algorithm``'s agent built from the dataset at ``dataset``, as ``rlx train NAME --dataset
    PATH`` builds it: MOPO's loading and checks (:func:`rlx.agents.model_based.from_inputs`, whose
    ``env`` / ``env_kwargs`` / ``seed`` / ``progress`` these are), this builder; no dynamics model."""
    return model_based.from_inputs(
        algorithm, config, dataset=dataset, env=env, env_kwargs=env_kwargs, seed=seed, progress=progress,
        build=lambda dataset, dynamics, **kw: build_agent(algorithm, dataset, **kw),
    )
