"""The agent contract (rlx.core.contract): every registered agent meets it, an agent that does not
is refused with a message naming what is missing, and an offline agent built from its files by
``from_inputs`` is the one the command line builds. Nothing here compiles a training program."""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from rlx import agents as registry
from rlx.agents import AGENTS, bc, get_agent, offline, sac
from rlx.core import contract

ENV = "gymnax/Pendulum-v1"
ROOT = Path(__file__).resolve().parent.parent


def _fake_agent(name: str = "fake", **replace) -> types.ModuleType:
    """A module with SAC's contract members, some replaced (``None``: left out)."""
    module = types.ModuleType(f"fake_agent_{name}")
    for member in contract.REQUIRED:
        setattr(module, member, getattr(sac, member))
    module.NAME = name
    for member, value in replace.items():
        if value is None:
            delattr(module, member)
        else:
            setattr(module, member, value)
    return module


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(AGENTS))
def test_every_registered_agent_meets_the_contract(name):
    agent = get_agent(name)  # checks it
    contract.check_agent(agent)
    assert isinstance(agent, contract.Agent)
    assert agent.NAME == name
    if contract.optional(agent, "from_inputs") is not None:  # built from files: names them
        assert "dataset" in agent.INPUTS


@pytest.mark.timeout(60)
def test_an_agent_missing_update_is_refused_naming_it():
    with pytest.raises(TypeError, match=r"agent 'broken'.*missing update") as err:
        contract.check_agent(_fake_agent("broken", update=None))
    assert "init" not in str(err.value)
    assert not isinstance(_fake_agent("broken", update=None), contract.Agent)


@pytest.mark.timeout(60)
def test_every_problem_is_named_at_once():
    fake = _fake_agent("odd", update=None, make_policy=None, init=3, Config=dict, DATA_PARALLEL="yes")
    with pytest.raises(TypeError) as err:
        contract.check_agent(fake)
    message = str(err.value)
    assert "'odd'" in message and "missing update, make_policy" in message
    assert "init is not callable (got int)" in message
    assert "Config must be a subclass of rlx.core.config.TrainConfig" in message
    assert "DATA_PARALLEL must be a bool" in message
    with pytest.raises(TypeError, match="from_inputs needs INPUTS"):
        contract.check_agent(_fake_agent("files", from_inputs=lambda config, **inputs: None))


@pytest.mark.timeout(60)
def test_get_agent_refuses_a_registered_module_that_breaks_the_contract(monkeypatch):
    module = _fake_agent("broken", update=None)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(registry.AGENTS, "broken", module.__name__)
    with pytest.raises(TypeError, match="missing update"):
        get_agent("broken")


@pytest.mark.timeout(60)
def test_optional_members_have_defaults():
    fake = _fake_agent("plain")
    assert contract.optional(fake, "PRESETS") == {} and contract.optional(fake, "INPUTS") == ()
    assert contract.optional(fake, "DATA_PARALLEL") is False
    assert contract.optional(fake, "from_inputs") is None and contract.optional(fake, "q_estimate") is None
    assert contract.optional(fake, "eval_metrics")(np.zeros(3)) == {}
    assert contract.optional(sac, "DATA_PARALLEL") is True and contract.optional(sac, "q_estimate") is sac.q_estimate
    with pytest.raises(KeyError, match="not an optional member"):
        contract.optional(fake, "update")
    assert contract.name_of(sac) == "sac" and contract.name_of(types.ModuleType("m")) == "m"


@pytest.mark.timeout(60)
def test_contract_imports_nothing_above_the_standard_library():
    tree = ast.parse((ROOT / "rlx" / "core" / "contract.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = [n.module if isinstance(n, ast.ImportFrom) else n.names[0].name for n in top]
    assert all(m == "__future__" or m.split(".")[0] in sys.stdlib_module_names for m in modules), modules


@pytest.mark.timeout(60)
def test_only_the_command_line_uses_argparse_to_build_agents():
    users = sorted(
        str(path.relative_to(ROOT)) for path in (ROOT / "rlx").rglob("*.py")
        if "argparse" in path.read_text() and "cli" not in path.relative_to(ROOT / "rlx").parts
    )
    assert users == ["rlx/run/compile_cache.py"]  # its --compile-cache flags only


@pytest.mark.timeout(60)
def test_the_command_line_turns_inputs_into_flags():
    from rlx.cli import build_parser
    from rlx.cli.inputs import saved_inputs

    morec = get_agent("morec_mopo")
    assert morec.INPUTS == ("dataset", "dynamics", "dynamics_reward")
    assert saved_inputs(morec) == ["dynamics", "dynamics_reward"] and saved_inputs(bc) == []
    argv = ["train", "morec_mopo", "--dataset", "d", "--dynamics", "m", "--save-dynamics-reward", "r"]
    args = build_parser(argv).parse_args(argv)
    assert (args.dataset, args.dynamics, args.dynamics_reward, args.save_dynamics_reward) == ("d", "m", None, "r")


# ------------------------------------------------------------------------------------------
# from_inputs: an offline agent from a dataset folder, as the command line builds it
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset_folder(tmp_path_factory):
    from rlx.buffers.dataset import DatasetInfo, from_arrays, save

    rng = np.random.default_rng(0)
    rows = 64
    obs = rng.normal(size=(rows, 3)).astype(np.float32)
    dataset = from_arrays({
        "observations": obs, "actions": rng.uniform(-1, 1, size=(rows, 1)).astype(np.float32),
        "rewards": rng.normal(size=rows).astype(np.float32), "next_observations": obs + 0.1,
        "terminals": np.zeros(rows), "timeouts": (np.arange(rows) % 16 == 15).astype(np.float32),
    })
    info = DatasetInfo(env=ENV, kind="random", size=rows, random_return=-1200.0, expert_return=-150.0)
    return save(tmp_path_factory.mktemp("data") / "tiny", dataset, info)


@pytest.mark.timeout(120)
def test_from_inputs_builds_what_the_command_line_builds(dataset_folder, tmp_path):
    from rlx.cli import _agent_from_inputs, build_parser

    config = bc.BCConfig(hidden_sizes=(8,))
    built = bc.from_inputs(config, dataset=str(dataset_folder), env=ENV, env_kwargs={"max_steps_in_episode": 20}, seed=3)
    argv = ["train", "bc", "--dataset", str(dataset_folder), "--env", ENV, "--env-kwarg", "max_steps_in_episode=20",
            "--seed", "3", "--hidden-sizes", "8", "--no-progress"]
    by_cli, recorded = _agent_from_inputs(get_agent("bc"), build_parser(argv).parse_args(argv), config, tmp_path / "run")
    assert recorded == {"dataset": str(dataset_folder.resolve())}  # what a resume builds it from again
    for agent in (built, by_cli):
        assert isinstance(agent, offline.DatasetAgent) and agent.NAME == "bc" and agent.algorithm is bc
        contract.check_agent(agent)
    assert (built.random_return, built.expert_return) == (by_cli.random_return, by_cli.expert_return) == (-1200.0, -150.0)
    for field in ("obs_mean", "obs_std"):
        np.testing.assert_array_equal(getattr(built, field), getattr(by_cli, field))
    for a, b in zip(built.data, by_cli.data, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.timeout(60)
def test_from_inputs_without_a_dataset_names_the_flag():
    from rlx.core.config import ConfigError

    for name in ("bc", "mopo", "morec_mobile"):
        agent = get_agent(name)
        with pytest.raises(ConfigError, match="--dataset PATH"):
            agent.from_inputs(agent.Config())
