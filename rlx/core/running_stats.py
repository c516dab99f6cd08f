"""Running mean and variance of a stream of arrays, for observation normalization.

Batches are merged with the parallel combination of moments of Chan, Golub & LeVeque
(1979): with counts n_a, n_b, means m_a, m_b, and sums of squared deviations M_a, M_b,

    n = n_a + n_b,   delta = m_b - m_a,
    m = m_a + delta * n_b / n,
    M = M_a + M_b + delta^2 * n_a * n_b / n.

It never forms E[x^2] - E[x]^2, so a large common offset does not cancel away the variance
in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from rlx.core import parallel


@struct.dataclass
class RunningMeanStd:
    """Population mean and variance of every sample seen so far (float32, per feature)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array  # scalar float32: number of samples merged in


def init_running_stats(shape) -> RunningMeanStd:
    """Statistics of no data: mean 0, var 1, count 0.

    The count starts at exactly 0 (not a small epsilon) so that after the first update the
    statistics are exactly the sample moments of the data seen; var 1 makes `normalize` an
    identity (up to clipping) before any data arrive.
    """
    shape = tuple(shape)
    return RunningMeanStd(
        mean=jnp.zeros(shape, jnp.float32),
        var=jnp.ones(shape, jnp.float32),
        count=jnp.zeros((), jnp.float32),
    )


def update_running_stats(stats: RunningMeanStd, batch: jax.Array) -> RunningMeanStd:
    """Merge a batch (leading axis = samples) into `stats` (Chan et al. combination)."""
    batch = jnp.asarray(batch, jnp.float32)
    if batch.shape[1:] != stats.mean.shape:
        raise ValueError(
            f"batch of shape {batch.shape} does not match statistics of shape "
            f"{stats.mean.shape}; the batch needs a leading sample axis"
        )
    batch_count = batch.shape[0]
    if batch_count == 0:
        return stats
    batch_mean = jnp.mean(batch, axis=0)
    # Two-pass variance of the batch itself: stable for a large offset.
    batch_m2 = jnp.sum(jnp.square(batch - batch_mean), axis=0)
    # Data-parallel training: the batch is every device's (identity on one device).
    batch_count, batch_mean, batch_m2 = parallel.merge_moments(batch_count, batch_mean, batch_m2)

    count = stats.count + batch_count
    weight = batch_count / count  # count >= batch_count > 0
    delta = batch_mean - stats.mean
    mean = stats.mean + delta * weight
    m2 = stats.var * stats.count + batch_m2 + jnp.square(delta) * stats.count * weight
    return RunningMeanStd(mean=mean, var=m2 / count, count=count)


def normalize(
    stats: RunningMeanStd, x: jax.Array, clip: float = 10.0, epsilon: float = 1e-8
) -> jax.Array:
    """(x - mean) / sqrt(var + epsilon), clipped to [-clip, clip] so outliers stay bounded."""
    z = (jnp.asarray(x, jnp.float32) - stats.mean) / jnp.sqrt(stats.var + epsilon)
    return jnp.clip(z, -clip, clip)
