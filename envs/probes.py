"""Probe environments: tiny MDPs whose exact values expose one bug class each.

A value-based agent trained on a probe must reproduce the value below, up to function-fitting
error; a wrong value names what is broken:

=========================== ============================== =================================
name                        what happens                   exact value (discount gamma)
=========================== ============================== =================================
``rlx/ProbeOneStep-v0``     one step, reward 1, terminates Q(s0, a) = 1 (bootstrapping: a
                                                           terminal step has target r)
``rlx/ProbeTwoStep-v0``     s0 -> s1 -> end, rewards 0, 1  Q(s1, a) = 1, Q(s0, a) = gamma
                                                           (discount)
``rlx/ProbeTruncation-v0``  the one-step probe's obs and   Q(s0, a) = 1 / (1 - gamma)
                            reward, but the episode is cut (truncation must bootstrap: the
                            by a time limit; the state     state goes on, only the episode
                            loops on itself                was cut)
=========================== ============================== =================================

Rewards do not depend on the action, so Q(s, a) = V(s) for every action and every policy (an
entropy-regularised agent adds alpha * entropy terms; the tests make alpha negligible).
Observations are one-hot positions (two entries for all three probes, so one compiled program
can train on all of them with ``jax.vmap`` over their params). Actions are Box(-1, 1, (1,)), or
Discrete(2) with ``continuous=False`` for discrete-action agents.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment
from gymnax.environments.spaces import Box, Discrete

__all__ = ["PROBES", "Probe", "ProbeParams", "ProbeState", "expected_values", "make_probe"]

NUM_POSITIONS = 2


@struct.dataclass
class ProbeState(environment.EnvState):
    position: jax.Array  # int32 in [0, chain_length)


@struct.dataclass
class ProbeParams:
    rewards: jax.Array  # (NUM_POSITIONS,) reward for a step taken at each position
    chain_length: jax.Array  # int32, 1 or 2 positions
    terminal: jax.Array  # bool: the last position terminates; else it loops on itself
    time_limit: jax.Array  # int32: the episode is truncated after this many steps
    # Bound on the episode length (sizes in-graph evaluation loops); the same for every probe.
    max_steps_in_episode: int = struct.field(pytree_node=False, default=NUM_POSITIONS)


PROBES: dict[str, dict] = {
    "rlx/ProbeOneStep-v0": {"rewards": (1.0, 0.0), "chain_length": 1, "terminal": True, "time_limit": 3},
    "rlx/ProbeTwoStep-v0": {"rewards": (0.0, 1.0), "chain_length": 2, "terminal": True, "time_limit": 3},
    "rlx/ProbeTruncation-v0": {"rewards": (1.0, 0.0), "chain_length": 1, "terminal": False, "time_limit": 1},
}


def expected_values(name: str, gamma: float) -> dict[int, float]:
    """Exact Q(s, a) (for every a) at each reachable position of probe ``name``."""
    if name == "rlx/ProbeOneStep-v0":
        return {0: 1.0}
    if name == "rlx/ProbeTwoStep-v0":
        return {0: gamma * 1.0, 1: 1.0}
    if name == "rlx/ProbeTruncation-v0":
        return {0: 1.0 / (1.0 - gamma)}
    raise KeyError(f"no probe named {name!r}; probes: {', '.join(PROBES)}")


BUG_CLASSES = {
    "rlx/ProbeOneStep-v0": "bootstrapping",
    "rlx/ProbeTwoStep-v0": "discount",
    "rlx/ProbeTruncation-v0": "truncation",
}


def diagnose(name: str, values: dict[int, float], gamma: float, tol: float = 0.05) -> str | None:
    """None when ``values`` (Q at each reachable position) match probe ``name``; else a message
    that starts with the bug class (bootstrapping, discount, truncation) and says what is wrong."""
    expected = expected_values(name, gamma)
    wrong = {pos: float(values[pos]) for pos, v in expected.items() if abs(float(values[pos]) - v) > tol}
    if not wrong:
        return None

    def near(x, v):
        return abs(x - v) <= tol

    if name == "rlx/ProbeOneStep-v0" or (name == "rlx/ProbeTwoStep-v0" and 1 in wrong):
        q = wrong.get(0 if name == "rlx/ProbeOneStep-v0" else 1)
        hint = " (it bootstraps through the termination)" if q > 1.0 + tol else ""
        return (
            f"bootstrapping: {name}: Q on the terminal step is {q:.4f}, expected its reward 1.0: "
            f"a terminated transition's target is r, with no bootstrap{hint}"
        )
    if name == "rlx/ProbeTwoStep-v0":
        q = wrong[0]
        if near(q, 1.0):
            hint = "; Q(s0) = r0 + r1: the discount is not applied"
        elif near(q, 0.0):
            hint = "; Q(s0) = r0: it does not bootstrap from the non-terminal step at all"
        else:
            hint = ""
        return f"discount: {name}: Q(s0) is {q:.4f}, expected r0 + gamma * r1 = {expected[0]:.4f} (gamma {gamma}){hint}"
    q = wrong[0]
    hint = "; Q = r: the time limit is treated as a termination" if near(q, 1.0) else ""
    return (
        f"truncation: {name}: Q(s0) is {q:.4f}, expected r / (1 - gamma) = {expected[0]:.4f}: a "
        f"time-limit truncation must bootstrap from the true next observation{hint}"
    )


class Probe(environment.Environment[ProbeState, ProbeParams]):
    def __init__(self, name: str = "rlx/ProbeOneStep-v0", continuous: bool = True):
        super().__init__()
        if name not in PROBES:
            raise ValueError(f"no probe named {name!r}; probes: {', '.join(PROBES)}")
        self.probe_name = name
        self.continuous = bool(continuous)

    @property
    def default_params(self) -> ProbeParams:
        spec = PROBES[self.probe_name]
        return ProbeParams(
            rewards=jnp.asarray(spec["rewards"], jnp.float32),
            chain_length=jnp.int32(spec["chain_length"]),
            terminal=jnp.bool_(spec["terminal"]),
            time_limit=jnp.int32(spec["time_limit"]),
        )

    @property
    def name(self) -> str:
        return self.probe_name.split("/", 1)[1]

    @property
    def num_actions(self) -> int:
        return 2 if not self.continuous else 1

    def action_space(self, params=None):
        return Box(-1.0, 1.0, (1,), jnp.float32) if self.continuous else Discrete(2)

    def observation_space(self, params=None) -> Box:
        return Box(0.0, 1.0, (NUM_POSITIONS,), jnp.float32)

    def get_obs(self, state: ProbeState, params=None, key=None) -> jax.Array:
        return jax.nn.one_hot(state.position, NUM_POSITIONS, dtype=jnp.float32)

    def reset_env(self, key: jax.Array, params: ProbeParams):
        del key
        state = ProbeState(position=jnp.int32(0), time=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(self, key: jax.Array, state: ProbeState, action, params: ProbeParams):
        del key, action  # rewards do not depend on the action
        reward = params.rewards[state.position]
        at_end = state.position + 1 >= params.chain_length
        terminated = at_end & params.terminal
        position = jnp.where(at_end, state.position, state.position + 1).astype(jnp.int32)
        state = ProbeState(position=position, time=state.time + 1)
        return self.get_obs(state), state, reward.astype(jnp.float32), terminated, {}

    def is_terminated(self, state: ProbeState, params: ProbeParams) -> jax.Array:
        return jnp.bool_(False)  # termination is decided in step_env

    def is_truncated(self, state: ProbeState, params: ProbeParams) -> jax.Array:
        return state.time >= params.time_limit


def make_probe(name: str, continuous: bool = True, **overrides):
    """(env, params) of probe ``name``; ``overrides`` replace fields of its params."""
    env = Probe(name, continuous)
    params = env.default_params
    unknown = sorted(set(overrides) - {"rewards", "chain_length", "terminal", "time_limit"})
    if unknown:
        raise ValueError(
            f"{name} has no parameter {unknown[0]!r}; valid: continuous, rewards, chain_length, terminal, time_limit"
        )
    return env, params.replace(**{k: jnp.asarray(v) for k, v in overrides.items()})
