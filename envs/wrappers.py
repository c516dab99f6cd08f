"""Environment wrappers: each is env -> env with the same gymnax 1.0 interface.

A wrapper keeps its per-episode data in the environment state (a pytree), never on the Python
object, so a wrapped environment stays a pure function that jit, vmap and scan can trace. The
Python object only holds static settings and the inner environment (`.env`); attributes it
does not define are looked up on the inner environment.

The usual stack, built by `make_vec_env`:

    RescaleAction -> EpisodeStatistics -> VecEnv -> NormalizeObservation
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments.spaces import Box

from rlx.core.running_stats import (
    RunningMeanStd,
    init_running_stats,
    normalize,
    update_running_stats,
)

__all__ = [
    "EpisodeStatistics",
    "EpisodeStatisticsState",
    "NormalizeObservation",
    "NormalizeObservationState",
    "RescaleAction",
    "VecEnv",
    "Wrapper",
    "make_vec_env",
]


class Wrapper:
    """Base wrapper: forwards reset, step, the spaces and any other attribute to `.env`."""

    def __init__(self, env):
        self.env = env

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes this object lacks. Guard `env` itself so a half-built
        # object (copy, pickle) raises AttributeError instead of recursing forever.
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env!r})"

    def _params(self, params):
        return self.env.default_params if params is None else params

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params=None):
        return self.env.reset(key, self._params(params))

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state, action, params=None):
        return self.env.step(key, state, action, self._params(params))

    def action_space(self, params=None):
        return self.env.action_space(self._params(params))

    def observation_space(self, params=None):
        return self.env.observation_space(self._params(params))

    @property
    def unwrapped(self):
        """The innermost environment."""
        env = self.env
        while isinstance(env, Wrapper):
            env = env.env
        return env


def _box_bounds(space: Box) -> tuple[np.ndarray, np.ndarray]:
    shape = tuple(space.shape)
    low = np.broadcast_to(np.asarray(space.low, np.float64), shape)
    high = np.broadcast_to(np.asarray(space.high, np.float64), shape)
    return low, high


class RescaleAction(Wrapper):
    """Lets the agent act in [low, high] (default [-1, 1], what a tanh policy emits) and maps
    the action affinely onto the inner Box bounds.

    The action is clipped to [low, high] first, so an out-of-range action (e.g. exploration
    noise) lands on the inner bound instead of beyond it.
    """

    def __init__(self, env, low: float = -1.0, high: float = 1.0):
        super().__init__(env)
        if not float(high) > float(low):
            raise ValueError(f"RescaleAction needs low < high, got low={low}, high={high}")
        inner = env.action_space(env.default_params)
        if not isinstance(inner, Box):
            raise TypeError(f"RescaleAction needs a Box action space, got {inner!r}")
        self._check_finite(inner)
        self.low = float(low)
        self.high = float(high)

    @staticmethod
    def _check_finite(space: Box) -> None:
        try:
            low, high = _box_bounds(space)
        except (TypeError, jax.errors.ConcretizationTypeError):
            return  # traced bounds: cannot check here
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(
                f"RescaleAction needs finite action bounds, got low={space.low}, high={space.high}"
            )

    def to_inner_action(self, action: jax.Array, params=None) -> jax.Array:
        """Map an action in [low, high] onto the inner environment's bounds."""
        inner = self.env.action_space(self._params(params))
        fraction = (jnp.clip(action, self.low, self.high) - self.low) / (self.high - self.low)
        inner_low = jnp.asarray(inner.low, jnp.float32)
        inner_high = jnp.asarray(inner.high, jnp.float32)
        return (inner_low + fraction * (inner_high - inner_low)).astype(inner.dtype)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state, action, params=None):
        params = self._params(params)
        return self.env.step(key, state, self.to_inner_action(action, params), params)

    def action_space(self, params=None):
        inner = self.env.action_space(self._params(params))
        return Box(low=self.low, high=self.high, shape=inner.shape, dtype=inner.dtype)


@struct.dataclass
class EpisodeStatisticsState:
    """`inner` state plus the return and length of the running episode."""

    inner: Any
    episode_return: jax.Array  # float32
    episode_length: jax.Array  # int32


class EpisodeStatistics(Wrapper):
    """Tracks each episode's undiscounted return and length inside the state.

    step's info gains `episode_return` / `episode_length` (totals of the episode that ended
    on this step) and `episode_done` (terminated | truncated); the totals are 0 where
    `episode_done` is False, so a learner averages them over `episode_done`.
    It keeps one counter per environment whether it sits inside a VecEnv (the usual place)
    or outside one.
    """

    def _counter_shape(self) -> tuple[int, ...]:
        num_envs = getattr(self.env, "num_envs", None)
        return () if num_envs is None else (int(num_envs),)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params=None):
        obs, inner = self.env.reset(key, self._params(params))
        shape = self._counter_shape()
        state = EpisodeStatisticsState(
            inner=inner,
            episode_return=jnp.zeros(shape, jnp.float32),
            episode_length=jnp.zeros(shape, jnp.int32),
        )
        return obs, state

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: EpisodeStatisticsState, action, params=None):
        obs, inner, reward, terminated, truncated, info = self.env.step(
            key, state.inner, action, self._params(params)
        )
        done = jnp.logical_or(terminated, truncated)
        episode_return = state.episode_return + jnp.asarray(reward, jnp.float32)
        episode_length = state.episode_length + 1
        info = {
            **info,
            "episode_return": jnp.where(done, episode_return, 0.0).astype(jnp.float32),
            "episode_length": jnp.where(done, episode_length, 0).astype(jnp.int32),
            "episode_done": done,
        }
        state = EpisodeStatisticsState(
            inner=inner,
            episode_return=jnp.where(done, 0.0, episode_return).astype(jnp.float32),
            episode_length=jnp.where(done, 0, episode_length).astype(jnp.int32),
        )
        return obs, state, reward, terminated, truncated, info


class VecEnv(Wrapper):
    """`num_envs` independent copies of an environment stepped in lock-step (jax.vmap).

    One key in, split into one key per environment, so the copies never share randomness.
    Everything returned gains a leading axis of size `num_envs`; the spaces stay those of one
    environment.
    """

    def __init__(self, env, num_envs: int):
        super().__init__(env)
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params=None):
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self.env.reset, in_axes=(0, None))(keys, self._params(params))

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state, action, params=None):
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self.env.step, in_axes=(0, 0, 0, None))(
            keys, state, action, self._params(params)
        )


@struct.dataclass
class NormalizeObservationState:
    """`inner` state plus the running observation statistics."""

    inner: Any
    obs_stats: RunningMeanStd


class NormalizeObservation(Wrapper):
    """Returns observations standardized by running mean/variance, clipped to [-clip, clip].

    Meant to wrap a VecEnv: the statistics are shared by all environments and updated with
    the whole batch of raw observations (reset and every step's returned observation).
    Unbatched environments work too. `reset` starts fresh statistics (from the reset batch
    when updating). With `update=False` the statistics are frozen; put a
    training run's statistics in with `with_obs_stats` to evaluate with them.
    `info["final_observation"]` is normalized with the same statistics as the observation of
    that step, so a value target sees both on one scale.
    """

    def __init__(self, env, update: bool = True, clip: float = 10.0, epsilon: float = 1e-8):
        super().__init__(env)
        self.update = bool(update)
        self.clip = float(clip)
        self.epsilon = float(epsilon)
        self._batched = getattr(env, "num_envs", None) is not None

    def _as_batch(self, obs: jax.Array) -> jax.Array:
        return obs if self._batched else obs[None]

    def _normalize(self, stats: RunningMeanStd, obs: jax.Array) -> jax.Array:
        return normalize(stats, obs, clip=self.clip, epsilon=self.epsilon)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params=None):
        obs, inner = self.env.reset(key, self._params(params))
        stats = init_running_stats(self._as_batch(obs).shape[1:])
        if self.update:
            stats = update_running_stats(stats, self._as_batch(obs))
        return self._normalize(stats, obs), NormalizeObservationState(inner, stats)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: NormalizeObservationState, action, params=None):
        obs, inner, reward, terminated, truncated, info = self.env.step(
            key, state.inner, action, self._params(params)
        )
        stats = state.obs_stats
        if self.update:
            stats = update_running_stats(stats, self._as_batch(obs))
        info = dict(info)
        if "final_observation" in info:
            info["final_observation"] = self._normalize(stats, info["final_observation"])
        state = NormalizeObservationState(inner=inner, obs_stats=stats)
        return self._normalize(stats, obs), state, reward, terminated, truncated, info

    def with_obs_stats(
        self, state: NormalizeObservationState, stats: RunningMeanStd
    ) -> NormalizeObservationState:
        """The same state with its observation statistics replaced by `stats`."""
        return state.replace(obs_stats=stats)

    def observation_space(self, params=None):
        inner = self.env.observation_space(self._params(params))
        return Box(low=-self.clip, high=self.clip, shape=inner.shape, dtype=jnp.float32)


def _is_unit_box(space: Box) -> bool:
    try:
        low, high = _box_bounds(space)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return False
    return bool(np.all(low == -1.0) and np.all(high == 1.0))


def make_vec_env(
    env,
    env_params,
    num_envs: int,
    *,
    normalize_obs: bool = False,
    update_stats: bool = True,
    rescale_actions: bool = True,
):
    """The standard stack every agent trains on.

    RescaleAction (Box actions whose bounds are not [-1, 1] already, if `rescale_actions`)
    -> EpisodeStatistics -> VecEnv(num_envs) -> NormalizeObservation (if `normalize_obs`,
    updating its statistics if `update_stats`).
    """
    space = env.action_space(env_params)
    if rescale_actions and isinstance(space, Box) and not _is_unit_box(space):
        low, high = _box_bounds(space)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(
                "cannot rescale an unbounded action space "
                f"(low={space.low}, high={space.high}); pass rescale_actions=False"
            )
        env = RescaleAction(env)
    env = EpisodeStatistics(env)
    env = VecEnv(env, num_envs)
    if normalize_obs:
        env = NormalizeObservation(env, update=update_stats)
    return env
