"""Offline datasets: the D4RL keys as device arrays, plus a metadata record.

A :class:`Dataset` is a pytree of arrays with a leading transition axis ``N``; it lives on the
device and minibatches are sampled inside compiled programs (:func:`sample`). ``terminals`` and
``timeouts`` are kept apart as in D4RL: a value target bootstraps through a timeout (time-limit
truncation) and not through a terminal. ``next_observations`` is the true successor, also on the
last step of an episode.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rlx.core.types import Transition


class Dataset(NamedTuple):
    observations: jax.Array  # (N, obs_dim) float32
    actions: jax.Array  # (N, act_dim) float32
    rewards: jax.Array  # (N,) float32
    next_observations: jax.Array  # (N, obs_dim) float32
    terminals: jax.Array  # (N,) bool: the episode ended in a terminal state (no bootstrap)
    timeouts: jax.Array  # (N,) bool: the episode was cut by a time limit (bootstrap)

    @property
    def size(self) -> int:
        return int(self.observations.shape[0])


def as_transitions(dataset: Dataset) -> Transition:
    """The dataset as :class:`rlx.core.types.Transition` (the replay buffer's type)."""
    return Transition(
        obs=dataset.observations,
        action=dataset.actions,
        reward=dataset.rewards,
        next_obs=dataset.next_observations,
        terminated=dataset.terminals,
        truncated=dataset.timeouts,
    )


def sample(dataset: Dataset, key: jax.Array, batch_size: int) -> Transition:
    """A uniform minibatch (with replacement) of ``batch_size`` transitions; jit-friendly."""
    idx = jax.random.randint(key, (batch_size,), 0, dataset.observations.shape[0])
    return jax.tree.map(lambda x: jnp.take(x, idx, axis=0), as_transitions(dataset))
