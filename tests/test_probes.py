"""Probe environments: every value-based agent must learn their exact values.

Each agent trains once on all probes together (``jax.vmap`` over the probes' params: one
compiled program), plus a fourth copy with a deliberately planted bug: the truncation probe
with its time limit turned into a termination, which is what an agent that bootstraps with
``(1 - done)`` sees. The correct agent must pass every probe, and the planted bug must be
caught and named "truncation". A failure message starts with the bug class: bootstrapping,
discount or truncation (``rlx.envs.probes.diagnose``).

Agents trained from a dataset (those with ``from_inputs``: ``rlx train NAME --dataset PATH``) get
the offline counterpart automatically: one small dataset holds every probe's transitions, made by
stepping the probe envs with uniform random actions (the planted copy stores its time limits as
terminals), each probe at its own observation points (:data:`OFFLINE_POINTS`); the agent is built
from that folder by ``from_inputs`` as the command line builds it, trains once and is read at
those points. Inputs the agent trains from the data and can reuse (``dynamics`` /
``save_dynamics``: a dynamics model, a dynamics reward) are trained by the first agent and
shared with the next. The settings
(``OFFLINE_OVERRIDES``) are applied where the agent's config has the field: tiny networks, the same
discount, a negligible fixed temperature, and every penalty, filter cut and pessimism term off,
so the exact values hold and what is probed is how the learner treats the data's terminals,
time limits and discount.

Extension point: ``PROBE_AGENTS`` (config and how to read the agent's value). Critic-free agents
are in ``CRITIC_FREE``; an online agent in neither is skipped with a note to add it. A dataset
agent without ``q_estimate`` / ``value_estimate`` is skipped as critic-free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlx.envs
from rlx.agents import agent_names, get_agent
from rlx.core.contract import optional
from rlx.envs import probes
from rlx.run import make_train

GAMMA = 0.5  # far from 1, so 1, gamma and 1 / (1 - gamma) are far apart
TOL = 0.05
PROBE_NAMES = list(probes.PROBES)
PLANTED = "truncation treated as termination"


def _q_value(agent, config, state, obs):
    """Q(s, a) averaged over the twin critics and five actions across [-0.9, 0.9]."""
    actions = jnp.linspace(-0.9, 0.9, 5)[:, None]
    return jnp.mean(agent.q_estimate(config, state, jnp.broadcast_to(obs, (5, obs.shape[-1])), actions))


def _v_value(agent, config, state, obs):
    return agent.value_estimate(config, state, obs[None])[0]


@dataclasses.dataclass(frozen=True)
class ProbeSetup:
    continuous: bool
    overrides: dict
    value: Callable  # (agent, config, state, obs) -> scalar value of obs


_SOFT_Q = {
    "total_steps": 600, "learning_starts": 100, "batch_size": 64, "hidden_sizes": (32, 32), "actor_lr": 3e-3,
    "critic_lr": 3e-3, "gamma": GAMMA, "tau": 0.1, "eval_every": 500, "eval_episodes": 2,
    # Fixed, negligible temperature: the soft value equals the plain value to ~1e-3.
    "learn_alpha": False, "init_alpha": 1e-4,
}

PROBE_AGENTS: dict[str, ProbeSetup] = {
    "sac": ProbeSetup(True, _SOFT_Q, _q_value),  # 500 gradient steps
    "dsac_t": ProbeSetup(True, _SOFT_Q, _q_value),
    "ppo": ProbeSetup(  # 30 iterations x 8 minibatch updates = 240 updates
        False,
        {"total_steps": 64 * 30, "num_envs": 4, "num_steps": 16, "update_epochs": 4, "num_minibatches": 2,
         "hidden_sizes": (32, 32), "learning_rate": 3e-3, "gamma": GAMMA, "eval_every": 64 * 30, "eval_episodes": 2},
        _v_value,
    ),
}
CRITIC_FREE = {"grpo": "critic-free (group-relative advantages)", "gigpo": "critic-free (group-relative advantages)"}


def _stacked_params(continuous: bool):
    made = [rlx.envs.make(name, continuous=continuous) for name in PROBE_NAMES]
    env = made[0][0]
    planted = probes.make_probe("rlx/ProbeTruncation-v0", continuous, terminal=True)[1]
    params = [p for _, p in made] + [planted]
    return env, jax.tree.map(lambda *xs: jnp.stack(xs), *params)


_CACHE: dict[str, dict[str, dict[int, float]]] = {}
# The probes' programs are small and their values converge to fixed points: LLVM at optimization
# level 0 compiles them faster and the same XLA program reaches the same values up to rounding.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def learned_values(name: str) -> dict[str, dict[int, float]]:
    """{probe: {position: value}} after training agent ``name`` on every probe (cached)."""
    if name in _CACHE:
        return _CACHE[name]
    if name in CRITIC_FREE:
        pytest.skip(f"{name}: {CRITIC_FREE[name]}, no value to probe")
    if name not in PROBE_AGENTS and optional(get_agent(name), "from_inputs") is not None:
        return _offline_values(name)
    if name not in PROBE_AGENTS:
        pytest.skip(f"{name} has no probe setup: add it to PROBE_AGENTS (or CRITIC_FREE) in tests/test_probes.py")
    setup = PROBE_AGENTS[name]
    agent = get_agent(name)
    config = agent.Config().override(**setup.overrides)
    env, params = _stacked_params(setup.continuous)
    obs = jnp.eye(probes.NUM_POSITIONS)

    def train_and_read(p, key):
        state = make_train(agent, config, env, p)(key).state.agent_state
        return jax.vmap(lambda o: setup.value(agent, config, state, o))(obs)

    values = np.asarray(jax.jit(jax.vmap(train_and_read, in_axes=(0, None)), compiler_options=FAST_COMPILE)(params, jax.random.PRNGKey(0)))
    out = {probe: dict(enumerate(map(float, v))) for probe, v in zip([*PROBE_NAMES, PLANTED], values, strict=True)}
    _CACHE[name] = out
    print(f"probe values, {name}: " + "; ".join(f"{p}: {v}" for p, v in out.items()))  # pytest -s
    return out


# ---------------------------------------------------------------------------------------------
# Agents trained from a dataset: the probes as one offline dataset
# ---------------------------------------------------------------------------------------------
# Where each probe's positions sit in the dataset's 2-d observation space (the probe envs' own
# one-hot observations would make the probes' s0 collide): distinct points, at least 1 apart.
OFFLINE_POINTS = {
    "rlx/ProbeOneStep-v0": ((1.0, 0.0),),
    "rlx/ProbeTwoStep-v0": ((0.0, 1.0), (1.0, 1.0)),
    "rlx/ProbeTruncation-v0": ((-1.0, 0.0),),
    PLANTED: ((0.0, -1.0),),
}
OFFLINE_ROWS = 64  # transitions per probe
OFFLINE_EVAL_ENV = "rlx/ProbeOneStep-v0"  # evaluation only; its observations and actions match the data's
# Applied where the agent's config has the field. Every penalty and pessimism term is off (they
# change the value by design); the filter's cut would end branches whose transitions are
# consistent with the data. Model-based agents learn the termination (the probes have no rule).
OFFLINE_OVERRIDES = {
    "total_steps": 600, "eval_every": 600, "rollout_freq": 100, "batch_size": 64, "hidden_sizes": (32, 32),
    "actor_lr": 3e-3, "critic_lr": 3e-3, "gamma": GAMMA, "tau": 0.1, "eval_episodes": 1,
    "learn_alpha": False, "init_alpha": 1e-4, "actor_lr_cosine": False,
    "penalty_coef": 0.0, "filter_terminal_reward": 0.0,
    "rollout_length": 2, "rollout_batch_size": 64, "real_ratio": 0.25, "num_next_samples": 2,
    "ensemble_size": 3, "num_elites": 2, "model_hidden_sizes": (32, 32), "model_min_steps_per_epoch": 200,
    "model_max_epochs": 10, "reward_iterations": 10, "reward_keep_last": 10, "reward_keep_every": 5,
}


def _probe_transitions(probe: str, key) -> dict[str, np.ndarray]:
    """``OFFLINE_ROWS`` steps of ``probe`` (uniform random actions, auto-reset) with each position's
    one-hot observation replaced by its point in :data:`OFFLINE_POINTS`."""
    planted = probe == PLANTED
    env, params = (
        probes.make_probe("rlx/ProbeTruncation-v0", terminal=True) if planted else rlx.envs.make(probe)
    )
    points = jnp.asarray(OFFLINE_POINTS[probe], jnp.float32)
    encode = lambda one_hot: points[jnp.minimum(jnp.argmax(one_hot), points.shape[0] - 1)]  # noqa: E731

    def step(carry, key):
        obs, state = carry
        k_act, k_step = jax.random.split(key)
        action = jax.random.uniform(k_act, (1,), minval=-1.0, maxval=1.0)
        next_obs, state, reward, terminated, truncated, info = env.step(k_step, state, action, params)
        row = (encode(obs), action, reward, encode(info["final_observation"]), terminated, truncated)
        return (next_obs, state), row

    k_reset, k_steps = jax.random.split(key)
    obs, state = env.reset(k_reset, params)
    _, rows = jax.lax.scan(step, (obs, state), jax.random.split(k_steps, OFFLINE_ROWS))
    names = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
    return dict(zip(names, map(np.asarray, rows), strict=True))


def offline_probe_dataset(folder: Path) -> Path:
    """Every probe's transitions (and the planted copy's) in one rlx dataset folder."""
    from rlx.buffers.dataset import Dataset, DatasetInfo, save

    parts = [_probe_transitions(p, k) for p, k in zip(OFFLINE_POINTS, jax.random.split(jax.random.PRNGKey(0), 4), strict=True)]
    arrays = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
    dataset = Dataset(
        observations=arrays["observations"].astype(np.float32), actions=arrays["actions"].astype(np.float32),
        rewards=arrays["rewards"].astype(np.float32), next_observations=arrays["next_observations"].astype(np.float32),
        terminals=arrays["terminals"].astype(bool), timeouts=arrays["timeouts"].astype(bool),
    )
    return save(folder, dataset, DatasetInfo(env=OFFLINE_EVAL_ENV, kind="probes", size=dataset.size))


_OFFLINE_DIR: dict[str, Path] = {}


def _offline_folder() -> Path:
    """One temporary folder per session: the dataset, and what the first agents trained from it."""
    if "root" not in _OFFLINE_DIR:
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="rlx-offline-probes-"))
        offline_probe_dataset(root / "data")
        _OFFLINE_DIR["root"] = root
    return _OFFLINE_DIR["root"]


def _offline_inputs(agent, root: Path) -> dict:
    """The agent's inputs (``INPUTS``, the keywords of ``from_inputs``) pointing at the probe
    dataset; a reusable trained input (a dynamics model, a dynamics reward) is loaded when an
    earlier agent saved it, else trained here and saved for the next one."""
    inputs = {"dataset": str(root / "data"), "env": OFFLINE_EVAL_ENV, "seed": 0}
    for name in agent.INPUTS:
        if name != "dataset":
            saved = root / name
            inputs[name if saved.exists() else f"save_{name}"] = str(saved)
    return inputs


def _offline_values(name: str) -> dict[str, dict[int, float]]:
    agent = get_agent(name)
    fields = {f.name for f in dataclasses.fields(agent.Config)}
    config = agent.Config().override(**{k: v for k, v in OFFLINE_OVERRIDES.items() if k in fields})
    built = agent.from_inputs(config, **_offline_inputs(agent, _offline_folder()))
    if hasattr(built, "q_estimate"):
        value = _q_value
    elif hasattr(built, "value_estimate"):
        value = _v_value
    else:
        pytest.skip(f"{name}: trains from a dataset without a critic (no q_estimate / value_estimate), no value to probe")
    env, env_params = rlx.envs.make(OFFLINE_EVAL_ENV)
    points = [p for probe_points in OFFLINE_POINTS.values() for p in probe_points]

    def train_and_read(key):
        state = make_train(built, config, env, env_params)(key).state.agent_state
        return jax.vmap(lambda o: value(built, config, state, o))(jnp.asarray(points, jnp.float32))

    values = iter(map(float, np.asarray(jax.jit(train_and_read, compiler_options=FAST_COMPILE)(jax.random.PRNGKey(0)))))
    out = {probe: {pos: next(values) for pos in range(len(pts))} for probe, pts in OFFLINE_POINTS.items()}
    _CACHE[name] = out
    print(f"offline probe values, {name}: " + "; ".join(f"{p}: {v}" for p, v in out.items()))  # pytest -s
    return out


@pytest.mark.timeout(400)
@pytest.mark.parametrize("probe", PROBE_NAMES)
@pytest.mark.parametrize("name", agent_names())
def test_agent_solves_probe(name, probe):
    values = learned_values(name)[probe]
    problem = probes.diagnose(probe, values, GAMMA, TOL)
    assert problem is None, f"{name}: {problem}"


@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", agent_names())
def test_planted_truncation_bug_is_caught(name):
    values = learned_values(name)[PLANTED]
    problem = probes.diagnose("rlx/ProbeTruncation-v0", values, GAMMA, TOL)
    assert problem is not None and problem.startswith("truncation"), problem
    assert "treated as a termination" in problem, problem


# ---------------------------------------------------------------------------------------------
# The probes themselves, and the diagnosis
# ---------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_probe_dynamics():
    def episode(name, continuous=True, steps=3):
        env, params = rlx.envs.make(name, continuous=continuous)
        obs, state = env.reset(jax.random.PRNGKey(0), params)
        rows = []
        for k in jax.random.split(jax.random.PRNGKey(1), steps):
            action = jnp.zeros(1) if continuous else jnp.int32(1)
            next_obs, state, r, term, trunc, info = env.step(k, state, action, params)
            rows.append((np.asarray(obs), float(r), bool(term), bool(trunc), np.asarray(info["final_observation"])))
            obs = next_obs
        return rows

    s0, s1 = [1.0, 0.0], [0.0, 1.0]
    one = episode("rlx/ProbeOneStep-v0")
    assert [(r, te, tr) for _, r, te, tr, _ in one] == [(1.0, True, False)] * 3
    two = episode("rlx/ProbeTwoStep-v0", steps=4)
    assert [(r, te, tr) for _, r, te, tr, _ in two] == [(0.0, False, False), (1.0, True, False)] * 2
    np.testing.assert_array_equal(two[0][0], s0)
    np.testing.assert_array_equal(two[1][0], s1)
    trunc = episode("rlx/ProbeTruncation-v0", continuous=False)
    assert [(r, te, tr) for _, r, te, tr, _ in trunc] == [(1.0, False, True)] * 3
    # Same observation and reward as the one-step probe; the true next state is the same state.
    for (o, _, _, _, final), (o1, *_) in zip(trunc, one, strict=True):
        np.testing.assert_array_equal(o, o1)
        np.testing.assert_array_equal(final, s0)
    env, params = rlx.envs.make("rlx/ProbeTwoStep-v0")
    assert rlx.envs.is_continuous(env.action_space(params))
    assert not rlx.envs.is_continuous(rlx.envs.make("rlx/ProbeTwoStep-v0", continuous=False)[0].action_space(params))


def test_expected_values():
    assert probes.expected_values("rlx/ProbeOneStep-v0", 0.9) == {0: 1.0}
    assert probes.expected_values("rlx/ProbeTwoStep-v0", 0.9) == {0: 0.9, 1: 1.0}
    assert probes.expected_values("rlx/ProbeTruncation-v0", 0.9) == pytest.approx({0: 10.0})
    with pytest.raises(KeyError, match="ProbeOneStep"):
        probes.expected_values("rlx/Nope-v0", 0.9)


@pytest.mark.parametrize(
    "probe, values, bug_class, detail",
    [
        ("rlx/ProbeOneStep-v0", {0: 2.0}, "bootstrapping", "bootstraps through the termination"),
        ("rlx/ProbeOneStep-v0", {0: 0.5}, "bootstrapping", "target is r"),
        ("rlx/ProbeTwoStep-v0", {0: 0.5, 1: 2.0}, "bootstrapping", "terminal step"),
        ("rlx/ProbeTwoStep-v0", {0: 1.0, 1: 1.0}, "discount", "discount is not applied"),
        ("rlx/ProbeTwoStep-v0", {0: 0.0, 1: 1.0}, "discount", "does not bootstrap"),
        ("rlx/ProbeTruncation-v0", {0: 1.0}, "truncation", "treated as a termination"),
        ("rlx/ProbeTruncation-v0", {0: 3.0}, "truncation", "must bootstrap"),
    ],
)
def test_diagnosis_names_the_bug_class(probe, values, bug_class, detail):
    message = probes.diagnose(probe, values, 0.5)
    assert message.startswith(bug_class) and detail in message, message


def test_diagnosis_accepts_values_within_tolerance():
    assert probes.diagnose("rlx/ProbeTwoStep-v0", {0: 0.52, 1: 0.97}, 0.5) is None
    assert probes.diagnose("rlx/ProbeTruncation-v0", {0: 1.96, 1: 123.0}, 0.5) is None  # 1 unreachable
