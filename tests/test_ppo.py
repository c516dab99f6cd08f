"""PPO (discrete actions): GAE and clip known values (algorithms.md 5.5), truncation bootstraps and
termination does not, and CartPole is solved within the CI budget."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import envs
from rlx.agents import policy_gradient as pg
from rlx.agents import ppo
from rlx.run import make_train

pytestmark = pytest.mark.timeout(300)


def test_gae_known_value():
    r = jnp.array([1.0, 1.0])
    v = jnp.array([0.5, 0.5])
    next_v = jnp.array([0.5, 0.5])  # V(s_1) for t = 0, V(s_boot) for t = 1 (masked: terminal)
    term = jnp.array([0.0, 1.0])
    adv, target = pg.gae(r, v, next_v, term, term, 0.99, 0.95)
    np.testing.assert_allclose(adv, [1.46525, 0.5], rtol=1e-6)
    np.testing.assert_allclose(target, [1.96525, 1.0], rtol=1e-6)


def test_truncation_bootstraps_termination_does_not():
    r, v, next_v = jnp.array([0.0, 0.0]), jnp.array([0.0, 0.0]), jnp.array([0.0, 2.0])
    done = jnp.array([0.0, 1.0])
    truncated_adv, _ = pg.gae(r, v, next_v, jnp.zeros(2), done, 0.9, 1.0)
    terminated_adv, _ = pg.gae(r, v, next_v, done, done, 0.9, 1.0)
    np.testing.assert_allclose(truncated_adv, [1.62, 1.8], rtol=1e-6)  # 0.9 * 2, carried back once
    np.testing.assert_allclose(terminated_adv, [0.0, 0.0])
    # the recursion is cut at a boundary: the next episode's advantage never leaks back
    adv, _ = pg.gae(jnp.array([0.0, 5.0]), jnp.zeros(2), jnp.zeros(2), jnp.zeros(2), jnp.array([1.0, 0.0]), 0.9, 1.0)
    np.testing.assert_allclose(adv, [0.0, 5.0])


@pytest.mark.parametrize("advantage,ratio,value", [(1.0, 1.5, 1.2), (-1.0, 0.5, -0.8)])
def test_clip_cases_have_zero_gradient(advantage, ratio, value):
    f = lambda rho: pg.clipped_objective(rho, advantage, 0.2)  # noqa: E731
    np.testing.assert_allclose(f(ratio), value, rtol=1e-6)
    assert float(jax.grad(f)(ratio)) == 0.0
    assert float(jax.grad(f)(1.0)) == advantage  # inside the clip range the gradient is A


def test_kl_k3_is_nonnegative_and_zero_at_equality():
    lp = jnp.log(jnp.array([0.1, 0.5, 0.9]))
    assert np.all(np.asarray(pg.kl_k3(lp, lp[::-1])) >= 0.0)
    np.testing.assert_allclose(pg.kl_k3(lp, lp), 0.0, atol=1e-7)


def test_config_rejects_bad_minibatches_and_matrix_actions():
    with pytest.raises(ValueError, match="num_minibatches"):
        ppo.PPOConfig(num_minibatches=3).validate()
    env, params = envs.make("gymnax/Pendulum-v1")
    ppo.check_env(ppo.PPOConfig(), env, params)  # a Box of shape (d,): the Gaussian policy (tests/test_ppo_continuous.py)

    class MatrixActions:
        name = "MatrixActions"

        def action_space(self, params):
            return envs.Box(-1.0, 1.0, (2, 2), jnp.float32)

    with pytest.raises(ValueError, match="vector"):
        ppo.check_env(ppo.PPOConfig(), MatrixActions(), params)


def test_ppo_solves_cartpole():
    env, params = envs.make("gymnax/CartPole-v1")
    config = ppo.PPOConfig(total_steps=200_000, eval_every=20_000)
    out = jax.jit(make_train(ppo, config, env, params))(jax.random.PRNGKey(0))
    curve = np.asarray(out.metrics["eval/return_mean"])
    assert curve[-2:].mean() >= 475, curve.round(0)
    assert np.asarray(out.metrics["train/episode_return"])[0] < 100, "must start unsolved"
