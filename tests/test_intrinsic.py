"""Intrinsic-reward modules: known values (algorithms.md 6.4), novelty behaviour, the mixing hook."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.core.config import ConfigError
from rlx.core.types import Transition
from rlx.explore import intrinsic as I

pytestmark = pytest.mark.timeout(300)


def _batch(obs, action, next_obs, reward=None):
    n = obs.shape[0]
    return Transition(
        obs=jnp.asarray(obs, jnp.float32),
        action=jnp.asarray(action, jnp.float32),
        reward=jnp.zeros(n, jnp.float32) if reward is None else jnp.asarray(reward, jnp.float32),
        next_obs=jnp.asarray(next_obs, jnp.float32),
        terminated=jnp.zeros(n, jnp.float32),
        truncated=jnp.zeros(n, jnp.float32),
    )


# ---- known values ----------------------------------------------------------------------------
def test_rnd_reward_moments_known_values():
    m = I.update_reward_moments(I.init_reward_moments(), jnp.array([1.0, 3.0]))
    np.testing.assert_allclose(float(m.mean), 1.9999000, rtol=1e-6)
    np.testing.assert_allclose(float(m.var), 2.0001500, rtol=1e-6)
    rewards = np.array([1.0, 3.0]) / (np.sqrt(float(m.var)) + 1e-8)
    np.testing.assert_allclose(rewards, [0.7070803, 2.1212408], rtol=1e-6)


def test_rnd_update_divides_by_moments_that_include_the_batch():
    """URLB order: predictor step, then errors of the updated predictor merged into the moments,
    then bonus = error / (sqrt(var) + 1e-8). Recomputed here in float64 from the new state."""
    module = I.RND(hidden_sizes=(8,), embed_dim=4, error_decay=0.0)
    key = jax.random.PRNGKey(0)
    state = module.init(2, 2, key)
    obs = jax.random.normal(jax.random.PRNGKey(1), (16, 2))
    batch = _batch(obs, jnp.zeros((16, 2)), obs + 1.0)
    new_state, bonus, _ = jax.jit(module.update)(state, batch, key)
    x = np.clip((np.asarray(batch.next_obs, np.float64) - np.asarray(new_state.obs_stats.mean))
                / np.sqrt(np.asarray(new_state.obs_stats.var) + 1e-8), -5, 5)
    target = np.asarray(module._net().apply(new_state.target_params, jnp.asarray(x, jnp.float32)), np.float64)
    pred = np.asarray(module._net().apply(new_state.predictor_params, jnp.asarray(x, jnp.float32)), np.float64)
    errors = np.mean((target - pred) ** 2, axis=-1)
    n0, m0, v0 = 1e-4, 0.0, 1.0
    n_b, mb, vb = len(errors), errors.mean(), errors.var(ddof=1)
    n = n0 + n_b
    var = (v0 * n0 + vb * n_b + (mb - m0) ** 2 * n0 * n_b / n) / n
    np.testing.assert_allclose(float(new_state.error_moments.var), var, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(bonus), errors / (np.sqrt(var) + 1e-8), rtol=1e-4)
    # The target network never trains.
    chex.assert_trees_all_equal(state.target_params, new_state.target_params)


class _FixedPredictions(I.Disagreement):
    def predictions(self, params, batch):
        return jnp.arange(1.0, 6.0).reshape(5, 1, 1) * jnp.ones((1, batch.obs.shape[0], 1))


def test_disagreement_is_unbiased_variance_across_models():
    module = _FixedPredictions(num_models=5, hidden_sizes=(4,), normalize_decay=0.0)
    batch = _batch(jnp.zeros((3, 1)), jnp.zeros((3, 1)), jnp.zeros((3, 1)))
    np.testing.assert_allclose(np.asarray(module.bonus(I.DisagreementState(None, None, None), batch)), [2.5, 2.5, 2.5], rtol=1e-6)


def test_apt_knn_known_values():
    particles = jnp.array([[0.0], [1.0], [3.0]])
    r = I.knn_particle_reward(particles, particles, k=2)
    np.testing.assert_allclose(np.asarray(r), [0.405465, 0.405465, 0.693147], rtol=1e-5)
    module = I.APT(k=2, representation="obs")
    batch = _batch(particles, jnp.zeros((3, 1)), particles)
    np.testing.assert_allclose(np.asarray(module.bonus(module.init(1, 1, jax.random.PRNGKey(0)), batch)),
                               [0.405465, 0.405465, 0.693147], rtol=1e-5)


@pytest.mark.timeout(60)
def test_apt_knn_reward_on_hand_placed_points_under_jit():
    """Four points (0,0), (3,0), (0,4), (10,0), k = 3, self included: the three nearest
    distances are (0,3,4), (0,3,5), (0,4,5), (0,7,10) -> means 7/3, 8/3, 3, 17/3 and
    r = log(1 + mean); with clip 1 the first becomes mean(0,2,3) = 5/3. The particles are the
    s' of the batch (s is all zeros here: a bonus on s would be log 1 = 0 everywhere)."""
    pts = jnp.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [10.0, 0.0]])
    means = np.array([7 / 3, 8 / 3, 3.0, 17 / 3])
    r = jax.jit(I.knn_particle_reward, static_argnums=2)(pts, pts, 3)
    np.testing.assert_allclose(np.asarray(r), np.log1p(means), rtol=1e-6)
    r_clip = jax.jit(lambda p: I.knn_particle_reward(p, p, 3, 1.0))(pts)
    np.testing.assert_allclose(float(r_clip[0]), np.log(8 / 3), rtol=1e-6)

    module = I.APT(k=3, representation="obs", scale=2.0)
    state = module.init(2, 2, jax.random.PRNGKey(0))
    batch = _batch(jnp.zeros((4, 2)), jnp.zeros((4, 2)), pts)
    bonus = jax.jit(module.bonus)(state, batch)
    np.testing.assert_allclose(np.asarray(bonus), 2.0 * np.log1p(means), rtol=1e-6)
    _, bonus_u, metrics = jax.jit(module.update)(state, batch, jax.random.PRNGKey(1))
    np.testing.assert_allclose(np.asarray(bonus_u), np.asarray(bonus), rtol=1e-6)
    np.testing.assert_allclose(float(metrics["intrinsic/knn_dist_mean"]), means.mean(), rtol=1e-6)
    np.testing.assert_allclose(float(metrics["intrinsic/knn_dist_max"]), 17 / 3, rtol=1e-6)


@pytest.mark.timeout(60)
def test_apt_icm_representation_of_a_2d_state_is_blind_to_its_norm_at_init():
    """URLB's z = tanh(LayerNorm(W s + b)) with b = 0 at initialisation: LayerNorm(W (c s)) =
    LayerNorm(W s) for c > 0, so on a 2-D state all points of a ray from the origin are one
    particle (why "obs" is the representation for the maze's positions)."""
    module = I.APT(representation="icm", rep_dim=16, hidden=8)
    state = module.init(2, 2, jax.random.PRNGKey(0))
    s = jax.random.uniform(jax.random.PRNGKey(1), (32, 2), minval=-1.0, maxval=1.0)
    z, z_half = jax.jit(module.represent)(state, s), jax.jit(module.represent)(state, 0.5 * s)
    np.testing.assert_allclose(np.asarray(z_half), np.asarray(z), atol=1e-4)
    assert float(jnp.mean(jnp.linalg.norm(z - z[::-1], axis=-1))) > 1.0  # directions do differ


def test_disagreement_loss_is_l2_norm_not_squared():
    module = I.Disagreement(num_models=2, hidden_sizes=(4,), learning_rate=1e-3)
    state = module.init(2, 1, jax.random.PRNGKey(0))
    batch = _batch(jnp.ones((4, 2)), jnp.ones((4, 1)), 3.0 * jnp.ones((4, 2)))
    pred = np.asarray(module.predictions(state.params, batch), np.float64)
    expected = np.mean(np.linalg.norm(pred - 3.0, axis=-1))
    _, _, metrics = jax.jit(module.update)(state, batch, jax.random.PRNGKey(1))
    np.testing.assert_allclose(float(metrics["intrinsic/loss"]), expected, rtol=1e-5)


# ---- the bonus falls where the agent has been and stays high elsewhere ------------------------
def _region(key, n, low, high):
    k1, k2 = jax.random.split(key)
    obs = jax.random.uniform(k1, (n, 2), minval=low, maxval=high)
    action = jax.random.uniform(k2, (n, 2), minval=-1.0, maxval=1.0)
    return _batch(obs, action, obs + 0.05 * action)


MODULES = {
    "rnd": I.RND(hidden_sizes=(32, 32), embed_dim=16, learning_rate=1e-3),
    "disagreement": I.Disagreement(num_models=5, hidden_sizes=(32, 32), learning_rate=1e-3),
    "apt_icm": I.APT(k=8, representation="icm", rep_dim=16, hidden=32, learning_rate=1e-3),
    "apt_obs": I.APT(k=8, representation="obs"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(MODULES))
def test_bonus_falls_on_visited_states_and_stays_high_on_novel_ones(name):
    module = MODULES[name]
    key = jax.random.PRNGKey(0)
    state0 = module.init(2, 2, key)

    @jax.jit
    def train(state, key):
        def step(state, key):
            k_data, k_update = jax.random.split(key)
            state, _, _ = module.update(state, _region(k_data, 128, -1.0, -0.5), k_update)
            return state, None

        return jax.lax.scan(step, state, jax.random.split(key, 300))[0]

    state = train(state0, jax.random.PRNGKey(1))
    visited = _region(jax.random.PRNGKey(2), 120, -1.0, -0.5)
    novel = _region(jax.random.PRNGKey(3), 8, 0.5, 1.0)
    if name.startswith("apt"):
        # Particle entropy is relative to the batch: the frequently visited region fills it.
        mixed = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), visited, novel)
        bonus = np.asarray(module.bonus(state, mixed))
        assert bonus[120:].min() > bonus[:120].max(), (bonus[:120].max(), bonus[120:].min())
    else:
        # Both bonuses are divided by a running std of their raw signal, which also moves: the
        # raw signal (prediction error, ensemble variance) is what falls where it has trained.
        raw = module.prediction_error if name == "rnd" else module.variance
        before = float(jnp.mean(raw(state0, visited)))
        assert float(jnp.mean(raw(state, visited))) < 0.5 * before
        on_visited = float(jnp.mean(module.bonus(state, visited)))
        on_novel = float(jnp.mean(module.bonus(state, novel)))
        assert on_novel > 3.0 * on_visited, (on_visited, on_novel)


# ---- the hook: task_coef * r + bonus_coef * bonus ----------------------------------------------
def test_relabel_mixes_task_reward_and_bonus_and_trains_the_module():
    module = I.APT(k=2, representation="obs")
    batch = _region(jax.random.PRNGKey(0), 6, -1.0, 1.0)._replace(reward=jnp.arange(6.0))
    intrinsic = I.make_intrinsic(module, 2, 2, jax.random.PRNGKey(1), task_coef=0.5, bonus_coef=2.0)
    relabel = jax.jit(lambda intrinsic, batch, key: intrinsic.relabel(batch, key))
    _, out, metrics = relabel(intrinsic, batch, jax.random.PRNGKey(2))
    expected = 0.5 * np.arange(6.0) + 2.0 * np.asarray(module.bonus(intrinsic.state, batch))
    np.testing.assert_allclose(np.asarray(out.reward), expected, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(out.obs), np.asarray(batch.obs))
    assert "intrinsic/bonus_mean" in metrics

    rnd = I.make_intrinsic(I.RND(hidden_sizes=(4,), embed_dim=2), 2, 2, jax.random.PRNGKey(1))
    new, _, _ = relabel(rnd, batch, jax.random.PRNGKey(2))
    assert not np.allclose(jax.tree.leaves(new.state.predictor_params)[0], jax.tree.leaves(rnd.state.predictor_params)[0])


def test_reward_free_never_reads_the_task_reward():
    module = I.APT(k=2, representation="obs")
    batch = _region(jax.random.PRNGKey(0), 4, -1.0, 1.0)._replace(reward=jnp.full(4, jnp.nan))
    intrinsic = I.make_intrinsic(module, 2, 2, jax.random.PRNGKey(1), task_coef=0.0)
    _, out, _ = intrinsic.relabel(batch, jax.random.PRNGKey(2))
    assert np.all(np.isfinite(np.asarray(out.reward)))


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: I.RND(learning_rate=-1.0), "learning_rate"),
        (lambda: I.RND(hidden_sizes=()), "hidden_sizes"),
        (lambda: I.Disagreement(num_models=1), "num_models"),
        (lambda: I.APT(representation="pixels"), "representation"),
        (lambda: I.RND(error_decay=1.0), "error_decay"),
        (lambda: I.Disagreement(normalize_decay=-0.1), "normalize_decay"),
        (lambda: I.make_intrinsic(I.APT(), 2, 2, jax.random.PRNGKey(0), bonus_coef=-1.0), "bonus_coef"),
        (lambda: I.make_intrinsic(object(), 2, 2, jax.random.PRNGKey(0)), "init / bonus / update"),
    ],
)
def test_bad_settings_are_refused_with_the_field_named(make, field):
    with pytest.raises(ConfigError, match=field):
        make()


# ---- the bonus in GiGPO / GRPO: per-step rewards before the group advantages --------------------
def test_padded_rollout_steps_get_no_bonus_and_never_reach_the_module():
    """A GiGPO-shaped rollout (G=1, N=2, T=4): trajectory lengths 3 and 1, so half the rows are
    padding. Padding is filled with NaN: if any of it reached the module its parameters and the
    rewards would turn NaN."""
    from rlx.agents import policy_gradient as pg

    valid = jnp.array([[[True, True, True, False], [True, False, False, False]]])
    obs = jax.random.normal(jax.random.PRNGKey(0), (1, 2, 4, 3))
    final_obs = jnp.where(valid[..., None], obs + 1.0, jnp.nan)
    traj = {
        "obs": jnp.where(valid[..., None], obs, jnp.nan),
        "final_obs": final_obs,
        "action": jnp.array([[[0, 1, 2, 0], [1, 0, 0, 0]]]),
        "reward": jnp.where(valid, jnp.arange(8.0).reshape(1, 2, 4), jnp.nan),
        "terminated": jnp.zeros((1, 2, 4), bool),
    }
    module = I.RND(hidden_sizes=(8,), embed_dim=4)
    intrinsic = I.make_intrinsic(module, 3, 3, jax.random.PRNGKey(1), task_coef=0.5, bonus_coef=2.0)
    new, reward, metrics = jax.jit(
        lambda i, t, k, m: pg.intrinsic_rollout_rewards(i, t, 3, k, mask=m)
    )(intrinsic, traj, jax.random.PRNGKey(2), valid)
    assert reward.shape == (1, 2, 4)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(new.state))
    reward, v = np.asarray(reward), np.asarray(valid)
    np.testing.assert_array_equal(reward[~v], 0.0)
    # The module trained on the 4 real rows, each repeated twice to fill the 8-row batch.
    real_next = np.asarray(final_obs)[v]
    assert float(new.state.obs_stats.count) == 8.0
    np.testing.assert_allclose(np.asarray(new.state.obs_stats.mean), real_next.mean(0), rtol=1e-5, atol=1e-6)
    # Real rows: 0.5 r + 2 bonus, the bonus of the trained module (URLB's order).
    real_batch = _batch(np.asarray(obs)[v], jax.nn.one_hot(np.asarray(traj["action"])[v], 3), real_next)
    expected = 0.5 * np.arange(8.0).reshape(1, 2, 4)[v] + 2.0 * np.asarray(module.bonus(new.state, real_batch))
    np.testing.assert_allclose(reward[v], expected, rtol=1e-5)
    assert float(metrics["intrinsic/bonus_mean"]) > 0.0


KEYDOOR_TINY = dict(num_envs=2, group_size=2, max_episode_steps=8, update_epochs=1, num_minibatches=2,
                    hidden_sizes=(8,))


@pytest.fixture(scope="module")
def gigpo_setup():
    """One tiny GiGPO on KeyDoor; the bonus update is compiled once and serves every coefficient
    (task_coef and bonus_coef are traced)."""
    from rlx import envs
    from rlx.agents import gigpo

    env, params = envs.make("rlx/KeyDoor-v0", height=2, room_width=2, max_steps_in_episode=8)
    config = gigpo.Config(**KEYDOOR_TINY)
    update = jax.jit(lambda state: gigpo.update(config, env, params, state))
    return gigpo, config, env, params, update


@pytest.mark.timeout(150)
def test_gigpo_trains_with_an_rnd_bonus(gigpo_setup):
    from rlx.explore import phases as P

    gigpo, config, env, params, update = gigpo_setup
    agent = P.with_intrinsic(gigpo, I.RND(hidden_sizes=(16,), embed_dim=8))  # reward-free
    state0 = agent.init(config, env, params, jax.random.PRNGKey(0))
    assert isinstance(state0.intrinsic, I.IntrinsicReward)
    state, history = state0, []
    for _ in range(3):
        state, metrics = update(state)
        history.append(jax.device_get(metrics))
    assert update._cache_size() == 1, "recompiled between iterations"
    for m in history:
        assert all(np.isfinite(v).all() for v in m.values()), m
        assert m["intrinsic/bonus_mean"] > 0.0 and m["intrinsic/bonus_max"] >= m["intrinsic/bonus_mean"]
    # With no success the task reward is 0 everywhere and plain GiGPO's advantages vanish; the
    # bonus alone gives the groups something to rank.
    unsolved = [m for m in history if m["train/success_rate"] == 0.0]
    assert unsolved and all(m["advantage_abs"] > 0.0 for m in unsolved)
    rnd0, rnd = state0.intrinsic.state, state.intrinsic.state
    assert any(not np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(rnd0.predictor_params), jax.tree.leaves(rnd.predictor_params), strict=True))
    chex.assert_trees_all_equal(rnd0.target_params, rnd.target_params)
    assert int(rnd.obs_stats.count) == 3 * config.env_steps_per_iteration  # each iteration's (filled) batch
    assert any(not np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(state0.params), jax.tree.leaves(state.params), strict=True))


@pytest.mark.timeout(150)
def test_gigpo_with_a_zero_bonus_is_plain_gigpo(gigpo_setup):
    """task_coef = 1, bonus_coef = 0 gives exactly plain GiGPO: the relabelling path is neutral.
    The bonus consumes one key of its own per iteration, so the plain run is handed the same
    carried key before its second iteration."""
    from rlx.explore import phases as P

    gigpo, config, env, params, update = gigpo_setup
    plain_update = jax.jit(lambda state: gigpo.update(config, env, params, state))
    key = jax.random.PRNGKey(5)
    neutral = P.with_intrinsic(gigpo, I.RND(hidden_sizes=(16,), embed_dim=8), task_coef=1.0, bonus_coef=0.0)
    with_bonus = neutral.init(config, env, params, key)
    plain = gigpo.init(config, env, params, jax.random.split(key)[0])  # the agent's share of the key
    for _ in range(2):
        plain = plain.replace(key=with_bonus.key)
        with_bonus, m_bonus = update(with_bonus)
        plain, m_plain = plain_update(plain)
        chex.assert_trees_all_equal((plain.params, plain.opt_state), (with_bonus.params, with_bonus.opt_state))
        for name, value in m_plain.items():
            np.testing.assert_array_equal(np.asarray(value), np.asarray(m_bonus[name]), err_msg=name)
        assert float(m_bonus["intrinsic/bonus_mean"]) > 0.0  # the module did run


@pytest.mark.timeout(120)
def test_gigpo_rollout_records_the_true_successor(gigpo_setup):
    """final_obs of a step is the next step's obs inside an episode, and the episode's own last
    observation (not the reset one) where it ends."""
    gigpo, config, env, params, _ = gigpo_setup
    state = gigpo.init(config, env, params, jax.random.PRNGKey(0))
    traj = jax.device_get(jax.jit(lambda p, k: gigpo.rollout(config, env, params, p, state.num_actions, k))(
        state.params, jax.random.PRNGKey(4)))
    valid, obs, final = traj["valid"], traj["obs"], traj["final_obs"].astype(np.float32)
    inside = valid[..., :-1] & valid[..., 1:]
    assert inside.any()
    np.testing.assert_array_equal(final[..., :-1, :][inside], obs[..., 1:, :][inside])
    # Where an episode ends inside the rollout, the next row (padding) starts a fresh episode.
    ended = valid[..., :-1] & ~valid[..., 1:]
    if ended.any():
        assert not np.array_equal(final[..., :-1, :][ended], obs[..., 1:, :][ended])


def test_grpo_has_the_bonus_slot_too():
    from rlx import envs
    from rlx.agents import grpo
    from rlx.explore import phases as P

    env, params = envs.make("rlx/KeyDoor-v0", height=2, room_width=2, max_steps_in_episode=8)
    state = P.with_intrinsic(grpo, I.APT(k=4, representation="obs"), task_coef=1.0, bonus_coef=0.1).init(
        grpo.Config(**KEYDOOR_TINY), env, params, jax.random.PRNGKey(0))
    assert isinstance(state.intrinsic, I.IntrinsicReward) and float(state.intrinsic.bonus_coef) == np.float32(0.1)
    assert grpo.init(grpo.Config(**KEYDOOR_TINY), env, params, jax.random.PRNGKey(0)).intrinsic is None
