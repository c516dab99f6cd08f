"""MOREC's transition filter scores every candidate with every discriminator in one batched call,
computing the discriminators' (s, a) features once per branch: known values of a hand-built
dynamics reward, and the filter equal to a straightforward reference (each candidate's full
(s, a, s'_m) input through the discriminators' own network) under jax.jit, chunked or not."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.core.networks import MLP
from rlx.models import dynamics_reward as drw
from rlx.models.ensemble import Prediction
from rlx.models.filter import FilterConfig, candidates, filter_step, make_filter, select
from rlx.models.rollout import ModelTransition


def _reward(params, low, high, obs_dim, act_dim, hidden, stats=None):
    stats = stats or {}
    ones, zeros = (lambda n: jnp.ones((n,), jnp.float32)), (lambda n: jnp.zeros((n,), jnp.float32))
    return drw.DynamicsReward(
        params=params, low=jnp.asarray(low, jnp.float32), high=jnp.asarray(high, jnp.float32),
        obs_mean=stats.get("obs_mean", zeros(obs_dim)), obs_std=stats.get("obs_std", ones(obs_dim)),
        action_mean=stats.get("action_mean", zeros(act_dim)), action_std=stats.get("action_std", ones(act_dim)),
        delta_mean=stats.get("delta_mean", zeros(obs_dim)), delta_std=stats.get("delta_std", ones(obs_dim)),
        d_clip=jnp.float32(1.0), hidden_sizes=tuple(hidden),
    )


def _hand_built():
    """Two discriminators on [s, a, s' - s] (one dimension each), one hidden unit, logits clamped
    to [0, 1]: f_1 = relu(s + delta - 0.3), f_2 = relu(2 a - delta + 0.4); at s = 0.3, a = -0.2 they
    are relu(delta) and relu(-delta)."""
    w0 = jnp.array([[[1.0], [0.0], [1.0]], [[0.0], [2.0], [-1.0]]])  # (H, in, 1)
    b0 = jnp.array([[-0.3], [0.4]])
    params = {"params": {"Dense_0": {"kernel": w0, "bias": b0},
                         "Dense_1": {"kernel": jnp.ones((2, 1, 1)), "bias": jnp.zeros((2, 1))}}}
    return _reward(params, [0.0, 0.0], [1.0, 1.0], 1, 1, (1,))


@pytest.mark.timeout(60)
def test_candidate_rewards_known_values():
    dr = _hand_built()
    obs, action = jnp.array([[0.3]]), jnp.array([[-0.2]])
    deltas = jnp.array([0.0, 0.5, 1.0, -0.5])
    next_obs = (0.3 + deltas)[:, None, None]  # (M=4, B=1, 1)
    # D_1 = sigmoid(2 clip(relu(delta), 0, 1) - 1) = (0.2689, 0.5, 0.7311, 0.2689); D_2 the mirror
    # r_D = -log(1 - mean): (0.2689, 0.2689) -> 0.313262, (0.5, 0.2689) -> 0.485273, (0.7311, 0.2689) -> 0.693147
    expected = [0.313262, 0.485273, 0.693147, 0.485273]
    got = jax.jit(drw.candidate_rewards)(dr, obs, action, next_obs)
    np.testing.assert_allclose(np.asarray(got)[:, 0], expected, atol=2e-6)
    # D_1 alone: softplus(-1), softplus(0), softplus(1): the range [0.3133, 1.3133] of one discriminator
    one = dr.replace(params=jax.tree.map(lambda x: x[:1], dr.params), low=dr.low[:1], high=dr.high[:1])
    got = jax.jit(drw.candidate_rewards)(one, obs, action, next_obs)
    np.testing.assert_allclose(np.asarray(got)[:, 0], [0.313262, 0.693147, 1.313262, 0.313262], atol=2e-6)
    # the same as the reward of each full (s, a, s'_m) input
    full = drw.dynamics_reward(dr, jnp.broadcast_to(obs, (4, 1, 1)), jnp.broadcast_to(action, (4, 1, 1)), next_obs)
    both = jax.jit(drw.candidate_rewards)(dr, obs, action, next_obs)
    np.testing.assert_allclose(np.asarray(both), np.asarray(full), atol=1e-6)


@pytest.mark.timeout(60)
def test_the_filter_keeps_the_known_best_candidate_and_cuts_by_its_reward():
    two = _hand_built()
    dr = two.replace(params=jax.tree.map(lambda x: x[:1], two.params), low=two.low[:1], high=two.high[:1])  # f = relu(delta)
    # three elites predicting s' - s = 0, 0.5, 1 (std ~ 0) from s = 0.3, a = -0.2, rewards 1, 2, 3
    means = jnp.array([0.3, 0.8, 1.3]).reshape(3, 1, 1)
    pred = Prediction(
        obs=jnp.array([[0.3]]), action=jnp.array([[-0.2]]), next_obs_mean=means, next_obs_std=jnp.full_like(means, 1e-7),
        reward_mean=jnp.array([[1.0], [2.0], [3.0]]), reward_std=jnp.full((3, 1), 1e-7), termination_prob=None,
        elites=jnp.arange(3, dtype=jnp.int32),
    )
    step = jax.jit(lambda k, p: filter_step(k, p, lambda o, a, n: drw.candidate_rewards(dr, o, a, n), FilterConfig()))
    chosen, kept, scores = step(jax.random.PRNGKey(0), pred)
    np.testing.assert_allclose(np.asarray(scores)[:, 0], [0.313262] * 2 + [0.693147] * 2 + [1.313262] * 2, atol=2e-6)
    np.testing.assert_allclose(chosen.next_obs[:, 0], [1.3], atol=1e-5)
    np.testing.assert_allclose(chosen.reward, [3.0], atol=1e-5)  # the reward of the same candidate
    np.testing.assert_allclose(kept, [1.313262], atol=2e-6)
    assert not bool(chosen.terminated[0])
    # only the first elite: r_D = 0.3133 < 0.6, kept but terminal
    chosen, kept, _ = step(jax.random.PRNGKey(0), pred._replace(elites=jnp.array([0], jnp.int32)))
    np.testing.assert_allclose(kept, [0.313262], atol=2e-6)
    assert bool(chosen.terminated[0])


def _random_reward(key, h, obs_dim, act_dim, hidden):
    net = MLP(hidden, 1)
    k_p, k_lo, k_hi, k_s = jax.random.split(key, 4)
    params = jax.vmap(lambda k: net.init(k, jnp.zeros((1, 2 * obs_dim + act_dim))))(jax.random.split(k_p, h))
    low = -jax.random.uniform(k_lo, (h,), minval=0.05, maxval=0.3)
    high = jax.random.uniform(k_hi, (h,), minval=0.05, maxval=0.3)
    ks = jax.random.split(k_s, 6)
    stats = {
        "obs_mean": 0.1 * jax.random.normal(ks[0], (obs_dim,)), "obs_std": jax.random.uniform(ks[1], (obs_dim,), minval=0.5, maxval=2.0),
        "action_mean": 0.1 * jax.random.normal(ks[2], (act_dim,)), "action_std": jax.random.uniform(ks[3], (act_dim,), minval=0.5, maxval=2.0),
        "delta_mean": 0.1 * jax.random.normal(ks[4], (obs_dim,)), "delta_std": jax.random.uniform(ks[5], (obs_dim,), minval=0.05, maxval=0.5),
    }
    return _reward(params, low, high, obs_dim, act_dim, hidden, stats)


def _random_prediction(key, members, batch, obs_dim, act_dim, elites):
    ks = jax.random.split(key, 6)
    obs = jax.random.normal(ks[0], (batch, obs_dim))
    return Prediction(
        obs=obs, action=jax.random.uniform(ks[1], (batch, act_dim), minval=-1, maxval=1),
        next_obs_mean=obs + 0.3 * jax.random.normal(ks[2], (members, batch, obs_dim)),
        next_obs_std=jax.random.uniform(ks[3], (members, batch, obs_dim), minval=0.05, maxval=0.3),
        reward_mean=jax.random.normal(ks[4], (members, batch)),
        reward_std=jax.random.uniform(ks[5], (members, batch), minval=0.05, maxval=0.3),
        termination_prob=None, elites=jnp.asarray(elites, jnp.int32),
    )


def reference_filter(dr, config):
    """The filter's rule, straightforwardly: (s, a) broadcast to every candidate, each full
    (s, a, s'_m) scored by dynamics_reward (the discriminators' flax network), then the choice."""

    def transition_fn(key, prediction):
        k_cand, k_select = jax.random.split(key)
        next_obs, reward = candidates(k_cand, prediction, config.samples_per_elite, config.clip)
        m = next_obs.shape[0]
        obs = jnp.broadcast_to(prediction.obs, (m,) + prediction.obs.shape)
        action = jnp.broadcast_to(prediction.action, (m,) + prediction.action.shape)
        scores = drw.dynamics_reward(dr, obs, action, next_obs)
        idx = select(k_select, scores, config.selection, config.temperature)
        rows = jnp.arange(idx.shape[0])
        kept = scores[idx, rows]
        return ModelTransition(next_obs[idx, rows], reward[idx, rows], kept < config.terminal_reward), kept, scores

    return transition_fn


@pytest.mark.timeout(240)
@pytest.mark.parametrize("selection", ["argmax", "softmax"])
def test_the_filter_equals_a_straightforward_reference_under_jit(selection):
    obs_dim, act_dim, batch = 3, 2, 37
    dr = _random_reward(jax.random.PRNGKey(0), 6, obs_dim, act_dim, (32, 16))
    pred = _random_prediction(jax.random.PRNGKey(1), 4, batch, obs_dim, act_dim, [2, 0, 3])
    config = FilterConfig(selection=selection, terminal_reward=0.6)
    ref_chosen, ref_kept, ref_scores = jax.jit(reference_filter(dr, config))(jax.random.PRNGKey(2), pred)
    ref_scores = np.asarray(ref_scores)
    assert ref_scores.shape == (6, batch)
    # the choice must not hinge on float rounding: well-separated scores, none at the threshold
    top2 = np.sort(ref_scores, axis=0)[-2:]
    assert np.min(top2[1] - top2[0]) > 1e-4 and np.min(np.abs(np.asarray(ref_kept) - 0.6)) > 1e-4
    assert 0 < int(np.sum(np.asarray(ref_chosen.terminated))) < batch  # both outcomes occur
    for chunk_bytes in (drw.CHUNK_BYTES, 6 * 6 * 32 * 4 * 5):  # one call; 8 chunks of 5 branches (3 padded)
        step = jax.jit(lambda k, p, cb=chunk_bytes: filter_step(
            k, p, lambda o, a, n, cb=cb: drw.candidate_rewards(dr, o, a, n, chunk_bytes=cb), config))
        chosen, kept, scores = step(jax.random.PRNGKey(2), pred)
        np.testing.assert_allclose(np.asarray(scores), ref_scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(kept), np.asarray(ref_kept), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(chosen.next_obs), np.asarray(ref_chosen.next_obs))  # the same candidate
        np.testing.assert_array_equal(np.asarray(chosen.reward), np.asarray(ref_chosen.reward))
        np.testing.assert_array_equal(np.asarray(chosen.terminated), np.asarray(ref_chosen.terminated))
    # the rollout slot: make_filter's transition function is the same choice
    out = jax.jit(make_filter(dr, config))(jax.random.PRNGKey(2), pred)
    np.testing.assert_array_equal(np.asarray(out.next_obs), np.asarray(ref_chosen.next_obs))
    np.testing.assert_array_equal(np.asarray(out.terminated), np.asarray(ref_chosen.terminated))


@pytest.mark.timeout(60)
def test_chunked_scoring_equals_one_call():
    obs_dim, act_dim, batch, m = 2, 1, 23, 4
    dr = _random_reward(jax.random.PRNGKey(3), 3, obs_dim, act_dim, (8,))
    k_o, k_a, k_n = jax.random.split(jax.random.PRNGKey(4), 3)
    obs = jax.random.normal(k_o, (batch, obs_dim))
    action = jax.random.normal(k_a, (batch, act_dim))
    next_obs = obs + 0.2 * jax.random.normal(k_n, (m, batch, obs_dim))
    whole = jax.jit(drw.candidate_rewards)(dr, obs, action, next_obs)
    assert whole.shape == (m, batch)
    per_branch = 3 * m * 8 * 4
    for rows in (1, 4, 7, 22, 23):
        chunked = jax.jit(lambda o, a, n, cb=rows * per_branch: drw.candidate_rewards(dr, o, a, n, chunk_bytes=cb))(obs, action, next_obs)
        np.testing.assert_allclose(np.asarray(chunked), np.asarray(whole), rtol=1e-6, atol=1e-7)
