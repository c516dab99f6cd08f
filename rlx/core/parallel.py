"""Data-parallel training: one agent whose environments and minibatches are split over devices.

Every device runs the agent's own ``init`` / ``update`` on its share of the work (``num_envs /
D`` environments, a replay shard of ``1 / D`` of the capacity, minibatches of ``batch_size /
D``) inside ``jax.shard_map`` over a mesh axis. What keeps the D copies one agent is a handful
of cross-device reductions, all in this module and all the identity when no axis is active, so
the single-device program is exactly the program it was:

* :func:`averaged_gradients` wraps an optax optimizer so that its ``update`` first replaces the
  gradients by their mean over the devices, ``g = (1/D) sum_d g_d`` (``lax.pmean``). With equal
  shard sizes this is the gradient of the loss averaged over the global batch, so
  the D optimizers take the same step and the parameters stay replicated;
* :func:`replicated_key` gives every device device 0's key, for parameter initialisation;
* :func:`mean`, :func:`total` and :func:`gather` average metrics, add up counts and collect
  evaluation returns; :func:`standardize` and :func:`merge_moments` compute batch moments over
  the global batch (advantage normalisation, running observation statistics).

The runner (:func:`rlx.run.mesh.make_data_parallel_train`) activates an axis with
:func:`data_parallel` inside the function it hands to ``shard_map``, so the context is set
exactly while that function is traced. ``jax.vmap(..., axis_name=...)`` gives the same
collectives on one device, which is how the tests check the sharded program. One caveat of a
trace-time context: a ``jax.jit``-ed helper whose static arguments compare equal across traces
is taken from jax's cache, so one traced outside the context would come back without its
collectives; the helpers on this path are built per trace (the env wrappers, whose jitted
methods are static in ``self``, are new objects every time ``make_vec_env`` runs).

:func:`shard_config` turns the global config into the config one device runs.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp
import optax

from rlx.core.config import ConfigError

__all__ = [
    "averaged_gradients",
    "axis_name",
    "data_parallel",
    "gather",
    "mean",
    "merge_moments",
    "num_shards",
    "replicated_key",
    "shard_config",
    "standardize",
    "total",
]

_AXIS: contextvars.ContextVar[str | None] = contextvars.ContextVar("rlx_data_parallel_axis", default=None)


@contextlib.contextmanager
def data_parallel(axis: str):
    """While tracing inside this context, the helpers below reduce over mesh axis ``axis``."""
    token = _AXIS.set(axis)
    try:
        yield axis
    finally:
        _AXIS.reset(token)


def axis_name() -> str | None:
    """The active data-parallel axis, or None (single device: every helper is the identity)."""
    return _AXIS.get()


def num_shards() -> int:
    """Number of devices sharing the work (1 without an active axis)."""
    axis = axis_name()
    return 1 if axis is None else jax.lax.axis_size(axis)


def mean(tree):
    """Mean over the devices of every leaf (``lax.pmean``)."""
    axis = axis_name()
    return tree if axis is None else jax.lax.pmean(tree, axis)


def total(tree):
    """Sum over the devices of every leaf (``lax.psum``): env steps, episode counts."""
    axis = axis_name()
    return tree if axis is None else jax.lax.psum(tree, axis)


def gather(x: jax.Array) -> jax.Array:
    """Concatenate ``x`` along its first axis over the devices, in device order."""
    axis = axis_name()
    return x if axis is None else jax.lax.all_gather(x, axis, tiled=True)


def replicated_key(key: jax.Array) -> jax.Array:
    """Device 0's ``key`` on every device: initialise parameters that must be replicated.

    The other devices' keys are dropped, so no key is used twice.
    """
    axis = axis_name()
    if axis is None:
        return key
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):  # typed key: gather its raw data
        data = jax.lax.all_gather(jax.random.key_data(key), axis)[0]
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(key))
    return jax.lax.all_gather(key, axis)[0]


def averaged_gradients(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """``optimizer`` whose ``update`` first averages the gradients over the devices.

    Without an active axis it returns ``optimizer`` itself. The optimizer state is unchanged
    (same ``init``), so single-device and data-parallel checkpoints hold the same structure.
    """
    axis = axis_name()
    if axis is None:
        return optimizer

    def update(grads, state, params=None, **extra):
        return optimizer.update(jax.lax.pmean(grads, axis), state, params, **extra)

    return optax.GradientTransformationExtraArgs(optimizer.init, update)


def merge_moments(count: int, batch_mean: jax.Array, batch_m2: jax.Array):
    """(count, mean, sum of squared deviations) of the global batch from each device's.

    Every device holds ``count`` samples, so the global mean is the mean of the means, and
    M = sum_d [ M_d + count (mean_d - mean)^2 ] (Chan et al.'s combination, equal counts).
    """
    axis = axis_name()
    if axis is None:
        return count, batch_mean, batch_m2
    global_mean = jax.lax.pmean(batch_mean, axis)
    m2 = jax.lax.psum(batch_m2 + count * jnp.square(batch_mean - global_mean), axis)
    return count * jax.lax.axis_size(axis), global_mean, m2


def standardize(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """(x - mean) / (std + eps) with the mean and (population) std of the global batch."""
    if axis_name() is None:
        return (x - jnp.mean(x)) / (jnp.std(x) + eps)
    mu = mean(jnp.mean(x))
    var = mean(jnp.mean(jnp.square(x - mu)))  # equal shard sizes: the global variance
    return (x - mu) / (jnp.sqrt(var) + eps)


def shard_config(config, shards: int):
    """The config each of ``shards`` devices runs, for the global ``config``.

    ``num_envs`` and (where the agent has one) ``batch_size`` are split evenly and must be
    multiples of ``shards``; the replay capacity is split (rounded up), ``total_steps`` too
    (rounded down, which keeps iteration counts such as PPO's annealing horizon), and each
    device runs ``ceil(eval_episodes / shards)`` evaluation episodes. Warm-up keeps its number
    of iterations. The per-device config is validated; the message says which device-level
    value is wrong.
    """
    if shards == 1:
        return config
    problems = []
    changes = {}
    for name in ("num_envs", "batch_size"):
        if hasattr(config, name):
            value = int(getattr(config, name))
            if value % shards:
                problems.append(
                    f"{name}={value} must be a multiple of the {shards} devices of data-parallel "
                    f"training (each device takes {name} / {shards})"
                )
            changes[name] = max(1, value // shards)
    if problems:
        raise ConfigError("invalid data-parallel config:\n  " + "\n  ".join(problems))
    changes["total_steps"] = max(1, config.total_steps // shards)
    changes["eval_episodes"] = -(-config.eval_episodes // shards)
    if hasattr(config, "buffer_capacity") and hasattr(config, "buffer_size"):
        changes["buffer_size"] = -(-int(config.buffer_capacity) // shards)
    if hasattr(config, "learning_starts") and hasattr(config, "warmup_iterations"):
        changes["learning_starts"] = int(config.warmup_iterations) * changes["num_envs"]
    local = config.replace(**changes)
    try:
        local.validate()
    except ConfigError as err:
        raise ConfigError(f"the per-device config of data-parallel training over {shards} devices: {err}") from None
    if local.env_steps_per_iteration * shards != config.env_steps_per_iteration or (
        getattr(local, "warmup_env_steps", 0) * shards != getattr(config, "warmup_env_steps", 0)
    ):
        raise ConfigError(
            f"cannot split {type(config).__name__} over {shards} devices with the same iterations "
            f"(env steps per iteration {config.env_steps_per_iteration}, warm-up {getattr(config, 'warmup_env_steps', 0)})"
        )
    return local

