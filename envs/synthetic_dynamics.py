"""A refrigerator with known dynamics: the synthetic task of MOREC (Luo et al., ICLR 2024, Sec. 5.1).

The observation is the temperature x (in units of 10 degrees C), the action a in [-1, 1] sets the
cooling power u = (a + 1) / 2 in [0, 1], and the room warms the inside (Newton's law of cooling):

    x' = x + k (x_room - x) - c u + sigma * N(0, 1),   k = 0.1, x_room = 2.5, c = 0.4, sigma = 0.02

Reward -|x' - x_target| (target 0.4 = 4 degrees C); episodes of 50 steps (a time limit: truncated,
never terminated) from x ~ U(1, 2). The exact next-state mean :func:`true_next_mean` is what model
rollouts are measured against. :func:`behaviour_dataset` records a noisy proportional controller
that holds another set point (0.8 by default): its data covers a narrow band of (x, a), so a model
fitted to it must generalise to what another policy visits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment
from gymnax.environments.spaces import Box

from rlx.core.types import Dataset

K_ROOM, X_ROOM, COOLING, NOISE = 0.1, 2.5, 0.4, 0.02


def true_next_mean(obs, action):
    """E[x' | x, a] of the true dynamics (obs (..., 1), action (..., 1))."""
    u = (jnp.clip(action, -1.0, 1.0) + 1.0) / 2.0
    return obs + K_ROOM * (X_ROOM - obs) - COOLING * u


@struct.dataclass
class FridgeState(environment.EnvState):
    x: jax.Array
    time: int


@struct.dataclass
class FridgeParams(environment.EnvParams):
    target: float = 0.4
    max_steps_in_episode: int = 50


class Fridge(environment.Environment[FridgeState, FridgeParams]):
    """gymnax-style refrigerator (see the module docstring)."""

    @property
    def default_params(self) -> FridgeParams:
        return FridgeParams()

    @property
    def name(self) -> str:
        return "Fridge-v0"

    @property
    def num_actions(self) -> int:
        return 1

    def action_space(self, params=None):
        return Box(-1.0, 1.0, (1,), jnp.float32)

    def observation_space(self, params=None) -> Box:
        return Box(-10.0, 10.0, (1,), jnp.float32)

    def get_obs(self, state: FridgeState, params=None, key=None):
        return jnp.reshape(state.x, (1,)).astype(jnp.float32)

    def reset_env(self, key, params: FridgeParams):
        state = FridgeState(x=jax.random.uniform(key, (), jnp.float32, 1.0, 2.0), time=0)
        return self.get_obs(state), state

    def step_env(self, key, state: FridgeState, action, params: FridgeParams):
        mean = true_next_mean(state.x[None], jnp.reshape(action, (1,)))[0]
        x = mean + NOISE * jax.random.normal(key, (), jnp.float32)
        reward = -jnp.abs(x - params.target)
        state = FridgeState(x=x, time=state.time + 1)
        done = self.is_terminal(state, params)
        return self.get_obs(state), state, reward.astype(jnp.float32), done, {"discount": self.discount(state, params)}

    def is_terminal(self, state: FridgeState, params: FridgeParams):
        return state.time >= params.max_steps_in_episode

    def is_terminated(self, state, params):  # rlx's split: the time limit only truncates
        return jnp.bool_(False)

    def is_truncated(self, state, params):
        return state.time >= params.max_steps_in_episode


def controller(obs, key, set_point=0.8, gain=2.0, action_noise=0.2):
    """Noisy proportional controller: more cooling the warmer it is than ``set_point``."""
    u = jnp.clip(0.5 + gain * (obs - set_point), 0.0, 1.0)
    a = 2.0 * u - 1.0 + action_noise * jax.random.normal(key, obs.shape, obs.dtype)
    return jnp.clip(a, -1.0, 1.0)


def behaviour_dataset(key, episodes: int = 40, set_point: float = 0.8, gain: float = 2.0, action_noise: float = 0.2,
                      length: int = 50, target: float = 0.4):
    """A :class:`rlx.buffers.dataset.Dataset` of ``episodes`` x ``length`` transitions of the controller."""
    k_start, k_steps = jax.random.split(key)
    x0 = jax.random.uniform(k_start, (episodes, 1), jnp.float32, 1.0, 2.0)

    def step(x, key):
        k_a, k_n = jax.random.split(key)
        a = controller(x, k_a, set_point, gain, action_noise)
        nxt = true_next_mean(x, a) + NOISE * jax.random.normal(k_n, x.shape, x.dtype)
        return nxt, (x, a, -jnp.abs(nxt[:, 0] - target), nxt)

    _, (obs, act, rew, nxt) = jax.lax.scan(step, x0, jax.random.split(k_steps, length))
    flat = lambda v: jnp.swapaxes(v, 0, 1).reshape((episodes * length,) + v.shape[2:])  # noqa: E731  episode-major
    timeouts = jnp.tile(jnp.arange(length) == length - 1, episodes)
    return Dataset(
        observations=flat(obs), actions=flat(act), rewards=flat(rew), next_observations=flat(nxt),
        terminals=jnp.zeros(episodes * length, bool), timeouts=timeouts,
    )


def make_fridge(**overrides):
    env = Fridge()
    return env, env.default_params.replace(**overrides) if overrides else env.default_params
