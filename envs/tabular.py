"""Small episodic MDPs with a known kernel: tabular and linear mixture (``rlx/TabularMDP-v0``,
``rlx/LinearMixtureMDP-v0``).

A linear mixture MDP (Ayoub et al. 2020; Zhou, Gu, Szepesvari 2021) has a known feature map
``phi(s'|s,a) in R^d`` and an unknown parameter ``theta*`` with

    P(s'|s,a) = <phi(s'|s,a), theta*>.

Here ``features[s, a, s'] = phi(s'|s,a)`` is an array of shape (S, A, S, d) and the MDP is
time-homogeneous with a finite horizon H and an initial-state distribution. Two generators:

* :func:`random_linear_mixture_mdp`: d random base kernels P_1..P_d (rows drawn from a
  Dirichlet), ``phi(s'|s,a) = (P_1(s'|s,a), ..., P_d(s'|s,a))`` and ``theta*`` on the simplex,
  so every mixture is a valid kernel and ``||theta*||_2 <= 1``.
* :func:`random_tabular_mdp`: the tabular special case, d = S^2 A, ``phi(s'|s,a)`` the indicator
  of the coordinate (s, a, s') and ``theta* = vec(P)``.

Both are pure functions of a key, so ``jax.vmap`` over keys draws many instances at once. The
kernel is known to the caller (``mdp.kernel``), which is what lets a test or benchmark compute the
optimal value by value iteration on the true model.

The same MDPs are also gymnax environments (``reset`` / ``step``), with a reward table in the
params: the observation is the one-hot state followed by the elapsed fraction of the horizon,
the episode never terminates and is truncated after H steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment
from gymnax.environments.spaces import Box, Discrete

__all__ = [
    "FiniteMDP",
    "TabularMDPEnv",
    "TabularMDPParams",
    "TabularMDPState",
    "make_linear_mixture_mdp",
    "make_tabular_mdp",
    "random_linear_mixture_mdp",
    "random_reward",
    "random_tabular_mdp",
    "sample_next_state",
]


@struct.dataclass
class FiniteMDP:
    """A time-homogeneous episodic MDP whose kernel is linear in known features.

    ``features`` (S, A, S, d): phi(s'|s,a); ``theta`` (d,): theta*; ``initial`` (S,): the
    initial-state distribution; ``horizon`` (static): H.
    """

    features: jax.Array
    theta: jax.Array
    initial: jax.Array
    horizon: int = struct.field(pytree_node=False, default=1)

    @property
    def num_states(self) -> int:
        return self.features.shape[-4]

    @property
    def num_actions(self) -> int:
        return self.features.shape[-3]

    @property
    def dim(self) -> int:
        return self.features.shape[-1]

    @property
    def kernel(self) -> jax.Array:
        """P(s'|s,a) = <phi(s'|s,a), theta*>, shape (S, A, S)."""
        return jnp.einsum("xayd,d->xay", self.features, self.theta)


def _check_sizes(num_states: int, num_actions: int, horizon: int, dim: int | None = None) -> None:
    problems = []
    for name, value, low in (("num_states", num_states, 2), ("num_actions", num_actions, 1), ("horizon", horizon, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            problems.append(f"{name}={value!r} must be an integer >= {low}")
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim < 1):
        problems.append(f"dim={dim!r} must be an integer >= 1")
    if problems:
        raise ValueError("invalid MDP size: " + "; ".join(problems))


def _start_distribution(num_states: int) -> jax.Array:
    # A fixed first state s_1 (the reward-free setting's convention).
    return jnp.zeros((num_states,), jnp.float32).at[0].set(1.0)


def random_tabular_mdp(
    key: jax.Array, num_states: int, num_actions: int, horizon: int, concentration: float = 0.5
) -> FiniteMDP:
    """A random tabular MDP as a linear mixture MDP with d = S^2 A indicator features.

    Each row P(.|s,a) is drawn from Dirichlet(concentration); small concentrations give sparse,
    hard-to-explore kernels. The first state is 0.
    """
    _check_sizes(num_states, num_actions, horizon)
    S, A = num_states, num_actions
    kernel = jax.random.dirichlet(key, jnp.full((S,), concentration, jnp.float32), (S, A))
    kernel = kernel.astype(jnp.float32)
    features = jnp.eye(S * A * S, dtype=jnp.float32).reshape(S, A, S, S * A * S)
    return FiniteMDP(features, kernel.reshape(-1), _start_distribution(S), horizon)


def random_linear_mixture_mdp(
    key: jax.Array,
    num_states: int,
    num_actions: int,
    horizon: int,
    dim: int,
    concentration: float = 0.5,
) -> FiniteMDP:
    """A random linear mixture MDP: d base kernels (Dirichlet rows), theta* ~ Dirichlet(1).

    ``phi(s'|s,a)_i = P_i(s'|s,a)``, so ``<phi, theta*>`` is a convex mixture of the base
    kernels (a valid kernel for every theta on the simplex). The first state is 0.
    """
    _check_sizes(num_states, num_actions, horizon, dim)
    S, A = num_states, num_actions
    k_base, k_theta = jax.random.split(key)
    base = jax.random.dirichlet(k_base, jnp.full((S,), concentration, jnp.float32), (dim, S, A))
    theta = jax.random.dirichlet(k_theta, jnp.ones((dim,), jnp.float32))
    features = jnp.moveaxis(base.astype(jnp.float32), 0, -1)  # (S, A, S, d)
    return FiniteMDP(features, theta.astype(jnp.float32), _start_distribution(S), horizon)


def random_reward(
    key: jax.Array, num_states: int, num_actions: int, horizon: int, density: float = 1.0
) -> jax.Array:
    """A reward table r(s,a) in [0, 1/H], so that every episode's total reward lies in [0, 1].

    Each pair (s,a) is rewarding with probability ``density``, with a value ~ U[0, 1/H]; sparse
    rewards (small density) make the optimal policy depend on reaching a few pairs.
    """
    k_on, k_value = jax.random.split(key)
    on = jax.random.uniform(k_on, (num_states, num_actions)) < density
    value = jax.random.uniform(k_value, (num_states, num_actions), jnp.float32) / horizon
    return jnp.where(on, value, 0.0).astype(jnp.float32)


def sample_next_state(key: jax.Array, mdp: FiniteMDP, state: jax.Array, action: jax.Array) -> jax.Array:
    """s' ~ P(.|s,a) from the true kernel."""
    probs = jnp.einsum("yd,d->y", mdp.features[state, action], mdp.theta)
    return jax.random.categorical(key, jnp.log(jnp.clip(probs, 1e-30, None))).astype(jnp.int32)


# ---- gymnax interface -------------------------------------------------------------------------


@struct.dataclass
class TabularMDPState(environment.EnvState):
    state: jax.Array  # () int32


@struct.dataclass
class TabularMDPParams(environment.EnvParams):
    mdp: FiniteMDP = None
    reward: jax.Array = None  # (S, A)
    max_steps_in_episode: int = 1


class TabularMDPEnv(environment.Environment[TabularMDPState, TabularMDPParams]):
    """A :class:`FiniteMDP` with a reward table behind the gymnax 1.0 interface."""

    def __init__(self, num_states: int, num_actions: int, env_name: str = "TabularMDP-v0"):
        super().__init__()
        self.num_states = int(num_states)
        self._num_actions = int(num_actions)
        self._name = env_name

    @property
    def name(self) -> str:
        return self._name

    @property
    def num_actions(self) -> int:
        return self._num_actions

    @property
    def default_params(self) -> TabularMDPParams:
        raise ValueError(f"{self._name} has no default params; build it with rlx.envs.make(...)")

    def action_space(self, params=None) -> Discrete:
        return Discrete(self._num_actions)

    def observation_space(self, params=None) -> Box:
        return Box(0.0, 1.0, (self.num_states + 1,), jnp.float32)

    def reset_env(self, key: jax.Array, params: TabularMDPParams):
        s = jax.random.categorical(key, jnp.log(jnp.clip(params.mdp.initial, 1e-30, None)))
        state = TabularMDPState(time=jnp.int32(0), state=s.astype(jnp.int32))
        return self.get_obs(state, params), state

    def step_env(self, key: jax.Array, state: TabularMDPState, action, params: TabularMDPParams):
        action = jnp.asarray(action, jnp.int32)
        reward = params.reward[state.state, action]
        next_s = sample_next_state(key, params.mdp, state.state, action)
        state = TabularMDPState(time=state.time + 1, state=next_s)
        return self.get_obs(state, params), state, reward, jnp.bool_(False), {}

    def is_terminated(self, state: TabularMDPState, params: TabularMDPParams) -> jax.Array:
        return jnp.bool_(False)

    def get_obs(self, state: TabularMDPState, params=None, key=None) -> jax.Array:
        horizon = 1 if params is None else params.max_steps_in_episode
        onehot = jax.nn.one_hot(state.state, self.num_states, dtype=jnp.float32)
        return jnp.concatenate([onehot, jnp.reshape(state.time / horizon, (1,)).astype(jnp.float32)])


def _env_params(mdp: FiniteMDP, reward_key: jax.Array) -> TabularMDPParams:
    reward = random_reward(reward_key, mdp.num_states, mdp.num_actions, mdp.horizon)
    return TabularMDPParams(mdp=mdp, reward=reward, max_steps_in_episode=mdp.horizon)


def make_tabular_mdp(
    num_states: int = 6, num_actions: int = 2, horizon: int = 10, seed: int = 0, concentration: float = 0.5
) -> tuple[TabularMDPEnv, TabularMDPParams]:
    """(env, params) for ``rlx/TabularMDP-v0``: a random tabular MDP and reward table from ``seed``."""
    key_mdp, key_reward = jax.random.split(jax.random.PRNGKey(seed))
    mdp = random_tabular_mdp(key_mdp, num_states, num_actions, horizon, concentration)
    return TabularMDPEnv(num_states, num_actions, "TabularMDP-v0"), _env_params(mdp, key_reward)


def make_linear_mixture_mdp(
    num_states: int = 10,
    num_actions: int = 2,
    horizon: int = 10,
    dim: int = 4,
    seed: int = 0,
    concentration: float = 0.5,
) -> tuple[TabularMDPEnv, TabularMDPParams]:
    """(env, params) for ``rlx/LinearMixtureMDP-v0``: a random linear mixture MDP from ``seed``."""
    key_mdp, key_reward = jax.random.split(jax.random.PRNGKey(seed))
    mdp = random_linear_mixture_mdp(key_mdp, num_states, num_actions, horizon, dim, concentration)
    return TabularMDPEnv(num_states, num_actions, "LinearMixtureMDP-v0"), _env_params(mdp, key_reward)

