"""Environment lookup by suite-prefixed name: `gymnax/Pendulum-v1`, `brax/hopper`, `rlx/<own>`.

Two sources of names:
- suites (gymnax, brax) whose names are read live from the library, so everything it
  registers is reachable without copying its list; brax is imported only when a brax name
  is asked for or the full list is needed;
- explicit registrations (`register`), which take precedence over a suite's own name.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from . import brax_adapter, gymnax_adapter

__all__ = ["UnknownEnvironmentError", "make", "register", "registered_names"]

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


_SUITES: dict[str, _Suite] = {
    "gymnax": _Suite(gymnax_adapter.gymnax_env_names, gymnax_adapter.make_gymnax),
    "brax": _Suite(brax_adapter.brax_env_names, brax_adapter.make_brax),
}
_REGISTERED: dict[str, MakeFn] = {}


def _split(name: str) -> tuple[str, str]:
    suite, _, env_id = name.partition("/")
    return suite, env_id


def _suite_names(suite: str) -> list[str]:
    if suite not in _SUITES:
        return []
    return [f"{suite}/{env_id}" for env_id in _SUITES[suite].list_names()]


def registered_names() -> list[str]:
    """Every name `make` accepts, sorted (brax names only when brax is installed)."""
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
    return "\n".join(lines)


def make(name: str, **kwargs) -> tuple[Any, Any]:
    """Build the environment called `name`; returns (env, env_params).

    Keyword arguments go to the suite: for gymnax they override fields of the default params
    (e.g. `max_steps_in_episode=50`); for brax `backend` and `episode_length` (and the brax
    environment's own constructor options); for a registered name, to its `make_fn`.
    """
    if not isinstance(name, str):
        raise TypeError(f"environment name must be a string, got {name!r}")
    if name in _REGISTERED:
        return _REGISTERED[name](**kwargs)
    suite, env_id = _split(name)
    if suite in _SUITES and env_id:
        # For brax this raises the install hint when brax is missing.
        list_names = _brax_names_or_raise if suite == "brax" else _SUITES[suite].list_names
        if env_id in list_names():
            return _SUITES[suite].make_one(env_id, **kwargs)
    raise UnknownEnvironmentError(_unknown_message(name))
