"""Run folders: config.json, metrics.jsonl / metrics.csv, the learning-curve PNG."""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import math
import os
import platform
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from rlx.core.files import OutputDirError, prepare_out_dir


class RunFileError(OSError):
    """A file of a run folder could not be written: a full disk, a read-only folder. The message
    names the file and the operating system's reason; ``errno`` is kept."""

    def __init__(self, path, cause: BaseException):
        self.path, self.cause = Path(path), cause
        code, self.reason = os_error_text(cause)
        super().__init__(f"could not write {path}: {self.reason}")
        self.errno = code


def os_error_text(err: BaseException) -> tuple[int | None, str]:
    """(errno, "No space left on device [ENOSPC]") of a failed write; the errno is also read
    from the ``[os_error_code='28']`` that tensorstore (orbax's writer) puts in its messages."""
    code = err.errno if isinstance(err, OSError) else None
    if code is None and (found := re.search(r"\[os_error_code='(\d+)'\]", str(err))):
        code = int(found.group(1))
    if code is not None:
        return code, f"{os.strerror(code)} [{errno.errorcode.get(code, code)}]"
    text = (str(err).splitlines() or [""])[0].split(" [tensorstore_spec=")[0]
    return None, f"{type(err).__name__}: {text[:300]}"


@contextlib.contextmanager
def _writing(path):
    try:
        yield
    except RunFileError:
        raise
    except OSError as err:
        raise RunFileError(path, err) from err


# What `rlx train` and `rlx sweep` write into their folder (write_json's temporary files too).
RUN_FILES = (
    "config.json", "metrics.jsonl", "metrics.csv", "summary.json", "learning_curve.png",  # a run
    "sweep.json", "summary.md", "summary.csv", "curves.png",  # a sweep
)
RUN_FOLDERS = ("checkpoints", "tensorboard", "points")


def prepare_run_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """:func:`prepare_out_dir` for a run or a sweep. With ``overwrite`` the files and folders
    an earlier run or sweep wrote there (:data:`RUN_FILES`, :data:`RUN_FOLDERS`: its
    checkpoints, metrics, summaries, plots, TensorBoard logs, sweep points) are removed first, so
    nothing of the old run can be taken for the new one's (an old checkpoint resumed or
    evaluated); any other file stays. Saved dynamics models (``dynamics/``) stay too: a new run
    may load them with ``--dynamics``, and one that trains its own replaces them."""
    path = prepare_out_dir(path, overwrite)
    if not overwrite:
        return path
    try:
        for name in RUN_FOLDERS:
            if (path / name).is_dir() and not (path / name).is_symlink():
                shutil.rmtree(path / name)
        for name in (*RUN_FILES, *(f"{name}.tmp" for name in RUN_FILES), *RUN_FOLDERS):
            if (path / name).is_file() or (path / name).is_symlink():
                (path / name).unlink()
    except OSError as err:
        raise OutputDirError(
            f"--overwrite: cannot remove the earlier run's files from {path}: {err.strerror or err} ({err.filename})"
        ) from err
    return path


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("rlx", "jax", "jaxlib", "flax", "optax", "gymnax", "brax", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def device_info() -> dict[str, Any]:
    import jax

    devices = jax.devices()
    return {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def machine_info() -> dict[str, Any]:
    """:func:`device_info` plus the CPU model and the load average, for benchmark reports."""
    info = device_info()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def benchmark_header(name: str, quick: bool, argv: list[str] | None, settings: dict) -> dict[str, Any]:
    """The fields every benchmark result starts with: what ran, when, where, with what."""
    import datetime

    return {
        "benchmark": name,
        "quick": quick,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine_info(),
        "versions": versions(),
        "settings": settings,
    }


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` through a temporary file (a reader never sees half of it);
    a failed write raises :class:`RunFileError`."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    text = json.dumps(payload, indent=2, default=_jsonable) + "\n"
    with _writing(path):
        tmp.write_text(text)
        tmp.replace(path)


def _jsonable(x):
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, tuple):
        return list(x)
    return str(x)


def _clean(v: float) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def eval_records(metrics: dict[str, np.ndarray], start: int, stop: int, wall_times) -> list[dict]:
    """One JSON-able record per evaluation ``start <= e < stop``.

    ``metrics`` leaves have shape (num_seeds, num_evals). Each record has ``step``,
    ``wall_time``, ``eval/return_mean`` (mean over seeds of each seed's mean over episodes),
    ``eval/return_std`` (mean over seeds of the within-seed std over episodes), with several
    seeds ``eval/return_std_over_seeds``, per-seed ``seed{i}/eval/return_mean`` and
    ``seed{i}/eval/return_std``, and every other metric averaged over seeds.
    """
    num_seeds = metrics["step"].shape[0]
    records = []
    for e, wall in zip(range(start, stop), wall_times, strict=False):
        rec: dict[str, Any] = {"step": int(metrics["step"][0, e]), "wall_time": round(float(wall), 3)}
        means = metrics["eval/return_mean"][:, e]
        rec["eval/return_mean"] = _clean(np.mean(means))
        rec["eval/return_std"] = _clean(np.mean(metrics["eval/return_std"][:, e]))
        if num_seeds > 1:
            rec["eval/return_std_over_seeds"] = _clean(np.std(means))
        for name in sorted(metrics):
            if name in ("step", "eval/return_mean", "eval/return_std"):
                continue
            values = metrics[name][:, e]
            finite = values[np.isfinite(values)]
            rec[name] = _clean(np.mean(finite)) if finite.size else None
        for i in range(num_seeds):
            rec[f"seed{i}/eval/return_mean"] = _clean(metrics["eval/return_mean"][i, e])
            rec[f"seed{i}/eval/return_std"] = _clean(metrics["eval/return_std"][i, e])
        records.append(rec)
    return records


class MetricsWriter:
    """Appends evaluation records to ``metrics.jsonl`` and ``metrics.csv`` as they arrive.

    Both files start over with ``records`` (a resumed run: the rows up to its checkpoint).
    A failed write raises :class:`RunFileError`.
    """

    def __init__(self, out_dir: Path, records: list[dict] | None = None):
        self.jsonl_path = out_dir / "metrics.jsonl"
        self.csv_path = out_dir / "metrics.csv"
        self._columns: list[str] | None = None
        for p in (self.jsonl_path, self.csv_path):
            with _writing(p):
                p.write_text("")
        self.write(records or [])

    def write(self, records: list[dict]) -> None:
        if not records:
            return
        with _writing(self.jsonl_path), self.jsonl_path.open("a") as f:
            for rec in records:
                f.write(json.dumps(rec) + "\n")
        with _writing(self.csv_path), self.csv_path.open("a", newline="") as f:
            if self._columns is None:
                self._columns = list(records[0])
                csv.writer(f).writerow(self._columns)
            writer = csv.writer(f)
            for rec in records:
                writer.writerow(["" if rec.get(c) is None else rec.get(c) for c in self._columns])


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
