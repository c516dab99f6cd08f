"""SAC learns: Pendulum solved (eval return >= -250, mean over 2 seeds) within the CI budget;
and the replay buffer holds truncated transitions with their true last observation."""

import jax
import numpy as np
import pytest

from rlx import envs
from rlx.agents import sac
from rlx.run import make_train, seed_keys

pytestmark = pytest.mark.timeout(600)


def test_sac_solves_pendulum_two_seeds():
    env, params = envs.make("gymnax/Pendulum-v1")
    config = sac.SACConfig(total_steps=10_000, eval_every=1_000, hidden_sizes=(64, 64))
    out = jax.jit(jax.vmap(make_train(sac, config, env, params)))(seed_keys(0, 2))
    returns = np.asarray(out.metrics["eval/return_mean"])  # (2 seeds, evals)
    final = returns[:, -1]
    assert final.mean() >= -250, f"final eval returns {final} (curve {returns.round(0)})"
    assert returns[:, 0].mean() < -700, "should start far from solved (the test must be able to fail)"


def test_buffer_keeps_truncation_apart_with_true_last_observation():
    env, params = envs.make("gymnax/Pendulum-v1", max_steps_in_episode=5)
    config = sac.SACConfig(total_steps=100, learning_starts=12, batch_size=4, hidden_sizes=(8,))
    state = jax.jit(lambda k: sac.init(config, env, params, k))(jax.random.PRNGKey(0))
    data = jax.device_get(state.buffer.data)
    assert int(state.buffer.size) == 12 and int(state.env_steps) == 12
    np.testing.assert_array_equal(data.truncated[:12], [0, 0, 0, 0, 1] * 2 + [0, 0])
    np.testing.assert_array_equal(data.terminated[:12], 0)
    for t in range(11):
        if data.truncated[t]:
            # the stored successor is the episode's last observation, not the reset one
            assert not np.allclose(data.next_obs[t], data.obs[t + 1])
        else:
            np.testing.assert_array_equal(data.next_obs[t], data.obs[t + 1])
