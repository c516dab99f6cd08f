"""gymnax environments, used as they are, with keyword overrides checked up front.

gymnax 1.0 already has the interface rlx uses (six-value step, auto-reset,
`info["final_observation"]`), so nothing is wrapped: `make_gymnax` only turns keyword
arguments into parameter overrides (or constructor arguments) and rejects unknown ones
before anything is traced.
"""

from __future__ import annotations

import dataclasses
import inspect

import gymnax
from gymnax import registration as gymnax_registration

__all__ = ["gymnax_env_names", "make_gymnax"]


def gymnax_env_names() -> list[str]:
    """Every id in `gymnax.registered_envs` (read live, so runtime registrations show up)."""
    return sorted(gymnax.registered_envs)


def _constructor_options(factory) -> tuple[set[str], bool]:
    """Keyword arguments the factory takes, and whether it also takes **kwargs."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
    return names, takes_any


def make_gymnax(env_id: str, **kwargs):
    """Build gymnax environment `env_id`; returns (env, params).

    A keyword naming a field of the environment's params replaces that field of the default
    params (e.g. `max_steps_in_episode=50`); one naming an argument of the environment's
    constructor (e.g. Catch's `rows`) goes to the constructor. Anything else is a ValueError
    that lists the valid names.
    """
    factory = gymnax_registration._registry[env_id]
    constructor_names, constructor_takes_any = _constructor_options(factory)
    if constructor_takes_any:
        # A factory taking **kwargs: params fields are only known from a built env.
        _, default_params = gymnax.make(env_id)
        field_names = {f.name for f in dataclasses.fields(default_params)}
        constructor_names |= set(kwargs) - field_names
    constructor_kwargs = {k: v for k, v in kwargs.items() if k in constructor_names}
    rest = {k: v for k, v in kwargs.items() if k not in constructor_names}
    env, params = gymnax.make(env_id, **constructor_kwargs)

    field_names = [f.name for f in dataclasses.fields(params)]
    unknown = [k for k in rest if k not in field_names]
    if unknown:
        valid = sorted(set(field_names) | constructor_names)
        raise ValueError(
            f"gymnax/{env_id} has no parameter {unknown[0]!r}; valid parameters: {valid}"
        )
    if rest:
        params = params.replace(**rest)
    return env, params
