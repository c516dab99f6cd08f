"""`rlx --help`, `rlx agents`, `rlx envs` and a refused flag answer without importing jax: the
parser of `rlx train ALGO` is read from rlx/cli/spec.json, which must match the code."""

import json
import os
import subprocess
import sys

import pytest

from rlx.cli import spec as cli_spec

pytestmark = pytest.mark.timeout(300)

HEAVY = ("jax", "jaxlib", "flax", "optax", "gymnax", "brax", "numpy", "rlx.envs", "rlx.run")

# Runs one command line in a fresh interpreter; prints its exit status and the heavy modules
# it imported.
_PROBE = """
import json, sys
import rlx.cli
code = 0
if sys.argv[1:] != ["--import-only"]:
    try:
        code = rlx.cli.main(sys.argv[1:])
    except SystemExit as stop:
        code = stop.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {h.split(".")[0] for h in HEAVY} and
               any(m == h or m.startswith(h + ".") for h in HEAVY))
print("PROBE" + json.dumps({"code": code, "heavy": heavy}))
"""


def _probe(*argv: str) -> tuple[dict, subprocess.CompletedProcess]:
    proc = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{_PROBE}", *argv],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "100"},
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("PROBE")]
    assert lines, proc.stderr
    return json.loads(lines[-1][len("PROBE"):]), proc


@pytest.mark.parametrize(
    "argv, code, shows",
    [
        (["--import-only"], 0, ""),
        (["--help"], 0, "train an agent"),
        (["train", "--help"], 0, "train MOREC_MOPO"),
        (["train", "sac", "--help"], 0, "critic learning rate (Adam) (default: 0.0003"),
        (["train", "mopo", "--help"], 0, "--save-dynamics"),
        (["train", "sac", "--bogus", "1"], 2, "unrecognized arguments: --bogus 1"),
        (["train", "nosuch"], 2, "invalid choice: 'nosuch'"),
        (["nosuch"], 2, "invalid choice: 'nosuch'"),
        (["agents"], 0, "morec_mobile"),
        (["envs"], 0, "gymnax/Pendulum-v1"),
    ],
)
def test_starting_imports_no_jax(argv, code, shows):
    result, proc = _probe(*argv)
    assert result["code"] == code, proc.stderr
    assert shows in " ".join((proc.stdout + proc.stderr).split())
    assert result["heavy"] == [], f"`rlx {' '.join(argv)}` imported {result['heavy']}"


@pytest.mark.timeout(180)
def test_spec_file_matches_the_code():
    """`python -m rlx.cli.spec --write` after changing a config field, a preset or an agent's flags."""
    proc = subprocess.run(
        [sys.executable, "-m", "rlx.cli.spec", "--check"], capture_output=True, text=True, timeout=170,
    )
    assert proc.returncode == 0, proc.stderr


def _helps(parser) -> dict[str, str]:
    """The help of every command and sub-command, by its words."""
    out = {"": parser.format_help()}
    stack = [((), parser)]
    while stack:
        words, p = stack.pop()
        if p._subparsers is None:
            continue
        for action in p._subparsers._group_actions:
            for name, child in getattr(action, "choices", {}).items():
                out[" ".join((*words, name))] = child.format_help()
                stack.append(((*words, name), child))
    return out


def test_parsers_from_the_file_equal_those_from_the_code(monkeypatch):
    """Every command's help, built from the file, equals the one built from the imported agents;
    and a command line's parser has the command it names in full."""
    from rlx.cli import build_parser

    monkeypatch.setenv("COLUMNS", "100")
    from_file = _helps(build_parser())
    monkeypatch.setattr(cli_spec, "_LIVE", True)
    live = _helps(build_parser())
    assert from_file.keys() == live.keys()
    for words in live:
        assert from_file[words] == live[words], words
    monkeypatch.setattr(cli_spec, "_LIVE", False)
    for words in ("train sac", "train morec_mobile", "sweep ppo", "eval", "dataset collect", "report"):
        asked = _helps(build_parser(words.split() + ["--out", "x"]))
        assert asked[words] == live[words], words
    assert "--critic-lr" not in _helps(build_parser(["train", "ppo"]))["train sac"]


def test_default_compile_cache_folder_agrees(monkeypatch):
    from rlx.run import compile_cache

    for value in ("/somewhere/cache", ""):
        monkeypatch.setenv("XDG_CACHE_HOME", value)
        assert cli_spec.default_cache_dir() == compile_cache.default_cache_dir()
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cli_spec.default_cache_dir() == compile_cache.default_cache_dir()


def test_fast_env_list_equals_registered_names():
    code = (
        "import json, sys\nfrom rlx.cli.spec import fast_env_names\nfast = fast_env_names()\n"
        "imported = 'jax' in sys.modules\nimport rlx.envs\n"
        "print(json.dumps([fast, rlx.envs.registered_names(), imported]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    fast, names, imported = json.loads(proc.stdout.splitlines()[-1])
    assert fast == names
    assert not imported


def test_flags_json_cannot_hold_are_read_from_the_agent(monkeypatch):
    import argparse

    assert cli_spec.record(lambda g: g.add_argument("--x", type=lambda s: s)) is None
    assert cli_spec.record(lambda g: g.add_argument_group("more")) is None
    calls = cli_spec.record(lambda g: g.add_argument("--rate", type=float, default=0.5, choices=(0.5, 1.0)))
    assert calls == [{"flags": ["--rate"], "kwargs": {"type": "float", "default": 0.5, "choices": [0.5, 1.0]}}]
    parser = argparse.ArgumentParser()
    cli_spec.replay(json.loads(json.dumps(calls)), parser)
    assert parser.parse_args(["--rate", "1"]).rate == 1.0

    from rlx.agents import get_agent
    from rlx.cli.inputs import add_input_arguments

    mopo = get_agent("mopo")
    spec = json.loads(json.dumps(cli_spec._load()))
    spec["agents"]["mopo"]["extra_arguments"] = None  # as for a flag with a callable type
    del spec["agents"]["sac"]  # as for an agent added since the file was written
    monkeypatch.setattr(cli_spec, "_load", lambda: spec)
    assert cli_spec.agent_info("sac") == cli_spec.agent_spec(get_agent("sac"))
    group = argparse.ArgumentParser()
    cli_spec.add_extra_arguments("mopo", cli_spec.agent_info("mopo"), group)
    live = argparse.ArgumentParser()
    add_input_arguments(live, mopo.INPUTS)
    assert [a.option_strings for a in group._actions] == [a.option_strings for a in live._actions]
