"""Loaders for offline datasets in other layouts, read from a local path.

* D4RL HDF5 (``load_d4rl``): one file with the datasets ``observations`` (N, obs_dim),
  ``actions`` (N, act_dim), ``rewards`` (N,), ``terminals`` (N,), ``timeouts`` (N,) at its root
  and, in most v2 files, ``next_observations``. Without ``next_observations`` the successor is
  rebuilt as ``observations[i + 1]`` inside an episode; a step that ends with a timeout then has
  no successor in the file and is dropped (what D4RL's own ``qlearning_dataset`` does), and a
  terminal step keeps its observation as successor (a critic never bootstraps from it). An
  unfinished last row (neither terminal nor timeout) has no successor either and is dropped;
  the row before a dropped one ends its episode with a timeout.
* Minari (``load_minari``): a dataset folder holding ``data/metadata.json`` and
  ``data/main_data.hdf5``, whose groups ``episode_<id>`` hold ``observations`` (T + 1 rows:
  the first and the last observation included), ``actions``, ``rewards``, ``terminations``
  and ``truncations`` (T rows). Episode ``i`` gives T transitions with
  ``next_observations = observations[1:]``; ``ref_min_score`` / ``ref_max_score`` of the
  metadata become the random and expert reference returns. The metadata's ``total_episodes``
  and ``total_steps`` (and an episode's ``total_steps`` attribute) must match what the file
  holds: a mismatch (an interrupted write or copy) is refused with both numbers.

One rule in every layout: an unfinished last episode (its last step neither terminal nor
timeout/truncation) is truncated, so the same data gives the same :class:`Dataset` (flags and
:func:`rlx.buffers.dataset.episode_returns`) whichever layout it comes in.

Both give ``(Dataset, DatasetInfo)`` with host arrays checked by
:func:`rlx.buffers.dataset.from_arrays`; a malformed file gets a :class:`DatasetError` naming
the key and the problem. :func:`open_dataset` recognises any of the three layouts (an rlx
dataset folder too); a folder it cannot place gets a :class:`DatasetError` that names what is
missing or broken and the layouts it accepts. Reading HDF5 needs ``h5py``
(``pip install "rlx[offline]"``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from rlx.buffers.dataset import (
    FORMAT,
    KEYS,
    METADATA_FILE,
    Dataset,
    DatasetError,
    DatasetInfo,
    from_arrays,
    load,
    read_json,
    to_device,
)

D4RL_REQUIRED = ("observations", "actions", "rewards", "terminals", "timeouts")
MINARI_EPISODE_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")
ACCEPTED = (
    f"an rlx dataset folder (one .npy file per key and {METADATA_FILE}; `rlx dataset collect`, "
    "rlx.buffers.dataset.save), a Minari dataset folder (data/metadata.json and data/main_data.hdf5) "
    "or a D4RL .hdf5 file"
)


class MissingDependencyError(DatasetError, ImportError):
    """A layout whose reader needs a package that is not installed (a ValueError for the CLI's
    error message, an ImportError for code that catches that)."""


def _h5py():
    try:
        import h5py
    except ImportError:
        raise MissingDependencyError(
            'reading HDF5 datasets (D4RL, Minari) needs h5py: pip install "rlx[offline]" (or pip install h5py)'
        ) from None
    return h5py


def _read_dataset(h5py, group, key: str, where: str) -> np.ndarray:
    item = group.get(key)
    if item is None:
        raise DatasetError(f"{where}: missing key {key!r}")
    if not isinstance(item, h5py.Dataset):
        raise DatasetError(
            f"{where}: key {key!r} is an HDF5 group (a Dict or Tuple space?); only flat arrays are supported"
        )
    try:
        return item[()]
    except TypeError as err:  # e.g. a compound or opaque dtype h5py cannot map
        raise DatasetError(f"{where}: key {key!r} cannot be read as an array ({err})") from None


def _flat(a: np.ndarray, key: str, where: str) -> np.ndarray:
    if a.ndim == 2 and a.shape[1] == 1:
        return a[:, 0]
    if a.ndim != 1:
        raise DatasetError(f"{where}: key {key!r} has shape {a.shape}; expected (N,)")
    return a


def _info(env: str, kind: str, size: int, source: str, random_return, expert_return, extra: dict) -> DatasetInfo:
    import rlx

    return DatasetInfo(
        env=env, kind=kind, size=size, source=source, random_return=random_return,
        expert_return=expert_return, rlx_version=rlx.__version__, extra=extra,
    )


def load_d4rl(
    path, *, env: str | None = None, kind: str | None = None, random_return: float | None = None,
    expert_return: float | None = None, device: bool = False,
) -> tuple[Dataset, DatasetInfo]:
    """Read a D4RL HDF5 file (layout in the module docstring) into ``(dataset, info)``.

    D4RL files carry no reference returns; pass D4RL's ``REF_MIN_SCORE`` / ``REF_MAX_SCORE`` of
    the task as ``random_return`` / ``expert_return`` for normalized scores. ``env`` and
    ``kind`` default to what the file name says (``hopper-medium-v2.hdf5``).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such D4RL HDF5 file")
    h5py = _h5py()
    where = str(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DatasetError(f"{path}: not a readable HDF5 file ({err})") from None
    with handle as f:
        arrays = {key: _read_dataset(h5py, f, key, where) for key in D4RL_REQUIRED}
        has_next = "next_observations" in f
        if has_next:
            arrays["next_observations"] = _read_dataset(h5py, f, "next_observations", where)
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    extra: dict = {"hdf5_attrs": {k: v for k, v in attrs.items() if isinstance(v, (int, float, str, bool))}}
    if not has_next:
        arrays, extra["next_observations"] = _rebuild_next_observations(arrays, where)
    dataset = from_arrays(arrays, source=where)
    stem = re.sub(r"\.(hdf5|h5)$", "", path.name)
    guess_env, _, guess_kind = stem.partition("-")
    guess_kind = re.sub(r"-v\d+$", "", guess_kind)
    info = _info(
        env or f"d4rl/{guess_env}", kind or guess_kind or "unknown", dataset.size, f"d4rl:{path}",
        random_return if random_return is not None else attrs.get("ref_min_score"),
        expert_return if expert_return is not None else attrs.get("ref_max_score"), extra,
    )
    return (to_device(dataset) if device else dataset), info


def _rebuild_next_observations(arrays: dict, where: str) -> tuple[dict, str]:
    """Successors from the next row inside an episode (see the module docstring)."""
    obs = np.asarray(arrays["observations"])
    if obs.ndim < 2:
        raise DatasetError(f"{where}: key 'observations' has shape {obs.shape}; expected (N, ...)")
    n = obs.shape[0]
    flags = {}
    for key in ("terminals", "timeouts", "rewards"):
        a = _flat(np.asarray(arrays[key]), key, where)
        if a.shape[0] != n:
            raise DatasetError(f"{where}: key {key!r} has {a.shape[0]} rows but 'observations' has {n}")
        flags[key] = a
    terminals = flags["terminals"].astype(bool)
    timeouts = flags["timeouts"].astype(bool) & ~terminals
    next_obs = np.empty_like(obs)
    next_obs[:-1] = obs[1:]
    next_obs[terminals] = obs[terminals]
    # Timeout-ended steps, and an unfinished last step, have no successor in the file.
    unfinished = not (terminals[-1] or timeouts[-1])
    keep = ~timeouts
    keep[-1] = keep[-1] & terminals[-1]
    out = {k: np.asarray(v)[keep] for k, v in arrays.items()}
    out["next_observations"] = next_obs[keep]
    # The step before a dropped one now ends its episode: it was cut by the time limit.
    cut = np.zeros(n, bool)
    cut[:-1] = ~keep[1:]
    out["timeouts"] = cut[keep] & ~terminals[keep]
    out["terminals"] = terminals[keep]
    out["rewards"] = flags["rewards"][keep]
    note = (
        f"rebuilt from observations[i + 1]; {int(timeouts.sum())} timeout-ended step(s)"
        + (" and the unfinished last step" if unfinished else "")
        + f" without a successor dropped, {int(terminals.sum())} terminal step(s) keep their own observation"
    )
    return out, note


def _minari_data_dir(path: Path) -> Path:
    for candidate in (path / "data", path):
        if (candidate / "metadata.json").exists() and (candidate / "main_data.hdf5").exists():
            return candidate
    for candidate in (path / "data", path):
        if (candidate / "metadata.json").exists():
            meta = read_json(candidate / "metadata.json")
            data_format = meta.get("data_format", "hdf5")
            if data_format != "hdf5":
                raise DatasetError(f"{candidate / 'metadata.json'}: data_format is {data_format!r}; only Minari's hdf5 storage is read")
            raise DatasetError(f"{path}: a Minari folder without data/main_data.hdf5 (only the hdf5 storage is read)")
    raise DatasetError(f"{path}: not a Minari dataset folder (expected data/metadata.json and data/main_data.hdf5)")


def _metadata_count(meta: dict, key: str, meta_file: Path) -> int | None:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DatasetError(f"{meta_file}: {key} is {value!r}; expected a whole number >= 0")
    return value


def _check_minari_counts(h5py, f, names: list[str], meta: dict, meta_file: Path, main: Path) -> None:
    """The metadata's ``total_episodes`` / ``total_steps`` against the episodes in the file."""
    want_episodes = _metadata_count(meta, "total_episodes", meta_file)
    want_steps = _metadata_count(meta, "total_steps", meta_file)
    problems = []
    if want_episodes is not None and want_episodes != len(names):
        problems.append(f"total_episodes is {want_episodes} but {main.name} holds {len(names)} episodes")
    if want_steps is not None:
        actions = [f[name].get("actions") if isinstance(f[name], h5py.Group) else None for name in names]
        if all(isinstance(a, h5py.Dataset) and a.ndim >= 1 for a in actions):  # else the episode's own error
            held = sum(int(a.shape[0]) for a in actions)
            if held != want_steps:
                problems.append(f"total_steps is {want_steps} but its episodes hold {held} steps")
    if problems:
        raise DatasetError(
            f"{meta_file}: " + "; ".join(problems) + " (an interrupted write or an incomplete copy?): "
            "the file does not hold the dataset its metadata describes"
        )


def _episode_number(name: str) -> int:
    return int(name.split("_", 1)[1])


def load_minari(
    path, *, random_return: float | None = None, expert_return: float | None = None, device: bool = False
) -> tuple[Dataset, DatasetInfo]:
    """Read a Minari dataset folder (layout in the module docstring) into ``(dataset, info)``.

    Episodes are read in the order of their ids. An episode that ends neither terminated nor
    truncated (cut at the end of a collection) gets ``timeouts = True`` on its last step: its
    successor is known, so a target bootstraps from it.
    """
    path = Path(path)
    data_dir = _minari_data_dir(path)
    meta_file = data_dir / "metadata.json"
    meta = read_json(meta_file)
    h5py = _h5py()
    data_format = meta.get("data_format", "hdf5")
    if data_format != "hdf5":
        raise DatasetError(f"{meta_file}: data_format is {data_format!r}; only Minari's hdf5 storage is read")
    main = data_dir / "main_data.hdf5"
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts")}
    try:
        handle = h5py.File(main, "r")
    except OSError as err:
        raise DatasetError(f"{main}: not a readable HDF5 file ({err})") from None
    with handle as f:
        names = [k for k in f.keys() if re.fullmatch(r"episode_\d+", k)]
        if not names:
            raise DatasetError(f"{main}: no episode_<id> groups")
        _check_minari_counts(h5py, f, names, meta, meta_file, main)
        for name in sorted(names, key=_episode_number):
            group = f[name]
            where = f"{main}:{name}"
            ep = {k: np.asarray(_read_dataset(h5py, group, k, where)) for k in MINARI_EPISODE_KEYS}
            steps = ep["actions"].shape[0] if ep["actions"].ndim else 0
            attr = group.attrs.get("total_steps")
            if attr is not None and np.ndim(attr) == 0 and int(attr) != steps:
                raise DatasetError(f"{where}: attribute total_steps is {int(attr)} but the episode holds {steps} steps")
            if ep["observations"].ndim < 1 or ep["observations"].shape[0] != steps + 1:
                raise DatasetError(
                    f"{where}: key 'observations' has {ep['observations'].shape[0] if ep['observations'].ndim else 0} "
                    f"rows; expected {steps + 1} (one more than the {steps} actions: the last observation too)"
                )
            for key in ("rewards", "terminations", "truncations"):
                ep[key] = _flat(ep[key], key, where)
                if ep[key].shape[0] != steps:
                    raise DatasetError(f"{where}: key {key!r} has {ep[key].shape[0]} rows; expected {steps} (one per action)")
            if steps == 0:
                continue
            obs = ep["observations"]
            if obs.ndim == 1:
                obs = obs[:, None]
            terminals = ep["terminations"].astype(bool)
            timeouts = ep["truncations"].astype(bool) & ~terminals
            if not (terminals[-1] or timeouts[-1]):
                timeouts[-1] = True
            parts["observations"].append(obs[:-1])
            parts["next_observations"].append(obs[1:])
            parts["actions"].append(ep["actions"] if ep["actions"].ndim > 1 else ep["actions"][:, None])
            parts["rewards"].append(ep["rewards"])
            parts["terminals"].append(terminals)
            parts["timeouts"].append(timeouts)
    if not parts["observations"]:
        raise DatasetError(f"{main}: every episode is empty")
    try:
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
    except ValueError as err:
        raise DatasetError(f"{main}: episodes differ in observation or action shape ({err})") from None
    dataset = from_arrays(arrays, source=str(main))
    env = meta.get("env_name") or _env_id(meta) or "minari/unknown"
    dataset_id = str(meta.get("dataset_id", path.name))
    info = _info(
        env, dataset_id, dataset.size, f"minari:{path}",
        random_return if random_return is not None else meta.get("ref_min_score"),
        expert_return if expert_return is not None else meta.get("ref_max_score"),
        {"dataset_id": dataset_id, "total_episodes": meta.get("total_episodes"), "total_steps": meta.get("total_steps")},
    )
    return (to_device(dataset) if device else dataset), info


def _env_id(meta: dict) -> str | None:
    spec = meta.get("env_spec")
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError:
            return None
    return spec.get("id") if isinstance(spec, dict) else None


def open_dataset(path, *, device: bool = True, **references) -> tuple[Dataset, DatasetInfo]:
    """Read ``path`` whatever its layout: an rlx dataset folder (``metadata.json`` with the rlx
    format), a Minari dataset folder, or a D4RL HDF5 file. A folder that is none of them (no
    metadata, or metadata that is not JSON / not of either format) is a :class:`DatasetError`
    naming the folder, what is missing or broken, and the accepted layouts."""
    path = Path(path)
    if path.is_file():
        if path.name == METADATA_FILE or path.suffix == ".npy":
            raise DatasetError(f"{path}: a file of a dataset folder; pass the folder {path.parent} (accepted: {ACCEPTED})")
        return load_d4rl(path, device=device, **references)
    if not path.is_dir():
        raise DatasetError(f"{path}: no such file or folder (accepted: {ACCEPTED})")
    if _folder_layout(path) == "rlx":
        dataset, info = load(path, device=device, mmap=not device)
        return dataset, info.replace(**{k: v for k, v in references.items() if v is not None})
    return load_minari(path, device=device, **references)


def _folder_layout(path: Path) -> str:
    """``"rlx"`` or ``"minari"`` from the folder's metadata, read before any HDF5 reader is needed."""
    meta_file = path / METADATA_FILE
    if meta_file.is_file():
        try:
            meta = read_json(meta_file)
        except DatasetError as err:
            problem = str(err).removeprefix(f"{meta_file}: ")
            raise DatasetError(f"{path}: its {METADATA_FILE} is broken: {problem} (accepted: {ACCEPTED})") from None
        if meta.get("format") == FORMAT:
            return "rlx"
        if "format" in meta:
            raise DatasetError(
                f"{meta_file}: format is {meta['format']!r}; rlx reads {FORMAT!r} folders (accepted: {ACCEPTED})"
            )
        if (path / "main_data.hdf5").exists() or {"data_format", "total_episodes", "total_steps"} & set(meta):
            return "minari"  # a Minari dataset's data/ folder itself
        raise DatasetError(
            f"{meta_file}: neither an rlx dataset's metadata (no 'format': {FORMAT!r}) nor a Minari dataset's "
            f"(no data_format / total_episodes / total_steps) (accepted: {ACCEPTED})"
        )
    if (path / "data" / METADATA_FILE).is_file():
        return "minari"
    found = [f"{key}.npy" for key in KEYS if (path / f"{key}.npy").exists()]
    if found:
        raise DatasetError(
            f"{path}: has {', '.join(found)} but no {METADATA_FILE}: an rlx dataset folder whose writing did not "
            f"finish ({METADATA_FILE} is written last), or copied without it (accepted: {ACCEPTED})"
        )
    raise DatasetError(
        f"{path}: not a dataset folder: no {METADATA_FILE} (rlx dataset) and no data/{METADATA_FILE} "
        f"(Minari dataset) (accepted: {ACCEPTED})"
    )
