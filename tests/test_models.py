"""Dynamics ensembles (rlx.models): known values, learning a linear system, early stopping and
elites, uncertainty away from the data, save/load, rollouts and their transition slot."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.buffers import ReplayBuffer, add_masked, init_buffer
from rlx.buffers.dataset import Dataset
from rlx.core.config import ConfigError
from rlx.models import ensemble as ens
from rlx.models import rollout as ro
from rlx.models import termination as term_rules

A = np.array([[0.9, 0.2], [-0.1, 0.8]], np.float32)
B = np.array([[0.5], [-0.3]], np.float32)
C = np.array([1.0, -2.0], np.float32)
D = np.array([0.5], np.float32)
NOISE = 0.01


def linear_dataset(n: int, seed: int = 0, low: float = -1.0, high: float = 1.0) -> Dataset:
    """s' = A s + B a + noise, r = C.s + D.a + noise; terminal when s'[0] > 0.8."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(low, high, (n, 2)).astype(np.float32)
    a = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    s2 = s @ A.T + a @ B.T + NOISE * rng.normal(size=(n, 2)).astype(np.float32)
    r = s @ C + a @ D + NOISE * rng.normal(size=n).astype(np.float32)
    return Dataset(
        jnp.asarray(s), jnp.asarray(a), jnp.asarray(r), jnp.asarray(s2),
        jnp.asarray(s2[:, 0] > 0.8), jnp.zeros(n, bool),
    )


SMALL = ens.EnsembleConfig(
    ensemble_size=5, num_elites=3, hidden_sizes=(32, 32), weight_decays=(2.5e-5, 5e-5, 1e-4),
    min_steps_per_epoch=100, max_epochs=60, epochs_per_chunk=10,
)


@pytest.fixture(scope="module")
def linear_model():
    data = linear_dataset(3000)
    dynamics, report = ens.train_dynamics(data, SMALL, jax.random.PRNGKey(0), termination="learned", progress=False)
    return data, dynamics, report


# ------------------------------------------------------------------------------------------
# Known values (algorithms.md 3.6)
# ------------------------------------------------------------------------------------------
def _softplus(x):
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def test_soft_logvar_bounds_known_value():
    lv = ens.soft_bound_logvar(jnp.float32(0.5), jnp.float32(0.5), jnp.float32(-10.0))
    upper = 0.5 - _softplus(0.0)
    expected = -10.0 + _softplus(upper + 10.0)
    assert upper == pytest.approx(-0.193147, abs=1e-6)
    assert float(lv) == pytest.approx(expected, abs=1e-6)
    assert float(lv) == pytest.approx(-0.193092, abs=1e-5)
    # Far outside the bounds the value saturates at them.
    assert float(ens.soft_bound_logvar(jnp.float32(50.0), 0.5, -10.0)) == pytest.approx(0.5, abs=1e-4)
    assert float(ens.soft_bound_logvar(jnp.float32(-50.0), 0.5, -10.0)) == pytest.approx(-10.0, abs=1e-4)


def test_gaussian_nll_terms_known_values():
    y = jnp.zeros((1, 4, 3))
    assert float(ens.gaussian_nll_terms(y, jnp.zeros_like(y), y)[0]) == pytest.approx(0.0)
    assert float(ens.gaussian_nll_terms(y + 1.0, jnp.zeros_like(y), y)[0]) == pytest.approx(1.0)
    # (mu - y)^2 exp(-lv) + lv with mu - y = 2, lv = log 4 -> 1 + log 4
    assert float(ens.gaussian_nll_terms(y + 2.0, jnp.full_like(y, math.log(4.0)), y)[0]) == pytest.approx(1 + math.log(4.0), rel=1e-6)


def test_weight_decay_is_half_l2_per_layer():
    params = {"layers": [{"w": jnp.ones((2, 3, 4))}, {"w": 2 * jnp.ones((2, 4, 1))}]}
    # 0.5 * (1e-2 * 24 * 1 + 1e-1 * 8 * 4)
    assert float(ens.weight_decay_loss(params, (1e-2, 1e-1))) == pytest.approx(0.5 * (0.24 + 3.2), rel=1e-6)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="num_elites"):
        ens.EnsembleConfig(ensemble_size=3, num_elites=5).validate()
    with pytest.raises(ConfigError, match="weight_decays"):
        ens.EnsembleConfig(hidden_sizes=(8, 8)).validate()
    with pytest.raises(ValueError, match="termination rule"):
        ens.train_dynamics(linear_dataset(50), SMALL, termination="nope", progress=False)
    with pytest.raises(ConfigError, match="too small"):
        ens.train_dynamics(linear_dataset(2), SMALL, progress=False)


# ------------------------------------------------------------------------------------------
# Learning a known linear system; early stopping and elites; uncertainty off the data
# ------------------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_ensemble_learns_linear_system(linear_model):
    _, dynamics, _ = linear_model
    test = linear_dataset(1000, seed=1)
    pred = ens.predict(dynamics, test.observations, test.actions)
    elites = np.asarray(dynamics.elites)
    next_err = np.asarray(pred.next_obs_mean)[elites] - np.asarray(test.next_observations)[None]
    reward_err = np.asarray(pred.reward_mean)[elites] - np.asarray(test.rewards)[None]
    # targets vary with std ~0.5-1.3; the noise std is 0.01
    assert np.sqrt(np.mean(next_err**2)) < 0.05
    assert np.sqrt(np.mean(reward_err**2)) < 0.08
    # the predicted noise level is of the order of the true one, not of the targets' spread
    assert float(np.mean(np.asarray(pred.next_obs_std)[elites])) < 0.1
    # learned termination: s'[0] > 0.8
    terminal = np.asarray(ens.is_terminal(dynamics, pred, pred.next_obs_mean[elites[0]]))
    assert np.mean(terminal == np.asarray(test.terminals)) > 0.95


def test_early_stopping_and_elites_follow_the_holdout_rules(linear_model):
    _, dynamics, report = linear_model
    history = np.asarray(report.holdout_mse)  # (epochs, E)
    best = np.asarray(dynamics.holdout_mse)
    assert report.epochs == len(history)
    # replay the rule: a member's snapshot moves when its MSE improves by > 1 % (relative)
    expected, since = np.full(history.shape[1], 1e10), 0
    for row in history:
        improved = (expected - row) / expected > SMALL.improvement
        expected = np.where(improved, row, expected)
        since = 0 if improved.any() else since + 1
    np.testing.assert_allclose(best, expected, rtol=1e-6)
    assert since >= SMALL.max_epochs_since_update or report.epochs == SMALL.max_epochs
    # elites: the K lowest holdout MSEs, best first
    np.testing.assert_array_equal(np.asarray(dynamics.elites), np.argsort(best)[: SMALL.num_elites])
    # the restored snapshot of the best member reproduces its recorded holdout MSE
    assert np.min(best) < 1e-3


def test_uncertainty_grows_away_from_the_data(linear_model):
    from rlx.agents.mopo import disagreement_penalty, uncertainty_penalty

    _, dynamics, _ = linear_model
    near = linear_dataset(500, seed=2)
    far = linear_dataset(500, seed=3, low=3.0, high=5.0)

    def uncertainty(data):
        pred = ens.predict(dynamics, data.observations, data.actions)
        return (
            float(jnp.mean(jnp.std(pred.next_obs_mean, axis=0))),
            float(jnp.mean(disagreement_penalty(pred))),
            float(jnp.mean(uncertainty_penalty(pred))),
        )

    (d_near, u_near, a_near), (d_far, u_far, a_far) = uncertainty(near), uncertainty(far)
    assert d_far > 5 * d_near  # the members disagree off the data (epistemic)
    assert u_far > 5 * u_near  # and so does MOPO's "pairwise-diff" penalty
    # The paper's penalty is the largest *predicted* (aleatoric) std: it stays near the noise
    # level off the data here (measured: 0.018 near, 0.018 far), it does not detect novelty.
    assert 0.0 < a_far < 0.2 and 0.0 < a_near < 0.2


def test_save_load_round_trip(linear_model, tmp_path):
    data, dynamics, _ = linear_model
    ens.save_dynamics(tmp_path / "model", dynamics)
    loaded = ens.load_dynamics(tmp_path / "model")
    assert loaded.termination == dynamics.termination
    np.testing.assert_array_equal(np.asarray(loaded.elites), np.asarray(dynamics.elites))
    chex.assert_trees_all_equal(loaded.params, dynamics.params)
    p1 = ens.predict(dynamics, data.observations[:64], data.actions[:64])
    p2 = ens.predict(loaded, data.observations[:64], data.actions[:64])
    np.testing.assert_array_equal(np.asarray(p1.next_obs_mean), np.asarray(p2.next_obs_mean))
    np.testing.assert_array_equal(np.asarray(p1.termination_prob), np.asarray(p2.termination_prob))
    with pytest.raises(FileNotFoundError, match="dynamics.json"):
        ens.load_dynamics(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------
# Termination rules, masked FIFO, rollouts and the transition slot
# ------------------------------------------------------------------------------------------
def test_termination_rules():
    ok = jnp.array([[1.2, 0.1, 0.0, 0.0]])
    low = jnp.array([[0.5, 0.1, 0.0, 0.0]])
    tilted = jnp.array([[1.2, 0.3, 0.0, 0.0]])
    hopper = term_rules.termination_fn("hopper")
    assert [bool(hopper(None, None, x)[0]) for x in (ok, low, tilted)] == [False, True, True]
    walker = term_rules.termination_fn("walker2d")
    assert [bool(walker(None, None, x)[0]) for x in (ok, low, tilted)] == [False, True, False]
    assert term_rules.rule_for_env("brax/hopper") == "hopper"
    assert term_rules.rule_for_env("gymnax/Pendulum-v1") == "never"
    assert term_rules.rule_for_env("my/env") == "learned"


def test_add_masked_is_a_fifo_of_valid_items():
    buf = init_buffer(jnp.float32(0), 5)
    buf = add_masked(buf, jnp.arange(1, 5, dtype=jnp.float32), jnp.array([True, False, True, True]))
    assert int(buf.size) == 3 and int(buf.position) == 3
    np.testing.assert_array_equal(np.asarray(buf.data)[:3], [1, 3, 4])
    buf = add_masked(buf, jnp.array([7.0, 8.0, 9.0]), jnp.array([True, True, True]))
    assert isinstance(buf, ReplayBuffer) and int(buf.size) == 5 and int(buf.position) == 1
    np.testing.assert_array_equal(np.asarray(buf.data), [9, 3, 4, 7, 8])  # oldest overwritten


def test_rollout_shapes_masks_and_penalty_slot(linear_model):
    _, dynamics, _ = linear_model
    start = jnp.zeros((8, 2))
    policy = lambda obs, key: jnp.ones((obs.shape[0], 1))  # noqa: E731

    # a rule that ends every branch at its first step: only step 0 is valid
    always = dynamics.replace(termination="never")

    def end_all(key, prediction):
        t = ro.sample_elite(key, prediction)
        return t._replace(terminated=jnp.ones_like(t.terminated))

    out = jax.jit(lambda k: ro.rollout(k, always, policy, start, 3, end_all))(jax.random.PRNGKey(0))
    assert out.transitions.obs.shape == (24, 2) and out.valid.shape == (24,)
    np.testing.assert_array_equal(np.asarray(out.valid).reshape(3, 8), [[True] * 8, [False] * 8, [False] * 8])
    assert np.all(np.asarray(out.transitions.truncated) == 0)

    # the penalty slot: the stored reward is the chosen one minus the penalty
    out = ro.rollout(jax.random.PRNGKey(1), always, policy, start, 2, penalty_fn=lambda p, t: jnp.full(t.reward.shape, 0.25))
    np.testing.assert_allclose(np.asarray(out.transitions.reward), np.asarray(out.raw_reward) - 0.25, rtol=1e-6)
    assert np.all(np.asarray(out.valid))  # "never" terminates
    # the next step starts where the previous one ended
    np.testing.assert_array_equal(np.asarray(out.transitions.obs[8:]), np.asarray(out.transitions.next_obs[:8]))


def test_transition_slot_accepts_a_filter():
    """A MOREC-like filter: several candidates per elite, keep the one a score prefers."""
    data = linear_dataset(200)
    dynamics, _ = ens.train_dynamics(
        data, SMALL.override(max_epochs=1, min_steps_per_epoch=1), jax.random.PRNGKey(0), termination="never", progress=False
    )

    def best_reward_filter(key, prediction):
        k = prediction.elites.shape[0]
        cands = prediction.reward_mean[prediction.elites] + prediction.reward_std[prediction.elites] * jax.random.normal(key, (k,) + prediction.reward_mean.shape[1:])
        best = jnp.argmax(cands, axis=0)
        rows = jnp.arange(prediction.obs.shape[0])
        next_obs = prediction.next_obs_mean[prediction.elites][best, rows]
        return ro.ModelTransition(next_obs, cands[best, rows], jnp.zeros(rows.shape, bool))

    policy = lambda obs, key: jnp.zeros((obs.shape[0], 1))  # noqa: E731
    start = data.observations[:16]
    chosen = ro.rollout(jax.random.PRNGKey(3), dynamics, policy, start, 1, best_reward_filter)
    plain = ro.rollout(jax.random.PRNGKey(3), dynamics, policy, start, 1)
    pred = ens.predict(dynamics, start, jnp.zeros((16, 1)))
    elite_means = np.asarray(pred.next_obs_mean)[np.asarray(dynamics.elites)]
    # every chosen next state is one elite's mean, and the filter's rewards dominate on average
    dist = np.min(np.abs(elite_means - np.asarray(chosen.transitions.next_obs)[None]).sum(-1), axis=0)
    assert np.all(dist < 1e-5)
    assert float(jnp.mean(chosen.transitions.reward)) >= float(jnp.mean(plain.transitions.reward))
