"""Tanh-squashed diagonal Gaussian, the policy distribution of SAC and DSAC-T.

With u ~ N(mean, std^2) and a = tanh(u), the change of variables gives (algorithms.md, 1.1)

    log pi(a|s) = sum_i [ log N(u_i; mean_i, std_i) - log(1 - tanh(u_i)^2) ]

and log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)) is used because it stays finite where the
naive form underflows (|u| large in float32). Log-probabilities are computed from u, never by
inverting atanh(a).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(u: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """Elementwise log N(u; mean, exp(log_std)^2)."""
    z = (u - mean) * jnp.exp(-log_std)
    return -0.5 * z * z - log_std - _HALF_LOG_2PI


def tanh_log_det_jacobian(u: jax.Array) -> jax.Array:
    """Elementwise log(1 - tanh(u)^2), in the numerically stable form."""
    return 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))


def tanh_gaussian_log_prob(u: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log pi(tanh(u) | s), summed over the last (action) axis."""
    return jnp.sum(gaussian_log_prob(u, mean, log_std) - tanh_log_det_jacobian(u), axis=-1)


def sample_tanh_gaussian(
    key: jax.Array, mean: jax.Array, log_std: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Reparameterised sample a = tanh(mean + std * eps) and its log-probability."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
    return jnp.tanh(u), tanh_gaussian_log_prob(u, mean, log_std)
