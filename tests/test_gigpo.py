"""GRPO / GiGPO: the hand-worked values of algorithms.md 5.5, anchor grouping against a
plain-Python reference (hypothesis), omega = 0 equals GRPO, and learning on our own envs."""

from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlx import envs
from rlx.agents import gigpo, grpo
from rlx.run import make_train

pytestmark = pytest.mark.timeout(400)


def _config(**kw):
    """The known values of 5.5 are for F_norm = 1 (mean_norm) unless a test says otherwise."""
    return gigpo.GiGPOConfig(**{"normalize_std": False, **kw})


# ---------------------------------------------------------------- known values (5.5)


def test_grpo_episode_advantages_known_values():
    r = jnp.array([[1.0, 0.0, 1.0, 0.0]])
    ones = jnp.ones_like(r)
    std_norm = gigpo.episode_advantages(r, ones, "per_trajectory", True)
    np.testing.assert_allclose(std_norm, [[0.866024, -0.866024, 0.866024, -0.866024]], atol=2e-6)
    np.testing.assert_allclose(gigpo.episode_advantages(r, ones, "per_trajectory", False), [[0.5, -0.5, 0.5, -0.5]])
    same = gigpo.episode_advantages(jnp.ones((1, 4)), ones, "per_trajectory", True)
    np.testing.assert_array_equal(same, 0.0)  # all-equal group: 0, not NaN
    single = gigpo.episode_advantages(jnp.array([[0.7]]), jnp.ones((1, 1)), "per_trajectory", True)
    np.testing.assert_allclose(single, [[0.7]], rtol=1e-5)  # group of one: mean 0, std 1


def test_episode_statistics_per_trajectory_vs_per_step_row():
    r, lengths = jnp.array([[1.0, 0.0]]), jnp.array([[3, 1]])
    np.testing.assert_allclose(gigpo.episode_advantages(r, lengths, "per_trajectory", False), [[0.5, -0.5]])
    np.testing.assert_allclose(gigpo.episode_advantages(r, lengths, "per_step_row", False), [[0.25, -0.75]])


def _two_trajectories():
    """traj1 rewards (0, 0, 1), traj2 (0, 0, 0); only t = 0 is a shared state."""
    obs = jnp.array([[[0.0], [1.0], [2.0]], [[0.0], [3.0], [4.0]]])[None]  # (1, 2, 3, 1)
    rewards = jnp.array([[[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]])
    return obs, rewards, jnp.ones_like(rewards, bool)


def test_step_level_known_values():
    obs, rewards, valid = _two_trajectories()
    returns = gigpo.discounted_returns(rewards, valid, 0.95)
    np.testing.assert_allclose(returns[0, 0], [0.9025, 0.95, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(returns[0, 1], 0.0)
    for normalize, value in ((False, 0.45125), (True, 0.707107)):
        adv, size, _ = gigpo.step_advantages(obs[0].reshape(6, 1), returns[0].reshape(6), valid[0].reshape(6), normalize)
        np.testing.assert_allclose(adv, [value, 0, 0, -value, 0, 0], atol=2e-6)
        np.testing.assert_array_equal(size, [2, 1, 1, 2, 1, 1])


def test_combined_advantage_and_omega_zero_equals_grpo():
    obs, rewards, valid = _two_trajectories()
    adv, info = gigpo.advantages(_config(), obs, rewards, valid)
    np.testing.assert_allclose(adv[0, 0], [0.95125, 0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(adv[0, 1], [-0.95125, -0.5, -0.5], rtol=1e-6)
    rng = np.random.default_rng(0)
    obs = jnp.asarray(rng.integers(0, 3, (3, 4, 6, 2)), jnp.float32)
    rewards = jnp.asarray(rng.random((3, 4, 6)), jnp.float32)
    valid = jnp.asarray(np.arange(6)[None, None] < rng.integers(1, 7, (3, 4, 1)))
    for normalize in (False, True):
        zero = gigpo.advantages(_config(step_weight=0.0, normalize_std=normalize), obs, rewards, valid)[0]
        plain = gigpo.advantages(grpo.GRPOConfig(normalize_std=normalize), obs, rewards, valid)[0]
        np.testing.assert_array_equal(np.asarray(zero), np.asarray(plain))
        full = gigpo.advantages(_config(normalize_std=normalize), obs, rewards, valid)[0]
        assert not np.array_equal(np.asarray(full), np.asarray(plain))


# ---------------------------------------------------------------- anchor grouping vs reference

G, N, T, D = 2, 3, 5, 2


def reference_step_advantages(obs, returns, valid, normalize):
    """Plain Python: group valid rows by (episode group, observation tuple)."""
    out = np.zeros(returns.shape)
    for g in range(obs.shape[0]):
        groups = defaultdict(list)
        for i in range(obs.shape[1]):
            for t in range(obs.shape[2]):
                if valid[g, i, t]:
                    groups[tuple(obs[g, i, t].tolist())].append((i, t))
        for members in groups.values():
            if len(members) < 2:
                continue
            vals = np.array([returns[g, i, t] for i, t in members], np.float64)
            mean, std = vals.mean(), vals.std(ddof=1)
            for (i, t), v in zip(members, vals, strict=True):
                out[g, i, t] = (v - mean) / (std + 1e-6) if normalize else v - mean
    return out


@pytest.fixture(scope="module")
def step_fn():
    def fn(obs, returns, valid, normalize):
        flat = lambda x: x.reshape((G, N * T) + x.shape[3:])  # noqa: E731
        adv, _, _ = jax.vmap(gigpo.step_advantages, in_axes=(0, 0, 0, None))(flat(obs), flat(returns), flat(valid), normalize)
        return adv.reshape(G, N, T)

    return {n: jax.jit(lambda o, r, v, n=n: fn(o, r, v, n)) for n in (False, True)}


@settings(max_examples=60, deadline=None)
@given(
    obs=st.lists(st.integers(0, 2), min_size=G * N * T * D, max_size=G * N * T * D),
    returns=st.lists(st.floats(-2, 2, width=32), min_size=G * N * T, max_size=G * N * T),
    lengths=st.lists(st.integers(1, T), min_size=G * N, max_size=G * N),
    normalize=st.booleans(),
)
def test_anchor_grouping_matches_python_reference(step_fn, obs, returns, lengths, normalize):
    # a 3-letter alphabet in 2 dims: many repeats, within and across trajectories, and padding
    # rows that share observations with valid rows
    obs = np.asarray(obs, np.float32).reshape(G, N, T, D)
    returns = np.asarray(returns, np.float32).reshape(G, N, T)
    valid = np.arange(T)[None, None] < np.asarray(lengths).reshape(G, N, 1)
    got = np.asarray(step_fn[normalize](obs, returns, valid))
    want = reference_step_advantages(obs, returns, valid, normalize)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 if not normalize else 2e-3)
    assert np.all(got[~valid] == 0.0)


def test_hash_collisions_never_merge_different_states():
    rng = np.random.default_rng(1)
    bits = gigpo.observation_bits(jnp.asarray(rng.integers(0, 3, (40, 2)), jnp.float32))
    valid = jnp.asarray(rng.random(40) < 0.8)
    every_row_collides = lambda b: (jnp.zeros(b.shape[0], jnp.uint32),) * 2  # noqa: E731
    segment, collisions = gigpo.anchor_segments(bits, valid, every_row_collides)
    segment, bits, valid = np.asarray(segment), np.asarray(bits), np.asarray(valid)
    assert int(collisions) > 0
    for s in np.unique(segment):
        rows = np.flatnonzero(segment == s)
        assert len({bits[r].tobytes() for r in rows}) == 1, "a segment mixed different states"
        assert valid[rows].all() or len(rows) == 1, "padding joined a group"
    # with the real hashes identical valid states always share one segment
    segment, collisions = gigpo.anchor_segments(jnp.asarray(bits), jnp.asarray(valid))
    segment = np.asarray(segment)
    assert int(collisions) == 0
    for key in {bits[r].tobytes() for r in np.flatnonzero(valid)}:
        rows = [r for r in np.flatnonzero(valid) if bits[r].tobytes() == key]
        assert len(set(segment[rows])) == 1
    np.testing.assert_array_equal(gigpo.observation_bits(jnp.array([-0.0])), gigpo.observation_bits(jnp.array([0.0])))


# ---------------------------------------------------------------- learning

LEARN = dict(num_envs=8, hidden_sizes=(32, 32), eval_episodes=64)


def _learn(name, env_kwargs, steps, max_steps, agent=gigpo, seed=0, **overrides):
    env, params = envs.make(name, max_steps_in_episode=max_steps, **env_kwargs)
    config = agent.Config(total_steps=steps, eval_every=steps // 6, max_episode_steps=max_steps, **LEARN, **overrides)
    out = jax.jit(make_train(agent, config, env, params))(jax.random.PRNGKey(seed))
    curve = np.asarray(out.metrics["eval/return_mean"])
    return curve, np.asarray(out.metrics["train/success_rate"])


def test_gigpo_learns_keydoor():
    # mean_norm and greedy evaluation here; the Household test below runs the defaults
    curve, train_success = _learn(
        "rlx/KeyDoor-v0", dict(height=2, room_width=2), 150_000, 30, normalize_std=False, eval_policy="greedy"
    )
    assert train_success[0] < 0.3, train_success
    assert curve[-2:].mean() >= 0.8, f"eval success {curve.round(2)} train {train_success.round(2)}"


def test_gigpo_learns_household():
    kwargs = dict(num_rooms=1, receptacles_per_room=3, num_objects=1)
    curve, train_success = _learn("rlx/Household-v0", kwargs, 300_000, 20)
    assert train_success[0] < 0.2, train_success
    assert curve[-2:].mean() >= 0.35 and train_success[-1] >= 0.5, (
        f"eval success {curve.round(2)} train {train_success.round(2)}"
    )


# ---------------------------------------------------------------- gymnax envs, same interface

GYMNAX_SMOKE = dict(
    total_steps=2 * 4 * 4 * 24, eval_every=4 * 4 * 24, num_envs=4, group_size=4, max_episode_steps=24,
    hidden_sizes=(16,), eval_episodes=2, update_epochs=1, num_minibatches=2,
)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("env_name", ["gymnax/FourRooms-misc", "gymnax/Breakout-MinAtar"])
@pytest.mark.parametrize("agent", [gigpo, grpo], ids=["gigpo", "grpo"])
def test_runs_on_gymnax_envs(agent, env_name):
    """FourRooms (vector observation) and MinAtar (a 10 x 10 x C boolean image) come through
    the same interface, without an invalid-action flag; the policy flattens image observations
    and the anchor grouping hashes their bits."""
    env, params = envs.make(env_name, max_steps_in_episode=24)  # short evaluation episodes
    config = agent.Config(**GYMNAX_SMOKE)
    train = jax.jit(make_train(agent, config, env, params))
    out = train(jax.random.PRNGKey(0))
    metrics = jax.device_get(out.metrics)
    assert metrics["step"].tolist() == [384, 768]
    assert np.isfinite(metrics["loss/policy"]).all() and np.isfinite(metrics["entropy"]).all()
    assert out.state.agent_state.obs_ndim == len(envs.obs_shape(env, params))
    init = jax.jit(train.init)(jax.random.PRNGKey(0)).agent_state
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), init.params, out.state.agent_state.params)
    assert any(jax.tree.leaves(moved)), "the policy never changed"
    if agent is gigpo:  # t = 0 is shared by every trajectory of a group, so some steps are grouped
        assert metrics["anchor/grouped_fraction"].min() > 0
        assert metrics["anchor/hash_collisions"].max() == 0


def test_observation_bits_of_images_bools_and_ints():
    rng = np.random.default_rng(2)
    images = jnp.asarray(rng.random((6, 5, 5, 3)) < 0.5)  # bool, MinAtar-like
    images = images.at[3].set(images[1])
    bits = np.asarray(gigpo.observation_bits(images))
    assert bits.shape == (6, 75)
    assert (bits[3] == bits[1]).all() and not (bits[0] == bits[1]).all()
    ints = np.asarray(gigpo.observation_bits(jnp.array([[1, 2], [1, 2], [2, 1]], jnp.int32)))
    assert (ints[0] == ints[1]).all() and not (ints[0] == ints[2]).all()
    adv, size, _ = gigpo.step_advantages(images, jnp.arange(6.0), jnp.ones(6, bool), False)
    np.testing.assert_array_equal(size, [1, 2, 1, 2, 1, 1])
    np.testing.assert_allclose(adv, [0, -1, 0, 1, 0, 0])


# ---------------------------------------------------------------- config, presets, evaluation


def test_paper_preset_and_defaults():
    for agent in (gigpo, grpo):
        paper = {k: v for k, v in agent.PRESETS["paper"].items() if not k.startswith("_")}
        config = agent.Config().override(**paper)
        config.validate()
        assert (config.num_envs, config.max_episode_steps, config.normalize_std) == (16, 50, False)
        assert (config.invalid_penalty, config.kl_coef) == (0.1, 0.01)
    assert grpo.GRPOConfig().step_level is False and gigpo.GiGPOConfig().step_level is True
    with pytest.raises(ValueError, match="invalid_penalty"):
        gigpo.GiGPOConfig(invalid_penalty=-1.0).validate()
    with pytest.raises(ValueError, match="eval_policy"):
        gigpo.GiGPOConfig(eval_policy="argmax").validate()


def test_invalid_penalty_shapes_advantages_not_the_env_reward():
    """Two trajectories, no success; the second takes one invalid action. With the penalty
    its episode advantage is lower; without it both are 0 (no signal)."""
    rewards = jnp.zeros((1, 2, 3))
    invalid = jnp.array([[[False, False, False], [False, True, False]]])
    obs = jnp.arange(6.0).reshape(1, 2, 3, 1)
    valid = jnp.ones((1, 2, 3), bool)
    config = gigpo.GiGPOConfig(normalize_std=False, invalid_penalty=0.1)
    shaped = gigpo.shaped_rewards(config, rewards, invalid)
    np.testing.assert_allclose(shaped[0, 1], [0.0, -0.1, 0.0])
    adv, _ = gigpo.advantages(config, obs, shaped, valid)
    np.testing.assert_allclose(adv[0, :, 0], [0.05, -0.05], rtol=1e-6)
    np.testing.assert_array_equal(gigpo.advantages(config, obs, rewards, valid)[0], 0.0)
    np.testing.assert_array_equal(gigpo.shaped_rewards(gigpo.GiGPOConfig(), rewards, invalid), 0.0)  # default: off


def test_sampled_and_greedy_evaluation():
    env, params = envs.make("rlx/Household-v0")
    state = gigpo.init(gigpo.GiGPOConfig(hidden_sizes=(8,)), env, params, jax.random.PRNGKey(0))
    obs = jnp.stack([env.reset(jax.random.PRNGKey(i), params)[0] for i in range(4)])
    keys = jax.random.split(jax.random.PRNGKey(1), 64)
    greedy = gigpo.make_policy(gigpo.GiGPOConfig(hidden_sizes=(8,), eval_policy="greedy"), state)
    sampled = gigpo.make_policy(gigpo.GiGPOConfig(hidden_sizes=(8,)), state)
    g = np.asarray(jax.vmap(lambda k: greedy(obs, k))(keys))
    s = np.asarray(jax.vmap(lambda k: sampled(obs, k))(keys))
    assert (g == g[0]).all(), "greedy evaluation must not depend on the key"
    assert len(np.unique(s)) > 3, "the (near-uniform) initial policy samples many actions"


# ---------------------------------------------------------------- anchor grouping under jit


def _signed_zero_advantages(dtype, jit):
    """Two trajectories of one step in one group, observations -0 and +0 (the same state), returns 1 and 0."""
    config = _config(normalize_std=False, step_weight=1.0)
    obs = jnp.array([[[[-0.0]], [[0.0]]]], dtype)
    rewards = jnp.array([[[1.0], [0.0]]])
    valid = jnp.ones((1, 2, 1), bool)
    fn = (lambda o, r, v: gigpo.advantages(config, o, r, v)[0]) if not jit else jax.jit(lambda o, r, v: gigpo.advantages(config, o, r, v)[0])
    return np.asarray(fn(obs, rewards, valid))[0, :, 0]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_signed_zeros_are_one_anchor_state_under_jit(dtype, jit):
    # episode level: (1 - 0.5) and (0 - 0.5); step level: the two rows are one state, the same again
    np.testing.assert_allclose(_signed_zero_advantages(dtype, jit), [1.0, -1.0])


def _bits_jit(x):
    return np.asarray(jax.jit(gigpo.observation_bits)(jnp.asarray(x)))


@pytest.mark.parametrize(
    "dtype", [jnp.float32, jnp.float16, jnp.bfloat16, jnp.int8, jnp.int16, jnp.int32, jnp.uint8, jnp.uint32, jnp.bool_]
)
def test_observation_bits_equal_iff_values_equal_under_jit(dtype):
    """Rows get the same bits exactly when their values are equal, compiled as training runs it:
    +0/-0 fold together, integers beyond float32's 2**24 stay apart."""
    info = jnp.iinfo(dtype) if jnp.issubdtype(dtype, jnp.integer) else None
    if dtype == jnp.bool_:
        rows = [[True, False], [True, False], [False, True]]
    elif info is not None:
        big = int(info.max)
        rows = [[big, 1], [big, 1], [big - 1, 1], [int(info.min), 0], [0, 0]]
    else:
        rows = [[-0.0, 1.5], [0.0, 1.5], [0.0, -1.5], [1.0, 2.0], [-0.0, -0.0], [0.0, 0.0]]
    x = np.asarray(jnp.asarray(rows, dtype))
    bits = _bits_jit(x)
    np.testing.assert_array_equal(bits, np.asarray(gigpo.observation_bits(jnp.asarray(x))))
    for i in range(len(rows)):
        for j in range(len(rows)):
            same_value = bool(np.all(x[i] == x[j]))
            assert bool(np.all(bits[i] == bits[j])) == same_value, (dtype, rows[i], rows[j])
    if info is not None and info.bits == 32:  # 16777217 and 16777216 are one float32
        b = _bits_jit(np.array([[16_777_217], [16_777_216]], np.dtype(dtype)))
        assert not np.all(b[0] == b[1])
