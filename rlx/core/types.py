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
