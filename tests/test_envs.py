"""Environment contract, registry and wrappers.

Compiles are the cost here, so every rollout is one jitted scan built once per module and
shared; the time limit is a params leaf, so one compiled rollout serves several limits.
"""

import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import envs
from rlx.core.running_stats import init_running_stats, normalize, update_running_stats

pytestmark = pytest.mark.timeout(300)

NUM_STEPS = 12
LIMIT = 5


def make_rollout(env, num_steps=NUM_STEPS):
    """jit((key, params, actions) -> (reset obs, final state, per-step outputs))."""

    def rollout(key, params, actions):
        reset_key, step_key = jax.random.split(key)
        obs0, state = env.reset(reset_key, params)

        def body(state, inputs):
            key, action = inputs
            obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)
            return state, dict(
                obs=obs,
                reward=reward,
                terminated=terminated,
                truncated=truncated,
                info=info,
            )

        keys = jax.random.split(step_key, num_steps)
        state, traj = jax.lax.scan(body, state, (keys, actions))
        return obs0, state, traj

    return jax.jit(rollout)


# ---------------------------------------------------------------- gymnax through make


@pytest.fixture(scope="module")
def pendulum():
    env, params = envs.make("gymnax/Pendulum-v1", max_steps_in_episode=LIMIT)
    return env, params, make_rollout(env)


@pytest.fixture(scope="module")
def cartpole():
    env, params = envs.make("gymnax/CartPole-v1", max_steps_in_episode=LIMIT)
    return env, params, make_rollout(env, num_steps=40)


def test_make_overrides_params_and_rejects_unknown_kwargs():
    _, params = envs.make("gymnax/Pendulum-v1", max_steps_in_episode=50, max_torque=1.5)
    assert params.max_steps_in_episode == 50 and params.max_torque == 1.5
    _, default = envs.make("gymnax/Pendulum-v1")
    assert default.max_steps_in_episode == 200
    with pytest.raises(ValueError, match="max_stepz") as excinfo:
        envs.make("gymnax/Pendulum-v1", max_stepz=3)
    assert "max_steps_in_episode" in str(excinfo.value)  # lists the valid fields
    # A constructor argument goes to the constructor.
    env, _ = envs.make("gymnax/Catch-bsuite", rows=6)
    assert env.rows == 6


def test_gymnax_step_returns_six_values_with_contract_dtypes(pendulum):
    env, params, _ = pendulum
    obs, state = env.reset(jax.random.key(0), params)
    out = env.step(jax.random.key(1), state, jnp.zeros((1,)), params)
    assert len(out) == 6
    obs, state, reward, terminated, truncated, info = out
    assert obs.shape == (3,) and obs.dtype == jnp.float32
    assert reward.shape == () and reward.dtype == jnp.float32
    assert terminated.dtype == jnp.bool_ and truncated.dtype == jnp.bool_
    assert info["final_observation"].shape == (3,)
    assert envs.obs_shape(env, params) == (3,)
    assert envs.is_continuous(env.action_space(params))
    assert envs.action_dim(env.action_space(params)) == 1
    assert envs.episode_limit(env, params) == LIMIT


def test_pendulum_truncates_at_time_limit_with_true_final_observation(pendulum):
    env, params, rollout = pendulum
    actions = jnp.zeros((NUM_STEPS, 1))
    _, _, traj = rollout(jax.random.key(0), params, actions)
    truncated = np.asarray(traj["truncated"])
    expected = np.zeros(NUM_STEPS, bool)
    expected[LIMIT - 1 :: LIMIT] = True  # the LIMIT-th step of every episode
    np.testing.assert_array_equal(truncated, expected)
    assert not np.asarray(traj["terminated"]).any()

    obs = np.asarray(traj["obs"])
    final = np.asarray(traj["info"]["final_observation"])
    np.testing.assert_array_equal(final[~expected], obs[~expected])
    # At the boundary obs is the new episode's reset obs; final_observation is where the
    # finished episode ended: one Euler step from the previous obs. With zero torque,
    # theta_dot' = theta_dot + 3 g / (2 l) * sin(theta) * dt = theta_dot + 0.75 sin(theta).
    assert np.all(np.abs(final[expected] - obs[expected]).max(axis=-1) > 1e-3)
    prev = obs[np.flatnonzero(expected) - 1]
    np.testing.assert_allclose(final[expected, 2], prev[:, 2] + 0.75 * prev[:, 1], rtol=1e-5)

    # The same compiled rollout with the default limit never truncates in 12 steps.
    _, _, traj = rollout(jax.random.key(0), env.default_params, actions)
    assert not np.asarray(traj["truncated"]).any()


def test_cartpole_termination_is_terminated_not_truncated(cartpole):
    env, params, rollout = cartpole
    actions = jnp.ones((40,), jnp.int32)  # always push right: the pole falls within 40 steps
    _, _, traj = rollout(jax.random.key(0), params.replace(max_steps_in_episode=500), actions)
    terminated = np.asarray(traj["terminated"])
    assert terminated.any() and not np.asarray(traj["truncated"]).any()
    step = np.flatnonzero(terminated)[0]
    final = np.asarray(traj["info"]["final_observation"])[step]
    assert abs(final[2]) > params.theta_threshold_radians or abs(final[0]) > params.x_threshold
    assert not envs.is_continuous(env.action_space(params))
    assert envs.action_dim(env.action_space(params)) == 2

    _, _, traj = rollout(jax.random.key(0), params, jnp.tile(jnp.array([0, 1]), 20))
    np.testing.assert_array_equal(
        np.flatnonzero(np.asarray(traj["truncated"])), np.arange(LIMIT - 1, 40, LIMIT)
    )


# ---------------------------------------------------------------- brax through the adapter

BRAX_ENV = "brax/inverted_pendulum"  # fastest brax env to compile; spring is the default backend


@pytest.fixture(scope="module")
def brax_pendulum():
    pytest.importorskip("brax")
    env, params = envs.make(BRAX_ENV, episode_length=LIMIT)
    return env, params, make_rollout(env, num_steps=30)


def test_brax_contract_and_truncation(brax_pendulum):
    env, params, rollout = brax_pendulum
    assert isinstance(params, envs.BraxParams) and envs.episode_limit(env, params) == LIMIT
    assert env.brax_env.backend == "spring"
    assert env.action_space(params).shape == (1,)
    assert envs.obs_shape(env, params) == (4,)
    vec = envs.make_vec_env(env, params, 2)
    assert vec.env.env is env  # actions already in [-1, 1]: no RescaleAction

    obs0, state, traj = rollout(jax.random.key(0), params, jnp.zeros((30, 1)))
    assert obs0.shape == (4,) and obs0.dtype == jnp.float32
    assert traj["reward"].dtype == jnp.float32 and traj["reward"].shape == (30,)
    assert traj["terminated"].dtype == jnp.bool_ and traj["truncated"].dtype == jnp.bool_
    assert state.time.dtype == jnp.int32

    truncated = np.asarray(traj["truncated"])
    np.testing.assert_array_equal(np.flatnonzero(truncated), np.arange(LIMIT - 1, 30, LIMIT))
    assert not np.asarray(traj["terminated"]).any()
    obs = np.asarray(traj["obs"])
    final = np.asarray(traj["info"]["final_observation"])
    np.testing.assert_array_equal(final[~truncated], obs[~truncated])
    assert not np.allclose(final[truncated], obs[truncated])
    # After the auto-reset the pendulum starts near rest again (brax: +-0.01 noise).
    assert np.abs(obs[truncated]).max() <= 0.01 + 1e-6


def test_brax_fall_is_terminated_with_pre_reset_observation(brax_pendulum):
    env, _, rollout = brax_pendulum
    params = envs.BraxParams(max_steps_in_episode=1000)
    _, _, traj = rollout(jax.random.key(0), params, jnp.ones((30, 1)))  # push until it falls
    terminated = np.asarray(traj["terminated"])
    assert terminated.any() and not np.asarray(traj["truncated"]).any()
    step = np.flatnonzero(terminated)[0]
    assert abs(np.asarray(traj["info"]["final_observation"])[step, 1]) > 0.2  # pole angle
    assert abs(np.asarray(traj["obs"])[step, 1]) <= 0.01 + 1e-6  # already reset
    assert float(traj["info"]["discount"][step]) == 0.0


def test_brax_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "brax", None)
    monkeypatch.setitem(sys.modules, "brax.envs", None)
    with pytest.raises(ImportError, match=r'pip install "rlx\[brax\]"'):
        envs.make("brax/hopper")
    assert not any(n.startswith("brax/") for n in envs.registered_names())


def test_brax_rejects_unknown_option_and_backend():
    pytest.importorskip("brax")
    with pytest.raises(ValueError, match="episode_length"):
        envs.make("brax/inverted_pendulum", episode_lenght=5)
    with pytest.raises(ValueError, match="positional"):
        envs.make("brax/inverted_pendulum", backend="bullet")


# ---------------------------------------------------------------- registry


def test_registry_lists_suites_and_suggests_close_names():
    names = envs.registered_names()
    assert names == sorted(names)
    import gymnax

    assert {f"gymnax/{i}" for i in gymnax.registered_envs} <= set(names)
    with pytest.raises(envs.UnknownEnvironmentError) as excinfo:
        envs.make("gymnax/Pendulm-v1")
    message = str(excinfo.value)
    assert "Did you mean: gymnax/Pendulum-v1" in message
    assert "gymnax: Acrobot-v1" in message and "CartPole-v1" in message
    assert isinstance(excinfo.value, ValueError)
    with pytest.raises(envs.UnknownEnvironmentError, match="gymnax/CartPole-v1"):
        envs.make("CartPole-v1")  # missing suite prefix: the prefixed name is suggested


def test_register_duplicate_overwrite_and_prefix():
    def make_a(**kwargs):
        return "env-a", kwargs

    def make_b(**kwargs):
        return "env-b", kwargs

    envs.register("rlx/test-dummy", make_a)
    try:
        assert "rlx/test-dummy" in envs.registered_names()
        assert envs.make("rlx/test-dummy", size=3) == ("env-a", {"size": 3})
        with pytest.raises(ValueError, match="already registered"):
            envs.register("rlx/test-dummy", make_b)
        envs.register("rlx/test-dummy", make_b, overwrite=True)
        assert envs.make("rlx/test-dummy")[0] == "env-b"
        with pytest.raises(ValueError, match="already registered"):
            envs.register("gymnax/Pendulum-v1", make_b)  # suite names count as taken
        with pytest.raises(ValueError, match="suite prefix"):
            envs.register("no-prefix", make_a)
        with pytest.raises(ValueError, match="suite prefix"):
            envs.register("rlx/", make_a)
    finally:
        from rlx.envs import registry

        registry._REGISTERED.pop("rlx/test-dummy", None)


# ---------------------------------------------------------------- wrappers

NUM_ENVS = 3


def test_rescale_action_maps_onto_inner_bounds():
    env, params = envs.make("gymnax/Pendulum-v1")  # torque in [-2, 2]
    wrapped = envs.RescaleAction(env)
    space = wrapped.action_space(params)
    assert (space.low, space.high, space.shape) == (-1.0, 1.0, (1,))
    actions = jnp.array([[-1.0], [0.0], [0.5], [1.0], [3.0], [-7.0]])
    np.testing.assert_allclose(
        wrapped.to_inner_action(actions, params).ravel(), [-2.0, 0.0, 1.0, 2.0, 2.0, -2.0]
    )
    unit = envs.RescaleAction(env, low=0.0, high=1.0)
    np.testing.assert_allclose(
        unit.to_inner_action(jnp.array([0.0, 0.25, 1.0]), params), [-2.0, -1.0, 2.0]
    )
    # The mapping follows the params: a smaller torque limit rescales to it.
    np.testing.assert_allclose(
        wrapped.to_inner_action(jnp.array([1.0]), params.replace(max_torque=0.5)), [0.5]
    )
    assert wrapped.num_actions == 1  # other attributes come from the inner env
    with pytest.raises(TypeError, match="Box"):
        envs.RescaleAction(envs.make("gymnax/CartPole-v1")[0])


def test_make_vec_env_stack():
    env, params = envs.make("gymnax/Pendulum-v1")
    vec = envs.make_vec_env(env, params, 4, normalize_obs=True)
    assert isinstance(vec, envs.NormalizeObservation)
    assert isinstance(vec.env, envs.VecEnv) and vec.num_envs == 4
    assert isinstance(vec.env.env, envs.EpisodeStatistics)
    assert isinstance(vec.env.env.env, envs.RescaleAction)
    assert vec.unwrapped is env
    assert vec.action_space(params).high == 1.0
    assert vec.observation_space(params).shape == (3,)

    cart, cart_params = envs.make("gymnax/CartPole-v1")
    vec = envs.make_vec_env(cart, cart_params, 2)
    assert isinstance(vec, envs.VecEnv) and isinstance(vec.env, envs.EpisodeStatistics)
    assert vec.env.env is cart  # Discrete: no rescaling
    vec = envs.make_vec_env(env, params, 2, rescale_actions=False)
    assert vec.env.env is env


@pytest.fixture(scope="module")
def vec_pendulum():
    """Pendulum (limit 5) through the standard stack, with and without normalization, plus a
    frozen evaluation env; the same keys and actions drive all three."""
    env, params = envs.make("gymnax/Pendulum-v1", max_steps_in_episode=LIMIT)
    raw_env = envs.make_vec_env(env, params, NUM_ENVS)
    norm_env = envs.make_vec_env(env, params, NUM_ENVS, normalize_obs=True)
    key = jax.random.key(42)
    actions = jax.random.uniform(jax.random.key(7), (NUM_STEPS, NUM_ENVS, 1), minval=-1, maxval=1)
    raw = make_rollout(raw_env)(key, params, actions)
    norm = make_rollout(norm_env)(key, params, actions)
    return dict(
        env=env, params=params, norm_env=norm_env, key=key, actions=actions, raw=raw, norm=norm
    )


def test_vec_env_shapes_and_independent_keys(vec_pendulum):
    obs0, state, traj = vec_pendulum["raw"]
    assert obs0.shape == (NUM_ENVS, 3)
    assert traj["obs"].shape == (NUM_STEPS, NUM_ENVS, 3)
    assert traj["reward"].shape == (NUM_STEPS, NUM_ENVS)
    assert traj["terminated"].shape == traj["truncated"].shape == (NUM_STEPS, NUM_ENVS)
    assert traj["info"]["final_observation"].shape == (NUM_STEPS, NUM_ENVS, 3)
    assert state.episode_return.shape == (NUM_ENVS,)
    # One key per environment: no two start (or restart) in the same state.
    obs0 = np.asarray(obs0)
    reset_obs = np.asarray(traj["obs"])[LIMIT - 1]  # first auto-reset, all envs at once
    for batch in (obs0, reset_obs):
        for i in range(NUM_ENVS):
            for j in range(i + 1, NUM_ENVS):
                assert not np.allclose(batch[i], batch[j])
    assert not np.allclose(obs0, reset_obs)


def test_episode_statistics_totals(vec_pendulum):
    _, state, traj = vec_pendulum["raw"]
    reward = np.asarray(traj["reward"])
    info = traj["info"]
    done = np.asarray(info["episode_done"])
    np.testing.assert_array_equal(done, np.asarray(traj["truncated"]))
    ret = np.asarray(info["episode_return"])
    length = np.asarray(info["episode_length"])
    assert ret.dtype == np.float32 and length.dtype == np.int32
    np.testing.assert_allclose(ret[LIMIT - 1], reward[:LIMIT].sum(0), rtol=1e-5)
    np.testing.assert_allclose(ret[2 * LIMIT - 1], reward[LIMIT : 2 * LIMIT].sum(0), rtol=1e-5)
    np.testing.assert_array_equal(length[done], LIMIT)
    assert not ret[~done].any() and not length[~done].any()
    # The running episode (2 steps into the third) is carried in the state.
    np.testing.assert_allclose(state.episode_return, reward[2 * LIMIT :].sum(0), rtol=1e-5)
    np.testing.assert_array_equal(state.episode_length, NUM_STEPS - 2 * LIMIT)


def test_normalize_observation_matches_numpy_over_all_raw_observations(vec_pendulum):
    raw_obs0, _, raw = vec_pendulum["raw"]
    obs0, state, norm = vec_pendulum["norm"]
    seen = np.concatenate([np.asarray(raw_obs0)[None], np.asarray(raw["obs"])]).reshape(-1, 3)
    stats = state.obs_stats
    assert float(stats.count) == seen.shape[0]
    np.testing.assert_allclose(stats.mean, seen.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.var, seen.astype(np.float64).var(0), rtol=1e-5, atol=1e-6)
    # The last step's obs and final_observation use the statistics after that step's update.
    np.testing.assert_allclose(norm["obs"][-1], normalize(stats, raw["obs"][-1]), rtol=1e-5)
    np.testing.assert_allclose(
        norm["info"]["final_observation"][-1],
        normalize(stats, raw["info"]["final_observation"][-1]),
        rtol=1e-5,
    )
    # Reset normalizes with the statistics of the reset batch alone.
    first = update_running_stats(init_running_stats((3,)), raw_obs0)
    np.testing.assert_allclose(obs0, normalize(first, raw_obs0), rtol=1e-5, atol=1e-6)
    assert vec_pendulum["norm_env"].observation_space(vec_pendulum["params"]).high == 10.0
    # Rewards and episode statistics pass through untouched.
    np.testing.assert_array_equal(norm["reward"], raw["reward"])


def test_frozen_normalization_with_training_statistics(vec_pendulum):
    env, params = vec_pendulum["env"], vec_pendulum["params"]
    _, trained_state, _ = vec_pendulum["norm"]
    trained = trained_state.obs_stats
    eval_env = envs.NormalizeObservation(
        envs.VecEnv(envs.EpisodeStatistics(envs.RescaleAction(env)), NUM_ENVS), update=False
    )

    def evaluate(key, stats, actions):
        # Same key use as make_rollout, so the raw fixture rollout is this one unnormalized.
        reset_key, step_key = jax.random.split(key)
        _, state = eval_env.reset(reset_key, params)
        state = eval_env.with_obs_stats(state, stats)

        def body(state, inputs):
            k, a = inputs
            obs, state, *_ = eval_env.step(k, state, a, params)
            return state, obs

        keys = jax.random.split(step_key, actions.shape[0])
        return jax.lax.scan(body, state, (keys, actions))

    state, obs = jax.jit(evaluate)(vec_pendulum["key"], trained, vec_pendulum["actions"])
    chex.assert_trees_all_equal(state.obs_stats, trained)
    _, _, raw = vec_pendulum["raw"]
    np.testing.assert_allclose(obs, normalize(trained, raw["obs"]), rtol=1e-5, atol=1e-6)
    # A frozen reset keeps the initial statistics (count 0): nothing is learned from it.
    _, fresh = eval_env.reset(jax.random.key(0), params)
    assert float(fresh.obs_stats.count) == 0.0


def test_normalize_observation_on_unbatched_env():
    env, params = envs.make("gymnax/Pendulum-v1")
    wrapped = envs.NormalizeObservation(env)
    obs, state = wrapped.reset(jax.random.key(0), params)
    assert obs.shape == (3,) and state.obs_stats.mean.shape == (3,)
    assert float(state.obs_stats.count) == 1.0
    np.testing.assert_allclose(obs, 0.0, atol=1e-6)  # one sample: obs equals the mean
    obs, state, *_ = wrapped.step(jax.random.key(1), state, jnp.zeros((1,)), params)
    assert obs.shape == (3,) and float(state.obs_stats.count) == 2.0


def test_wrappers_hold_no_python_state():
    env, params = envs.make("gymnax/Pendulum-v1")
    vec = envs.make_vec_env(env, params, 2, normalize_obs=True)
    before = {id(w): dict(vars(w)) for w in (vec, vec.env, vec.env.env, vec.env.env.env)}
    obs, state = vec.reset(jax.random.key(0), params)
    vec.step(jax.random.key(1), state, jnp.zeros((2, 1)), params)
    after = {id(w): dict(vars(w)) for w in (vec, vec.env, vec.env.env, vec.env.env.env)}
    assert before == after


@pytest.mark.timeout(300)
def test_brax_import_and_construction_are_quiet_unless_asked():
    """mujoco's "Failed to import warp" prints and brax's maintenance warning stay out of every
    command's output; RLX_VERBOSE_IMPORTS=1 lets them through."""
    import importlib.util
    import os
    import subprocess

    if importlib.util.find_spec("brax") is None:
        pytest.skip("brax is not installed")
    code = (
        "import rlx.envs; from rlx.envs import brax_adapter as b; "
        "assert b.brax_env_names(); b.make_brax('inverted_pendulum')"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RLX_VERBOSE_IMPORTS", "PYTHONWARNINGS")}
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=240)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "" and quiet.stderr == "", (quiet.stdout, quiet.stderr)
    loud = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**env, "RLX_VERBOSE_IMPORTS": "1"}, timeout=240
    )
    assert loud.returncode == 0, loud.stderr
    assert "not actively being maintained" in loud.stderr
    if importlib.util.find_spec("warp") is None:
        assert "Failed to import warp" in loud.stdout
