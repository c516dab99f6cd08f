"""Running mean/variance against numpy over the concatenated data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.core.running_stats import (
    RunningMeanStd,
    init_running_stats,
    normalize,
    update_running_stats,
)

pytestmark = pytest.mark.timeout(120)

update = jax.jit(update_running_stats)


def feed(stats, batches):
    for batch in batches:
        stats = update(stats, jnp.asarray(batch, jnp.float32))
    return stats


def test_init_is_empty_and_normalize_is_identity_before_data():
    stats = init_running_stats((2, 3))
    assert isinstance(stats, RunningMeanStd)
    assert stats.mean.shape == stats.var.shape == (2, 3)
    assert stats.mean.dtype == stats.var.dtype == stats.count.dtype == jnp.float32
    assert float(stats.count) == 0.0
    x = jnp.arange(6.0).reshape(2, 3) - 2.0
    np.testing.assert_allclose(normalize(stats, x), x, rtol=1e-6)


def test_several_batches_match_numpy_over_concatenation():
    rng = np.random.default_rng(0)
    # Unequal batch sizes (incl. a single sample) and shifting distributions.
    batches = [
        rng.normal(loc=i, scale=1 + i, size=(n, 4)).astype(np.float32)
        for i, n in enumerate([7, 1, 32, 5, 100])
    ]
    stats = feed(init_running_stats((4,)), batches)
    data = np.concatenate(batches).astype(np.float64)
    assert float(stats.count) == data.shape[0]
    np.testing.assert_allclose(stats.mean, data.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.var, data.var(0), rtol=1e-5, atol=1e-5)
    assert stats.mean.dtype == jnp.float32


def test_first_update_gives_exact_sample_moments():
    batch = np.array([[1.0], [2.0], [6.0]], np.float32)
    stats = update(init_running_stats((1,)), batch)
    np.testing.assert_allclose(stats.mean, [3.0])
    np.testing.assert_allclose(stats.var, [14.0 / 3.0], rtol=1e-6)


def test_large_offset_is_numerically_stable():
    # A naive E[x^2] - E[x]^2 in float32 loses the variance entirely at this offset
    # (x^2 ~ 1e10, float32 spacing there ~ 1e3).
    rng = np.random.default_rng(1)
    batches = [(1e5 + rng.normal(scale=2.0, size=(64, 3))).astype(np.float32) for _ in range(10)]
    stats = feed(init_running_stats((3,)), batches)
    data = np.concatenate(batches).astype(np.float64)  # the float32 samples, exactly
    np.testing.assert_allclose(stats.mean, data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.var, data.var(0), rtol=1e-3)
    naive = np.mean(data.astype(np.float32) ** 2, 0) - np.mean(data.astype(np.float32), 0) ** 2
    assert np.abs(naive - data.var(0)).max() > 0.1 * data.var(0).min()  # the trap is real


def test_normalize_standardizes_and_clips():
    stats = RunningMeanStd(
        mean=jnp.array([1.0, -2.0]), var=jnp.array([4.0, 0.25]), count=jnp.array(10.0)
    )
    np.testing.assert_allclose(normalize(stats, jnp.array([3.0, -1.5])), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(
        normalize(stats, jnp.array([1e3, -1e3]), clip=5.0), [5.0, -5.0], rtol=1e-6
    )
    # A constant feature (var 0) maps to 0, not nan.
    flat = RunningMeanStd(mean=jnp.zeros(1), var=jnp.zeros(1), count=jnp.array(3.0))
    np.testing.assert_array_equal(normalize(flat, jnp.zeros(1)), [0.0])


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="leading sample axis"):
        update_running_stats(init_running_stats((3,)), jnp.zeros((3,)))


def test_update_is_vmappable_over_independent_runs():
    stats = jax.vmap(lambda _: init_running_stats((2,)))(jnp.arange(4))
    batches = jnp.arange(4 * 5 * 2, dtype=jnp.float32).reshape(4, 5, 2)
    stats = jax.vmap(update_running_stats)(stats, batches)
    np.testing.assert_allclose(stats.mean, np.asarray(batches).mean(1), rtol=1e-6)
    np.testing.assert_allclose(stats.count, [5.0] * 4)
