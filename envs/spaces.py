"""Small questions agents ask about an environment's spaces and limits.

Spaces are gymnax's own (`gymnax.environments.spaces.Box` / `Discrete`), so gymnax
environments need no conversion.
"""

from __future__ import annotations

import math

from gymnax.environments.spaces import Box, Discrete

__all__ = ["Box", "Discrete", "action_dim", "episode_limit", "is_continuous", "obs_shape"]


def is_continuous(space) -> bool:
    """True for a Box (continuous) action space, False for Discrete."""
    if isinstance(space, Box):
        return True
    if isinstance(space, Discrete):
        return False
    raise TypeError(f"expected a Box or Discrete space, got {space!r}")


def action_dim(space) -> int:
    """Width of a policy's action output: prod(shape) for a Box, the number of choices for a
    Discrete."""
    if isinstance(space, Box):
        return int(math.prod(space.shape))
    if isinstance(space, Discrete):
        return int(space.n)
    raise TypeError(f"expected a Box or Discrete space, got {space!r}")


def obs_shape(env, params) -> tuple[int, ...]:
    """Shape of one environment's observation (no batch axis, also for a VecEnv)."""
    return tuple(int(d) for d in env.observation_space(params).shape)


def episode_limit(env, params) -> int:
    """Most steps an episode can last, to size in-graph evaluation loops.

    Reads `params.max_steps_in_episode` (gymnax params and the brax adapter's params carry it),
    so `params` must be concrete here, not traced.
    """
    del env  # the limit lives in the params; the argument keeps call sites uniform
    limit = getattr(params, "max_steps_in_episode", None)
    if limit is None:
        raise ValueError(
            f"{type(params).__name__} has no field max_steps_in_episode; cannot bound an episode"
        )
    return int(limit)
