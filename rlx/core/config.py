"""Agent configuration: frozen dataclasses whose tunable scalars are pytree leaves.

A config class declares each field with :func:`static` or :func:`tunable`:

* static fields fix shapes or loop lengths (network sizes, number of environments, buffer size,
  total steps). They are pytree *auxiliary data*: changing one means compiling a new program.
* tunable fields are scalar hyperparameters (learning rates, discount, tau, ...). They are pytree
  *leaves*, so ``jax.vmap`` over a batch of configs trains a whole sweep in one compiled program.

Every field carries a help string and an allowed range, used by :meth:`Config.validate` (called
before any tracing) and by the command line (``rlx train sac --help``).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from flax import struct

from rlx.core.seeds import SEED_RANGE, seed_problem  # noqa: F401  (SEED_RANGE: re-exported)

__all__ = [
    "Config", "ConfigError", "TrainConfig", "check_seed", "config_dataclass", "stack_configs", "static", "tunable",
]

# Integer fields count steps, envs, sizes: inside the compiled program they are int32 (JAX's
# default without x64), so a larger value would wrap around silently.
INT32_MAX = 2**31 - 1


class ConfigError(ValueError):
    """A configuration value outside its allowed range, or an unknown field."""


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` as an int, or a :class:`ConfigError` naming the allowed range (a 64-bit integer)."""
    problem = seed_problem(seed, name)
    if problem:
        raise ConfigError(problem)
    return int(seed)


def _field(default, help, pytree_node, low, high, low_inclusive, high_inclusive, choices, check):
    meta = {
        "pytree_node": pytree_node,
        "help": help,
        "low": low,
        "high": high,
        "low_inclusive": low_inclusive,
        "high_inclusive": high_inclusive,
        "choices": choices,
        "check": check,
    }
    return dataclasses.field(default=default, metadata=meta)


def static(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    choices: tuple | None = None,
    check: Callable[[Any], str | None] | None = None,
):
    """A field that fixes the compiled program (shapes, loop lengths, switches)."""
    return _field(default, help, False, low, high, low_inclusive, high_inclusive, choices, check)


def tunable(
    default: float,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
):
    """A scalar hyperparameter carried as a pytree leaf (vmappable for sweeps)."""
    return _field(default, help, True, low, high, low_inclusive, high_inclusive, None, None)


def config_dataclass(cls):
    """Decorator: a frozen, pytree-registered dataclass (flax.struct semantics)."""
    return struct.dataclass(cls, frozen=True)


def _range_text(meta) -> str:
    low, high = meta["low"], meta["high"]
    if meta["choices"] is not None:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    if low is None and high is None:
        return ""
    lo = "" if low is None else f"{low} {'<=' if meta['low_inclusive'] else '<'} "
    hi = "" if high is None else f" {'<=' if meta['high_inclusive'] else '<'} {high}"
    return f"{lo}value{hi}"


def _is_batched(value) -> bool:
    return isinstance(value, (jax.Array, np.ndarray)) and np.ndim(value) > 0


class Config:
    """Mixin for agent configs. Subclasses are decorated with :func:`config_dataclass`."""

    # ---- introspection -------------------------------------------------------------------
    @classmethod
    def field_specs(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if "help" in f.metadata]

    @classmethod
    def tunable_names(cls) -> list[str]:
        return [f.name for f in cls.field_specs() if f.metadata["pytree_node"]]

    @classmethod
    def static_names(cls) -> list[str]:
        return [f.name for f in cls.field_specs() if not f.metadata["pytree_node"]]

    @classmethod
    def field_help(cls) -> list[tuple[str, Any, str, str, bool]]:
        """(name, default, help, allowed range, is_tunable) for every field."""
        return [
            (f.name, f.default, f.metadata["help"], _range_text(f.metadata), f.metadata["pytree_node"])
            for f in cls.field_specs()
        ]

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any]):
        """Build a config from plain values (e.g. a saved ``config.json``), then validate."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; "
                f"known fields: {', '.join(f.name for f in cls.field_specs())}"
            )
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in values:
                kwargs[f.name] = _coerce(cls, f, values[f.name])
        return cls(**kwargs).validate()

    def override(self, **changes):
        """``dataclasses.replace`` with coercion and validation."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(
                f"{type(self).__name__}: unknown field(s) {', '.join(unknown)}; "
                f"known fields: {', '.join(f.name for f in self.field_specs())}"
            )
        fields = {f.name: f for f in dataclasses.fields(self)}
        coerced = {k: _coerce(type(self), fields[k], v) for k, v in changes.items()}
        return dataclasses.replace(self, **coerced).validate()

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if _is_batched(v):
                v = np.asarray(v).tolist()
            elif isinstance(v, (jax.Array, np.generic, np.ndarray)):
                v = np.asarray(v).item()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    # ---- validation ----------------------------------------------------------------------
    def validate(self):
        """Check every field against its declared range; raise :class:`ConfigError` naming it.

        Batched tunable leaves (a sweep) are checked element by element. Returns ``self``.
        """
        problems = []
        for f in self.field_specs():
            meta = f.metadata
            value = getattr(self, f.name)
            if isinstance(value, jax.core.Tracer):
                continue  # inside a transformation: checked before tracing
            values = np.asarray(value).reshape(-1).tolist() if _is_batched(value) else [value]
            for v in values:
                msg = _check_value(f.name, v, meta)
                if msg:
                    problems.append(msg)
                    break
        problems.extend(self._check_consistency())
        if problems:
            raise ConfigError(f"invalid {type(self).__name__}:\n  " + "\n  ".join(problems))
        return self

    def _check_consistency(self) -> list[str]:
        """Cross-field checks; subclasses extend (return a list of messages)."""
        return []


def _check_value(name, v, meta) -> str | None:
    if meta["choices"] is not None:
        if v not in meta["choices"]:
            return f"{name}={v!r} is not allowed; allowed: {_range_text(meta)}"
        return None
    if meta["check"] is not None:
        msg = meta["check"](v)
        if msg:
            return f"{name}={v!r}: {msg}"
    if meta["low"] is not None or meta["high"] is not None:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
            return f"{name}={v!r} must be a number ({_range_text(meta)})"
        if isinstance(v, float) and not math.isfinite(v):
            return f"{name}={v!r} must be finite ({_range_text(meta)})"
        low, high = meta["low"], meta["high"]
        bad = (
            (low is not None and (v < low if meta["low_inclusive"] else v <= low))
            or (high is not None and (v > high if meta["high_inclusive"] else v >= high))
        )
        if bad:
            return f"{name}={v!r} is out of range; allowed: {_range_text(meta)}"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and abs(int(v)) > INT32_MAX:
        return f"{name}={v:,} is too large; allowed: at most {INT32_MAX:,} (steps and sizes are int32 in the compiled program)"
    return None


def _coerce(cls, f: dataclasses.Field, value):
    """Turn strings / lists (from the command line or JSON) into the field's type."""
    if _is_batched(value) or isinstance(value, jax.Array):
        return value
    hints = typing.get_type_hints(cls)
    target = hints.get(f.name, type(f.default))
    origin = typing.get_origin(target)
    try:
        if target is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if target is int:
            if isinstance(value, str):
                value = float(value)  # accept "1e6"
            if float(value) != int(value):
                raise ValueError
            return int(value)
        if target is float:
            return float(value)
        if origin is tuple or target is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
            args = typing.get_args(target)
            elem = args[0] if args else int
            return tuple(elem(float(v)) if elem is int else elem(v) for v in value)
        if target is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{cls.__name__}.{f.name}: cannot read {value!r} as {getattr(target, '__name__', target)}"
        ) from None
    return value


@config_dataclass
class TrainConfig(Config):
    """Fields every agent shares: how long to train and how often to evaluate.

    ``total_steps`` counts environment steps over all parallel environments, warm-up included.
    Evaluation is deterministic, in the compiled graph, every ``eval_every`` env steps, over
    ``eval_episodes`` episodes run in parallel.
    """

    total_steps: int = static(20_000, "environment steps in total (all parallel envs, warm-up included)", low=1)
    num_envs: int = static(1, "parallel training environments", low=1)
    eval_every: int = static(2_000, "environment steps between deterministic evaluations", low=1)
    eval_episodes: int = static(10, "episodes per evaluation (run in parallel)", low=1)
    normalize_observations: bool = static(
        False, "normalize observations with running statistics kept in the env state", choices=(False, True)
    )

    @property
    def step_unit(self) -> str:
        """What ``total_steps``, ``eval_every`` and the metrics' "step" count (offline agents:
        "gradient steps")."""
        return "env steps"


def stack_configs(configs):
    """Stack configs that differ only in tunable fields into one batched config.

    The result has a leading axis on every tunable leaf, so
    ``jax.vmap(lambda c, k: make_train(agent, c, env, params)(k))(stacked, keys)`` trains the
    whole sweep as one compiled program. Static fields must agree: changing one changes the
    compiled program, so it cannot be a point of a vmapped sweep.
    """
    configs = list(configs)
    if not configs:
        raise ConfigError("stack_configs needs at least one config")
    first = configs[0]
    for other in configs[1:]:
        if type(other) is not type(first):
            raise ConfigError(f"cannot stack {type(first).__name__} with {type(other).__name__}")
        for name in first.static_names():
            if getattr(other, name) != getattr(first, name):
                raise ConfigError(
                    f"static field {name} differs ({getattr(first, name)!r} vs {getattr(other, name)!r}): "
                    "it fixes shapes or loop lengths, so changing it needs a separate compiled run; "
                    f"only tunable fields can be swept together ({', '.join(first.tunable_names())})"
                )
    for c in configs:
        c.validate()
    return jax.tree.map(lambda *xs: np.asarray(xs, dtype=np.float32), *configs)
