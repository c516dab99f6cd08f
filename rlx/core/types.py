"""Shared data types."""

from __future__ import annotations

from typing import NamedTuple

import jax


class Transition(NamedTuple):
    """One environment step as stored for off-policy learning.

    ``next_obs`` is the true successor observation: after an automatic reset it is the last
    observation of the finished episode (``info["final_observation"]``), not the reset one.
    ``terminated`` and ``truncated`` are kept apart: a value target bootstraps through a
    time-limit truncation and not through a termination.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    truncated: jax.Array


class Dataset(NamedTuple):
    """An offline dataset in D4RL's layout, one row per transition (:mod:`rlx.buffers.dataset`
    saves, loads, checks and samples it)."""

    observations: jax.Array  # (N, obs_dim) float32
    actions: jax.Array  # (N, act_dim) float32
    rewards: jax.Array  # (N,) float32
    next_observations: jax.Array  # (N, obs_dim) float32
    terminals: jax.Array  # (N,) bool: the episode ended in a terminal state (no bootstrap)
    timeouts: jax.Array  # (N,) bool: the episode was cut by a time limit (bootstrap)

    @property
    def size(self) -> int:
        return int(self.observations.shape[0])
