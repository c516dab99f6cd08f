"""``--preset parallel`` for SAC and DSAC-T: many envs, large batches, several gradient steps per
iteration (meant for an accelerator). On this CPU: the config is valid, its step counts are exact,
its training state is sized before anything is allocated, and one iteration at the preset's own
sizes (1024 envs, batch 32,768, 1024-512-256 networks, 2 gradient steps) compiles and runs."""

import jax
import numpy as np
import pytest

import rlx.envs
from rlx.agents import dsac_t, sac
from rlx.core import memory
from rlx.run import make_train

pytestmark = pytest.mark.timeout(300)


def preset(agent, **overrides):
    fields = {k: v for k, v in agent.PRESETS["parallel"].items() if not k.startswith("_")}
    return agent.Config(**{**fields, **overrides}).validate()


@pytest.mark.parametrize("agent", [sac, dsac_t], ids=lambda a: a.NAME)
def test_parallel_preset_is_valid_exact_and_sized(agent):
    config = preset(agent)
    assert (config.num_envs, config.batch_size, config.gradient_steps) == (1024, 32_768, 2)
    env, params = rlx.envs.make("gymnax/Pendulum-v1")
    train = make_train(agent, config, env, params)
    assert train.schedule.rounding_note(config) is None  # every count runs as written
    assert train.schedule.num_evals == 10 and train.schedule.warmup_env_steps == 10 * 1024
    estimate = memory.state_estimate(train)
    # the replay buffer of 1024 x 10,240 Pendulum transitions (10 float32 each) dominates
    assert 1024 * 10_240 * 10 * 4 <= estimate.bytes_per_run < 2 * 1024 * 10_240 * 10 * 4


def test_one_iteration_of_the_parallel_preset_runs():
    """Warm-up (10 iterations of 1024 envs) and one iteration: 1024 env steps, 2 gradient steps
    on 32,768 transitions, at the preset's network sizes."""
    env, params = rlx.envs.make("gymnax/Pendulum-v1")
    config = preset(sac)
    state = jax.jit(lambda key: sac.init(config, env, params, key))(jax.random.PRNGKey(0))
    assert int(state.buffer.size) == 10 * 1024
    state, metrics = jax.jit(lambda s: sac.update(config, env, params, s))(state)
    assert int(state.buffer.size) == 11 * 1024
    for name in ("loss/critic", "loss/actor", "alpha"):
        assert np.isfinite(np.asarray(metrics[name])).all(), name
