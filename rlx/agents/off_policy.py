"""The off-policy loop shared by replay-based agents (SAC, DSAC-T, ...).

One iteration: every parallel env takes one step with the agent's stochastic policy, the
transition (with the true successor observation and termination kept apart from truncation)
goes into the replay buffer, then ``gradient_steps`` minibatch updates run. Warm-up
(``learning_starts`` env steps, uniform random actions or the initial policy) runs in ``init``,
so every later iteration is the same program.

An agent provides only what is its own, its *learner* (parameters, optimiser states, targets,
temperature) and three functions:

    init_learner(config, obs, action_dim, key) -> learner      # obs: one batch of observations
    act(config, learner, obs, key) -> actions                  # stochastic, in [-1, 1]
    learn(config, action_dim, learner, batch, key, step) -> (learner, metrics)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from rlx import envs as rlx_envs
from rlx.buffers import ReplayBuffer, add_batch, init_buffer, sample
from rlx.core import parallel
from rlx.core.types import Transition


@struct.dataclass
class OffPolicyState:
    learner: Any
    buffer: ReplayBuffer
    env_state: Any
    obs: jax.Array
    key: jax.Array
    env_steps: jax.Array  # int32, all parallel envs, warm-up included
    gradient_steps: jax.Array  # int32
    # An exploration bonus (rlx.explore.intrinsic.IntrinsicReward) that relabels each learning
    # minibatch and trains on it; None: the learner sees the env's reward.
    intrinsic: Any = None


def training_env(config, env, env_params):
    """The vectorised training environment: actions in [-1, 1], episode statistics, and
    observation normalization when the config asks for it."""
    return rlx_envs.make_vec_env(
        env, env_params, config.num_envs, normalize_obs=config.normalize_observations
    )


def observation_stats(state: OffPolicyState):
    """Running observation statistics of the training envs (None when not normalizing)."""
    return getattr(state.env_state, "obs_stats", None)


def env_step(config, venv, env_params, state: OffPolicyState, action, key):
    """Step every env once, store the transitions, return episode statistics of the step."""
    obs, env_state, reward, terminated, truncated, info = venv.step(key, state.env_state, action, env_params)
    transition = Transition(
        obs=state.obs,
        action=action,
        reward=reward.astype(jnp.float32),
        next_obs=info["final_observation"].astype(jnp.float32),
        terminated=terminated.astype(jnp.float32),
        truncated=truncated.astype(jnp.float32),
    )
    done = info["episode_done"].astype(jnp.float32)
    episode_stats = {
        "train/episode_return_sum": jnp.sum(info["episode_return"] * done),
        "train/episodes": jnp.sum(done),
    }
    state = state.replace(
        buffer=add_batch(state.buffer, transition),
        env_state=env_state,
        obs=obs.astype(jnp.float32),
        env_steps=state.env_steps + config.num_envs,
    )
    return state, episode_stats


def init(config, env, env_params, key, init_learner: Callable, act: Callable) -> OffPolicyState:
    """Learner, an empty buffer, reset envs, then ``learning_starts`` warm-up steps whose
    actions are uniform in [-1, 1] (``warmup_actions="uniform"``) or drawn from the initial
    policy (``"policy"``)."""
    venv = training_env(config, env, env_params)
    action_dim = rlx_envs.action_dim(env.action_space(env_params))
    key, k_learner, k_reset, k_warm = jax.random.split(key, 4)
    obs, env_state = venv.reset(k_reset, env_params)
    obs = obs.astype(jnp.float32)
    # Data-parallel training: every device starts from the same parameters.
    learner = init_learner(config, obs, action_dim, parallel.replicated_key(k_learner))
    example = Transition(
        obs=obs[0],
        action=jnp.zeros(action_dim, jnp.float32),
        reward=jnp.float32(0.0),
        next_obs=obs[0],
        terminated=jnp.float32(0.0),
        truncated=jnp.float32(0.0),
    )
    state = OffPolicyState(
        learner=learner,
        buffer=init_buffer(example, config.buffer_capacity),
        env_state=env_state,
        obs=obs,
        key=key,
        env_steps=jnp.int32(0),
        gradient_steps=jnp.int32(0),
    )

    def warmup_step(state, key):
        k_act, k_env = jax.random.split(key)
        if config.warmup_actions == "policy":
            action = act(config, state.learner, state.obs, k_act)
        else:
            action = jax.random.uniform(k_act, (config.num_envs, action_dim), jnp.float32, -1.0, 1.0)
        state, _ = env_step(config, venv, env_params, state, action, k_env)
        return state, None

    if config.warmup_iterations > 0:
        state, _ = jax.lax.scan(warmup_step, state, jax.random.split(k_warm, config.warmup_iterations))
    return state


def update(config, env, env_params, state: OffPolicyState, act: Callable, learn: Callable):
    """One iteration: one env step everywhere with the stochastic policy, then
    ``gradient_steps`` minibatch updates from the buffer."""
    venv = training_env(config, env, env_params)
    action_dim = rlx_envs.action_dim(env.action_space(env_params))
    key, k_act, k_env, k_learn = jax.random.split(state.key, 4)
    state = state.replace(key=key)
    action = act(config, state.learner, state.obs, k_act)
    state, episode_stats = env_step(config, venv, env_params, state, action, k_env)

    def one_update(state, key):
        if state.intrinsic is None:
            k_sample, k_step = jax.random.split(key)
        else:
            k_sample, k_step, k_bonus = jax.random.split(key, 3)
        batch = sample(state.buffer, k_sample, config.batch_size)
        bonus_metrics = {}
        if state.intrinsic is not None:  # the bonus of the current module, at learning time
            intrinsic, batch, bonus_metrics = state.intrinsic.relabel(batch, k_bonus)
            state = state.replace(intrinsic=intrinsic)
        learner, metrics = learn(config, action_dim, state.learner, batch, k_step, state.gradient_steps)
        metrics = {**metrics, **bonus_metrics}
        return state.replace(learner=learner, gradient_steps=state.gradient_steps + 1), metrics

    state, metrics = jax.lax.scan(one_update, state, jax.random.split(k_learn, config.gradient_steps))
    metrics = jax.tree.map(jnp.mean, metrics)
    return state, {**metrics, **episode_stats}
