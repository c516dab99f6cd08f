"""What the command line knows about the agents, read without importing them.

Importing an agent imports jax, flax, gymnax (and more): seconds before the first line of
``rlx --help`` or before a mistyped flag is refused. So the parser of ``rlx train ALGO`` is
built from ``spec.json`` next to this module, which holds for every agent of
:data:`rlx.agents.AGENTS` what its parser shows: the description (the first paragraph of its
docstring), the config class name, every field (name, default, help, allowed range, tunable or
static), the presets (name and ``_doc``), ``DATA_PARALLEL`` and the flags of its file inputs
(``INPUTS``: ``--dataset`` ..., :mod:`rlx.cli.inputs`). It also holds the flags of :mod:`rlx.run.compile_cache`, the one-line
help of the commands whose modules are heavy (sweep, report, dataset) and the names of our own
environments, so that ``rlx envs`` can list them without importing ``rlx.envs``.

The file is generated from the code and a test checks that it is up to date::

    python -m rlx.cli.spec --write     # after changing a config field, a preset or a flag
    python -m rlx.cli.spec --check     # exit status 1 when the file differs from the code

An agent missing from the file (a new entry of ``AGENTS``), or flags that cannot be written as
JSON, are read from the imported agent instead: slower to start, never wrong.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

SPEC_PATH = Path(__file__).with_name("spec.json")

# argparse `type=` values that the file can name.
_TYPES: dict[str, type] = {"float": float, "int": int, "str": str}
# Stands for the default compile cache folder, which depends on the machine and its environment.
_CACHE_DIR_TOKEN = "@DEFAULT_COMPILE_CACHE_DIR@"
_CACHE_HOME_SENTINEL = "/@XDG_CACHE_HOME@"
# Commands whose parsers live in heavy modules, built only when asked for: name -> module.
HEAVY_COMMANDS = {"sweep": "rlx.cli.sweep", "report": "rlx.cli.report", "dataset": "rlx.cli.dataset"}


class UnrecordableError(ValueError):
    """A flag whose options cannot be written as JSON (a callable type, an Action class ...)."""


# ---------------------------------------------------------------------------------------------
# Recording argparse calls as JSON and replaying them
# ---------------------------------------------------------------------------------------------
def _jsonable(value) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v) for k, v in value.items())
    return False


class RecordingGroup:
    """Stands in for an argparse parser or group: notes each ``add_argument`` call as JSON, and
    refuses (:class:`UnrecordableError`) what JSON cannot hold."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def add_argument(self, *flags, **kwargs) -> None:
        recorded = {}
        for key, value in kwargs.items():
            if key == "type":
                names = [name for name, t in _TYPES.items() if t is value]
                if not names:
                    raise UnrecordableError(f"{flags}: type={value!r}")
                value = names[0]
            elif not _jsonable(value):
                raise UnrecordableError(f"{flags}: {key}={value!r}")
            recorded[key] = list(value) if isinstance(value, tuple) else value
        if not all(isinstance(f, str) for f in flags):
            raise UnrecordableError(f"{flags}")
        self.calls.append({"flags": list(flags), "kwargs": recorded})

    def __getattr__(self, name):  # add_argument_group, add_mutually_exclusive_group, ...
        raise UnrecordableError(f"{name} is not recorded")


def record(add_arguments) -> list[dict[str, Any]] | None:
    """The ``add_argument`` calls that ``add_arguments(group)`` makes, or None when they cannot
    be written as JSON."""
    group = RecordingGroup()
    try:
        add_arguments(group)
    except UnrecordableError:
        return None
    return group.calls


def replay(calls: list[dict[str, Any]], group) -> None:
    """Make the recorded ``add_argument`` calls on a real argparse group."""
    for call in calls:
        kwargs = copy.deepcopy(call["kwargs"])
        if "type" in kwargs:
            kwargs["type"] = _TYPES[kwargs["type"]]
        if isinstance(kwargs.get("help"), str) and _CACHE_DIR_TOKEN in kwargs["help"]:
            kwargs["help"] = kwargs["help"].replace(_CACHE_DIR_TOKEN, str(default_cache_dir()))
        group.add_argument(*call["flags"], **kwargs)


def default_cache_dir() -> Path:
    """:func:`rlx.run.compile_cache.default_cache_dir`, without importing ``rlx.run`` (whose
    package imports jax); a test checks that the two agree."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rlx" / "jax"


# ---------------------------------------------------------------------------------------------
# What the file holds, read from the code
# ---------------------------------------------------------------------------------------------
def _default_text(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def agent_spec(agent) -> dict[str, Any]:
    """What ``rlx train ALGO`` shows of an imported agent (a module, or a variant object)."""
    from rlx.cli.inputs import add_input_arguments
    from rlx.core.contract import optional

    inputs = optional(agent, "INPUTS")
    extra = record(lambda group: add_input_arguments(group, inputs)) if inputs else []
    return {
        "description": (agent.__doc__ or "").strip().split("\n\n")[0],
        "config_class": agent.Config.__name__,
        "fields": [
            [name, _default_text(default), text, allowed, bool(is_tunable)]
            for name, default, text, allowed, is_tunable in agent.Config.field_help()
        ],
        "presets": {name: str(values.get("_doc", "")) for name, values in sorted(optional(agent, "PRESETS").items())},
        "data_parallel": bool(optional(agent, "DATA_PARALLEL")),
        "extra_arguments": extra,  # None: read from the imported agent
    }


def _compile_cache_flags() -> list[dict[str, Any]]:
    from rlx.run import compile_cache

    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = _CACHE_HOME_SENTINEL  # the machine's folder becomes a token
    try:
        folder = str(compile_cache.default_cache_dir())
        calls = record(compile_cache.add_arguments)
    finally:
        if saved is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = saved
    if calls is None:
        raise UnrecordableError("rlx.run.compile_cache.add_arguments")
    for call in calls:
        if isinstance(call["kwargs"].get("help"), str):
            call["kwargs"]["help"] = call["kwargs"]["help"].replace(folder, _CACHE_DIR_TOKEN)
    return calls


def _command_helps() -> dict[str, str]:
    """The one-line help of the commands whose parsers are built only when used."""
    import importlib

    global _LIVE
    saved, _LIVE = _LIVE, True  # independent of the file being written
    try:
        sub = argparse.ArgumentParser().add_subparsers()
        for module in HEAVY_COMMANDS.values():
            importlib.import_module(module).add_parser(sub)
        return {action.dest: action.help for action in sub._choices_actions if action.dest in HEAVY_COMMANDS}
    finally:
        _LIVE = saved


def _own_env_names() -> list[str]:
    """The names ``rlx.envs`` registers when it is imported (before any installed package's)."""
    from rlx.envs import registry

    return sorted(registry._REGISTERED)


def build_spec() -> dict[str, Any]:
    """The content of ``spec.json``, read from the code (imports every agent)."""
    from rlx.agents import AGENTS, get_agent

    envs = _own_env_names()  # first: nothing else has registered names yet
    return {
        "agents": {name: agent_spec(get_agent(name)) for name in sorted(AGENTS)},
        "compile_cache_flags": _compile_cache_flags(),
        "commands": _command_helps(),
        "envs": envs,
    }


def dumps(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------
# Reading the file
# ---------------------------------------------------------------------------------------------
_LIVE = False  # True: read everything from the imported code (the generator)


@lru_cache(maxsize=1)
def _load() -> dict[str, Any] | None:
    try:
        return json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def agent_info(algo: str) -> dict[str, Any]:
    """What ``rlx train ALGO`` shows; from the file, else from the imported agent."""
    from rlx.agents import AGENTS, get_agent

    spec = None if _LIVE else _load()
    if spec is not None and algo in spec.get("agents", {}) and algo in AGENTS:
        return spec["agents"][algo]
    return agent_spec(get_agent(algo))


def add_extra_arguments(algo: str, info: dict[str, Any], group) -> None:
    """The flags of the agent's file inputs (``INPUTS``, :mod:`rlx.cli.inputs`): replayed from the
    file when it holds them."""
    if info["extra_arguments"] is None:
        from rlx.agents import get_agent
        from rlx.cli.inputs import add_input_arguments
        from rlx.core.contract import optional

        add_input_arguments(group, optional(get_agent(algo), "INPUTS"))
    else:
        replay(info["extra_arguments"], group)


def add_compile_cache_flags(group) -> None:
    """``--compile-cache`` / ``--no-compile-cache`` (see :func:`rlx.run.compile_cache.add_arguments`)."""
    spec = None if _LIVE else _load()
    if spec is None or "compile_cache_flags" not in spec:
        from rlx.run.compile_cache import add_arguments

        add_arguments(group)
    else:
        replay(spec["compile_cache_flags"], group)


def command_help(name: str) -> str | None:
    """The one-line help of a heavy command, or None when the file does not hold it."""
    spec = _load()
    return None if spec is None else spec.get("commands", {}).get(name)


# ---------------------------------------------------------------------------------------------
# `rlx envs` without importing the environment suites
# ---------------------------------------------------------------------------------------------
def _source_file(module: str) -> Path | None:
    """The source file of ``module`` (``pkg.sub``), found without importing ``pkg`` (which
    ``importlib.util.find_spec("pkg.sub")`` would do)."""
    import importlib.util

    top, *parts = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not parts:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    for location in spec.submodule_search_locations or []:
        base = Path(location).joinpath(*parts)
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                return candidate
    return None


def _literal_assignment(module: str, names: tuple[str, ...]):
    """The literal value assigned at the top of ``module``'s source to the first of ``names``
    found (of a dict, its literal keys as a list), read without importing the module; None
    when there is none."""
    path = _source_file(module)
    if path is None:
        return None
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    found = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name) and target.id in names and node.value is not None:
                value = node.value
                if isinstance(value, ast.Dict):  # a registry {name: Class}: its names are enough
                    value = ast.List(elts=value.keys, ctx=ast.Load())
                try:
                    found[target.id] = ast.literal_eval(value)
                except ValueError:
                    continue
    return next((found[name] for name in names if name in found), None)


def fast_env_names() -> list[str] | None:
    """What :func:`rlx.envs.registered_names` returns, read without importing jax, gymnax,
    brax or mujoco_playground; None when that cannot be known so (the caller then imports ``rlx.envs``): an
    installed package declares environments (entry points run code), or a suite's list is not
    a literal in its source."""
    import importlib.util
    from importlib import metadata

    spec = _load()
    if spec is None or "envs" not in spec or "rlx.envs" in sys.modules:
        return None
    try:
        if metadata.entry_points(group="rlx.envs"):
            return None
    except Exception:
        return None
    gymnax = _literal_assignment("gymnax.registration", ("_BUILTIN_ENV_IDS", "registered_envs"))
    if not isinstance(gymnax, (list, tuple)) or not all(isinstance(n, str) for n in gymnax):
        return None
    names = set(spec["envs"]) | {f"gymnax/{n}" for n in gymnax}
    try:
        has_brax = importlib.util.find_spec("brax") is not None
    except (ImportError, ValueError):
        return None
    if has_brax:
        brax = _literal_assignment("brax.envs", ("_envs",))
        if not isinstance(brax, list) or not all(isinstance(n, str) for n in brax):
            return None
        names |= {f"brax/{n}" for n in brax}
    try:
        has_playground = importlib.util.find_spec("mujoco_playground") is not None
    except (ImportError, ValueError):
        return None
    if has_playground:  # the suites rlx.envs.playground adapts, as there: the keys of their registries
        for suite in ("dm_control_suite", "locomotion"):
            found = _literal_assignment(f"mujoco_playground._src.{suite}", ("_envs",))
            if not isinstance(found, list) or not all(isinstance(n, str) for n in found):
                return None
            names |= {f"playground/{n}" for n in found}
    return sorted(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlx.cli.spec", description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--write", action="store_true", help=f"write {SPEC_PATH.name} from the code")
    what.add_argument("--check", action="store_true", help=f"exit 1 when {SPEC_PATH.name} differs from the code")
    what.add_argument("--print", action="store_true", help="print what the file should hold")
    args = parser.parse_args(argv)
    text = dumps(build_spec())
    if args.print:
        sys.stdout.write(text)
        return 0
    if args.write:
        SPEC_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {SPEC_PATH}")
        return 0
    current = SPEC_PATH.read_text(encoding="utf-8") if SPEC_PATH.exists() else ""
    if current != text:
        print(f"{SPEC_PATH} is out of date: run `python -m rlx.cli.spec --write`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # run as rlx.cli.spec, the module the command line reads, not a copy
    from rlx.cli.spec import main as _main

    sys.exit(_main())
