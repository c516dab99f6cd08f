"""Environment lookup by suite-prefixed name: `gymnax/Pendulum-v1`, `brax/hopper`,
`playground/CartpoleBalance`, `rlx/<own>`.

Two sources of names:
- suites (gymnax, brax, playground) whose names are read live from the library, so everything
  it registers is reachable without copying its list; brax is imported only when a brax name
  is asked for or the full list is needed; Playground's names are read from its source, and it
  is imported only when one of its environments is made;
- explicit registrations (`register`), which take precedence over a suite's own name.

A user's own environments come in the same way: a module that calls `register` when imported,
named on the command line (`--env-module my_pkg.envs` or `--env-module path/to/envs.py`, see
`import_env_module`), or an installed package that declares an entry point in the group
`rlx.envs` (discovered the first time a name is not found or the full list is asked for)::

    [project.entry-points."rlx.envs"]
    "mysuite/MyEnv-v0" = "my_pkg.envs:make_my_env"   # a make_fn, registered under that name
    mysuite = "my_pkg.envs"                          # a module that registers its envs itself
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from . import brax_adapter, gymnax_adapter, playground

__all__ = [
    "ENTRY_POINT_GROUP",
    "UnknownEnvironmentError",
    "import_env_module",
    "is_env_module_file",
    "make",
    "register",
    "registered_names",
]

ENTRY_POINT_GROUP = "rlx.envs"

MakeFn = Callable[..., tuple[Any, Any]]


class UnknownEnvironmentError(ValueError):
    """Raised by `make` for a name that no suite or registration provides."""


class _Suite:
    def __init__(self, list_names: Callable[[], list[str]], make_one: Callable[..., Any]):
        self.list_names = list_names
        self.make_one = make_one


def _brax_names_or_raise() -> list[str]:
    brax_adapter._import_brax_envs()  # ImportError with the install hint
    return brax_adapter.brax_env_names()


def _playground_names_or_raise() -> list[str]:
    names = playground.playground_env_names()
    if not names:
        raise ImportError(playground._INSTALL_HINT)
    return names


_SUITES: dict[str, _Suite] = {
    "gymnax": _Suite(gymnax_adapter.gymnax_env_names, gymnax_adapter.make_gymnax),
    "brax": _Suite(brax_adapter.brax_env_names, brax_adapter.make_brax),
    "playground": _Suite(playground.playground_env_names, playground.make_playground),
}
# Suites whose package is optional: asking for one of their names without it raises the install hint.
_OPTIONAL_SUITES = {"brax": _brax_names_or_raise, "playground": _playground_names_or_raise}
_REGISTERED: dict[str, MakeFn] = {}


def _split(name: str) -> tuple[str, str]:
    suite, _, env_id = name.partition("/")
    return suite, env_id


def _suite_names(suite: str) -> list[str]:
    if suite not in _SUITES:
        return []
    return [f"{suite}/{env_id}" for env_id in _SUITES[suite].list_names()]


def is_env_module_file(name: str) -> bool:
    """True when an --env-module value names a Python file rather than a module."""
    return name.strip().endswith(".py") or Path(name.strip()).is_file()


def import_env_module(name: str):
    """Import the module that registers a user's environments; returns the module.

    `name` is a module path (`my_pkg.envs`, importable from the current directory or the
    installed packages) or a Python file (`path/to/envs.py`). A file is imported once per
    process however often it is named (and not at all when it is already imported, or running
    as the main script), so its `register` calls do not collide with themselves.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"--env-module expects a module name (my_pkg.envs) or a .py file, got {name!r}")
    name = name.strip()
    if is_env_module_file(name):
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"--env-module {name}: no such file")
        for module in list(sys.modules.values()):  # already imported (or run as the main script)
            file = getattr(module, "__file__", None)
            if isinstance(file, str) and Path(file).resolve() == path:
                return module
        module_name = f"rlx_env_module_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return module
    if "." not in sys.path and "" not in sys.path:
        sys.path.insert(0, "")  # `rlx` run as a console script does not see the current directory
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and (name == err.name or name.startswith(err.name + ".")):
            raise ValueError(
                f"--env-module {name}: no module named {err.name!r} (give a module importable from the "
                f"current directory or the installed packages, or a path to a .py file)"
            ) from err
        raise


_entry_points_loaded = False


def _load_entry_points() -> None:
    """Register the environments that installed packages declare in the `rlx.envs` group (once)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = entry.load()
        except Exception as err:
            raise ImportError(
                f"the {ENTRY_POINT_GROUP!r} entry point {entry.name} = {entry.value!r} cannot be loaded "
                f"({type(err).__name__}: {err})"
            ) from err
        if callable(target) and "/" in entry.name and entry.name not in _REGISTERED:
            register(entry.name, target)


def registered_names() -> list[str]:
    """Every name `make` accepts, sorted (brax names only when brax is installed)."""
    _load_entry_points()
    names = set(_REGISTERED)
    for suite in _SUITES:
        names.update(_suite_names(suite))
    return sorted(names)


def register(name: str, make_fn: MakeFn, *, overwrite: bool = False) -> None:
    """Make `make(name, **kwargs)` call `make_fn(**kwargs) -> (env, env_params)`.

    The name needs a suite prefix ("rlx/my-env"). Registering a taken name is an error unless
    `overwrite=True`, so two modules cannot silently shadow each other.
    """
    if not isinstance(name, str):
        raise TypeError(f"environment name must be a string, got {name!r}")
    suite, env_id = _split(name)
    if not suite or not env_id:
        raise ValueError(
            f"environment name {name!r} needs a suite prefix, like 'rlx/{name or 'my-env'}'"
        )
    if not callable(make_fn):
        raise TypeError(f"make_fn for {name!r} must be callable, got {make_fn!r}")
    taken = name in _REGISTERED or name in _suite_names(suite)
    if taken and not overwrite:
        raise ValueError(f"environment {name!r} is already registered; pass overwrite=True")
    _REGISTERED[name] = make_fn


def _unknown_message(name: str) -> str:
    names = registered_names()
    lines = [f"unknown environment {name!r}."]

    # Names whose id matches exactly (a missing or wrong prefix) come first.
    bare = _split(name)[1] or name
    same_id = [n for n in names if _split(n)[1] == bare]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    suggestions = list(dict.fromkeys(same_id + close))[:5]
    if suggestions:
        lines.append("Did you mean: " + ", ".join(suggestions) + "?")

    lines.append("Registered environments:")
    by_suite: dict[str, list[str]] = {}
    for n in names:
        suite, env_id = _split(n)
        by_suite.setdefault(suite, []).append(env_id)
    for suite, ids in sorted(by_suite.items()):
        lines.append(f"  {suite}: {', '.join(ids)}")
    if not brax_adapter.brax_env_names():
        lines.append('  brax: (not installed; pip install "rlx[brax]")')
    if not playground.playground_env_names():
        lines.append('  playground: (not installed; pip install "rlx[playground]")')
    if _split(name)[0] not in by_suite:
        lines.append(
            "Your own environment: import the module that registers it first "
            "(`--env-module my_pkg.envs` or `--env-module path/to/envs.py` on the command line)."
        )
    return "\n".join(lines)


def make(name: str, **kwargs) -> tuple[Any, Any]:
    """Build the environment called `name`; returns (env, env_params).

    Keyword arguments go to the suite: for gymnax they override fields of the default params
    (e.g. `max_steps_in_episode=50`); for brax `backend` and `episode_length` (and the brax
    environment's own constructor options); for playground `impl`, `obs_key` and fields of the
    environment's Playground config (`episode_length=200`); for a registered name, to its `make_fn`.
    """
    if not isinstance(name, str):
        raise TypeError(f"environment name must be a string, got {name!r}")
    if name in _REGISTERED:
        return _REGISTERED[name](**kwargs)
    suite, env_id = _split(name)
    if suite in _SUITES and env_id:
        # For brax and playground this raises the install hint when the package is missing.
        list_names = _OPTIONAL_SUITES.get(suite, _SUITES[suite].list_names)
        if env_id in list_names():
            return _SUITES[suite].make_one(env_id, **kwargs)
    _load_entry_points()  # only for a name nothing else provides: installed packages' envs
    if name in _REGISTERED:
        return _REGISTERED[name](**kwargs)
    raise UnknownEnvironmentError(_unknown_message(name))
