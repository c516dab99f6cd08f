"""Network building blocks shared by the agents (flax.linen)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": nn.tanh,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "elu": nn.elu,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}") from None


# Variance-scaling initialisers only: an orthogonal initialiser puts a batched QR into the
# training program when seeds are vmapped, which can wedge XLA on CPU (DESIGN.md, pitfalls).
default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class MLP(nn.Module):
    """Fully connected network: hidden layers with an activation, then a linear output."""

    hidden_sizes: Sequence[int]
    out_size: int
    activation: str = "relu"
    kernel_init: Callable = default_kernel_init

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = activation(self.activation)
        for width in self.hidden_sizes:
            x = act(nn.Dense(width, kernel_init=self.kernel_init)(x))
        return nn.Dense(self.out_size, kernel_init=self.kernel_init)(x)


class Ensemble(nn.Module):
    """``num`` independent copies of ``module`` evaluated on the same input (nn.vmap).

    Outputs gain a leading axis of size ``num``; parameters gain the same leading axis, so an
    ensemble of critics costs one batched matmul per layer instead of ``num`` small ones.
    """

    module: type[nn.Module]
    num: int
    module_kwargs: dict

    @nn.compact
    def __call__(self, *args):
        batched = nn.vmap(
            self.module,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num,
        )
        return batched(**self.module_kwargs, name="members")(*args)


class QNetwork(nn.Module):
    """Q(s, a) for continuous actions: an MLP on the concatenated observation and action."""

    hidden_sizes: Sequence[int]
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs.reshape(obs.shape[:-1] + (-1,)), action], axis=-1)
        return MLP(self.hidden_sizes, 1, self.activation)(x)[..., 0]
