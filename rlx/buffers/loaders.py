"""Loaders for offline datasets in other layouts, read from a local path.

* D4RL HDF5 (``load_d4rl``): one file with the datasets ``observations`` (N, obs_dim),
  ``actions`` (N, act_dim), ``rewards`` (N,), ``terminals`` (N,), ``timeouts`` (N,) at its root
  and, in most v2 files, ``next_observations``. Without ``next_observations`` the successor is
  rebuilt as ``observations[i + 1]`` inside an episode; a step that ends with a timeout then has
  no successor in the file and is dropped (what D4RL's own ``qlearning_dataset`` does), and a
  terminal step keeps its observation as successor (a critic never bootstraps from it).
* Minari (``load_minari``): a dataset folder holding ``data/metadata.json`` and
  ``data/main_data.hdf5``, whose groups ``episode_<id>`` hold ``observations`` (T + 1 rows:
  the first and the last observation included), ``actions``, ``rewards``, ``terminations``
  and ``truncations`` (T rows). Episode ``i`` gives T transitions with
  ``next_observations = observations[1:]``; ``ref_min_score`` / ``ref_max_score`` of the
  metadata become the random and expert reference returns.

Both give ``(Dataset, DatasetInfo)`` with host arrays checked by
:func:`rlx.buffers.dataset.from_arrays`; a malformed file gets a :class:`DatasetError` naming
the key and the problem. :func:`open_dataset` recognises any of the three layouts (an rlx
dataset folder too). Reading HDF5 needs ``h5py`` (``pip install "rlx[offline]"``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from rlx.buffers.dataset import (
    METADATA_FILE,
    Dataset,
    DatasetError,
    DatasetInfo,
    from_arrays,
    load,
    to_device,
)

D4RL_REQUIRED = ("observations", "actions", "rewards", "terminals", "timeouts")
MINARI_EPISODE_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError('reading HDF5 datasets needs h5py: pip install "rlx[offline]" (or pip install h5py)') from None
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
    h5py = _h5py()
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such D4RL HDF5 file")
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
        f"rebuilt from observations[i + 1]; {int((~keep).sum())} timeout-ended step(s) without a "
        f"successor dropped, {int(terminals.sum())} terminal step(s) keep their own observation"
    )
    return out, note


def _minari_data_dir(path: Path) -> Path:
    for candidate in (path / "data", path):
        if (candidate / "metadata.json").exists() and (candidate / "main_data.hdf5").exists():
            return candidate
    if (path / "data" / "metadata.json").exists() or (path / "metadata.json").exists():
        raise DatasetError(f"{path}: a Minari folder without data/main_data.hdf5 (only the hdf5 storage is read)")
    raise DatasetError(f"{path}: not a Minari dataset folder (expected data/metadata.json and data/main_data.hdf5)")


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
    h5py = _h5py()
    path = Path(path)
    data_dir = _minari_data_dir(path)
    meta_file = data_dir / "metadata.json"
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{meta_file}: not valid JSON ({err})") from None
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
        for name in sorted(names, key=_episode_number):
            group = f[name]
            where = f"{main}:{name}"
            ep = {k: np.asarray(_read_dataset(h5py, group, k, where)) for k in MINARI_EPISODE_KEYS}
            steps = ep["actions"].shape[0] if ep["actions"].ndim else 0
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
    format), a Minari dataset folder, or a D4RL HDF5 file."""
    path = Path(path)
    if path.is_file():
        return load_d4rl(path, device=device, **references)
    if (path / METADATA_FILE).exists():
        meta_text = (path / METADATA_FILE).read_text()
        if '"rlx.offline-dataset"' in meta_text:
            dataset, info = load(path, device=device, mmap=not device)
            return dataset, info.replace(**{k: v for k, v in references.items() if v is not None})
    if path.is_dir():
        return load_minari(path, device=device, **references)
    raise DatasetError(f"{path}: no such file or folder")
