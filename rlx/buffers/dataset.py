"""Offline datasets: the D4RL keys as device arrays, plus a metadata record.

A :class:`Dataset` is a pytree of arrays with a leading transition axis ``N``; it lives on the
device and minibatches are sampled inside compiled programs (:func:`sample`). ``terminals`` and
``timeouts`` are kept apart as in D4RL: a value target bootstraps through a timeout (time-limit
truncation) and not through a terminal. ``next_observations`` is the true successor, also on the
last step of an episode. Transitions of one episode are consecutive and an episode ends at a
step with ``terminals | timeouts`` (a stream cut short, e.g. at the end of a collection run,
ends with a timeout: its successor is known and a target bootstraps from it). Every way in
(:func:`from_arrays`, :func:`load`, :class:`DatasetWriter`, the D4RL and Minari loaders) applies
one rule to data whose last row is neither terminal nor timeout: that unfinished last episode
is truncated (``timeouts[-1] = True``), so it counts as an episode everywhere.

On-disk format (``format: rlx.offline-dataset``, version 1), one folder::

    <folder>/observations.npy       (N, *obs_shape) float32
    <folder>/actions.npy            (N, act_dim)    float32, in the agent's action range [-1, 1]
    <folder>/rewards.npy            (N,)            float32
    <folder>/next_observations.npy  (N, *obs_shape) float32
    <folder>/terminals.npy          (N,)            bool: episode ended in a terminal state
    <folder>/timeouts.npy           (N,)            bool: episode was cut (time limit or end of data)
    <folder>/metadata.json          {"format", "format_version", "size", "keys": {key: {dtype,
                                     shape}}, "info": DatasetInfo fields}

Plain ``.npy`` files read with ``numpy.load`` anywhere (memory-mapped with ``mmap=True``) and
are written in chunks (:class:`DatasetWriter`), so a million transitions are never held twice.
``metadata.json`` is written last: a folder without it is an incomplete write and is refused.
``info`` records how the data was made (env, kind, seed, policy return, the SAC config and
training length behind it, rlx version) and the random and expert reference returns that
:func:`normalized_score` uses: ``100 * (R - random) / (expert - random)`` (D4RL's score).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rlx.core.files import prepare_out_dir
from rlx.core.memory import device_put_checked
from rlx.core.types import Dataset, Transition

FORMAT = "rlx.offline-dataset"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
FLOAT_KEYS = ("observations", "actions", "rewards", "next_observations")
FLAG_KEYS = ("terminals", "timeouts")
KINDS = ("random", "medium", "medium-replay", "expert", "medium-expert")


class DatasetError(ValueError):
    """A malformed dataset: the message names the key and the problem."""


def end_unfinished_episode(terminals, timeouts) -> np.ndarray:
    """``timeouts`` with the unfinished last episode (last row neither terminal nor timeout)
    marked truncated; the input is returned untouched when the last episode is finished (a
    copy is made otherwise, so read-only memory maps are fine)."""
    timeouts = np.asarray(timeouts)
    if timeouts.shape[0] and not (bool(np.asarray(terminals)[-1]) or bool(timeouts[-1])):
        timeouts = np.array(timeouts, dtype=np.bool_)
        timeouts[-1] = True
    return timeouts


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


def to_device(dataset: Dataset, device=None) -> Dataset:
    """The dataset's arrays on ``device`` (default: the first one), ready for compiled loops.

    A dataset larger than the device's free memory is refused before any of it is copied
    (:func:`rlx.core.memory.device_put_checked`)."""

    host = Dataset(*(np.asarray(x) for x in dataset))
    return device_put_checked(host, f"the dataset ({host.observations.shape[0]:,} transitions)", device)


def concatenate(datasets: Sequence[Dataset]) -> Dataset:
    """The datasets one after the other (host arrays); episodes stay intact."""
    return Dataset(*(np.concatenate([np.asarray(d[i]) for d in datasets]) for i in range(len(KEYS))))


# ---------------------------------------------------------------------------------------------
# Metadata and normalized scores
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is and how it was made; saved as ``metadata.json["info"]``.

    ``random_return`` and ``expert_return`` are the reference returns of D4RL's normalized
    score (a uniform-random policy and the fully trained expert, each measured over
    ``reference_episodes`` full episodes); ``policy_return`` is the mean episode return of the
    policy that produced the data (for ``medium-replay``, the medium policy at the end of its
    history; for ``medium-expert``, the mean of the two). ``agent_config`` is every field of the
    SAC config the expert was trained with and ``expert_steps`` its env steps, so the training
    behind the data is reproducible from ``seed``; ``medium_step`` and ``medium_eval_return``
    say where training was stopped for ``medium``.
    """

    env: str
    kind: str
    size: int
    seed: int | None = None
    env_kwargs: dict = dataclasses.field(default_factory=dict)
    policy_return: float | None = None
    random_return: float | None = None
    expert_return: float | None = None
    source: str = "rlx collect"
    rlx_version: str = ""
    created: str = ""
    agent: str | None = None
    agent_config: dict = dataclasses.field(default_factory=dict)
    expert_steps: int | None = None
    medium_step: int | None = None
    medium_eval_return: float | None = None
    policy_mode: str | None = None
    num_envs: int | None = None
    reference_episodes: int | None = None
    versions: dict = dataclasses.field(default_factory=dict)
    extra: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DatasetInfo:
        """Known fields as given; unknown ones (from a newer writer) go into ``extra``."""
        if not isinstance(values, Mapping):
            raise DatasetError(f"{METADATA_FILE}: info is a {type(values).__name__}; expected an object of fields")
        names = {f.name for f in dataclasses.fields(cls)}
        for required in ("env", "kind", "size"):
            if required not in values:
                raise DatasetError(f"{METADATA_FILE}: info has no field {required!r}")
        known = {k: v for k, v in values.items() if k in names}
        unknown = {k: v for k, v in values.items() if k not in names}
        if unknown:
            known["extra"] = {**known.get("extra", {}), **unknown}
        return cls(**known)

    def replace(self, **changes) -> DatasetInfo:
        return dataclasses.replace(self, **changes)


def normalized_score(returns, info: DatasetInfo | None = None, *, random_return=None, expert_return=None):
    """D4RL's normalized score ``100 * (R - random) / (expert - random)`` of episode returns.

    The references come from ``info`` (a :class:`DatasetInfo`) unless given explicitly. Works
    on a number or an array (numpy or jax) of returns; 0 is the random policy, 100 the expert.
    """
    low = random_return if random_return is not None else getattr(info, "random_return", None)
    high = expert_return if expert_return is not None else getattr(info, "expert_return", None)
    if low is None or high is None:
        raise ValueError(
            "normalized_score needs the random and expert reference returns: the dataset's "
            "metadata has none (a loaded D4RL/Minari file without reference scores?); pass "
            "random_return= and expert_return="
        )
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)) or high == low:
        raise ValueError(f"reference returns must be finite and differ, got random={low}, expert={high}")
    if isinstance(returns, (int, float)):
        return 100.0 * (float(returns) - low) / (high - low)
    return 100.0 * (returns - low) / (high - low)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
def _first_bad_row(mask: np.ndarray) -> int:
    return int(np.argwhere(mask.reshape(mask.shape[0], -1).any(axis=1))[0, 0])


def _check_array(source: str, key: str, value) -> np.ndarray:
    try:
        array = np.asarray(value)
    except Exception as err:  # noqa: BLE001 - anything that is not array-like
        raise DatasetError(f"{source}: key {key!r} is not an array ({type(value).__name__}): {err}") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DatasetError(
            f"{source}: key {key!r} has dtype {array.dtype}; expected numbers "
            f"({'bool or 0/1' if key in FLAG_KEYS else 'float'})"
        )
    if key in FLOAT_KEYS and array.dtype == np.bool_:
        raise DatasetError(f"{source}: key {key!r} has dtype bool; expected float numbers")
    return array


def _check_structure(source: str, arrays: Mapping[str, np.ndarray]) -> int:
    n = arrays["observations"].shape[0] if arrays["observations"].ndim else 0
    for key in KEYS:
        a = arrays[key]
        want_ndim = {"observations": 2, "next_observations": 2, "actions": 1}.get(key)
        if want_ndim is not None and a.ndim < want_ndim:
            raise DatasetError(
                f"{source}: key {key!r} has shape {a.shape}; expected (N, ...) with at least "
                f"{want_ndim} dimensions"
            )
        if want_ndim is None and a.ndim != 1:
            raise DatasetError(f"{source}: key {key!r} has shape {a.shape}; expected (N,), one value per transition")
        if a.shape[0] != n:
            raise DatasetError(
                f"{source}: key {key!r} has {a.shape[0]} rows but 'observations' has {n}; "
                "every key needs one row per transition"
            )
    if arrays["next_observations"].shape != arrays["observations"].shape:
        raise DatasetError(
            f"{source}: key 'next_observations' has shape {arrays['next_observations'].shape} "
            f"but 'observations' has {arrays['observations'].shape}"
        )
    if n == 0:
        raise DatasetError(f"{source}: key 'observations' is empty: the dataset holds no transitions")
    return n


def _check_values(source: str, arrays: Mapping[str, np.ndarray]) -> None:
    for key in FLOAT_KEYS:
        a = arrays[key]
        if np.issubdtype(a.dtype, np.floating):
            bad = ~np.isfinite(a)
            if bad.any():
                raise DatasetError(
                    f"{source}: key {key!r} has {int(bad.sum())} NaN/Inf value(s), the first in "
                    f"row {_first_bad_row(bad)}"
                )
    for key in FLAG_KEYS:
        a = arrays[key]
        if a.dtype != np.bool_:
            bad = (a != 0) & (a != 1)
            if bad.any():
                row = _first_bad_row(bad)
                raise DatasetError(
                    f"{source}: key {key!r} must hold only 0/1 (or bool), found {a[row]!r} in row {row}"
                )


def from_arrays(arrays: Mapping[str, Any], source: str = "dataset") -> Dataset:
    """Check a mapping of the D4RL keys and return a :class:`Dataset` of host arrays in the
    canonical dtypes (float32; bool flags). Rewards and flags of shape (N, 1) are flattened.

    Raises :class:`DatasetError` naming the key and the problem: a missing key, a non-numeric
    dtype, rows that differ between keys, NaN/Inf values, flags other than 0/1. An unfinished
    last episode is marked truncated (:func:`end_unfinished_episode`).
    """
    if not isinstance(arrays, Mapping):
        arrays = dict(arrays._asdict()) if hasattr(arrays, "_asdict") else arrays
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise DatasetError(
            f"{source}: missing key {missing[0]!r}" + (f" (and {', '.join(map(repr, missing[1:]))})" if missing[1:] else "")
            + f"; a dataset needs {', '.join(KEYS)}"
        )
    checked = {k: _check_array(source, k, arrays[k]) for k in KEYS}
    for key in ("rewards", *FLAG_KEYS):
        a = checked[key]
        if a.ndim == 2 and a.shape[1] == 1:
            checked[key] = a[:, 0]
    _check_structure(source, checked)
    _check_values(source, checked)
    flags = {k: np.asarray(checked[k]).astype(np.bool_) for k in FLAG_KEYS}
    flags["timeouts"] = end_unfinished_episode(flags["terminals"], flags["timeouts"])
    return Dataset(**{k: np.asarray(checked[k], np.float32) for k in FLOAT_KEYS}, **flags)


def validate(dataset: Dataset, source: str = "dataset") -> Dataset:
    """Raise :class:`DatasetError` unless ``dataset`` is well formed: every key present, one row
    per transition in every key, float32 values without NaN/Inf and bool flags. Returns it."""
    arrays = dataset._asdict() if hasattr(dataset, "_asdict") else dict(dataset)
    missing = [k for k in KEYS if k not in arrays or arrays[k] is None]
    if missing:
        raise DatasetError(f"{source}: missing key {missing[0]!r}; a dataset needs {', '.join(KEYS)}")
    host = {k: _check_array(source, k, jax.device_get(arrays[k])) for k in KEYS}
    for key in FLOAT_KEYS:
        if host[key].dtype != np.float32:
            raise DatasetError(
                f"{source}: key {key!r} has dtype {host[key].dtype}; expected float32 "
                "(rlx.buffers.dataset.from_arrays converts)"
            )
    for key in FLAG_KEYS:
        if host[key].dtype != np.bool_:
            raise DatasetError(
                f"{source}: key {key!r} has dtype {host[key].dtype}; expected bool "
                "(rlx.buffers.dataset.from_arrays converts 0/1 values)"
            )
    _check_structure(source, host)
    _check_values(source, host)
    return dataset


# ---------------------------------------------------------------------------------------------
# Episodes
# ---------------------------------------------------------------------------------------------
def episode_bounds(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the complete episodes: index ranges ``[start, end)`` that end with a
    terminal or a timeout. Steps after the last episode end (an unfinished tail) are left out."""
    done = np.logical_or(np.asarray(dataset.terminals), np.asarray(dataset.timeouts))
    ends = np.flatnonzero(done) + 1
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    return starts, ends.astype(np.int64)


def episode_returns(dataset: Dataset) -> np.ndarray:
    """Undiscounted return of every complete episode, in order (float64)."""
    starts, ends = episode_bounds(dataset)
    if ends.size == 0:
        return np.zeros(0)
    cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(dataset.rewards, np.float64))])
    return cumulative[ends] - cumulative[starts]


# ---------------------------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------------------------
def _json_default(value):
    if isinstance(value, (np.generic, jax.Array)):
        return np.asarray(value).item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to {METADATA_FILE}")


class DatasetWriter:
    """Writes a dataset of ``size`` transitions into a folder, a slice at a time.

    The ``.npy`` files are created at full size and filled through memory maps
    (``writer.write(start, chunk)``), so a large dataset is never held in memory twice;
    ``close(info)`` writes ``metadata.json`` last (and marks an unfinished last episode
    truncated). A non-empty folder is refused unless ``overwrite`` (then only the dataset's own
    files are replaced).
    """

    def __init__(self, path, size: int, obs_shape: Sequence[int], action_shape: Sequence[int], overwrite: bool = False):
        if int(size) < 1:
            raise DatasetError(f"a dataset needs at least one transition, got size={size}")
        self.path = prepare_out_dir(path, overwrite)
        (self.path / METADATA_FILE).unlink(missing_ok=True)
        self.size = int(size)
        shapes = {
            "observations": (self.size, *obs_shape),
            "actions": (self.size, *action_shape),
            "rewards": (self.size,),
            "next_observations": (self.size, *obs_shape),
            "terminals": (self.size,),
            "timeouts": (self.size,),
        }
        self.arrays = {
            k: np.lib.format.open_memmap(
                self.path / f"{k}.npy", mode="w+", dtype=np.bool_ if k in FLAG_KEYS else np.float32, shape=shapes[k]
            )
            for k in KEYS
        }

    def write(self, start: int, chunk: Dataset | Mapping[str, Any]) -> None:
        chunk = chunk._asdict() if hasattr(chunk, "_asdict") else chunk
        n = None
        for key in KEYS:
            values = np.asarray(chunk[key])
            n = values.shape[0] if n is None else n
            self.arrays[key][start : start + n] = values

    def view(self) -> Dataset:
        """The memory-mapped arrays written so far (for edits in place before ``close``)."""
        return Dataset(**self.arrays)

    def close(self, info: DatasetInfo) -> Path:
        terminals, timeouts = self.arrays["terminals"], self.arrays["timeouts"]
        if not (terminals[-1] or timeouts[-1]):
            timeouts[-1] = True
        dataset = self.view()
        for a in self.arrays.values():
            a.flush()
        validate(dataset, source=str(self.path))
        info = info.replace(size=self.size)
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "size": self.size,
            "keys": {k: {"dtype": str(a.dtype), "shape": list(a.shape)} for k, a in self.arrays.items()},
            "info": info.to_dict(),
        }
        self.arrays.clear()
        tmp = self.path / (METADATA_FILE + ".tmp")
        tmp.write_text(json.dumps(metadata, indent=2, default=_json_default) + "\n")
        os.replace(tmp, self.path / METADATA_FILE)
        return self.path


def save(path, dataset: Dataset, info: DatasetInfo, overwrite: bool = False) -> Path:
    """Write ``dataset`` and ``info`` to the folder ``path`` (the format in the module docstring)."""
    dataset = validate(Dataset(*(jax.device_get(x) for x in dataset)), source="dataset to save")
    writer = DatasetWriter(path, dataset.size, dataset.observations.shape[1:], dataset.actions.shape[1:], overwrite)
    writer.write(0, dataset)
    return writer.close(info)


def read_metadata(path) -> dict[str, Any]:
    """``metadata.json`` of an rlx dataset folder, checked for format and version."""
    path = Path(path)
    meta_file = path / METADATA_FILE
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder; an rlx dataset is a folder with .npy files and {METADATA_FILE}")
    if not meta_file.exists():
        raise DatasetError(f"{path}: no {METADATA_FILE} (not an rlx dataset, or its writing did not finish)")
    meta = read_json(meta_file)
    if meta.get("format") != FORMAT:
        raise DatasetError(f"{meta_file}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    version = meta.get("format_version", -1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise DatasetError(f"{meta_file}: format_version is {version!r}; expected a whole number (this rlx reads {FORMAT_VERSION})")
    if version > FORMAT_VERSION:
        raise DatasetError(
            f"{meta_file}: format_version {version} is newer than this rlx reads ({FORMAT_VERSION})"
        )
    if not isinstance(meta.get("info"), Mapping):
        raise DatasetError(f"{meta_file}: no 'info' record" + ("" if "info" not in meta else f" (found {type(meta['info']).__name__})"))
    return meta


def read_json(file) -> dict[str, Any]:
    """A metadata file's JSON object; anything else (not UTF-8, not JSON, not an object) is a
    :class:`DatasetError` naming the file."""
    file = Path(file)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{file}: not a JSON text file (not UTF-8: {err.reason} at byte {err.start})") from None
    except OSError as err:
        raise DatasetError(f"{file}: cannot be read ({err.strerror or err})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{file}: not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise DatasetError(f"{file}: holds a JSON {type(value).__name__}; expected an object of metadata fields")
    return value


def _load_npy(file: Path, key: str, mmap: bool) -> np.ndarray:
    """One key's ``.npy`` file; a truncated or damaged file is a :class:`DatasetError` naming
    the key and the file (and, when the header is readable, how many bytes are missing)."""
    try:
        return np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        truncated = _npy_truncation(file)
        if truncated:
            raise DatasetError(
                f"{file}: key {key!r} is truncated: {truncated} (its writing did not finish, or a copy was "
                "cut short: write or copy the dataset again)"
            ) from None
        raise DatasetError(
            f"{file}: key {key!r} is not a readable .npy array (empty, cut inside its header, or damaged: {err})"
        ) from None


def _npy_truncation(file: Path) -> str | None:
    """What the header of a ``.npy`` file promises against what the file holds, if readable."""
    fmt = np.lib.format
    try:
        with open(file, "rb") as handle:
            version = fmt.read_magic(handle)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read_header(handle)
            offset = handle.tell()
        size = file.stat().st_size
    except Exception:  # noqa: BLE001 - no readable header: the caller says so
        return None
    want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = size - offset
    if have >= want:
        return None
    return f"its header promises shape {tuple(shape)} {dtype} ({want:,} bytes of data), the file holds {have:,}"


def load(path, *, device: bool = True, mmap: bool = False) -> tuple[Dataset, DatasetInfo]:
    """Read an rlx dataset folder: ``(dataset, info)``, checked by :func:`validate`.

    With ``device=True`` (default) the arrays are placed on the default device, ready for
    :func:`sample` inside a compiled loop; ``device=False`` keeps host arrays (memory-mapped
    with ``mmap=True``). An unfinished last episode is marked truncated
    (:func:`end_unfinished_episode`), as every loader does.
    """
    path = Path(path)
    meta = read_metadata(path)
    arrays = {}
    for key in KEYS:
        file = path / f"{key}.npy"
        if not file.exists():
            raise DatasetError(f"{path}: missing key {key!r} (no {file.name})")
        arrays[key] = _load_npy(file, key, mmap)
    dataset = validate(Dataset(**arrays), source=str(path))
    dataset = dataset._replace(timeouts=end_unfinished_episode(dataset.terminals, dataset.timeouts))
    if meta.get("size", dataset.size) != dataset.size:
        raise DatasetError(f"{path}: {METADATA_FILE} says size {meta['size']!r} but the arrays hold {dataset.size} rows")
    info = DatasetInfo.from_dict(meta["info"])
    return (to_device(dataset) if device else dataset), info


def complete_episodes(dataset, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which episodes of ``dataset`` are complete, and their lengths (both in episode order).

    An episode is complete when it ends in a termination, or in a time-limit truncation after
    ``limit`` steps. A shorter one that ends in a timeout was cut by the end of the data (the
    end of the file, or of one env's stream in a collected dataset) and is a fragment: its
    return says nothing about the policy's. Without ``limit`` (an env we cannot build), the
    longest timeout-ended episode stands for it.
    """
    starts, ends = episode_bounds(dataset)
    lengths = ends - starts
    terminal = np.asarray(dataset.terminals, bool)[ends - 1] if ends.size else np.zeros(0, bool)
    timed_out = ~terminal
    if limit is None:
        limit = int(lengths[timed_out].max()) if timed_out.any() else 0
    return terminal | (lengths >= limit), lengths
