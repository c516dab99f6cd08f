"""The environment protocol rlx trains on, and a cheap check that an environment keeps it.

An environment is any object with these methods (the gymnax 1.0 interface); subclassing
``gymnax.environments.environment.Environment`` and writing ``reset_env`` / ``step_env`` gives
all of them, auto-reset and ``info["final_observation"]`` included::

    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)
    env.action_space(params)        # gymnax Box (continuous) or Discrete
    env.observation_space(params)   # gymnax Box (or Discrete); its shape is the observation's
    env.default_params              # params used when none are given

* ``key`` is a ``jax.random.PRNGKey``; ``params`` a pytree (a ``flax.struct.dataclass``) with an
  integer field ``max_steps_in_episode``, which bounds the evaluation episodes.
* ``obs`` is one array (not a dict) of the observation space's shape, the same shape and dtype
  after ``reset`` and after every ``step``; ``state`` is a pytree whose structure, shapes and
  dtypes ``step`` keeps (``lax.scan`` carries it).
* ``reward`` is a scalar number; ``terminated`` (the episode really ended: value 0 after it) and
  ``truncated`` (a time limit cut it: the value target bootstraps through it) are scalar bools.
* ``step`` resets by itself when ``terminated | truncated``, returning the first observation of
  the next episode, and puts the last observation of the finished one into
  ``info["final_observation"]`` (same shape as ``obs``); ``info`` is a dict of arrays.
* ``action`` is an array: float32 of the Box's shape, or an int32 scalar for a Discrete. Both
  functions are traced by ``jit`` / ``vmap`` / ``scan``, so they must use ``jnp`` operations and
  never turn a traced value into a Python one (``int(action)``, ``if terminated:``).

Optional, for ``rlx eval --video``: ``render_frame(state, params) -> uint8 array (H, W, 3)`` or
``render_text(state) -> str``.

:func:`check_env_contract` traces ``reset`` and ``step`` once with ``jax.eval_shape`` (nothing is
compiled or run) and raises :class:`EnvContractError` naming what was expected. ``make_train``
calls it before anything is compiled.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments.spaces import Box, Discrete

__all__ = [
    "EnvContractError",
    "EnvSignature",
    "abstract_action",
    "check_env_contract",
    "step_without_reset",
    "steps_without_reset",
]

_STEP_RETURNS = "(obs, state, reward, terminated, truncated, info)"
_RESET_RETURNS = "(obs, state)"


class EnvContractError(TypeError, ValueError):
    """An environment that does not keep the gymnax 1.0 protocol rlx trains on.

    Both a TypeError (the object has the wrong interface) and a ValueError (the command line
    reports it as bad input)."""


@dataclasses.dataclass(frozen=True)
class EnvSignature:
    """What :func:`check_env_contract` found: the spaces and the observation's shape and dtype."""

    observation_space: Any
    action_space: Any
    obs_shape: tuple[int, ...]
    obs_dtype: np.dtype
    info_keys: tuple[str, ...]


def _name(env) -> str:
    name = getattr(env, "name", None)
    return name if isinstance(name, str) else type(env).__name__


def _describe(value) -> str:
    if isinstance(value, jax.ShapeDtypeStruct):
        return f"{np.dtype(value.dtype).name}{list(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__


def abstract_action(space) -> jax.ShapeDtypeStruct:
    """The action rlx feeds an environment with this action space, as a shape and dtype."""
    if isinstance(space, Box):
        return jax.ShapeDtypeStruct(tuple(int(d) for d in space.shape), jnp.float32)
    if isinstance(space, Discrete):
        return jax.ShapeDtypeStruct((), jnp.int32)
    raise EnvContractError(
        f"action_space(params) must be a gymnax Box (continuous actions) or Discrete, got "
        f"{space!r}; actions are arrays, so dict / tuple spaces are not supported"
    )


def _trace(fn, what: str, env_name: str, *args):
    """``jax.eval_shape(fn, *args)`` with an error that says which call broke and how."""
    try:
        return jax.eval_shape(fn, *args)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
            jax.errors.TracerIntegerConversionError, jax.errors.TracerArrayConversionError) as err:
        raise EnvContractError(
            f"{env_name}: {what} turns a traced value into a Python one ({type(err).__name__}). "
            f"rlx traces reset and step with jit, vmap and scan, so the action, state and key are "
            f"arrays without values there: use jnp operations and jnp.where / jax.lax.select "
            f"instead of int(action), float(x) or `if`."
        ) from err
    except EnvContractError:
        raise
    except Exception as err:
        first = (str(err).splitlines() or [""])[0]
        raise EnvContractError(
            f"{env_name}: {what} failed when traced with the inputs the protocol promises "
            f"({type(err).__name__}: {first})"
        ) from err


def _tree_problems(reset_state, step_state) -> list[str]:
    problems = []
    reset_def = jax.tree.structure(reset_state)
    step_def = jax.tree.structure(step_state)
    if reset_def != step_def:
        return [f"structure {reset_def} after reset, {step_def} after step"]
    paths = jax.tree_util.tree_leaves_with_path(reset_state)
    for (path, a), b in zip(paths, jax.tree.leaves(step_state), strict=True):
        if (tuple(a.shape), a.dtype) != (tuple(b.shape), b.dtype):
            problems.append(f"state{jax.tree_util.keystr(path)}: {_describe(a)} after reset, {_describe(b)} after step")
    return problems


def _auto_reset_drift(env, env_params, key, state, action) -> list[str]:
    """For a gymnax ``Environment`` whose ``step`` failed to trace: the fields in which
    ``step_env``'s observation and state differ from ``reset_env``'s (shape or dtype), so the
    refusal names them instead of quoting ``lax.select``. Empty when they agree or cannot be traced."""
    if not (callable(getattr(env, "step_env", None)) and callable(getattr(env, "reset_env", None))):
        return []
    try:
        reset_obs, reset_state = jax.eval_shape(lambda k: env.reset_env(k, env_params), key)
        step_obs, step_state = jax.eval_shape(lambda k, s, a: env.step_env(k, s, a, env_params)[:2], key, state, action)
    except Exception:
        return []
    problems = []
    if isinstance(reset_obs, jax.ShapeDtypeStruct) and isinstance(step_obs, jax.ShapeDtypeStruct):
        if (tuple(reset_obs.shape), reset_obs.dtype) != (tuple(step_obs.shape), step_obs.dtype):
            problems.append(f"observation: {_describe(reset_obs)} from reset_env, {_describe(step_obs)} from step_env")
    for line in _tree_problems(reset_state, step_state):
        problems.append(line.replace("after reset", "from reset_env").replace("after step", "from step_env"))
    return problems


def _is_scalar(x, kinds: str) -> bool:
    return isinstance(x, jax.ShapeDtypeStruct) and x.shape == () and np.dtype(x.dtype).kind in kinds


def check_env_contract(env, env_params=None) -> EnvSignature:
    """Check that ``env`` keeps the protocol of this module; raise :class:`EnvContractError` if not.

    ``reset`` and ``step`` are traced once with ``jax.eval_shape`` (shapes only, nothing runs),
    so this is cheap and happens before any compilation. Returns the spaces and the
    observation's shape and dtype.
    """
    name = _name(env)
    missing = [m for m in ("reset", "step", "action_space", "observation_space") if not callable(getattr(env, m, None))]
    if missing:
        raise EnvContractError(
            f"{name} lacks {', '.join(missing)}: an environment needs reset(key, params), "
            f"step(key, state, action, params), action_space(params) and observation_space(params) "
            f"(the gymnax 1.0 interface; subclass gymnax.environments.environment.Environment)"
        )
    if env_params is None:
        env_params = getattr(env, "default_params", None)
        if env_params is None:
            raise EnvContractError(f"{name} has no default_params; pass env_params")
    limit = getattr(env_params, "max_steps_in_episode", None)
    if limit is None or isinstance(limit, jax.core.Tracer):
        raise EnvContractError(
            f"{name}: params ({type(env_params).__name__}) need an integer field max_steps_in_episode "
            f"(the time limit, which also bounds the evaluation episodes)"
        )
    try:
        if int(limit) < 1 or int(limit) != limit:
            raise ValueError
    except (TypeError, ValueError):
        raise EnvContractError(f"{name}: params.max_steps_in_episode must be an integer >= 1, got {limit!r}") from None

    action_space = env.action_space(env_params)
    action = abstract_action(action_space)
    obs_space = env.observation_space(env_params)
    if not isinstance(obs_space, (Box, Discrete)):
        raise EnvContractError(
            f"{name}: observation_space(params) must be a gymnax Box (observations are one array) "
            f"or Discrete, got {obs_space!r}"
        )
    space_shape = tuple(int(d) for d in obs_space.shape)

    key = jax.random.PRNGKey(0)
    # params are closed over, as in training (a field used for a shape stays a Python value)
    reset_out = _trace(lambda k: env.reset(k, env_params), "reset(key, params)", name, key)
    if not isinstance(reset_out, (tuple, list)) or len(reset_out) != 2:
        raise EnvContractError(f"{name}: reset(key, params) must return {_RESET_RETURNS}, got {_describe(reset_out)}")
    obs, state = reset_out
    if not isinstance(obs, jax.ShapeDtypeStruct):
        raise EnvContractError(
            f"{name}: reset's observation must be one array, got {type(obs).__name__} "
            f"(flatten dict or tuple observations into one array)"
        )
    if tuple(obs.shape) != space_shape:
        raise EnvContractError(
            f"{name}: reset's observation has shape {tuple(obs.shape)}, but observation_space(params).shape "
            f"is {space_shape}; they must agree"
        )

    try:
        step_out = _trace(lambda k, s, a: env.step(k, s, a, env_params), "step(key, state, action, params)", name, key, state, action)
    except EnvContractError as err:
        drift = _auto_reset_drift(env, env_params, key, state, action)
        if drift:
            raise EnvContractError(
                f"{name}: step_env returns something else than reset_env, so the auto-reset (which picks "
                f"one or the other) cannot be traced:\n  " + "\n  ".join(drift[:8])
                + "\nobservation and state must keep one shape and dtype across reset_env and step_env"
            ) from err
        raise
    if not isinstance(step_out, (tuple, list)) or len(step_out) != 6:
        count = len(step_out) if isinstance(step_out, (tuple, list)) else 1
        hint = ""
        if count == 5:
            hint = (" Five values (obs, state, reward, done, info) is the gymnax 0.0.x interface: "
                    "upgrade to gymnax >= 1.0 or return terminated and truncated apart.")
        elif count == 4:
            hint = " Four values (obs, reward, done, info) is the old gym interface, which keeps state on the object."
        raise EnvContractError(f"{name}: step(key, state, action, params) must return 6 values {_STEP_RETURNS}, got {count}.{hint}")
    next_obs, next_state, reward, terminated, truncated, info = step_out
    if not isinstance(next_obs, jax.ShapeDtypeStruct) or (tuple(next_obs.shape), next_obs.dtype) != (tuple(obs.shape), obs.dtype):
        raise EnvContractError(
            f"{name}: the observation changes between reset ({_describe(obs)}) and step ({_describe(next_obs)}); "
            f"it must keep one shape and dtype"
        )
    problems = _tree_problems(state, next_state)
    if problems:
        raise EnvContractError(
            f"{name}: step must return a state like reset's (same pytree, shapes and dtypes):\n  " + "\n  ".join(problems[:8])
        )
    if not _is_scalar(reward, "fiu"):
        raise EnvContractError(f"{name}: step's reward must be a scalar number, got {_describe(reward)}")
    for label, flag in (("terminated", terminated), ("truncated", truncated)):
        if not _is_scalar(flag, "b"):
            raise EnvContractError(
                f"{name}: step's {label} must be a scalar bool, got {_describe(flag)} "
                f"(terminated and truncated are kept apart: a value target bootstraps through truncation only)"
            )
    if not isinstance(info, dict):
        raise EnvContractError(f"{name}: step's info must be a dict, got {type(info).__name__}")
    final = info.get("final_observation")
    if final is None:
        raise EnvContractError(
            f"{name}: step's info lacks 'final_observation'. step must reset by itself when an episode "
            f"ends and keep the episode's last observation in info['final_observation'] (what a value "
            f"target bootstraps from after a truncation); gymnax's Environment.step does both"
        )
    if not isinstance(final, jax.ShapeDtypeStruct) or tuple(final.shape) != tuple(obs.shape):
        raise EnvContractError(
            f"{name}: info['final_observation'] must have the observation's shape {tuple(obs.shape)}, got {_describe(final)}"
        )
    return EnvSignature(obs_space, action_space, tuple(obs.shape), np.dtype(obs.dtype), tuple(sorted(map(str, info))))


def steps_without_reset(env) -> bool:
    """True for a gymnax ``Environment`` that keeps gymnax's own ``step``: such an env can be
    stepped without its auto-reset (:func:`step_without_reset`), so the state an episode ends in
    can be shown (videos, the Gymnasium wrapper's ``render``)."""
    from gymnax.environments.environment import Environment

    return isinstance(env, Environment) and type(env).step is Environment.step


def step_without_reset(env, key, state, action, params):
    """One step of a gymnax ``Environment`` without the auto-reset:
    ``(obs, state, reward, terminated, truncated, info)``, where ``obs`` / ``state`` are the true
    ones after the step even when the episode ended. The key is split as gymnax's ``step`` does,
    so the transition equals that of ``env.step`` with the same key."""
    k_step, _ = jax.random.split(key)
    obs, state, reward, terminated, info = env.step_env(k_step, state, action, params)
    truncated = env.is_truncated(state, params)
    return obs, state, reward, terminated, truncated, {**info, "terminated": terminated, "truncated": truncated}
