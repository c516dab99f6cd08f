"""Brax environments behind the gymnax 1.0 interface.

Brax's own training wrappers fold the time limit into `done` and return the reset observation
after an auto-reset, which loses what an off-policy target needs. This adapter keeps them
apart: `terminated` is brax's `done` (a real end such as falling), `truncated` is the time
limit reached without termination, and `info["final_observation"]` is the last observation
before the auto-reset.

brax is imported only when a brax environment is made, so rlx works without it. Its import
and its environments' construction are quiet: mujoco's "Failed to import warp" / "Failed to
import mujoco_warp" lines (warp is an optional GPU backend rlx does not use), brax's "not
actively being maintained" warning and jaxopt's deprecation warning are held back;
``RLX_VERBOSE_IMPORTS=1`` shows them.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import re
import sys
import warnings
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments.spaces import Box

__all__ = [
    "BRAX_BACKENDS",
    "DEFAULT_BACKEND",
    "BraxAdapter",
    "BraxParams",
    "BraxState",
    "brax_env_names",
    "make_brax",
]

BRAX_BACKENDS = ("generalized", "positional", "spring", "mjx")
# spring compiled fastest on a 2-core CPU for every brax env we timed (inverted_pendulum
# 3 s, hopper / halfcheetah 6.5 s, against 5-10 s for the other backends) and runs fastest.
DEFAULT_BACKEND = "spring"

_INSTALL_HINT = 'brax environments need the brax extra: pip install "rlx[brax]"'


@struct.dataclass
class BraxParams:
    """Parameters of an adapted brax environment: only its time limit."""

    max_steps_in_episode: int = 1000


@struct.dataclass
class BraxState:
    """The brax State and the number of steps taken in the current episode."""

    brax_state: Any
    time: jax.Array  # int32


def _select(pred: jax.Array, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class BraxAdapter:
    """A brax `Env` (unwrapped: no EpisodeWrapper / AutoResetWrapper) with the gymnax 1.0
    interface: unbatched, float32, auto-reset on terminated | truncated.

    Actions are clipped to [-1, 1], the range every brax environment is written for.
    """

    def __init__(self, brax_env, episode_length: int = 1000):
        if int(episode_length) < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        self.brax_env = brax_env
        self.episode_length = int(episode_length)
        # Shapes from an abstract trace: an eager brax reset runs op by op and is slow.
        reset_shape = jax.eval_shape(brax_env.reset, jax.random.key(0))
        if not hasattr(reset_shape.obs, "shape"):
            raise TypeError("BraxAdapter supports array observations, not dictionaries")
        self._obs_shape = tuple(reset_shape.obs.shape)
        self._action_size = int(brax_env.action_size)

    @property
    def name(self) -> str:
        return type(self.brax_env).__name__

    @property
    def default_params(self) -> BraxParams:
        return BraxParams(max_steps_in_episode=self.episode_length)

    @property
    def num_actions(self) -> int:
        return self._action_size

    def _reset(self, key: jax.Array) -> tuple[jax.Array, BraxState]:
        brax_state = self.brax_env.reset(key)
        brax_state = brax_state.replace(
            reward=jnp.asarray(brax_state.reward, jnp.float32),
            done=jnp.asarray(brax_state.done, jnp.float32),
        )
        obs = jnp.asarray(brax_state.obs, jnp.float32)
        return obs, BraxState(brax_state=brax_state, time=jnp.zeros((), jnp.int32))

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: BraxParams | None = None):
        del params  # the time limit does not affect the initial state
        return self._reset(key)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: BraxState, action: jax.Array, params=None):
        params = self.default_params if params is None else params
        action = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
        next_brax = self.brax_env.step(state.brax_state, action)
        next_brax = next_brax.replace(
            reward=jnp.asarray(next_brax.reward, jnp.float32),
            done=jnp.asarray(next_brax.done, jnp.float32),
        )
        next_obs = jnp.asarray(next_brax.obs, jnp.float32)
        time = state.time + 1
        terminated = next_brax.done > 0.5
        truncated = jnp.logical_and(time >= params.max_steps_in_episode, ~terminated)
        done = jnp.logical_or(terminated, truncated)

        # brax's step needs no randomness, so the whole key goes to the reset.
        reset_obs, reset_state = self._reset(key)
        stepped = BraxState(brax_state=next_brax, time=time)
        new_state = _select(done, reset_state, stepped)
        obs = jnp.where(done, reset_obs, next_obs)
        info = {
            "final_observation": next_obs,
            "terminated": terminated,
            "truncated": truncated,
            "discount": 1.0 - terminated.astype(jnp.float32),
        }
        return obs, new_state, next_brax.reward, terminated, truncated, info

    def action_space(self, params: BraxParams | None = None) -> Box:
        return Box(low=-1.0, high=1.0, shape=(self._action_size,), dtype=jnp.float32)

    def observation_space(self, params: BraxParams | None = None) -> Box:
        return Box(low=-jnp.inf, high=jnp.inf, shape=self._obs_shape, dtype=jnp.float32)

    def __repr__(self) -> str:
        backend = getattr(self.brax_env, "backend", "?")
        return f"BraxAdapter({self.name}, backend={backend}, episode_length={self.episode_length})"


# What brax and its dependencies say on import or construction that is no news to an rlx user.
_NOISE_LINE = re.compile(r"^Failed to import (mujoco_)?warp\b")
_NOISE_WARNINGS = (
    (UserWarning, r"Brax System, piplines and environments are not actively being maintained"),
    (DeprecationWarning, r"JAXopt is no longer maintained"),
)


def verbose_imports() -> bool:
    """``RLX_VERBOSE_IMPORTS=1`` (any value but empty or 0): let brax's import messages through."""
    return os.environ.get("RLX_VERBOSE_IMPORTS", "").strip() not in ("", "0")


@contextlib.contextmanager
def quiet_brax():
    """Hold back the known import and construction messages of brax (module docstring); any
    other printed line still reaches stdout, any other warning is still raised."""
    if verbose_imports():
        yield
        return
    captured = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(captured):
            for category, message in _NOISE_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield
    finally:
        kept = [line for line in captured.getvalue().splitlines(keepends=True) if not _NOISE_LINE.match(line)]
        if kept:
            sys.stdout.write("".join(kept))


def _import_brax_envs():
    try:
        with quiet_brax():
            import brax.envs as brax_envs
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return brax_envs


def brax_env_names() -> list[str]:
    """Names in brax's environment registry; [] when brax is not installed."""
    try:
        brax_envs = _import_brax_envs()
    except ImportError:
        return []
    return sorted(brax_envs._envs)


def _constructor_kwargs(env_class) -> set[str]:
    names: set[str] = set()
    for klass in inspect.getmro(env_class):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in (
                "self",
                "sys",
            ):
                names.add(p.name)
    return names


def _class_default_backend(env_class) -> str | None:
    parameter = inspect.signature(env_class.__init__).parameters.get("backend")
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return parameter.default


def make_brax(name: str, *, backend: str | None = None, episode_length: int = 1000, **kwargs):
    """Build brax environment `name` behind a BraxAdapter; returns (env, params).

    `backend` defaults to DEFAULT_BACKEND, or to the environment's own default when it does
    not support that one (brax's swimmer runs on generalized only). Other keyword arguments
    go to the brax environment's constructor.
    """
    brax_envs = _import_brax_envs()
    if name not in brax_envs._envs:
        raise KeyError(name)
    env_class = brax_envs._envs[name]
    if backend is not None and backend not in BRAX_BACKENDS:
        raise ValueError(f"unknown brax backend {backend!r}; choose one of {list(BRAX_BACKENDS)}")
    valid = _constructor_kwargs(env_class)
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise ValueError(
            f"brax/{name} has no option {unknown[0]!r}; valid options: "
            f"{sorted(valid | {'backend', 'episode_length'})}"
        )
    with quiet_brax():  # brax warns on every construction that it is not maintained
        if backend is not None:
            brax_env = env_class(backend=backend, **kwargs)
        else:
            try:
                brax_env = env_class(backend=DEFAULT_BACKEND, **kwargs)
            except ValueError:
                fallback = _class_default_backend(env_class)
                if fallback is None or fallback == DEFAULT_BACKEND:
                    raise
                brax_env = env_class(backend=fallback, **kwargs)
    env = BraxAdapter(brax_env, episode_length=episode_length)
    return env, env.default_params
