"""SAC and DSAC-T run end to end on a brax environment through the adapter."""

import jax
import numpy as np
import pytest

from rlx import envs
from rlx.agents import dsac_t, sac
from rlx.run import make_train, seed_keys

pytestmark = pytest.mark.timeout(600)

pytest.importorskip("brax", reason="brax is an optional extra (pip install 'rlx[brax]')")


@pytest.mark.parametrize("agent", [sac, dsac_t], ids=lambda a: a.NAME)
def test_agent_on_brax_inverted_pendulum(agent):
    env, params = envs.make("brax/inverted_pendulum", episode_length=50)
    config = agent.Config(
        total_steps=300, learning_starts=100, eval_every=100, eval_episodes=2,
        batch_size=16, hidden_sizes=(16,),
    )
    # LLVM optimization level 0: the brax program's compile is most of this test's time and
    # drops by about a third; what runs (and is checked) is the same program, 300 steps take <1 s.
    train = jax.jit(make_train(agent, config, env, params), compiler_options={"xla_backend_optimization_level": 0})
    out = train(seed_keys(0, 1)[0])
    metrics = jax.device_get(out.metrics)
    np.testing.assert_array_equal(metrics["step"], [200, 300])
    for name in ("eval/return_mean", "loss/critic", "q_mean"):
        assert np.all(np.isfinite(metrics[name])), name
    data = jax.device_get(out.state.agent_state.buffer.data)
    # the pole falls under random actions: real terminations, stored as terminations only
    assert data.terminated.sum() > 0
    assert np.all(data.terminated * data.truncated == 0)
