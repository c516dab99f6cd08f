"""Optional metric sinks: TensorBoard and Weights & Biases, fed by the chunked driver.

``metrics.jsonl`` / ``metrics.csv`` stay the source of truth; a sink receives the same rows
(one per evaluation: ``step``, ``wall_time``, returns, losses, per-seed values) after every
chunk. A sink checks at construction that its package is installed, so a missing one is
reported before anything is compiled, and opens its files or connection only with its first
rows, so a run that is refused never touches them. A resumed run sends only the rows it trains.

    from rlx.run.sinks import TensorBoardSink
    run(sac, config, env, out_dir="runs/x", sinks=[TensorBoardSink("runs/x/tensorboard")])
"""

from __future__ import annotations

import hashlib
import importlib
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol


class SinkUnavailableError(ValueError):
    """The package a requested sink needs is not installed."""


class MetricsSink(Protocol):
    def write(self, records: list[dict]) -> None: ...

    def close(self) -> None: ...


def _require(module: str, sink: str, install: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SinkUnavailableError(f"the {sink} sink needs the {module} package: pip install {install}") from None


def _scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The record's numeric values except ``step``; None and NaN (no value) are left out."""
    out = {}
    for name, value in record.items():
        if name == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[name] = float(value)
    return out


class TensorBoardSink:
    """Scalars per evaluation into a TensorBoard event file (via ``tensorboardX``)."""

    def __init__(self, log_dir):
        self._tbx = _require("tensorboardX", "TensorBoard", "tensorboardX")
        self.log_dir = Path(log_dir)
        self._writer = None

    def write(self, records: list[dict]) -> None:
        if not records:
            return
        if self._writer is None:
            self._writer = self._tbx.SummaryWriter(logdir=str(self.log_dir))
        for record in records:
            for name, value in _scalars(record).items():
                self._writer.add_scalar(name, value, global_step=int(record["step"]))
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def wandb_run_id(run_dir) -> str:
    """A W&B run id fixed by the run folder, so a resumed run continues the same W&B run."""
    path = Path(run_dir).resolve()
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", path.name)[:40]
    return f"{name}-{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"


class WandbSink:
    """Scalars per evaluation logged to a Weights & Biases run (``wandb.init`` on the first rows)."""

    def __init__(self, project: str, *, name: str | None = None, config: Mapping | None = None,
                 run_dir=None, **init_kwargs):
        self._wandb = _require("wandb", "Weights & Biases", "wandb")
        self._init = {"project": project, "name": name, "config": dict(config or {}), **init_kwargs}
        if run_dir is not None:
            self._init.setdefault("dir", str(run_dir))
            self._init.setdefault("id", wandb_run_id(run_dir))
            self._init.setdefault("resume", "allow")
        self._run = None

    def write(self, records: list[dict]) -> None:
        if not records:
            return
        if self._run is None:
            self._run = self._wandb.init(**self._init)
        for record in records:
            self._run.log(_scalars(record), step=int(record["step"]))

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None
