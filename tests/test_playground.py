"""MuJoCo Playground adapter: names listed without importing it, the contract on
CartpoleBalance, terminated and truncated kept apart with the true last observation, and tasks
that need a download refused before anything is imported or compiled."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import envs
from rlx.envs import playground

pytestmark = pytest.mark.timeout(180)

if not playground.playground_env_names():
    pytest.skip("MuJoCo Playground is an optional extra (pip install 'rlx[playground]')", allow_module_level=True)

NAME = "playground/CartpoleBalance"
HORIZON = 5  # a short time limit, so one rollout crosses two truncations


@pytest.fixture(scope="module")
def cartpole():
    return envs.make(NAME, episode_length=HORIZON)


@pytest.mark.timeout(60)
def test_names_are_listed_without_importing_playground():
    names = envs.registered_names()
    assert NAME in names and "playground/WalkerWalk" in names and "playground/Go1JoystickFlatTerrain" in names
    assert not any(n.startswith("playground/Panda") for n in names), "manipulation tasks are not adapted"
    # `rlx envs` reads them from the sources, importing neither jax nor mujoco
    code = ("import sys; from rlx.cli import spec as cli_spec; n = cli_spec.fast_env_names(); "
            "print(n is not None and 'playground/CartpoleBalance' in n, 'jax' in sys.modules, 'mujoco' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False", "False"], out


@pytest.mark.timeout(60)
def test_a_task_that_needs_a_download_is_refused_before_importing(monkeypatch):
    monkeypatch.setattr(playground, "menagerie_path", lambda: playground.Path("/nonexistent/mujoco_menagerie"))
    with pytest.raises(playground.PlaygroundUnavailableError, match="mujoco_menagerie") as err:
        envs.make("playground/Go1JoystickFlatTerrain")
    assert "git clone" in str(err.value) and "CartpoleBalance" in str(err.value)


@pytest.mark.timeout(60)
def test_unknown_config_field_is_refused(cartpole):
    with pytest.raises(ValueError, match="episode_lenght"):
        envs.make(NAME, episode_lenght=10)


@pytest.mark.timeout(120)
def test_cartpole_keeps_the_contract(cartpole):
    env, params = cartpole
    signature = envs.check_env_contract(env, params)
    assert signature.obs_shape == (5,)
    assert isinstance(env.action_space(params), envs.Box) and env.action_space(params).shape == (1,)
    assert params.max_steps_in_episode == HORIZON


@pytest.mark.timeout(180)
def test_truncation_keeps_the_true_last_observation(cartpole):
    """2 * HORIZON + 2 steps: a truncation (never a termination) every HORIZON steps, the
    returned observation is the next episode's first one, and info["final_observation"] is the
    observation of Playground's own step, stepped here without any wrapper."""
    env, params = cartpole
    steps = 2 * HORIZON + 2
    action = jnp.full((1,), 0.3)

    def run(key):
        obs, state = env.reset(key, params)

        def body(carry, k):
            obs, state = carry
            nxt, state, reward, terminated, truncated, info = env.step(k, state, action, params)
            return (nxt, state), (nxt, reward, terminated, truncated, info["final_observation"])

        keys = jax.random.split(jax.random.PRNGKey(1), steps)
        _, out = jax.lax.scan(body, (obs, state), keys)
        # the same episode with Playground's bare env: reset with the same key, HORIZON steps
        bare = env.pg_env.reset(key)
        def bare_step(s, _):
            s = env.pg_env.step(s, action)
            return s, s.obs

        _, bare_obs = jax.lax.scan(bare_step, bare, None, length=HORIZON)
        return out, bare_obs, keys

    # LLVM optimization level 0: compiling is most of this test's time; what runs is the same program
    run = jax.jit(run, compiler_options={"xla_backend_optimization_level": 0})
    (obs, reward, terminated, truncated, final), bare_obs, keys = jax.device_get(run(jax.random.PRNGKey(0)))
    ends = [t for t in range(steps) if truncated[t]]
    assert ends == [HORIZON - 1, 2 * HORIZON - 1], truncated
    assert not terminated.any()
    assert np.all(np.isfinite(reward)) and np.all(reward > 0)
    t = HORIZON - 1
    np.testing.assert_allclose(final[:HORIZON], bare_obs, rtol=1e-5, atol=1e-6)  # true observations
    assert not np.allclose(final[t], obs[t]), "after a truncation the returned obs is the next episode's"
    reset_obs, _ = jax.jit(env.reset)(jax.device_get(keys)[t], params)  # the reset used the step's key
    np.testing.assert_allclose(obs[t], reset_obs, rtol=1e-6)
    np.testing.assert_allclose(final[:t], obs[:t])  # within an episode both are the same observation


class _FakePlaygroundEnv:
    """A stand-in for a bare Playground env (its State class, no physics): done at step 3, marked
    as a time-out when ``time_out`` is set, as Playground's envs do for a "bootstrap" ending."""

    action_size = 1

    def __init__(self, time_out: bool):
        self.time_out = time_out

    def reset(self, key):
        from mujoco_playground import State

        info = {"time_out": jnp.float32(0.0), "t": jnp.int32(0)}
        return State(data=jnp.zeros(()), obs=jnp.zeros(2), reward=jnp.float32(0), done=jnp.float32(0), metrics={}, info=info)

    def step(self, state, action):
        t = state.info["t"] + 1
        done = (t >= 3).astype(jnp.float32)
        info = {"time_out": done if self.time_out else jnp.float32(0.0), "t": t}
        obs = jnp.stack([t.astype(jnp.float32), action[0]])
        return state.replace(obs=obs, reward=jnp.float32(1.0), done=done, info=info)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("time_out", [False, True])
def test_env_done_is_a_termination_unless_marked_time_out(time_out):
    env = playground.PlaygroundAdapter(_FakePlaygroundEnv(time_out), name="Fake", episode_length=100)
    params = env.default_params
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    flags = []
    for k in jax.random.split(jax.random.PRNGKey(1), 4):
        obs, state, reward, terminated, truncated, info = env.step(k, state, jnp.full((1,), 0.5), params)
        flags.append((bool(terminated), bool(truncated), float(info["final_observation"][0])))
    ended = (not time_out, time_out, 3.0)
    assert flags[:3] == [(False, False, 1.0), (False, False, 2.0), ended], flags
    assert flags[3] == (False, False, 1.0), "a fresh episode after the auto-reset"
