"""A fixed-capacity ring replay buffer as pure functions over a pytree.

The buffer lives in the train state, so inserting and sampling are part of the compiled loop.
Any pytree of arrays can be stored (``rlx.core.types.Transition`` for SAC); each leaf gets a
leading axis of size ``capacity``.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ReplayBuffer:
    data: Any  # pytree; every leaf has shape (capacity, ...)
    position: jax.Array  # int32: next slot to write
    size: jax.Array  # int32: number of valid slots (<= capacity)

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0]


def init_buffer(example: Any, capacity: int) -> ReplayBuffer:
    """An empty buffer for items shaped like ``example`` (one item, no batch axis)."""
    if capacity < 1:
        raise ValueError(f"buffer capacity must be >= 1, got {capacity}")
    data = jax.tree.map(
        lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example
    )
    return ReplayBuffer(data=data, position=jnp.int32(0), size=jnp.int32(0))


def _check_items(buffer: ReplayBuffer, items: Any) -> None:
    """Items must be the buffer's pytree with a leading batch axis and the stored item shapes
    (checked when traced): a scatter would otherwise broadcast a (n, 1) leaf into (n, k) slots."""
    per_item = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x)[1:], jnp.result_type(x)), tree)  # noqa: E731
    chex.assert_trees_all_equal_structs(items, buffer.data)
    chex.assert_trees_all_equal_shapes(per_item(items), per_item(buffer.data))
    chex.assert_equal_shape_prefix(jax.tree.leaves(items), 1)


def add_batch(buffer: ReplayBuffer, items: Any) -> ReplayBuffer:
    """Write ``n`` items (leading axis n) at the current position, wrapping around."""
    _check_items(buffer, items)
    capacity = buffer.capacity
    n = jax.tree.leaves(items)[0].shape[0]
    if n > capacity:
        raise ValueError(f"cannot add {n} items to a buffer of capacity {capacity}")
    idx = (buffer.position + jnp.arange(n, dtype=jnp.int32)) % capacity
    data = jax.tree.map(lambda store, x: store.at[idx].set(x.astype(store.dtype)), buffer.data, items)
    return ReplayBuffer(
        data=data,
        position=(buffer.position + n) % capacity,
        size=jnp.minimum(buffer.size + n, capacity),
    )


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Any:
    """``batch_size`` items drawn uniformly with replacement from the written slots only.

    Sampling an empty buffer returns slot 0 (zeros); callers fill the buffer first.
    """
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda store: store[idx], buffer.data)


def add_masked(buffer: ReplayBuffer, items: Any, mask: jax.Array) -> ReplayBuffer:
    """Write only the items whose ``mask`` is True (in order), wrapping around: a FIFO of the
    valid items, with static shapes (the others are dropped by an out-of-range scatter)."""
    _check_items(buffer, items)
    chex.assert_shape(mask, jnp.shape(jax.tree.leaves(items)[0])[:1])
    capacity = buffer.capacity
    mask = mask.astype(bool)
    rank = jnp.cumsum(mask.astype(jnp.int32)) - 1
    idx = jnp.where(mask, (buffer.position + rank) % capacity, capacity)
    data = jax.tree.map(
        lambda store, x: store.at[idx].set(x.astype(store.dtype), mode="drop"), buffer.data, items
    )
    count = jnp.sum(mask.astype(jnp.int32))
    return ReplayBuffer(
        data=data,
        position=(buffer.position + count) % capacity,
        size=jnp.minimum(buffer.size + count, capacity),
    )
