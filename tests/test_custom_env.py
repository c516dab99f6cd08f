"""Bring your own environment: registration from a user's module (by name, by file, by entry
point), the example in examples/custom_env.py learning, and the command line round trip
train -> eval -> video with an env that only the user's module knows."""

import json
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import rlx.envs as rlx_envs
from rlx.envs import registry

pytestmark = pytest.mark.timeout(300)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_env.py"

MODULE_TEXT = '''
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

import rlx.envs


@struct.dataclass
class Params(environment.EnvParams):
    max_steps_in_episode: int = 5


class Drift(environment.Environment):
    """obs drifts by the action; reward -|obs|."""

    @property
    def default_params(self):
        return Params()

    def reset_env(self, key, params):
        obs = jax.random.uniform(key, (1,), minval=-1.0, maxval=1.0)
        return obs, environment.EnvState(time=0)

    def step_env(self, key, state, action, params):
        obs = jnp.clip(action, -1.0, 1.0).reshape(1)
        return obs, state.replace(time=state.time + 1), -jnp.abs(obs[0]), jnp.array(False), {}

    def action_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def observation_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)


def make_drift(**overrides):
    env = Drift()
    return env, env.default_params.replace(**overrides)


rlx.envs.register("testsuite/Drift-v0", make_drift)
'''


@pytest.fixture
def isolated_registry(monkeypatch):
    """Registrations and entry-point discovery made by a test do not leak into the others."""
    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if "rlx_test_user_envs" in name or name.startswith("rlx_env_module_"):
            del sys.modules[name]


def _write_module(folder: Path, name: str = "rlx_test_user_envs") -> Path:
    path = folder / f"{name}.py"
    path.write_text(MODULE_TEXT)
    return path


def test_env_module_by_name_registers_the_users_env(tmp_path, monkeypatch, isolated_registry):
    _write_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(rlx_envs.UnknownEnvironmentError, match="--env-module my_pkg.envs"):
        rlx_envs.make("testsuite/Drift-v0")  # not imported yet: the message says how
    module = rlx_envs.import_env_module("rlx_test_user_envs")
    assert "testsuite/Drift-v0" in rlx_envs.registered_names()
    env, params = rlx_envs.make("testsuite/Drift-v0", max_steps_in_episode=3)
    assert isinstance(env, module.Drift) and params.max_steps_in_episode == 3
    assert rlx_envs.check_env_contract(env, params).obs_shape == (1,)
    # Naming the same module again, or its file, imports nothing twice (no double registration).
    assert rlx_envs.import_env_module("rlx_test_user_envs") is module
    assert rlx_envs.import_env_module(str(tmp_path / "rlx_test_user_envs.py")) is module


def test_env_module_by_file_path(tmp_path, isolated_registry):
    path = _write_module(tmp_path, "rlx_test_user_envs_file")
    module = rlx_envs.import_env_module(str(path))
    assert rlx_envs.import_env_module(str(path)) is module
    env, _ = rlx_envs.make("testsuite/Drift-v0")
    assert type(env).__name__ == "Drift"


@pytest.mark.parametrize(
    "name, message",
    [
        ("no_such_pkg_for_rlx.envs", "--env-module no_such_pkg_for_rlx.envs: no module named 'no_such_pkg_for_rlx'"),
        ("missing/file.py", "--env-module missing/file.py: no such file"),
        ("  ", "--env-module expects a module name"),
    ],
)
def test_env_module_that_cannot_be_imported_is_named(name, message, isolated_registry):
    with pytest.raises(ValueError) as info:
        rlx_envs.import_env_module(name)
    assert message in str(info.value)


def test_entry_points_are_discovered_lazily(tmp_path, monkeypatch, isolated_registry):
    (tmp_path / "rlx_test_user_envs_ep.py").write_text(MODULE_TEXT.replace("rlx.envs.register(", "_unused = ("))
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = metadata.EntryPoint(name="epsuite/Drift-v0", value="rlx_test_user_envs_ep:make_drift", group="rlx.envs")
    calls = []

    def entry_points(group):
        calls.append(group)
        return [entry] if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry.metadata, "entry_points", entry_points)
    rlx_envs.make("gymnax/Pendulum-v1")  # a known name: nothing discovered
    assert calls == []
    env, _ = rlx_envs.make("epsuite/Drift-v0")
    assert type(env).__name__ == "Drift" and calls == ["rlx.envs"]
    assert "epsuite/Drift-v0" in rlx_envs.registered_names() and calls == ["rlx.envs"]  # once


def test_a_broken_entry_point_is_named(monkeypatch, isolated_registry):
    entry = metadata.EntryPoint(name="bad/Env-v0", value="no_such_pkg_for_rlx:make", group="rlx.envs")
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [entry])
    with pytest.raises(ImportError, match="entry point bad/Env-v0 = 'no_such_pkg_for_rlx:make' cannot be loaded"):
        rlx_envs.make("bad/Env-v0")


@pytest.mark.timeout(420)
def test_example_custom_env_trains_sac_to_the_target(tmp_path, isolated_registry, capsys):
    """The README example, with small settings: SAC learns to reach the target (standing still
    scores about -94 and the first evaluations score -50 or less)."""
    example = rlx_envs.import_env_module(str(EXAMPLE))
    out = tmp_path / "pm"
    final = example.main(["--total-steps", "4000", "--eval-every", "1000", "--hidden-sizes", "32,32",
                          "--out", str(out), "--no-progress"])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    returns = [r["eval/return_mean"] for r in records]
    assert final == pytest.approx(returns[-1], abs=1e-3) and "final evaluation return" in capsys.readouterr().out
    assert max(returns) > -30.0, returns
    assert json.loads((out / "config.json").read_text())["env_modules"] == [str(EXAMPLE)]

    # The trained policy, evaluated host-side through the Gymnasium wrapper of the same env.
    pytest.importorskip("gymnasium")
    from rlx.run.gymnasium_interop import evaluate_on_gymnasium, policy_from_run, to_gymnasium

    policy, obs_stats = policy_from_run(out)
    host = evaluate_on_gymnasium(policy, to_gymnasium(*rlx_envs.make("mysuite/PointMass-v0")), 3, obs_stats=obs_stats)
    assert host.shape == (3,) and np.all(host > -60.0), host


@pytest.mark.timeout(420)
def test_cli_trains_evaluates_and_films_a_users_env(tmp_path, monkeypatch, isolated_registry, capsys):
    from rlx.cli import main

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    flags = ["--total-steps", "300", "--learning-starts", "100", "--eval-every", "100", "--eval-episodes", "2",
             "--batch-size", "16", "--hidden-sizes", "16", "--no-progress"]
    assert main(["train", "sac", "--env-module", str(EXAMPLE), "--env", "mysuite/PointMass-v0", *flags, "--out", str(out)]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["env"] == "mysuite/PointMass-v0" and info["env_modules"] == [str(EXAMPLE)]

    # A new session knows nothing of the env: `rlx eval` imports the module config.json names.
    monkeypatch.setattr(registry, "_REGISTERED", {k: v for k, v in registry._REGISTERED.items() if not k.startswith("mysuite/")})
    for name in [n for n, m in sys.modules.items() if getattr(m, "__file__", None) == str(EXAMPLE)]:
        monkeypatch.delitem(sys.modules, name)
    capsys.readouterr()
    video = tmp_path / "pm.gif"
    assert main(["eval", str(out), "--episodes", "2", "--video", str(video), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "return" in printed and f"wrote {video}" in printed
    from PIL import Image

    with Image.open(video) as gif:
        assert gif.n_frames >= 2 and gif.size == (320, 352)
