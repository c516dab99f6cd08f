"""Device memory: estimate before allocating, refuse what cannot fit, report what a program needs.

A replay buffer of a million transitions, an offline dataset, or sixty-four vmapped seeds can
need more memory than the device has; allocating them anyway ends minutes later in an opaque
out-of-memory error from XLA. rlx instead computes the bytes of the whole training state from
shapes alone (``jax.eval_shape`` of ``init``: nothing is allocated), compares them with the
device's free memory, and refuses with both numbers and the largest parts named:

* :func:`state_estimate` / :func:`check_run_fits`: the runner state of a training run (the
  driver calls it before ``init``);
* :func:`check_fits` / :func:`device_put_checked`: any host arrays (an offline dataset) before
  they go to the device;
* :func:`rlx.run.memory.dry_run`: ``rlx train ... --dry-run`` prints the estimate and the
  compiled programs' memory analysis without training.

Free memory is ``bytes_limit - bytes_in_use`` from ``device.memory_stats()`` on GPUs and TPUs;
on a CPU (whose "device memory" is the host's RAM) it is the available RAM (``psutil``, else
``os.sysconf``).
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import numpy as np


class MemoryEstimateError(ValueError):
    """What is about to be allocated does not fit in the device's free memory."""


def format_bytes(n: float | None) -> str:
    if n is None:
        return "unknown"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"  # pragma: no cover


def tree_bytes(tree) -> int:
    """Bytes of every array leaf of ``tree`` (concrete arrays or ``jax.ShapeDtypeStruct``)."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        shape, dtype = getattr(leaf, "shape", None), getattr(leaf, "dtype", None)
        if shape is None or dtype is None:
            continue
        total += math.prod(shape) * np.dtype(dtype).itemsize
    return int(total)


def _part_name(path) -> str:
    names = []
    for entry in path:
        name = getattr(entry, "name", None) or getattr(entry, "key", None)
        if name is None:
            idx = getattr(entry, "idx", None)
            name = None if idx is None else str(idx)
        if name is not None:
            names.append(str(name))
    # RunnerState(agent_state, eval_key): name the agent state's own fields.
    if names and names[0] in ("agent_state", "0"):
        names = names[1:]
    return names[0] if names else "state"


def tree_parts(tree) -> dict[str, int]:
    """Bytes per top-level field (``buffer``, ``learner``, ``env_state``, ...), largest first."""
    parts: dict[str, int] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        nbytes = tree_bytes(leaf)
        if nbytes:
            name = _part_name(path)
            parts[name] = parts.get(name, 0) + nbytes
    return dict(sorted(parts.items(), key=lambda kv: -kv[1]))


# ---------------------------------------------------------------------------------------------
# Free memory
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DeviceMemory:
    device: str  # e.g. "cpu:0 (cpu)" or "cuda:0 (NVIDIA H100 80GB HBM3)"
    free_bytes: int | None  # None: the device does not say
    total_bytes: int | None
    source: str  # where the numbers come from

    def describe(self) -> str:
        total = f" of {format_bytes(self.total_bytes)}" if self.total_bytes else ""
        return f"{format_bytes(self.free_bytes)} free{total} on {self.device} ({self.source})"


def _host_available() -> tuple[int | None, int | None, str]:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.available), int(vm.total), "psutil: available host RAM"
    except ImportError:
        pass
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return int(os.sysconf("SC_AVPHYS_PAGES") * page), int(os.sysconf("SC_PHYS_PAGES") * page), "os.sysconf: free host RAM"
    except (ValueError, OSError, AttributeError):
        return None, None, "unknown"


def device_memory(device=None) -> DeviceMemory:
    """Free and total memory of ``device`` (default: the first local device)."""
    device = device or jax.local_devices()[0]
    if not hasattr(device, "platform") and hasattr(device, "device_set"):  # a Sharding
        device = sorted(device.device_set, key=lambda d: d.id)[0]
    name = f"{device.platform}:{device.id} ({device.device_kind})"
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001  (backends without memory statistics raise various errors)
        stats = None
    if stats and stats.get("bytes_limit"):
        limit = int(stats["bytes_limit"])
        used = int(stats.get("bytes_in_use", 0))
        return DeviceMemory(name, max(limit - used, 0), limit, "device.memory_stats()")
    if device.platform == "cpu":
        free, total, source = _host_available()
        return DeviceMemory(name, free, total, source)
    return DeviceMemory(name, None, None, "device reports no memory statistics")


# ---------------------------------------------------------------------------------------------
# Estimates and refusals
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StateEstimate:
    """Bytes of the training state of one run, and of the runs one device holds."""

    bytes_per_run: int
    runs_per_device: int
    parts: dict[str, int]  # per run, largest first

    @property
    def bytes_per_device(self) -> int:
        return self.bytes_per_run * self.runs_per_device

    def describe(self, top: int = 4) -> str:
        parts = ", ".join(f"{name} {format_bytes(n)}" for name, n in list(self.parts.items())[:top])
        runs = f" x {self.runs_per_device} runs on one device" if self.runs_per_device > 1 else ""
        return f"{format_bytes(self.bytes_per_device)} ({format_bytes(self.bytes_per_run)} per run{runs}; {parts})"


def state_estimate(train, runs_per_device: int = 1) -> StateEstimate:
    """The runner state's bytes from shapes alone (``jax.eval_shape``: nothing is allocated)."""
    shapes = jax.eval_shape(train.init, jax.random.PRNGKey(0))
    return StateEstimate(tree_bytes(shapes), int(runs_per_device), tree_parts(shapes))


def check_fits(nbytes: int, what: str, device=None, hint: str = "") -> DeviceMemory:
    """Raise :class:`MemoryEstimateError` when ``nbytes`` exceed ``device``'s free memory.

    A device that does not report its memory passes (nothing to compare with).
    """
    memory = device_memory(device)
    if memory.free_bytes is not None and nbytes > memory.free_bytes:
        raise MemoryEstimateError(
            f"{what} needs an estimated {format_bytes(nbytes)}, but the device has "
            f"{memory.describe()}; nothing was allocated."
            + (f" {hint}" if hint else "")
        )
    return memory


def check_run_fits(train, num_runs: int, runs_per_device: int, config=None, device=None) -> StateEstimate:
    """Refuse a run whose training state cannot fit on one device, before ``init`` allocates it."""
    estimate = state_estimate(train, runs_per_device)
    hints = []
    if config is not None and "buffer" in estimate.parts and hasattr(config, "buffer_size"):
        hints.append(f"lower buffer_size (now {config.buffer_size:,})")
    if runs_per_device > 1:
        hints.append(f"train fewer seeds at once (now {num_runs}) or spread them over more devices")
    hint = ("To fit: " + "; ".join(hints) + ".") if hints else ""
    check_fits(estimate.bytes_per_device, f"the training state ({estimate.describe()})", device, hint)
    return estimate


def device_put_checked(tree, what: str, device=None):
    """``jax.device_put(tree, device)`` after :func:`check_fits` on the tree's bytes (an offline
    dataset, say): a dataset that cannot fit is refused before any of it is copied."""
    check_fits(tree_bytes(tree), what, device)
    return jax.device_put(tree, device)
