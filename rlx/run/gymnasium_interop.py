"""Gymnasium interop, host side: an rlx / gymnax / brax env as a ``gymnasium.Env``, and a
trained rlx policy evaluated on a Gymnasium env.

    from rlx.run.gymnasium_interop import to_gymnasium, evaluate_on_gymnasium, policy_from_run

    gym_env = to_gymnasium(*rlx.envs.make("gymnax/Pendulum-v1"), render_mode="rgb_array")
    gymnasium.utils.env_checker.check_env(gym_env)        # Gymnasium's own checks pass

    policy, obs_stats = policy_from_run("runs/x")           # a saved run's deterministic policy
    returns = evaluate_on_gymnasium(policy, gymnasium.make("Pendulum-v1"), episodes=10,
                                    obs_stats=obs_stats)

Both directions run step by step on the host (one jitted call per step) and are meant for
tooling and checks, not for training: rlx trains on the functional env inside one compiled
program. Needs the ``gymnasium`` extra (``pip install "rlx[gymnasium]"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

try:
    import gymnasium
    from gymnasium import spaces as gym_spaces
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError('rlx.run.gymnasium_interop needs gymnasium: pip install "rlx[gymnasium]"') from err

from rlx.envs.contract import check_env_contract, step_without_reset, steps_without_reset
from rlx.envs.spaces import Box, Discrete

__all__ = ["GymnasiumEnv", "evaluate_on_gymnasium", "policy_from_run", "space_to_gymnasium", "to_gymnasium"]


def space_to_gymnasium(space) -> gymnasium.Space:
    """A gymnax Box / Discrete as the equivalent Gymnasium space."""
    if isinstance(space, Box):
        shape = tuple(int(d) for d in space.shape)
        dtype = np.dtype(space.dtype)
        low = np.broadcast_to(np.asarray(space.low, dtype), shape).copy()
        high = np.broadcast_to(np.asarray(space.high, dtype), shape).copy()
        return gym_spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
    if isinstance(space, Discrete):
        return gym_spaces.Discrete(int(space.n))
    raise TypeError(f"only Box and Discrete spaces convert to Gymnasium, got {space!r}")


class GymnasiumEnv(gymnasium.Env):
    """A functional (gymnax 1.0 interface) env behind Gymnasium's stateful API.

    ``reset(seed=s)`` starts a key stream from ``PRNGKey(s)`` (without a seed: from Gymnasium's
    ``np_random``), split once per call, so the same seed gives the same episode. ``step`` returns
    the episode's true last observation when it ends (not the auto-reset one); call ``reset``
    then, as Gymnasium expects. ``render()`` draws the current state (``"rgb_array"``: the frames
    of ``rlx eval --video``; ``"ansi"``: the env's ``render_text``).
    """

    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 30}

    def __init__(self, env, env_params=None, render_mode: str | None = None):
        params = env.default_params if env_params is None else env_params
        self.signature = check_env_contract(env, params)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.env, self.env_params, self.render_mode = env, params, render_mode
        self._drawer = None
        if render_mode == "rgb_array":
            from rlx.run.video import frame_drawer

            self._drawer = frame_drawer(env)  # a clear error now when nothing can draw this env
        if render_mode == "ansi" and not callable(getattr(env, "render_text", None)):
            raise ValueError(f"render_mode='ansi' needs an env with render_text(state); {type(env).__name__} has none")
        self.observation_space = space_to_gymnasium(env.observation_space(params))
        self.action_space = space_to_gymnasium(env.action_space(params))
        self._discrete = isinstance(self.action_space, gym_spaces.Discrete)
        self._obs_dtype = self.observation_space.dtype
        # Compiled once each, with the params closed over as in training.
        if steps_without_reset(env):  # the true final state, for render() after the last step
            self._step = jax.jit(lambda key, state, action: step_without_reset(env, key, state, action, params))
        else:
            self._step = jax.jit(lambda key, state, action: env.step(key, state, action, params))
        self._reset = jax.jit(lambda key: env.reset(key, params))
        self._key = None
        self._state = None

    def _observation(self, obs) -> np.ndarray:
        return np.asarray(obs, dtype=self._obs_dtype)

    def _action(self, action):
        if self._discrete:
            value = np.asarray(action)
            if value.shape not in ((), (1,)) or not np.issubdtype(value.dtype, np.integer):
                raise ValueError(f"a Discrete({self.action_space.n}) action is one integer, got {action!r}")
            if not 0 <= int(value.reshape(())) < self.action_space.n:
                raise ValueError(f"action {int(value.reshape(()))} is outside Discrete({self.action_space.n})")
            return jnp.asarray(int(value.reshape(())), jnp.int32)
        value = np.asarray(action, np.float32)
        if value.size != int(np.prod(self.action_space.shape)):
            raise ValueError(f"a Box action has shape {self.action_space.shape}, got {np.shape(action)}")
        return jnp.asarray(value.reshape(self.action_space.shape))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._key = jax.random.PRNGKey(seed)
        elif self._key is None:
            self._key = jax.random.PRNGKey(int(self.np_random.integers(0, 2**31 - 1)))
        self._key, k_reset = jax.random.split(self._key)
        obs, self._state = self._reset(k_reset)
        return self._observation(obs), {}

    def step(self, action):
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        self._key, k_step = jax.random.split(self._key)
        obs, state, reward, terminated, truncated, info = self._step(k_step, self._state, self._action(action))
        terminated, truncated = bool(terminated), bool(truncated)
        if terminated or truncated:
            obs = info.get("final_observation", obs)  # auto-resetting envs: the episode's last one
        self._state = state
        info = {k: np.asarray(v) for k, v in info.items() if k != "final_observation"}
        return self._observation(obs), float(reward), terminated, truncated, info

    def render(self):
        if self.render_mode is None or self._state is None:
            return None
        if self.render_mode == "ansi":
            return self.env.render_text(self._state)
        return self._drawer(jax.device_get(self._state), self.env_params, "")


def to_gymnasium(env, env_params=None, *, render_mode: str | None = None) -> GymnasiumEnv:
    """Wrap an rlx / gymnax / brax env as a ``gymnasium.Env`` (see :class:`GymnasiumEnv`)."""
    return GymnasiumEnv(env, env_params, render_mode=render_mode)


def policy_from_run(run_dir, seed_index: int = 0, evaluation: int | None = None) -> tuple[Callable, Any]:
    """(deterministic policy, frozen observation statistics or None) of one seed of a saved run."""
    from rlx.run.checkpoint import load_trained_run

    return load_trained_run(run_dir, evaluation).policy(seed_index)


def _to_gym_action(space: gymnasium.Space) -> Callable[[np.ndarray], Any]:
    """rlx policies act as training saw the env: a Box's actions in [-1, 1] (rescaled onto finite
    bounds that are not already [-1, 1], clipped first, as rlx.envs.RescaleAction does), a
    Discrete's as an index from 0."""
    if isinstance(space, gym_spaces.Discrete):
        return lambda a: int(np.asarray(a).reshape(())) + int(space.start)
    if isinstance(space, gym_spaces.Box):
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        unit = np.all(low == -1.0) and np.all(high == 1.0)
        if unit or not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            return lambda a: np.asarray(a, space.dtype).reshape(space.shape)
        return lambda a: (low + (np.clip(np.asarray(a, np.float64), -1.0, 1.0) + 1.0) / 2.0 * (high - low)).astype(space.dtype).reshape(space.shape)
    raise TypeError(f"evaluate_on_gymnasium supports Box and Discrete action spaces, got {space!r}")


def evaluate_on_gymnasium(
    policy: Callable,
    gym_env: gymnasium.Env,
    episodes: int = 10,
    *,
    seed: int = 0,
    obs_stats=None,
    max_steps: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Undiscounted returns of ``episodes`` episodes of ``policy(obs, key) -> action`` (batched,
    as rlx policies are; e.g. :func:`policy_from_run`) on a Gymnasium env, on the host.

    Episode ``i`` starts from ``gym_env.reset(seed=seed + i)`` and ends at its first termination
    or truncation (or after ``max_steps``). Observations are normalized with ``obs_stats`` (a
    run's frozen statistics) when given. The policy is compiled once.
    """
    from rlx.core.running_stats import normalize

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not isinstance(gym_env.observation_space, gym_spaces.Box):
        raise TypeError(f"rlx policies read one array observation (a Box); got {gym_env.observation_space!r}")
    to_gym = _to_gym_action(gym_env.action_space)

    @jax.jit
    def act(obs, key):
        seen = obs.astype(jnp.float32)[None]
        if obs_stats is not None:
            seen = normalize(obs_stats, seen)
        return policy(seen, key)[0]

    key = jax.random.PRNGKey(seed)
    returns = np.zeros(episodes, np.float64)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=episodes, desc="episodes", leave=False)
    for i in range(episodes):
        obs, _ = gym_env.reset(seed=seed + i)
        steps = 0
        while True:
            key, k_act = jax.random.split(key)
            obs, reward, terminated, truncated, _ = gym_env.step(to_gym(jax.device_get(act(jnp.asarray(obs), k_act))))
            returns[i] += float(reward)
            steps += 1
            if terminated or truncated or (max_steps is not None and steps >= max_steps):
                break
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return returns
