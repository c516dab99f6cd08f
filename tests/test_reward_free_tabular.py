"""Reward-free exploration on small MDPs with a known kernel (rlx.explore.linear_mixture).

Known values (algorithms.md 6.4), the regression weights and pseudo-reward against the formulas,
the exact tabular special case (unit weights: the model is the empirical kernel and planning is
value iteration on it), exact relabelling, and learning: after K exploration episodes the
planned policy is within epsilon of optimal for each of 20 random reward functions, and epsilon
shrinks as K grows.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlx.envs
from rlx.core.config import ConfigError
from rlx.envs.tabular import FiniteMDP, random_linear_mixture_mdp, random_reward, random_tabular_mdp
from rlx.explore import linear_mixture as lm

NUM_REWARDS = 20


def _tabular_features(num_states: int, num_actions: int) -> np.ndarray:
    d = num_states * num_actions * num_states
    return np.eye(d, dtype=np.float32).reshape(num_states, num_actions, num_states, d)


def _numpy_vi(kernel, reward, horizon, discount=1.0):
    """float64 finite-horizon value iteration, written from the Bellman equation."""
    kernel = np.asarray(kernel, np.float64)
    reward = np.broadcast_to(np.asarray(reward, np.float64), (horizon,) + kernel.shape[:2])
    v = np.zeros(kernel.shape[0])
    qs = []
    for h in reversed(range(horizon)):
        q = reward[h] + discount * kernel @ v
        qs.append(q)
        v = q.max(-1)
    return np.stack(qs[::-1]), v


# ---- known values ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_value_features_inner_product_is_the_expected_next_value():
    # S = 2, A = 1, P(.|s0) = (0.3, 0.7), V = (1, 2): <phi_V(s0), vec(P)> = 1.7.
    kernel = np.array([[[0.3, 0.7]], [[0.5, 0.5]]], np.float32)
    features = jnp.asarray(_tabular_features(2, 1))
    phi_v = lm.value_features(features, jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(phi_v[0, 0, :2], [1.0, 2.0])  # coordinates (s0,a0,s0), (s0,a0,s1)
    assert float(jnp.sum(jnp.abs(phi_v[0, 0, 2:]))) == 0.0
    assert float(phi_v[0, 0] @ kernel.reshape(-1)) == pytest.approx(1.7, abs=1e-6)


@pytest.mark.timeout(120)
def test_value_iteration_and_planner_reproduce_the_chain_oracle():
    # 2-state chain, one action, reward 1 in s1, P(s1|s0) = P(s1|s1) = 1, discount 0.9:
    # V(s1) = 10, V(s0) = 9 (a long horizon makes the finite-horizon values the discounted ones).
    kernel = jnp.array([[[0.0, 1.0]], [[0.0, 1.0]]])
    reward = jnp.broadcast_to(jnp.array([[0.0], [1.0]]), (400, 2, 1))
    out = lm.value_iteration(kernel, reward, 400, discount=0.9)
    np.testing.assert_allclose(out.value, [9.0, 10.0], atol=2e-5)
    _, v_ref = _numpy_vi(kernel, reward, 400, 0.9)
    np.testing.assert_allclose(out.value, v_ref, atol=2e-5)
    # The planner fed the exact model (theta = vec(P)) is value iteration on P.
    features = jnp.asarray(_tabular_features(2, 1))
    plan = lm.plan(features, kernel.reshape(-1), jnp.array([[0.0], [0.1]]), 5)
    _, v_ref = _numpy_vi(kernel, np.array([[0.0], [0.1]]), 5)
    np.testing.assert_allclose(plan.value, v_ref, atol=1e-6)


@pytest.mark.timeout(120)
def test_regression_weights_follow_the_variance_and_uncertainty_formula():
    # w^2 = max{ p(1-p) + min(1, 2 beta n) + min(1, beta n), alpha^2, gamma^2 n }, n = ||x||_{Sigma^-1}.
    cfg = lm.RewardFreeConfig(alpha=0.1, gamma=0.5)
    x = jnp.eye(3)[:2]  # two indicator rows
    gram_inv = jnp.eye(3)  # Sigma = I: n = 1
    beta = jnp.float32(0.1)
    w2 = lm.regression_weights(cfg, x, jnp.zeros(3), gram_inv, beta)
    np.testing.assert_allclose(w2, [0.3, 0.3], rtol=1e-6)  # p = 0: 0 + 0.2 + 0.1
    w2 = lm.regression_weights(cfg, x, jnp.array([0.5, 1.7, 0.0]), gram_inv, beta)
    np.testing.assert_allclose(w2, [0.55, 0.3], rtol=1e-6)  # p = 0.5 -> 0.25 + 0.3; p clipped to 1 -> 0.3
    w2 = lm.regression_weights(cfg.override(gamma=1.0), x, jnp.zeros(3), 4.0 * gram_inv, beta)
    np.testing.assert_allclose(w2, [2.0, 2.0], rtol=1e-6)  # n = 2: gamma^2 n = 2 > 0.4 + 0.2
    w2 = lm.regression_weights(cfg.override(alpha=0.9), x, jnp.zeros(3), 1e-4 * gram_inv, beta)
    np.testing.assert_allclose(w2, [0.81, 0.81], rtol=1e-6)  # n = 0.01: the floor alpha^2
    unit = cfg.override(weighting="unit")
    np.testing.assert_array_equal(lm.regression_weights(unit, x, jnp.zeros(3), gram_inv, beta), [1.0, 1.0])


@pytest.mark.timeout(120)
def test_pseudo_reward_bounds_the_worst_value_function_width():
    rng = np.random.default_rng(0)
    S, A, d = 3, 2, 4
    mdp = random_linear_mixture_mdp(jax.random.PRNGKey(0), S, A, 3, d)
    m = rng.normal(size=(d, d))
    gram_inv = jnp.asarray(np.linalg.inv(m @ m.T + np.eye(d)), jnp.float32)
    u = np.asarray(lm.pseudo_reward(mdp.features, gram_inv, jnp.float32(1.0)))
    # Brute force over the vertices of [0,1]^S, where the convex quadratic form is maximised.
    brute = np.zeros((S, A))
    for vertex in itertools.product([0.0, 1.0], repeat=S):
        phi_v = np.asarray(lm.value_features(mdp.features, jnp.array(vertex)))
        brute = np.maximum(brute, np.sqrt(np.einsum("xad,de,xae->xa", phi_v, np.asarray(gram_inv), phi_v)))
    assert np.all(u >= np.minimum(1.0, brute) - 1e-5)
    # Tabular with a diagonal Sigma the bound is exact: u = min(1, beta sqrt(sum_s' 1 / Sigma_(s,a,s'))).
    features = jnp.asarray(_tabular_features(S, A))
    diag = rng.uniform(1.0, 50.0, size=S * A * S)
    u = np.asarray(lm.pseudo_reward(features, jnp.diag(1.0 / diag), jnp.float32(0.7)))
    expected = np.minimum(1.0, 0.7 * np.sqrt((1.0 / diag).reshape(S, A, S).sum(-1)))
    np.testing.assert_allclose(u, expected, rtol=1e-5)


# ---- the tabular special case is exact --------------------------------------------------------


@pytest.mark.timeout(300)
def test_unit_weights_give_the_empirical_kernel_and_planning_is_vi_on_it():
    S, A, H = 4, 2, 4
    mdp = random_tabular_mdp(jax.random.PRNGKey(3), S, A, H)
    cfg = lm.preset("counts", 30)
    result = jax.jit(lambda m, k: lm.explore(cfg, m, k))(mdp, jax.random.PRNGKey(4))
    states, actions, nexts = (np.asarray(v) for v in (result.states, result.actions, result.next_states))
    counts = np.zeros((S, A, S))
    np.add.at(counts, (states, actions, nexts), 1.0)
    visits = counts.sum(-1)
    assert (visits > 0).sum() >= 4
    empirical = np.where(visits[..., None] > 0, counts / np.maximum(visits, 1)[..., None], 1.0 / S)
    model = np.asarray(lm.estimated_kernel(mdp.features, result.theta_hat))
    np.testing.assert_allclose(model, empirical, atol=1e-5)  # unvisited rows: theta = 0 -> uniform
    reward = random_reward(jax.random.PRNGKey(5), S, A, H)
    plan = lm.plan(mdp.features, result.theta_hat, reward, H)
    q_ref, v_ref = _numpy_vi(empirical, reward, H)
    np.testing.assert_allclose(plan.q, q_ref, atol=1e-5)
    np.testing.assert_allclose(plan.value, v_ref, atol=1e-5)
    # The data are the episodes of the true MDP: each starts in s_1 and chains s_{h+1} -> s_h.
    assert np.all(states[:, 0] == 0) and np.all(states[:, 1:] == nexts[:, :-1])


@pytest.mark.timeout(120)
def test_relabelling_recomputes_rewards_from_the_function():
    S, A, H, K = 5, 3, 4, 7
    rng = np.random.default_rng(1)
    states = jnp.asarray(rng.integers(0, S, (K, H)), jnp.int32)
    actions = jnp.asarray(rng.integers(0, A, (K, H)), jnp.int32)
    nexts = jnp.asarray(rng.integers(0, S, (K, H)), jnp.int32)
    zeros = jnp.zeros(())
    result = lm.ExplorationResult(states, actions, nexts, zeros, zeros, zeros, zeros, zeros, zeros)

    def reward_fn(s, a):
        return 0.05 * (s == 2) + 0.01 * a * jnp.sin(s.astype(jnp.float32))

    rewards = np.asarray(lm.relabel(result, reward_fn))
    s_np, a_np = np.asarray(states), np.asarray(actions)
    np.testing.assert_allclose(rewards, 0.05 * (s_np == 2) + 0.01 * a_np * np.sin(s_np), rtol=1e-6, atol=1e-7)
    table = lm.reward_table(reward_fn, S, A, H)
    np.testing.assert_array_equal(lm.relabel(result, table[0]), rewards)
    np.testing.assert_array_equal(lm.relabel(result, table), rewards)
    data = lm.to_dataset(result, reward_fn, S, A)
    np.testing.assert_array_equal(data.rewards, rewards.reshape(-1))
    np.testing.assert_array_equal(np.argmax(data.next_observations[:, :S], -1), np.asarray(nexts).reshape(-1))
    np.testing.assert_array_equal(np.argmax(data.actions, -1), a_np.reshape(-1))
    assert not bool(data.terminals.any())
    np.testing.assert_array_equal(data.timeouts.reshape(K, H), np.broadcast_to(np.arange(H) == H - 1, (K, H)))


# ---- learning: epsilon-optimal for every reward, epsilon shrinks with K ----------------------

TAB = {"S": 5, "A": 2, "H": 5, "instances": 5, "K": 320, "every": 20}


def _planning_errors(mdps, theta_history, rewards, horizon):
    """epsilon for every (instance, recorded K, reward), planned in one vmapped program."""

    def per_instance(mdp, history):
        def per_theta(theta):
            def per_reward(r):
                return lm.planning_error(mdp, r, lm.plan(mdp.features, theta, r, horizon).policy)

            return jax.vmap(per_reward)(rewards)

        return jax.vmap(per_theta)(history)

    return jax.vmap(per_instance)(mdps, theta_history)


@pytest.fixture(scope="module")
def tabular_run():
    S, A, H, n, K = TAB["S"], TAB["A"], TAB["H"], TAB["instances"], TAB["K"]
    mdps = jax.vmap(lambda k: random_tabular_mdp(k, S, A, H, 0.3))(jax.random.split(jax.random.PRNGKey(10), n))
    rewards = jax.vmap(lambda k: random_reward(k, S, A, H, 0.3))(jax.random.split(jax.random.PRNGKey(11), NUM_REWARDS))
    cfg = lm.RewardFreeConfig(num_episodes=K, record_every=TAB["every"])  # the "practical" preset

    @jax.jit
    def run(mdps, keys):
        result = jax.vmap(lambda m, k: lm.explore(cfg, m, k))(mdps, keys)
        return result, _planning_errors(mdps, result.theta_history, rewards, H)

    result, errors = run(mdps, jax.random.split(jax.random.PRNGKey(12), n))
    return mdps, rewards, result, np.asarray(errors)


@pytest.mark.timeout(400)
def test_planned_policy_is_epsilon_optimal_for_each_of_20_rewards(tabular_run):
    mdps, rewards, result, errors = tabular_run
    final = errors[:, -1]  # (instances, rewards) after K = 320 episodes
    assert final.shape == (TAB["instances"], NUM_REWARDS)
    assert np.all(final >= -1e-5)  # nothing beats the optimum of the true model
    assert np.all(final <= 0.025), final.max()  # every reward, every MDP instance (measured max 0.013)
    # The optimum is not trivial: V* is far above epsilon, and always taking action 0 is far from it.
    v_star = np.asarray(jax.vmap(lambda m: jax.vmap(lambda r: lm.optimal_value(m, r))(rewards))(mdps))
    assert v_star.mean() > 0.1
    fixed = np.asarray(
        jax.vmap(lambda m: jax.vmap(lambda r: lm.planning_error(m, r, jnp.zeros((TAB["H"], TAB["S"]), jnp.int32)))(rewards))(mdps)
    )
    assert fixed.mean() > 10 * final.mean()


@pytest.mark.timeout(400)
def test_epsilon_shrinks_as_the_exploration_budget_grows(tabular_run):
    _, _, result, errors = tabular_run
    mean = errors.mean(axis=(0, 2))  # over instances and rewards, per recorded K = 20, 40, ...
    k = TAB["every"] * np.arange(1, len(mean) + 1)
    at = {kk: mean[list(k).index(kk)] for kk in (20, 80, 320)}
    assert at[20] > at[80] > at[320], at
    assert at[320] < 0.25 * at[20], at
    # The exploration value (the pseudo-reward's optimistic value) shrinks too.
    value = np.asarray(result.exploration_value).mean(0)
    assert value[-1] < 0.5 * value[TAB["every"]]


@pytest.mark.timeout(400)
def test_linear_mixture_mdp_is_learnt_and_vmaps_over_instances():
    S, A, H, d, n, K = 8, 2, 5, 4, 3, 160
    mdps = jax.vmap(lambda k: random_linear_mixture_mdp(k, S, A, H, d, 0.3))(jax.random.split(jax.random.PRNGKey(20), n))
    rewards = jax.vmap(lambda k: random_reward(k, S, A, H, 0.3))(jax.random.split(jax.random.PRNGKey(21), NUM_REWARDS))
    cfg = lm.RewardFreeConfig(num_episodes=K, record_every=10)

    @jax.jit
    def run(mdps, keys):
        result = jax.vmap(lambda m, k: lm.explore(cfg, m, k))(mdps, keys)
        return result, _planning_errors(mdps, result.theta_history, rewards, H)

    keys = jax.random.split(jax.random.PRNGKey(22), n)
    result, errors = run(mdps, keys)
    errors = np.asarray(errors)
    assert np.all(errors[:, -1] <= 0.01), errors[:, -1].max()
    assert errors[:, -1].mean() < 0.5 * errors[:, 0].mean()
    # theta is identified: the estimated kernel approaches the true one.
    model = jax.vmap(lm.estimated_kernel)(mdps.features, result.theta_hat)
    assert float(jnp.abs(model - jax.vmap(lambda m: m.kernel)(mdps)).max()) < 0.1
    # vmap over instances is the loop over instances, and a run's first episodes are a shorter run.
    single = jax.jit(lambda m, k: lm.explore(cfg.override(num_episodes=20, record_every=0), m, k))(
        jax.tree.map(lambda x: x[1], mdps), keys[1]
    )
    np.testing.assert_array_equal(single.states, result.states[1, :20])
    np.testing.assert_allclose(single.theta_hat, result.theta_history[1, 1], rtol=1e-4, atol=1e-5)


# ---- environments and input checks --------------------------------------------------------------


@pytest.mark.timeout(120)
def test_generated_kernels_are_valid_and_the_env_truncates_at_the_horizon():
    tab = random_tabular_mdp(jax.random.PRNGKey(0), 4, 3, 6)
    mix = random_linear_mixture_mdp(jax.random.PRNGKey(1), 5, 2, 6, 3)
    for mdp in (tab, mix):
        np.testing.assert_allclose(mdp.kernel.sum(-1), 1.0, atol=1e-5)
        assert float(mdp.kernel.min()) >= 0.0
    assert tab.dim == 4 * 3 * 4 and mix.dim == 3 and float(jnp.linalg.norm(mix.theta)) <= 1.0
    env, params = rlx.envs.make("rlx/LinearMixtureMDP-v0", num_states=5, horizon=3)
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    assert obs.shape == env.observation_space(params).shape
    step = jax.jit(env.step)
    for t in range(3):
        s = int(state.state)
        obs, state, reward, terminated, truncated, info = step(jax.random.PRNGKey(t + 1), state, 1, params)
        assert float(reward) == pytest.approx(float(params.reward[s, 1]))
        assert not bool(terminated) and bool(truncated) == (t == 2)
    env, params = rlx.envs.make("rlx/TabularMDP-v0", num_states=4, num_actions=3, horizon=2, seed=1)
    assert env.num_actions == 3 and params.mdp.dim == 4 * 3 * 4 and params.max_steps_in_episode == 2


@pytest.mark.timeout(120)
def test_bad_input_is_refused_with_the_field_named():
    with pytest.raises(ConfigError, match="record_every"):
        lm.RewardFreeConfig(num_episodes=10, record_every=3).validate()
    with pytest.raises(ConfigError, match="weighting"):
        lm.RewardFreeConfig(weighting="bernstein").validate()
    with pytest.raises(ConfigError, match="beta"):
        lm.RewardFreeConfig(beta=-1.0).validate()
    with pytest.raises(ConfigError, match="unknown preset"):
        lm.preset("optimal", 10)
    with pytest.raises(ConfigError, match="theory"):
        lm.preset("theory", 10)
    mdp = random_tabular_mdp(jax.random.PRNGKey(0), 3, 2, 4)
    theory = lm.preset("theory", 10, mdp=mdp)
    assert theory.confidence == "theory" and theory.gamma == pytest.approx(mdp.dim**-0.25)
    assert float(lm.theory_beta(theory, 1, mdp.dim, 4)) > 100.0  # impractically wide at small K
    batch = jax.vmap(lambda k: random_tabular_mdp(k, 3, 2, 4))(jax.random.split(jax.random.PRNGKey(0), 2))
    with pytest.raises(ValueError, match="vmap"):
        lm.explore(lm.RewardFreeConfig(num_episodes=2), batch, jax.random.PRNGKey(0))
    with pytest.raises(TypeError, match="FiniteMDP"):
        lm.explore(lm.RewardFreeConfig(num_episodes=2), {"features": 1}, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="reward must be"):
        lm.plan(mdp.features, mdp.theta, jnp.zeros((2, 3)), 4)
    with pytest.raises(ValueError, match="num_states"):
        random_tabular_mdp(jax.random.PRNGKey(0), 1, 2, 4)
    assert isinstance(mdp, FiniteMDP)
