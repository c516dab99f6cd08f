"""Correctness harness run for every agent in ``rlx.agents.agent_names()``.

* Key reuse: the whole training program (``init`` with warm-up, ``update`` inside the block
  scan, the in-graph evaluation) is traced under ``jax.debug_key_reuse(True)`` from a *typed*
  key (``jax.random.key``). JAX's checker only tracks typed keys: legacy ``uint32`` keys
  (``jax.random.PRNGKey``, what the driver passes) are plain integer arrays to it, and a reused
  legacy key passes silently (``test_checker_is_blind_to_legacy_keys``). Every key an agent uses
  descends from the one it is given, so a typed key in makes every key checked; a legacy key
  created inside the program would escape, and shows up in the jaxpr as ``random_wrap``, which
  the harness forbids.
* Compile once: a chunked driver run of several chunks traces ``update`` once and XLA compiles
  ``init`` once and the chunk once (the chunk's output state has exactly the types of its input,
  so the one executable serves every chunk). (Another key cannot give another program: a
  traced key is abstract, only its shape and dtype reach the trace.)

Extension point: ``SETUPS`` gives each agent a tiny config and an env (offline agents: a random
dataset and an untrained dynamics ensemble, ``offline_setup``). An agent without an entry
gets an automatic one (config fields shrunk where they exist, the first env its ``check_env``
accepts); an agent that needs inputs no env provides (an offline dataset) goes into
``NEEDS_INPUTS`` with the reason, and is skipped with it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import rlx.envs
from rlx.agents import agent_names, get_agent
from rlx.core.contract import optional
from rlx.run import make_train, run


@dataclasses.dataclass(frozen=True)
class Setup:
    env: str
    overrides: dict
    env_kwargs: dict = dataclasses.field(default_factory=dict)


_OFF_POLICY = {
    "total_steps": 160, "learning_starts": 32, "batch_size": 8, "hidden_sizes": (8,), "eval_every": 32,
    "eval_episodes": 2,
}
_GROUP_PG = {
    "total_steps": 4 * 2 * 2 * 8, "num_envs": 2, "group_size": 2, "max_episode_steps": 8, "update_epochs": 1,
    "num_minibatches": 2, "hidden_sizes": (8,), "eval_every": 2 * 2 * 8, "eval_episodes": 2,
}
_KEYDOOR = {"height": 2, "room_width": 2, "max_steps_in_episode": 8}

SETUPS: dict[str, Setup] = {
    "sac": Setup("gymnax/Pendulum-v1", _OFF_POLICY, {"max_steps_in_episode": 20}),
    "dsac_t": Setup("gymnax/Pendulum-v1", _OFF_POLICY, {"max_steps_in_episode": 20}),
    "ppo": Setup(
        "gymnax/CartPole-v1",
        {"total_steps": 4 * 2 * 8, "num_envs": 2, "num_steps": 8, "update_epochs": 1, "num_minibatches": 2,
         "hidden_sizes": (8,), "eval_every": 16, "eval_episodes": 2},
        {"max_steps_in_episode": 20},
    ),
    "grpo": Setup("rlx/KeyDoor-v0", _GROUP_PG, _KEYDOOR),
    "gigpo": Setup("rlx/KeyDoor-v0", _GROUP_PG, _KEYDOOR),
}

# Agents whose training needs inputs that an environment alone does not give: name -> reason.
NEEDS_INPUTS: dict[str, str] = {}

# Offline agents train from a dataset and a dynamics ensemble: a random Pendulum-shaped dataset
# and an untrained ensemble suffice to trace and compile their training program.
_OFFLINE = {
    "total_steps": 24, "eval_every": 8, "rollout_freq": 8, "rollout_batch_size": 8, "rollout_length": 2,
    "model_retain_epochs": 1, "batch_size": 20, "hidden_sizes": (8,), "ensemble_size": 3, "num_elites": 2,
    "model_hidden_sizes": (8,), "eval_episodes": 2,
}
# Agents trained from a dataset (the ones `rlx train` gives --dataset): the model-based ones also
# get the untrained ensemble, the model-free ones (bc, td3_bc, iql: INPUTS without "dynamics")
# the dataset alone.
OFFLINE_AGENTS = {name for name in agent_names() if optional(get_agent(name), "from_inputs") is not None}


def offline_setup(name: str):
    from rlx.buffers.dataset import Dataset
    from rlx.models import ensemble as ens
    from rlx.models import termination

    agent_module = get_agent(name)
    fields = {f.name for f in dataclasses.fields(agent_module.Config)}
    config = agent_module.Config().override(**{k: v for k, v in _OFFLINE.items() if k in fields})
    env, params = rlx.envs.make("gymnax/Pendulum-v1", max_steps_in_episode=20)
    rng = np.random.default_rng(0)
    rows, obs_dim, act_dim = 64, 3, 1
    dataset = Dataset(
        observations=rng.normal(size=(rows, obs_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(rows, act_dim)).astype(np.float32),
        rewards=rng.normal(size=rows).astype(np.float32),
        next_observations=rng.normal(size=(rows, obs_dim)).astype(np.float32),
        terminals=np.zeros(rows, np.float32),
        timeouts=(np.arange(rows) % 16 == 15).astype(np.float32),  # episodes of 16 steps
    )
    if "dynamics" not in agent_module.INPUTS:  # model-free
        return agent_module.agent(dataset, config=config), config, env, params
    rule = termination.rule_for_env("gymnax/Pendulum-v1")
    dyn_config = config.dynamics_config()
    dynamics = ens.Dynamics(
        params=ens.init_params(jax.random.PRNGKey(0), dyn_config, obs_dim + act_dim, obs_dim + 1, rule == "learned"),
        input_mean=jnp.zeros(obs_dim + act_dim), input_std=jnp.ones(obs_dim + act_dim),
        elites=jnp.arange(dyn_config.num_elites, dtype=jnp.int32), holdout_mse=jnp.zeros(dyn_config.ensemble_size),
        termination=rule,
    )
    if name.startswith("morec_"):  # MOREC: the base with the filter of a (barely trained) dynamics reward
        from rlx.agents import morec
        from rlx.models.dynamics_reward import DynamicsRewardConfig, train_dynamics_reward

        tiny = DynamicsRewardConfig(iterations=2, keep_last=2, keep_every=1, batch_size=8, hidden_sizes=(8,), generator_hidden_sizes=(8,))
        reward, _ = train_dynamics_reward(dataset, tiny, jax.random.PRNGKey(1))
        return morec.agent(agent_module, dataset, dynamics, config=config, dynamics_reward=reward), config, env, params
    return agent_module.agent(dataset, dynamics, config=config), config, env, params

# For agents without an entry: shrink these fields where the config has them.
_SHRINK = {
    "total_steps": 256, "learning_starts": 32, "batch_size": 8, "hidden_sizes": (8,), "eval_every": 64,
    "eval_episodes": 2, "num_envs": 2, "num_steps": 8, "num_minibatches": 2, "update_epochs": 1,
    "buffer_size": 256,
}
_CANDIDATE_ENVS = (("gymnax/Pendulum-v1", {"max_steps_in_episode": 20}), ("gymnax/CartPole-v1", {"max_steps_in_episode": 20}))


def setup_for(name: str):
    """(agent, config, env, env_params) of the tiny harness run for agent ``name``."""
    if name in NEEDS_INPUTS:
        pytest.skip(f"{name}: {NEEDS_INPUTS[name]} (give it a Setup in tests/test_harness.py SETUPS)")
    if name in OFFLINE_AGENTS:
        return offline_setup(name)
    agent = get_agent(name)
    if name in SETUPS:
        s = SETUPS[name]
        env, params = rlx.envs.make(s.env, **s.env_kwargs)
        return agent, agent.Config().override(**s.overrides), env, params
    fields = {f.name for f in dataclasses.fields(agent.Config)}
    config = agent.Config().override(**{k: v for k, v in _SHRINK.items() if k in fields})
    problems = []
    for env_name, kwargs in _CANDIDATE_ENVS:
        env, params = rlx.envs.make(env_name, **kwargs)
        try:
            make_train(agent, config, env, params)
            return agent, config, env, params
        except (ValueError, TypeError) as err:
            problems.append(f"{env_name}: {err}")
    pytest.fail(
        f"{name} has no harness setup and the automatic one failed ({'; '.join(problems)}); "
        "add it to SETUPS (or NEEDS_INPUTS with the reason) in tests/test_harness.py"
    )


def _primitives(jaxpr) -> set[str]:
    """Every primitive name in ``jaxpr`` and its sub-jaxprs (scan, cond, pjit, ...)."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            names |= _primitives(sub)
    return names


def trace_checked(fn, *args):
    """Trace ``jax.jit(fn)(*args)`` under the key reuse checker; return the closed jaxpr."""
    with jax.debug_key_reuse(True):
        return jax.jit(fn).trace(*args).jaxpr


# ---------------------------------------------------------------------------------------------
# The checker itself: it catches reuse of typed keys, and legacy keys escape it
# ---------------------------------------------------------------------------------------------
def _reuses(key):
    return jax.random.normal(key) + jax.random.normal(key)


def _reuses_in_scan(key):
    return jax.lax.scan(lambda c, _: (c, jax.random.uniform(key)), 0.0, None, 3)[1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fn", [_reuses, _reuses_in_scan])
def test_checker_catches_a_reused_typed_key(fn):
    with pytest.raises(jax.errors.KeyReuseError):
        trace_checked(fn, jax.random.key(0))


@pytest.mark.timeout(60)
def test_checker_is_blind_to_legacy_keys():
    # Why the harness feeds typed keys, and forbids random_wrap (a legacy key made inside).
    jaxpr = trace_checked(_reuses, jax.random.PRNGKey(0))
    assert "random_wrap" in _primitives(jaxpr.jaxpr)


@pytest.mark.timeout(60)
def test_harness_catches_key_reuse_inside_an_agent_update():
    """A SAC whose update acts and learns from the same key must fail the harness."""
    from rlx.agents import off_policy, sac

    class ReusingSAC:
        def __getattr__(self, name):
            return getattr(sac, name)

        @staticmethod
        def update(config, env, env_params, state):
            def act_reusing(config, learner, obs, key):
                sac.act(config, learner, obs, state.key)  # the state's key, consumed again below
                return sac.act(config, learner, obs, key)

            def learn(config, action_dim, learner, batch, key, step):
                return sac.gradient_step(config, action_dim, learner, batch, state.key, step)

            return off_policy.update(config, env, env_params, state, act_reusing, learn)

    _, config, env, params = setup_for("sac")
    train = make_train(ReusingSAC(), config, env, params)
    with pytest.raises(jax.errors.KeyReuseError):
        trace_checked(train, jax.random.key(0))


# ---------------------------------------------------------------------------------------------
# Every agent: no key reused, no legacy key made inside
# ---------------------------------------------------------------------------------------------
@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", agent_names())
def test_no_key_reused(name):
    agent, config, env, params = setup_for(name)
    train = make_train(agent, config, env, params)
    jaxpr = trace_checked(train, jax.random.key(0))  # raises KeyReuseError naming the site
    legacy = "random_wrap" in _primitives(jaxpr.jaxpr)
    assert not legacy, (
        f"{name}: the training program makes a legacy uint32 key from raw bits (random_wrap), "
        "which the key reuse checker cannot follow; derive every key from the one passed in"
    )


# ---------------------------------------------------------------------------------------------
# Every agent: the step compiles once
# ---------------------------------------------------------------------------------------------
class _Counting:
    """The agent with its ``init`` / ``update`` traces counted."""

    def __init__(self, agent):
        self._agent = agent
        self.traces = {"init": 0, "update": 0}

    def __getattr__(self, name):
        return getattr(self._agent, name)

    def init(self, *args):
        self.traces["init"] += 1
        return self._agent.init(*args)

    def update(self, *args):
        self.traces["update"] += 1
        return self._agent.update(*args)


class _Compiles:
    """Counts XLA backend compiles by function name (jax.monitoring duration events)."""

    def __init__(self):
        self.names: list[str] = []

    def __enter__(self):
        from jax import monitoring

        def listener(event, duration, **kw):
            if event == "/jax/core/compile/backend_compile_duration":
                self.names.append(kw.get("fun_name", "?"))

        self._listener = listener
        monitoring.register_event_duration_secs_listener(listener)
        return self

    def __exit__(self, *exc):
        from jax import monitoring

        monitoring.unregister_event_duration_listener(self._listener)


# Agents whose compiled run another entry already makes (the same loop, learner and filter):
# only the trace-level checks below run for them (state types stable across a chunk, one
# program for every key). morec_mobile is MOBILE's program with morec_mopo's filter.
TRACE_ONLY = {"morec_mobile"}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", agent_names())
def test_compiles_once(name):
    agent, config, env, params = setup_for(name)
    if name not in TRACE_ONLY:
        _runs_with_one_compile(name, agent, config, env, params)
    _trace_is_stable(name, agent, config, env, params)


def _runs_with_one_compile(name, agent, config, env, params):
    counted = _Counting(agent)
    num_evals = make_train(agent, config, env, params).schedule.num_evals
    assert num_evals >= 3, "the harness config should give several chunks"
    with _Compiles() as compiles:
        result = run(counted, config, env, params, progress=False, blocks_per_chunk=1)
    assert result.metrics["step"].shape == (1, num_evals)
    # init is traced twice: abstractly for the memory estimate (jax.eval_shape), then for jit.
    assert counted.traces["update"] == 1 and counted.traces["init"] <= 2, (
        f"{name}: traced {counted.traces} over {num_evals} chunks; the step must be traced once "
        "(a retrace means a Python value, dtype or shape changes between iterations)"
    )
    big = [n for n in compiles.names if "blocks" in n or "init" in n]
    assert len(big) == 2, f"{name}: expected one compile of init and one of the chunk, got {compiles.names}"
    assert np.all(np.isfinite(result.metrics["eval/return_mean"]))


def _trace_is_stable(name, agent, config, env, params):
    # Why one executable serves every chunk: its output state has exactly the input's types.
    one = make_train(agent, config, env, params)
    before = jax.eval_shape(one.init, jax.random.PRNGKey(0))
    after, _ = jax.eval_shape(lambda s: one.run_blocks(s, 1), before)
    assert jax.tree.structure(after) == jax.tree.structure(before)
    drift = [
        f"{jax.tree_util.keystr(path)}: {b.dtype}{list(b.shape)}{' weak' * b.weak_type} -> "
        f"{a.dtype}{list(a.shape)}{' weak' * a.weak_type}"
        for (path, b), a in zip(jax.tree_util.tree_flatten_with_path(before)[0], jax.tree.leaves(after), strict=True)
        if (a.shape, a.dtype, a.weak_type) != (b.shape, b.dtype, b.weak_type)
    ]
    assert not drift, f"{name}: the state changes type across a chunk (the next chunk would recompile): {drift}"


@pytest.mark.timeout(60)
def test_compile_counter_sees_a_recompile():
    """The counter the test above relies on does see a second compile (a new input shape)."""

    @jax.jit
    def double(x):
        return 2 * x

    with _Compiles() as compiles:
        double(jnp.ones(3))
        double(jnp.ones(3))
        double(jnp.ones(4))
    assert compiles.names.count("jit(double)") == 2
