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
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = ["RUNS_AXIS", "RunsLayout", "hlo_collectives", "plan_runs", "runs_layout"]

RUNS_AXIS = "runs"


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

