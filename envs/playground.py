"""MuJoCo Playground environments behind the gymnax 1.0 interface: ``playground/<EnvName>``.

Playground (``pip install "rlx[playground]"``, the ``playground`` package, imported as
``mujoco_playground``) ships the DeepMind Control Suite and a set of legged-robot locomotion
tasks written in MJX. This adapter wraps the *bare* Playground environment, not
``wrap_for_brax_training``: Playground's auto-reset wrapper returns the reset observation after
an episode ends and folds the time limit into ``done``, which loses what a value target needs.
Here, as in :mod:`rlx.envs.brax_adapter`:

* ``terminated`` is the environment's own ``done`` (a real end: a fall, a NaN in the physics);
* ``truncated`` is the time limit (``episode_length`` of the environment's config, in agent
  steps after ``action_repeat``), and also a ``done`` that the environment itself marks as a
  time-out in ``info["time_out"]`` (Playground's convention for "bootstrap through this one");
* ``info["final_observation"]`` is the last observation of the finished episode, before the
  auto-reset that rlx's contract asks for.

Which environments: every DM Control Suite task, and the locomotion tasks. All locomotion tasks
build their robot from ``mujoco_menagerie`` meshes, which Playground clones from GitHub the first
time one is loaded; rlx never downloads anything while making an environment, so a locomotion task
is refused, before anything is imported or compiled, unless that folder is already there (the
error says where, and how to fetch it). Manipulation tasks are not adapted.

Physics runs on MJX's JAX implementation (``impl="jax"``) by default: Playground's configs ask for
``"warp"``, which needs an NVIDIA GPU; pass ``impl="warp"`` there. Other keyword arguments
override fields of the environment's Playground config (``episode_length=200``,
``ctrl_dt=0.02``, ...). A dict observation (the locomotion tasks: ``state`` and
``privileged_state``) is reduced to one array, ``obs_key`` (default ``"state"``, what the policy
sees in Playground's own PPO configs).

The environment names are read from Playground's source without importing it
(:func:`playground_env_names`), so ``rlx envs`` lists them at no cost; mujoco and Playground are
imported only when one is made.
"""

from __future__ import annotations

import ast
import importlib.util
import math
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments.spaces import Box

from .brax_adapter import quiet_brax

__all__ = [
    "DEFAULT_IMPL",
    "PlaygroundAdapter",
    "PlaygroundParams",
    "PlaygroundState",
    "PlaygroundUnavailableError",
    "make_playground",
    "playground_env_names",
]

DEFAULT_IMPL = "jax"
_INSTALL_HINT = 'Playground environments need the playground extra: pip install "rlx[playground]"'
# The suites of mujoco_playground._src this adapter serves, and whether their tasks need
# mujoco_menagerie (fetched by Playground with `git clone` on first load).
_SUITES = {"dm_control_suite": False, "locomotion": True}
_MENAGERIE_URL = "https://github.com/deepmind/mujoco_menagerie.git"


class PlaygroundUnavailableError(RuntimeError):
    """A Playground environment that cannot be made here (a download it needs, a missing package)."""


@struct.dataclass
class PlaygroundParams:
    """Parameters of an adapted Playground environment: only its time limit (agent steps)."""

    max_steps_in_episode: int = 1000


@struct.dataclass
class PlaygroundState:
    """Playground's State and the number of agent steps taken in the current episode.

    Zero-size arrays of the State (MJX's ``Data`` has some, e.g. ``act`` for a model without
    actuator activations) are carried as None: they hold nothing, and checkpoints (orbax) cannot
    save them. The adapter rebuilds them before each step."""

    pg_state: Any
    time: jax.Array  # int32


# ---------------------------------------------------------------------------------------------
# Names, read from the installed package's source (no import of mujoco or jax code)
# ---------------------------------------------------------------------------------------------
def _package_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("mujoco_playground")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _registry_keys(path: Path) -> list[str] | None:
    """The literal string keys of the module-level ``_envs = {...}`` in ``path``; None if absent."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_envs" for t in node.targets):
            if isinstance(node.value, ast.Dict) and all(
                isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.value.keys
            ):
                return [k.value for k in node.value.keys]
    return None


def _suite_of() -> dict[str, str] | None:
    """{env name: suite} of the adapted suites; None when Playground is not installed or its
    registries are not literal dicts."""
    root = _package_dir()
    if root is None:
        return None
    out: dict[str, str] = {}
    for suite in _SUITES:
        keys = _registry_keys(root / "_src" / suite / "__init__.py")
        if keys is None:
            return None
        out.update({name: suite for name in keys})
    return out


def playground_env_names() -> list[str]:
    """Names of the adapted Playground environments (without the ``playground/`` prefix); []
    when Playground is not installed. Read from its source: nothing is imported."""
    return sorted(_suite_of() or {})


def menagerie_path() -> Path | None:
    """Where Playground looks for (and would clone) mujoco_menagerie."""
    root = _package_dir()
    return None if root is None else root / "external_deps" / "mujoco_menagerie"


def _refuse_downloads(name: str, suite: str) -> None:
    if not _SUITES[suite]:
        return
    path = menagerie_path()
    if path is not None and path.is_dir() and any(path.iterdir()):
        return
    raise PlaygroundUnavailableError(
        f"playground/{name} needs the mujoco_menagerie robot assets, which Playground downloads "
        f"(git clone {_MENAGERIE_URL}) the first time a {suite} task is loaded; rlx does not download "
        f"while making an environment. Fetch them once yourself, then make it again:\n"
        f"  git clone {_MENAGERIE_URL} {path}\n"
        f"(Playground pins a commit: mujoco_playground._src.mjx_env.MENAGERIE_COMMIT_SHA). The DM Control "
        f"Suite tasks need no download: {', '.join(n for n, s in sorted((_suite_of() or {}).items()) if s == 'dm_control_suite')}"
    )


# ---------------------------------------------------------------------------------------------
# The adapter
# ---------------------------------------------------------------------------------------------
def _select(pred: jax.Array, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class PlaygroundAdapter:
    """A bare Playground ``MjxEnv`` with the gymnax 1.0 interface: unbatched, float32,
    auto-reset on terminated | truncated with the true last observation kept.

    Actions are clipped to [-1, 1], the range Playground's tasks are written for.
    ``action_repeat`` repeats each action that many control steps, summing the rewards; the
    episode ends on a ``done`` in any of them.
    """

    def __init__(self, pg_env, *, name: str, episode_length: int, action_repeat: int = 1, obs_key: str = "state"):
        if int(episode_length) < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        if int(action_repeat) < 1:
            raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
        self.pg_env = pg_env
        self._name = name
        self.action_repeat = int(action_repeat)
        # Playground's EpisodeWrapper counts control steps: the agent sees ceil(length / repeat).
        self.episode_length = math.ceil(int(episode_length) / self.action_repeat)
        self.obs_key = obs_key
        reset_shape = jax.eval_shape(pg_env.reset, jax.random.key(0))  # abstract: nothing compiles
        obs = reset_shape.obs
        if isinstance(obs, dict):
            if obs_key not in obs:
                raise TypeError(f"playground/{name} observes a dict with keys {sorted(obs)}; obs_key={obs_key!r} is not one")
            obs = obs[obs_key]
        if not hasattr(obs, "shape") or len(obs.shape) != 1:
            raise TypeError(f"playground/{name}: rlx adapts vector observations, got {obs}")
        self._obs_shape = tuple(obs.shape)
        self._action_size = int(pg_env.action_size)
        self._has_time_out = "time_out" in reset_shape.info
        self._template, self._treedef = jax.tree.flatten(self._typed(reset_shape))

    @property
    def name(self) -> str:
        return f"playground/{self._name}"

    @property
    def default_params(self) -> PlaygroundParams:
        return PlaygroundParams(max_steps_in_episode=self.episode_length)

    @property
    def num_actions(self) -> int:
        return self._action_size

    def _observation(self, pg_state) -> jax.Array:
        obs = pg_state.obs[self.obs_key] if isinstance(pg_state.obs, dict) else pg_state.obs
        return jnp.asarray(obs, jnp.float32)

    @staticmethod
    def _typed(pg_state):
        return pg_state.replace(
            reward=jax.ShapeDtypeStruct((), jnp.float32) if isinstance(pg_state.reward, jax.ShapeDtypeStruct)
            else jnp.asarray(pg_state.reward, jnp.float32),
            done=jax.ShapeDtypeStruct((), jnp.float32) if isinstance(pg_state.done, jax.ShapeDtypeStruct)
            else jnp.asarray(pg_state.done, jnp.float32),
        )

    @staticmethod
    def _strip(pg_state):
        """Zero-size arrays -> None (see :class:`PlaygroundState`)."""
        return jax.tree.map(lambda x: None if x.size == 0 else x, pg_state)

    def _restore(self, stripped):
        leaves = jax.tree.leaves(stripped, is_leaf=lambda x: x is None)
        full = [jnp.zeros(t.shape, t.dtype) if x is None else x for x, t in zip(leaves, self._template, strict=True)]
        return jax.tree.unflatten(self._treedef, full)

    def _reset(self, key: jax.Array):
        pg_state = self._typed(self.pg_env.reset(key))
        return self._observation(pg_state), PlaygroundState(pg_state=self._strip(pg_state), time=jnp.zeros((), jnp.int32))

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: PlaygroundParams | None = None):
        del params  # the time limit does not affect the initial state
        return self._reset(key)

    def _physics_step(self, pg_state, action):
        """``action_repeat`` control steps: rewards summed, ``done`` if any step was done."""
        if self.action_repeat == 1:
            nxt = self.pg_env.step(pg_state, action)
            return nxt, jnp.asarray(nxt.reward, jnp.float32), jnp.asarray(nxt.done, jnp.float32)

        def repeat(carry, _):
            state, total, done = carry
            nxt = self.pg_env.step(state, action)
            return (nxt, total + jnp.asarray(nxt.reward, jnp.float32),
                    jnp.maximum(done, jnp.asarray(nxt.done, jnp.float32))), None

        zero = jnp.zeros((), jnp.float32)
        (nxt, total, done), _ = jax.lax.scan(repeat, (pg_state, zero, zero), None, length=self.action_repeat)
        return nxt, total, done

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: PlaygroundState, action: jax.Array, params=None):
        params = self.default_params if params is None else params
        action = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
        nxt, reward, done = self._physics_step(self._restore(state.pg_state), action)
        nxt = nxt.replace(reward=reward, done=done)
        next_obs = self._observation(nxt)
        time = state.time + 1
        env_done = done > 0.5
        time_out = (jnp.asarray(nxt.info["time_out"], jnp.float32) > 0.5) if self._has_time_out else jnp.array(False)
        terminated = jnp.logical_and(env_done, ~time_out)
        truncated = jnp.logical_and(jnp.logical_or(time >= params.max_steps_in_episode, env_done), ~terminated)
        episode_over = jnp.logical_or(terminated, truncated)

        # The env's step takes no key (its own rng lives in its info), so the whole key goes to the reset.
        reset_obs, reset_state = self._reset(key)
        new_state = _select(episode_over, reset_state, PlaygroundState(pg_state=self._strip(nxt), time=time))
        obs = jnp.where(episode_over, reset_obs, next_obs)
        info = {
            "final_observation": next_obs,
            "terminated": terminated,
            "truncated": truncated,
            "discount": 1.0 - terminated.astype(jnp.float32),
        }
        return obs, new_state, reward, terminated, truncated, info

    def action_space(self, params: PlaygroundParams | None = None) -> Box:
        return Box(low=-1.0, high=1.0, shape=(self._action_size,), dtype=jnp.float32)

    def observation_space(self, params: PlaygroundParams | None = None) -> Box:
        return Box(low=-jnp.inf, high=jnp.inf, shape=self._obs_shape, dtype=jnp.float32)

    def __repr__(self) -> str:
        impl = getattr(getattr(self.pg_env, "_config", None), "impl", "?")
        return f"PlaygroundAdapter({self._name}, impl={impl}, episode_length={self.episode_length})"


def _flat_keys(config, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in config.items():
        keys.add(prefix + key)
        if hasattr(value, "items"):
            keys |= _flat_keys(value, prefix + key + ".")
    return keys


def make_playground(name: str, *, impl: str = DEFAULT_IMPL, obs_key: str = "state", **overrides):
    """Build Playground environment ``name`` (no prefix) behind a :class:`PlaygroundAdapter`;
    returns (env, params).

    ``impl``: MJX implementation, ``"jax"`` (any device) or ``"warp"`` (NVIDIA GPU). Other keyword
    arguments override fields of the environment's Playground config (dotted names for nested
    fields, e.g. ``episode_length=200``). A task that needs a download is refused first, with
    the reason and the command that fetches it.
    """
    suites = _suite_of()
    if suites is None:
        raise ImportError(_INSTALL_HINT)
    if name not in suites:
        raise KeyError(name)
    _refuse_downloads(name, suites[name])
    if impl not in ("jax", "warp"):
        raise ValueError(f"impl must be 'jax' or 'warp', got {impl!r}")
    with quiet_brax():
        try:
            from mujoco_playground import registry
        except ImportError as error:
            raise ImportError(_INSTALL_HINT) from error
        config = registry.get_default_config(name)
        valid = _flat_keys(config)
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(
                f"playground/{name} has no config field {unknown[0]!r}; fields: {sorted(valid | {'impl', 'obs_key'})}"
            )
        if overrides.get("vision", False):
            raise ValueError(f"playground/{name}: vision=True observes pixels; rlx adapts state observations only")
        pg_env = registry.load(name, config_overrides={"impl": impl, **overrides})
    env = PlaygroundAdapter(
        pg_env, name=name, episode_length=int(pg_env._config.episode_length),
        action_repeat=int(getattr(pg_env._config, "action_repeat", 1)), obs_key=obs_key,
    )
    return env, env.default_params
