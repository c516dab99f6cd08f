"""SAC known values (algorithms.md 1.6): critic target, temperature loss, Polyak, stop-gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.agents import sac
from rlx.core.types import Transition

pytestmark = pytest.mark.timeout(120)


def test_critic_target_terminated_vs_truncated():
    # r=1, gamma=0.99, Qbar=(5,4) -> min 4, alpha=0.2, log pi(a'|s')=-1
    reward = jnp.array([1.0, 1.0, 1.0])
    terminated = jnp.array([0.0, 1.0, 0.0])  # third row: truncated, not terminated -> bootstraps
    y = sac.critic_target(reward, terminated, jnp.full(3, 4.0), jnp.full(3, -1.0), 0.2, 0.99)
    np.testing.assert_allclose(np.asarray(y), [5.158, 1.0, 5.158], rtol=1e-6)


def test_gradient_step_masks_only_termination():
    """Through the whole gradient step: a truncated transition gets the bootstrapped target."""
    config = sac.SACConfig(hidden_sizes=(8,), batch_size=2, total_steps=100, learning_starts=10)
    actor, critic = sac.build_networks(config, 1)
    obs = jnp.zeros((2, 3))
    act = jnp.zeros((2, 1))
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    actor_params = actor.init(k1, obs)
    critic_params = critic.init(k2, obs, act)
    batch = Transition(obs, act, jnp.ones(2), jnp.ones((2, 3)), jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]))

    # Rebuild the target by hand from the same pieces.
    key_next = jax.random.split(jax.random.PRNGKey(7))[0]
    mean, log_std = actor.apply(actor_params, batch.next_obs)
    from rlx.core.distributions import sample_tanh_gaussian

    a2, lp2 = sample_tanh_gaussian(key_next, mean, log_std)
    qmin = jnp.min(critic.apply(critic_params, batch.next_obs, a2), axis=0)
    y = sac.critic_target(batch.reward, batch.terminated, qmin, lp2, 1.0, 0.99)
    assert float(y[0]) == pytest.approx(1.0)  # terminated: reward only
    assert float(y[1]) == pytest.approx(1.0 + 0.99 * (float(qmin[1]) - float(lp2[1])), rel=1e-5)

    # The critic loss the agent minimises uses exactly this target.
    loss, _ = sac.critic_loss(critic_params, critic, batch, y)
    q = critic.apply(critic_params, obs, act)
    assert float(loss) == pytest.approx(float(0.5 * jnp.mean(jnp.sum((q - y) ** 2, axis=0))), rel=1e-6)


def test_alpha_loss_gradient_sign_and_value():
    # |A| = 2 -> target entropy -2; mean log pi = -1 -> d/dlog_alpha = -(-1 - 2) = +3
    grad = jax.grad(sac.alpha_loss)(jnp.float32(0.0), jnp.array([-1.0, -1.0]), -2.0)
    assert float(grad) == pytest.approx(3.0)


def test_alpha_loss_does_not_differentiate_log_prob():
    g = jax.grad(lambda lp: sac.alpha_loss(jnp.float32(0.3), lp, -1.0))(jnp.array([-1.0, 2.0]))
    np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_polyak():
    target, online = {"w": jnp.float32(0.0)}, {"w": jnp.float32(1.0)}
    for _ in range(3):
        target = sac.polyak(target, online, 0.005)
    assert float(target["w"]) == pytest.approx(1 - 0.995**3, rel=1e-6)


def test_critic_loss_has_no_gradient_through_target_or_target_params():
    config = sac.SACConfig(hidden_sizes=(8,))
    _, critic = sac.build_networks(config, 1)
    obs, act = jnp.ones((4, 3)), jnp.zeros((4, 1))
    params = critic.init(jax.random.PRNGKey(1), obs, act)
    batch = Transition(obs, act, jnp.ones(4), obs, jnp.zeros(4), jnp.zeros(4))

    def loss_wrt_target_params(target_params):
        y = jnp.min(critic.apply(target_params, obs, act), axis=0)
        return sac.critic_loss(params, critic, batch, y)[0]

    grads = jax.grad(loss_wrt_target_params)(params)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads))


def test_actor_loss_uses_min_of_critics_and_leaves_critics_alone():
    config = sac.SACConfig(hidden_sizes=(8,))
    actor, critic = sac.build_networks(config, 1)
    obs = jnp.ones((4, 3))
    ap = actor.init(jax.random.PRNGKey(0), obs)
    cp = critic.init(jax.random.PRNGKey(1), obs, jnp.zeros((4, 1)))
    key = jax.random.PRNGKey(2)
    loss, log_prob = sac.actor_loss(ap, actor, lambda o, a: critic.apply(cp, o, a), obs, 0.5, key)
    mean, log_std = actor.apply(ap, obs)
    from rlx.core.distributions import sample_tanh_gaussian

    a, lp = sample_tanh_gaussian(key, mean, log_std)
    expected = jnp.mean(0.5 * lp - jnp.min(critic.apply(cp, obs, a), axis=0))
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_the_policy_acts_with_eleven_hidden_layers():
    """The action size is stored in the learner, not read off the parameters (with 10 or more
    layers flax's "Dense_10" sorts before "Dense_9", and the last leaf is not the output layer)."""
    config = sac.SACConfig(hidden_sizes=(8,) * 11)
    learner = sac.init_learner(config, jnp.zeros((1, 3)), 2, jax.random.PRNGKey(0))
    assert learner.action_dim == 2
    assert jax.tree.leaves(learner.actor_params)[-1].shape[-1] != 2 * 2  # what the old inference read

    class State:
        pass

    state = State()
    state.learner = learner
    for deterministic in (True, False):
        action = jax.jit(sac.make_policy(config, state, deterministic))(jnp.ones(3), jax.random.PRNGKey(1))
        assert action.shape == (2,)


def test_a_column_shaped_target_is_refused_when_traced():
    """(B, 1) rewards against (B,) values would broadcast to (B, B) and train on garbage."""
    ones = jnp.ones(4)
    with pytest.raises(AssertionError, match="shape"):
        jax.jit(sac.critic_target, static_argnums=5)(ones[:, None], ones * 0, ones, ones, 0.2, 0.99)
    np.testing.assert_allclose(
        jax.jit(sac.critic_target, static_argnums=5)(ones, ones * 0, ones, ones, 0.2, 0.99), np.full(4, 1.792), rtol=1e-6
    )


@pytest.mark.timeout(120)
def test_gradient_step_uses_the_target_and_temperature_it_is_given():
    """The defaults are SAC's own (Eq. 2-3 target, alpha = exp(log_alpha)); hooks replace them."""
    config = sac.SACConfig(hidden_sizes=(8,), batch_size=4, total_steps=100, learning_starts=10)
    k_obs, k_learner, k_step = jax.random.split(jax.random.PRNGKey(0), 3)
    obs = jax.random.normal(k_obs, (4, 3))
    batch = Transition(obs, jnp.zeros((4, 1)), jnp.arange(4.0), obs + 1.0, jnp.array([0.0, 1.0, 0.0, 0.0]), jnp.zeros(4))
    learner = sac.init_learner(config, obs, 1, k_learner).replace(log_alpha=jnp.log(jnp.float32(0.3)))

    def step(**hooks):
        return jax.jit(lambda lrn: sac.gradient_step(config, 1, lrn, batch, k_step, 0, **hooks))(learner)

    default, explicit = step(), step(target_fn=sac.critic_target, temperature_fn=sac.temperature)
    jax.tree.map(np.testing.assert_array_equal, default, explicit)
    assert float(default[1]["alpha"]) == pytest.approx(0.3, rel=1e-6)

    # A constant target y = 2: the critic loss is 0.5 sum_j mean_B (Q_j - 2)^2 on the old critics.
    _, metrics = step(target_fn=lambda *args: jnp.full(4, 2.0), temperature_fn=lambda log_alpha: jnp.float32(0.5))
    q = sac.twin_critic(config).apply(learner.critic_params, batch.obs, batch.action)
    assert float(metrics["loss/critic"]) == pytest.approx(float(0.5 * jnp.mean(jnp.sum((q - 2.0) ** 2, axis=0))), rel=1e-6)
    assert float(metrics["alpha"]) == 0.5
