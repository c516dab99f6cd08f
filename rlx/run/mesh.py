"""Runs mode: independent runs (seeds, sweep points) spread over the visible devices.

Every run is a pure function of its key (and, in a sweep, of its config), so many runs on many
devices need no communication at all: the leading "runs" axis of the keys and configs is placed
with a ``NamedSharding`` along a one-axis device mesh, and ``jax.jit(jax.vmap(train))`` compiles
a program in which every device trains its own slice of runs. The compiled program contains no
collectives (``tests/test_mesh.py`` checks the HLO).

The number of runs need not divide the number of devices. A :class:`RunsLayout` puts
``ceil(runs / devices)`` runs on each device, uses only as many devices as that needs, and pads
the last device with copies of the first run; :meth:`RunsLayout.fetch` and
:meth:`RunsLayout.unpad` drop the copies again. For example 10 runs on 8 devices become 5
devices with 2 runs each (no padding), 11 runs become 6 devices with 2 runs each and 1 copy.

Several hosts (a TPU pod slice, a GPU cluster): every host runs the same program after
``jax.distributed.initialize()`` (``rlx ... --distributed``). The mesh then spans all devices of
all hosts and :meth:`RunsLayout.fetch` gathers the results onto every host.
``jax.distributed.initialize()`` must run before anything touches the devices, and importing
gymnax (hence ``rlx.envs`` and ``rlx.run``) does, so it cannot live behind an import of this
module: the command line calls it first thing, and a script calls it before importing ``rlx``.

Data-parallel mode (:func:`make_data_parallel_train`): one agent trained on all its devices. The
agent's own ``init`` / ``update`` run on every device under ``jax.shard_map`` with its share of
the environments, replay buffer and minibatch (:func:`rlx.core.parallel.shard_config`), and the
shared pieces of :mod:`rlx.core.parallel` average the gradients (``lax.pmean``), so the
parameters stay replicated, and combine metrics, evaluation returns and observation statistics.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from rlx.core import contract, parallel
from rlx.core.config import ConfigError

__all__ = [
    "DATA_AXIS",
    "RUNS_AXIS",
    "DataParallelLayout",
    "RunsLayout",
    "data_parallel_mesh",
    "hlo_collectives",
    "make_data_parallel_train",
    "plan_runs",
    "runs_layout",
]

RUNS_AXIS = "runs"
DATA_AXIS = "data"


@dataclasses.dataclass(frozen=True)
class RunsLayout:
    """How ``num_runs`` independent runs are spread over devices.

    ``mesh`` is None when everything runs on one device; then :meth:`place`, :meth:`jit`,
    :meth:`fetch` and :meth:`unpad` are the plain single-device operations, so callers need no
    second code path.
    """

    num_runs: int
    runs_per_device: int
    mesh: Mesh | None

    @property
    def num_devices(self) -> int:
        return 1 if self.mesh is None else self.mesh.devices.size

    @property
    def padded_runs(self) -> int:
        return self.num_runs if self.mesh is None else self.num_devices * self.runs_per_device

    @property
    def padding(self) -> int:
        return self.padded_runs - self.num_runs

    @property
    def sharding(self) -> NamedSharding | None:
        """Leading (runs) axis split over the mesh, every other axis whole."""
        return None if self.mesh is None else NamedSharding(self.mesh, PartitionSpec(RUNS_AXIS))

    def describe(self) -> dict[str, Any]:
        return {
            "runs": self.num_runs,
            "devices": self.num_devices,
            "runs_per_device": self.runs_per_device,
            "padding": self.padding,
            "processes": jax.process_count(),
        }

    def place(self, tree):
        """Pad the leading axis of every leaf to ``padded_runs`` and shard it over the mesh."""
        if self.mesh is None:
            return tree
        sharding = self.sharding

        def put(x):
            x = np.asarray(x)
            if x.shape[:1] != (self.num_runs,):
                raise ValueError(f"expected a leading runs axis of {self.num_runs}, got shape {x.shape}")
            if self.padding:
                x = np.concatenate([x, np.repeat(x[:1], self.padding, axis=0)])
            # Works on one host and on several: each process fills its own devices' slices.
            return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

        return jax.tree.map(put, tree)

    def jit(self, fn, **jit_kwargs):
        """``jax.jit`` whose every output keeps the runs axis sharded like the inputs."""
        if self.mesh is None:
            return jax.jit(fn, **jit_kwargs)
        return jax.jit(fn, out_shardings=self.sharding, **jit_kwargs)

    def fetch(self, tree):
        """The arrays on the host as numpy, padding dropped (gathered from every host)."""
        if self.mesh is not None and jax.process_count() > 1:
            from jax.experimental import multihost_utils

            tree = multihost_utils.process_allgather(tree, tiled=True)
        tree = jax.device_get(tree)
        return jax.tree.map(lambda x: np.asarray(x)[: self.num_runs], tree) if self.padding else tree

    def unpad(self, tree):
        """Drop the padding runs from device arrays (a no-op without padding)."""
        if not self.padding:
            return tree
        return jax.tree.map(lambda x: x[: self.num_runs], tree)


def plan_runs(num_runs: int, max_devices: int, processes: int = 1) -> tuple[int, int]:
    """(devices used, runs per device) for ``num_runs`` runs on at most ``max_devices`` devices.

    Each device gets ``ceil(runs / devices)`` runs and only as many devices are used as that
    needs, so the padding is as small as the finishing time allows. With several processes
    every device is used (each process must run the program on its own devices).
    """
    if processes > 1:
        return max_devices, -(-num_runs // max_devices)
    per_device = -(-num_runs // min(max_devices, num_runs))
    return -(-num_runs // per_device), per_device


def runs_layout(num_runs: int, devices: int | None = None) -> RunsLayout:
    """The layout of ``num_runs`` runs over at most ``devices`` devices (default: all visible).

    One run, or ``devices=1``, gives the single-device layout. With several processes the mesh
    always spans every device of every process (each process must take part in the program).
    """
    if num_runs < 1:
        raise ValueError(f"need at least one run, got {num_runs}")
    available = jax.device_count()
    if devices is not None:
        if not 1 <= devices <= available:
            raise ValueError(f"devices must be between 1 and the {available} visible device(s), got {devices}")
        if jax.process_count() > 1 and devices != available:
            raise ValueError(
                f"with {jax.process_count()} processes every device takes part; "
                f"devices={devices} would leave some processes without work (visible: {available})"
            )
    used, per_device = plan_runs(num_runs, available if devices is None else devices, jax.process_count())
    if used == 1:
        return RunsLayout(num_runs, num_runs, None)
    # Auto axes: GSPMD propagates the runs sharding from the inputs through the whole scan.
    # Explicit axes (jax.make_mesh's default in jax 0.10) carry shardings in the types of every op
    # inside the agent, and tracing SAC under them fails.
    mesh = jax.make_mesh((used,), (RUNS_AXIS,), axis_types=(AxisType.Auto,), devices=jax.devices()[:used])
    return RunsLayout(num_runs, per_device, mesh)


def hlo_collectives(compiled) -> list[str]:
    """Names of cross-device collectives in a compiled program's HLO (runs mode has none)."""
    text = compiled.as_text()
    names = ("all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter")
    return [name for name in names if name in text]



# ---------------------------------------------------------------------------------------------
# Data-parallel mode: one agent, its work split over the devices
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DataParallelLayout:
    """One agent on ``mesh`` (axis :data:`DATA_AXIS`): the same interface as :class:`RunsLayout`
    for the driver. The runner state carries a leading device axis (each device's envs, replay
    shard and its copy of the replicated parameters); the metrics are replicated."""

    mesh: Mesh
    local_config: Any

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    padding = 0
    runs_per_device = 1

    def describe(self) -> dict[str, Any]:
        out = {"mode": "data_parallel", "devices": self.num_devices, "processes": jax.process_count()}
        for name in ("num_envs", "batch_size", "buffer_size", "eval_episodes"):
            if hasattr(self.local_config, name):
                out[f"{name}_per_device"] = int(getattr(self.local_config, name))
        return out

    def place(self, tree):
        """Shard the leading (device) axis of a host-side runner state, e.g. a restored checkpoint."""
        sharding = NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))

        def put(x):
            x = np.asarray(x)
            if x.shape[:1] != (self.num_devices,):
                raise ValueError(f"expected a leading device axis of {self.num_devices}, got shape {x.shape}")
            return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

        return jax.tree.map(put, tree)

    def jit(self, fn, **jit_kwargs):
        return jax.jit(fn, **jit_kwargs)

    def fetch(self, tree):
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            tree = multihost_utils.process_allgather(tree, tiled=True)
        return jax.device_get(tree)

    def unpad(self, tree):
        return tree


def data_parallel_mesh(devices: int | None = None) -> Mesh:
    """A one-axis (:data:`DATA_AXIS`) mesh over ``devices`` devices (default: all visible)."""
    available = jax.device_count()
    if devices is None:
        devices = available
    if not 1 <= devices <= available:
        raise ValueError(f"devices must be between 1 and the {available} visible device(s), got {devices}")
    if jax.process_count() > 1 and devices != available:
        raise ValueError(f"with {jax.process_count()} processes every device takes part (visible: {available})")
    # Auto axes, as in runs mode; shard_map below fixes the placement of every input.
    return jax.make_mesh((devices,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=jax.devices()[:devices])


def _per_device(fn):
    """``fn`` of one device's values, run with the data axis active, on and to shards of
    leading size 1 (the slice of the device axis that shard_map hands each device)."""

    def wrapped(*args):
        with parallel.data_parallel(DATA_AXIS):
            out = fn(*jax.tree.map(lambda x: x[0], args))
        return jax.tree.map(lambda x: x[None], out)

    return wrapped


def make_data_parallel_train(agent, config, env, env_params, devices: int | None = None, *, mesh: Mesh | None = None):
    """``train(key) -> TrainOutput`` of one agent trained data-parallel on ``devices`` devices.

    ``config`` describes the whole agent: ``num_envs`` environments and minibatches of
    ``batch_size`` (both multiples of the device count), a replay capacity of
    ``buffer_capacity`` and ``total_steps`` env steps over all devices. Device d holds
    ``num_envs / D`` environments and ``1 / D`` of the replay capacity and samples
    ``batch_size / D`` transitions from its own shard; every gradient is averaged over the
    devices before the optimizer step, so the parameters stay identical on all of them.
    ``train.reference(key)`` is the same computation on one device (``jax.vmap`` over a device
    axis whose collectives have the same meaning), for testing.

    ``train.state`` of the output has a leading device axis; the metrics are those of the
    whole agent (means over all devices' minibatches, sums of their episodes, evaluation over
    every device's episodes). Invalid values are refused here, before anything is compiled.
    """
    if not contract.optional(agent, "DATA_PARALLEL"):
        from rlx.agents import agent_names, get_agent

        supported = [n for n in agent_names() if contract.optional(get_agent(n), "DATA_PARALLEL")]
        name = contract.name_of(agent)
        raise ConfigError(
            f"agent {name} has no data-parallel mode; agents with one: {', '.join(supported)}"
        )
    mesh = mesh if mesh is not None else data_parallel_mesh(devices)
    shards = mesh.devices.size
    from rlx.run.train import RunnerState, TrainOutput, make_train

    local_train = make_train(agent, config, env, env_params, num_shards=shards)  # validates
    local = parallel.shard_config(config, shards)
    layout = DataParallelLayout(mesh, local)
    spec = PartitionSpec(DATA_AXIS)

    def sharded(fn):
        return jax.shard_map(_per_device(fn), mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)

    def device_keys(key):
        return jax.random.split(key, shards)

    def init(key) -> RunnerState:
        return sharded(local_train.init)(device_keys(key))

    def run_blocks(runner_state: RunnerState, num_blocks: int):
        state, metrics = sharded(lambda rs: local_train.run_blocks(rs, num_blocks))(runner_state)
        return state, jax.tree.map(lambda m: m[0], metrics)  # the same on every device

    def train(key) -> TrainOutput:
        state, metrics = run_blocks(init(key), local_train.schedule.num_evals)
        return TrainOutput(state, metrics)

    def reference(key) -> TrainOutput:
        """The same program on one device: the devices become a vmapped axis."""

        def one(k):
            with parallel.data_parallel(DATA_AXIS):
                return local_train(k)

        out = jax.vmap(one, axis_name=DATA_AXIS)(device_keys(key))
        return TrainOutput(out.state, jax.tree.map(lambda m: m[0], out.metrics))

    train.init = init
    train.run_blocks = run_blocks
    train.schedule = local_train.schedule
    train.layout = layout
    train.local_config = local
    train.device_train = local_train  # one device's program (its state has no device axis)
    train.reference = reference
    return train
