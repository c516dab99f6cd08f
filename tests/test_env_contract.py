"""The environment contract: every env we ship keeps it, and an env that breaks it is refused
before anything compiles, with a message naming what was expected."""

import jax
import jax.numpy as jnp
import pytest
from flax import struct
from gymnax.environments import environment as gymnax_environment
from gymnax.environments import spaces

import rlx.envs as rlx_envs
from rlx.agents import sac
from rlx.envs.contract import EnvContractError, check_env_contract
from rlx.run import make_train

pytestmark = pytest.mark.timeout(120)


@struct.dataclass
class Params:
    max_steps_in_episode: int = 10


class GoodEnv:
    """A minimal env written against the protocol by hand (no gymnax base class)."""

    name = "Good-v0"
    default_params = Params()

    def reset(self, key, params):
        obs = jax.random.uniform(key, (3,))
        return obs, {"t": jnp.zeros((), jnp.int32), "x": obs}

    def step(self, key, state, action, params):
        obs = state["x"] + jnp.sum(action)
        t = state["t"] + 1
        truncated = t >= params.max_steps_in_episode
        info = {"final_observation": obs}
        return obs, {"t": t, "x": obs}, -jnp.sum(obs**2), jnp.array(False), truncated, info

    def action_space(self, params):
        return spaces.Box(-1.0, 1.0, (2,), jnp.float32)

    def observation_space(self, params):
        return spaces.Box(-jnp.inf, jnp.inf, (3,), jnp.float32)


class OldGymnaxEnv(GoodEnv):
    def step(self, key, state, action, params):  # gymnax 0.0.x: (obs, state, reward, done, info)
        obs, state, reward, terminated, truncated, info = super().step(key, state, action, params)
        return obs, state, reward, terminated | truncated, info


class ObsShapeChanges(GoodEnv):
    def step(self, key, state, action, params):
        obs, state, *rest = super().step(key, state, action, params)
        return (jnp.concatenate([obs, obs]), state, *rest)


class SpaceDisagrees(GoodEnv):
    def observation_space(self, params):
        return spaces.Box(-1.0, 1.0, (4,), jnp.float32)


class PythonAction(GoodEnv):
    def step(self, key, state, action, params):
        if float(action[0]) > 0:  # a Python branch on a traced action
            action = -action
        return super().step(key, state, action, params)


class DictActions(GoodEnv):
    def action_space(self, params):
        return spaces.Dict({"move": spaces.Box(-1.0, 1.0, (2,), jnp.float32), "grip": spaces.Discrete(2)})


class NoFinalObservation(GoodEnv):
    def step(self, key, state, action, params):
        *rest, info = super().step(key, state, action, params)
        return (*rest, {})


class FloatDone(GoodEnv):
    def step(self, key, state, action, params):
        obs, state, reward, terminated, truncated, info = super().step(key, state, action, params)
        return obs, state, reward, terminated.astype(jnp.float32), truncated, info


class StateDtypeChanges(GoodEnv):
    def step(self, key, state, action, params):
        obs, state, *rest = super().step(key, state, action, params)
        return (obs, {**state, "t": state["t"].astype(jnp.float32)}, *rest)


class ResetThree(GoodEnv):
    def reset(self, key, params):
        obs, state = super().reset(key, params)
        return obs, state, {}


@struct.dataclass
class NoLimitParams:
    gravity: float = 9.8


class NoLimit(GoodEnv):
    default_params = NoLimitParams()


class NoStep:
    default_params = Params()

    def reset(self, key, params):
        return jnp.zeros(3), {}


@pytest.mark.parametrize(
    "env, message",
    [
        (OldGymnaxEnv(), "must return 6 values (obs, state, reward, terminated, truncated, info), got 5. Five values (obs, state, reward, done, info) is the gymnax 0.0.x interface"),
        (ObsShapeChanges(), "the observation changes between reset (float32[3]) and step (float32[6])"),
        (SpaceDisagrees(), "reset's observation has shape (3,), but observation_space(params).shape is (4,)"),
        (PythonAction(), "step(key, state, action, params) turns a traced value into a Python one"),
        (DictActions(), "action_space(params) must be a gymnax Box (continuous actions) or Discrete"),
        (NoFinalObservation(), "step's info lacks 'final_observation'"),
        (FloatDone(), "step's terminated must be a scalar bool, got float32[]"),
        (StateDtypeChanges(), "state['t']: int32[] after reset, float32[] after step"),
        (ResetThree(), "reset(key, params) must return (obs, state), got a tuple of 3"),
        (NoLimit(), "need an integer field max_steps_in_episode"),
        (NoStep(), "lacks step, action_space, observation_space"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else "",
)
def test_a_broken_env_is_refused_naming_what_was_expected(env, message):
    with pytest.raises(EnvContractError) as info:
        check_env_contract(env, env.default_params)
    assert message in str(info.value)


def test_a_hand_written_env_passes_and_reports_its_signature():
    signature = check_env_contract(GoodEnv())
    assert signature.obs_shape == (3,) and signature.obs_dtype == jnp.float32
    assert isinstance(signature.action_space, spaces.Box) and "final_observation" in signature.info_keys


@struct.dataclass
class SizedParams:
    max_steps_in_episode: int = 10
    size: int = 3


class ShapeFromParams(GoodEnv):
    """Uses a params field as a Python int (a shape): fine, since training closes over params."""

    default_params = SizedParams()

    def reset(self, key, params):
        obs = jnp.zeros(params.size)
        return obs, {"t": jnp.zeros((), jnp.int32), "x": obs}

    def observation_space(self, params):
        return spaces.Box(-jnp.inf, jnp.inf, (params.size,), jnp.float32)


def test_params_used_as_python_values_are_not_refused():
    assert check_env_contract(ShapeFromParams(), SizedParams(size=5)).obs_shape == (5,)


@pytest.mark.parametrize(
    "name", ["gymnax/Pendulum-v1", "gymnax/CartPole-v1", "gymnax/MountainCarContinuous-v0",
             "rlx/KeyDoor-v0", "rlx/Household-v0", "rlx/PointMaze-v0"],
)
def test_every_env_we_ship_keeps_the_contract(name):
    env, params = rlx_envs.make(name)
    signature = check_env_contract(env, params)
    assert signature.obs_shape == tuple(env.observation_space(params).shape)


def test_brax_adapter_keeps_the_contract():
    pytest.importorskip("brax")
    env, params = rlx_envs.make("brax/inverted_pendulum")
    assert check_env_contract(env, params).obs_shape == (4,)


def test_make_train_refuses_a_broken_env_before_tracing_the_agent():
    config = sac.SACConfig(total_steps=200, learning_starts=50, eval_every=50, batch_size=8, hidden_sizes=(8,))
    with pytest.raises(EnvContractError, match="gymnax 0.0.x interface"):
        make_train(sac, config, OldGymnaxEnv(), Params())
    make_train(sac, config, GoodEnv(), Params())  # the same config with a good env builds


def test_cli_reports_a_broken_env_module_env_with_exit_2(tmp_path, monkeypatch, capsys):
    from rlx.cli import main
    from rlx.envs import registry

    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    module = tmp_path / "broken_envs_for_cli.py"
    module.write_text(
        "import jax.numpy as jnp\n"
        "from flax import struct\n"
        "from gymnax.environments import spaces\n"
        "import rlx.envs\n\n"
        "@struct.dataclass\n"
        "class Params:\n"
        "    max_steps_in_episode: int = 10\n\n"
        "class Old:\n"
        "    default_params = Params()\n"
        "    def reset(self, key, params):\n"
        "        return jnp.zeros(3), jnp.zeros(())\n"
        "    def step(self, key, state, action, params):\n"
        "        return jnp.zeros(3), state, jnp.zeros(()), jnp.array(False), {}\n"
        "    def action_space(self, params):\n"
        "        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)\n"
        "    def observation_space(self, params):\n"
        "        return spaces.Box(-1.0, 1.0, (3,), jnp.float32)\n\n"
        "rlx.envs.register('testsuite/Old-v0', lambda: (Old(), Params()))\n"
    )
    out = tmp_path / "never"
    code = main(["train", "sac", "--env-module", str(module), "--env", "testsuite/Old-v0",
                 "--total-steps", "200", "--learning-starts", "50", "--batch-size", "8", "--out", str(out), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "rlx: error:" in err and "must return 6 values" in err and "gymnax 0.0.x" in err
    assert not out.exists()


@struct.dataclass
class DriftState(gymnax_environment.EnvState):
    x: jax.Array
    time: int


@struct.dataclass
class DriftParams(gymnax_environment.EnvParams):
    max_steps_in_episode: int = 10


class Drifts(gymnax_environment.Environment):
    """A gymnax Environment whose step_env drifts from reset_env in one field: gymnax's own
    auto-reset then fails inside lax.select, and the refusal must name the field instead."""

    def __init__(self, field):
        super().__init__()
        self.field = field

    @property
    def name(self):
        return f"Drifts-{self.field}"

    @property
    def default_params(self):
        return DriftParams()

    def reset_env(self, key, params):
        x = jnp.zeros(3)
        return x, DriftState(x=x, time=0)

    def step_env(self, key, state, action, params):
        x = state.x + 1.0
        obs = {"shape": jnp.concatenate([x, x]), "dtype": x.astype(jnp.int32)}.get(self.field, x)
        next_state = DriftState(x=x[:2] if self.field == "state" else x, time=state.time + 1)
        return obs, next_state, jnp.float32(0.0), jnp.array(False), {}

    def action_space(self, params):
        return spaces.Discrete(2)

    def observation_space(self, params):
        return spaces.Box(-1.0, 1.0, (3,), jnp.float32)


@pytest.mark.parametrize(
    "field, message",
    [
        ("shape", "observation: float32[3] from reset_env, float32[6] from step_env"),
        ("dtype", "observation: float32[3] from reset_env, int32[3] from step_env"),
        ("state", "state.x: float32[3] from reset_env, float32[2] from step_env"),
    ],
)
def test_a_gymnax_env_that_drifts_is_refused_naming_the_field(field, message):
    with pytest.raises(EnvContractError) as info:
        check_env_contract(Drifts(field))
    text = str(info.value)
    assert text.startswith(f"Drifts-{field}: step_env returns something else than reset_env") and message in text, text
    assert "select" not in text.split("\n")[1]
