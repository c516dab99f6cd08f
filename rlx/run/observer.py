"""The host side of a run folder: what happens between the chunks of a :class:`~rlx.run.compiled.CompiledRun`.

:func:`rlx.run.run` (one folder) and :func:`rlx.run.run_sweep` (a sweep folder with one
metrics folder per point) both train through a :class:`RunObserver`, which

* starts the folder (:func:`start_folder`: ``config.json`` / ``sweep.json``) unless it resumes;
* appends ``metrics.jsonl`` / ``metrics.csv`` after every chunk (one pair per metrics folder, each
  for its slice of the runs) and feeds the logging sinks (:mod:`rlx.run.sinks`);
* checks every chunk's metrics on the host (:mod:`rlx.run.nan_guard`) and stops at the first
  non-finite one without checkpointing it;
* saves checkpoints of the whole state (:mod:`rlx.run.checkpoint`) every ``checkpoint_every``
  evaluation blocks, after the last one, and on Ctrl-C, which then raises
  :class:`~rlx.run.checkpoint.TrainingInterrupted`;
* shows progress, and times compilation and training (``wall_time`` of each evaluation).

A resumed run starts the metrics files over with the rows its checkpoint holds; rows written
after that checkpoint are dropped and written again. Host work never changes a result.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rlx.run import checkpoint as ckpt
from rlx.run import logging as runlog
from rlx.run import nan_guard

__all__ = ["MetricsFolder", "Observed", "RunObserver", "progress_bar", "start_folder"]


def progress_bar(enabled: bool, total: int, desc: str, unit: str = "step"):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True, smoothing=0.1)


def start_folder(out_dir, overwrite: bool, files: Mapping[str, dict]) -> Path:
    """Claim ``out_dir`` (:func:`rlx.run.logging.prepare_run_dir`) and write its descriptions:
    ``files`` maps a path inside it (``config.json``, ``points/0-.../config.json``) to its JSON."""
    out = runlog.prepare_run_dir(out_dir, overwrite)
    for name, payload in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        runlog.write_json(out / name, payload)
    return out


@dataclasses.dataclass(frozen=True)
class MetricsFolder:
    """A folder whose ``metrics.jsonl`` / ``metrics.csv`` hold the rows of runs ``runs``
    (a slice of the leading runs axis), and the name its metrics carry in a shared sink."""

    path: Path | None  # None: rows for the sinks only
    runs: slice = dataclasses.field(default_factory=lambda: slice(None))
    sink_prefix: str = ""


@dataclasses.dataclass
class Observed:
    """What :meth:`RunObserver.train` returns."""

    state: Any  # the final state, on the devices (padding runs included)
    metrics: dict[str, np.ndarray]  # every leaf (runs, num_evals)
    start: int  # evaluations restored from a checkpoint
    compile_seconds: float  # this session's and, after a resume, the earlier sessions'
    run_seconds: float
    wall_time: np.ndarray
    checkpoint: Path | None


class RunObserver:
    """Host work around the chunks of one compiled run (see the module docstring).

    ``out``: the run (or sweep) folder, None to write nothing; ``identity``: what the
    checkpoints' meta records (:func:`rlx.run.checkpoint.run_identity`); ``restored``: the
    checkpoint a resumed run starts from; ``folders``: where the metrics rows go (default: ``out``
    itself for every run); ``run_name(i)``: how the NaN guard names run ``i``;
    ``postfix(metrics)``: the progress bar's text after a chunk; ``checkpointed(state)``: the
    part of the state a checkpoint holds (default: all of it).
    """

    def __init__(
        self, out: Path | None, schedule, *, num_runs: int, identity: Mapping, resume_command: str,
        restored: ckpt.Restored | None = None, folders: Sequence[MetricsFolder] | None = None,
        checkpoint_every: int | None = None, keep_checkpoints: int = 3, save_buffer: bool = True,
        sinks: tuple = (), debug_nans: bool = False, run_name: Callable[[int], str] | None = None,
        rows_file: str = "metrics.jsonl", last_good_use: str | None = None,
        bar=None, description: str = "", postfix: Callable[[dict], str] | None = None,
        checkpointed: Callable[[Any], Any] | None = None,
    ):
        self.out, self.schedule, self.num_runs = out, schedule, num_runs
        self.identity, self.resume_command = dict(identity), resume_command
        self.sinks, self.debug_nans, self.run_name = tuple(sinks), debug_nans, run_name
        self.rows_file, self.last_good_use = rows_file, last_good_use
        self.bar, self.description, self.postfix = bar, description, postfix
        self.checkpointed = checkpointed or (lambda state: state)
        self.start = 0 if restored is None else restored.evaluation
        self.complete = self.start >= schedule.num_evals
        self.wall_times: list[float] = [] if restored is None else [float(w) for w in restored.meta["wall_time"]]
        self.earlier = {} if restored is None else restored.meta
        self.checkpoint_path = None if restored is None else restored.path
        self.chunks: list[dict[str, np.ndarray]] = [] if restored is None else [restored.metrics]
        self.folders = list(folders) if folders is not None else ([MetricsFolder(out)] if out is not None else [])
        self.writers: list[runlog.MetricsWriter] = []
        if out is not None and not self.complete:
            # The files start over with the rows the checkpoint holds.
            with ckpt.writing(self.folders[0].path / "metrics.jsonl", self.checkpoint_path, resume_command):
                for folder in self.folders:
                    rows = None
                    if self.start:
                        part = {k: v[folder.runs] for k, v in restored.metrics.items()}
                        rows = runlog.eval_records(part, 0, self.start, self.wall_times)
                    self.writers.append(runlog.MetricsWriter(folder.path, rows))
        self.checkpoints = None
        if out is not None and checkpoint_every != 0 and jax.process_count() == 1 and not self.complete:
            self.checkpoints = ckpt.RunCheckpoints(
                out, keep=keep_checkpoints, save_buffer=save_buffer, resume_command=resume_command
            )
        self.every = checkpoint_every or ckpt.default_checkpoint_every(schedule.num_evals)

    # ---- writing ---------------------------------------------------------------------------------
    def _write_rows(self, merged, start: int, stop: int) -> None:
        wall = self.wall_times[start:stop]
        shared = []
        for folder, writer in zip(self.folders, self.writers or [None] * len(self.folders), strict=True):
            part = {k: v[folder.runs] for k, v in merged.items()}
            rows = runlog.eval_records(part, start, stop, wall)
            if writer is not None:
                with ckpt.writing(folder.path / "metrics.jsonl", self.checkpoint_path, self.resume_command):
                    writer.write(rows)
            shared.append((folder.sink_prefix, rows))
        if not self.sinks or jax.process_index() != 0:
            return
        if not self.folders:  # no folder: the sinks get the whole run's rows
            shared = [("", runlog.eval_records(merged, start, stop, wall))]
        records = []
        for i in range(stop - start):
            record: dict[str, Any] = {}
            for prefix, rows in shared:
                record.update({(k if k in ("step", "wall_time") or not prefix else f"{prefix}/{k}"): v for k, v in rows[i].items()})
            records.append(record)
        for sink in self.sinks:
            sink.write(records)

    def _save(self, done: int, state_on_host, merged, compile_seconds: float, t_run: float):
        meta = {
            **self.identity,
            "schedule": dataclasses.asdict(self.schedule),
            "num_evals": self.schedule.num_evals,
            "env_steps": self.schedule.warmup_env_steps + done * self.schedule.env_steps_per_eval,
            "wall_time": self.wall_times,
            "compile_seconds": self.earlier.get("compile_seconds", 0.0) + compile_seconds,
            "run_seconds": self.earlier.get("run_seconds", 0.0) + time.perf_counter() - t_run,
        }
        try:
            return self.checkpoints.save(done, state_on_host, merged, meta)
        except ckpt.CheckpointSaveError:  # a full disk: the earlier checkpoints are as they were
            self.checkpoints.close()
            raise

    # ---- the loop ------------------------------------------------------------------------------
    def train(self, compiled, state, blocks_per_chunk: int, t0: float) -> Observed:
        """Run ``compiled``'s chunks from ``state`` (initial or restored; ``t0``: when the run
        started, before ``init``) to the end of the schedule, with the host work in between."""
        schedule, num_evals = self.schedule, self.schedule.num_evals
        steps_per_run = schedule.env_steps_per_eval * self.num_runs
        if self.bar is not None:
            self.bar.set_description(f"{self.description} (compiling)")
        if not self.complete:
            compiled.chunk(min(blocks_per_chunk, num_evals - self.start), state)
        jax.block_until_ready(state)
        compile_seconds = time.perf_counter() - t0
        if self.bar is not None:
            self.bar.set_description(self.description)
            self.bar.update((schedule.warmup_env_steps + self.start * schedule.env_steps_per_eval) * self.num_runs)
        done = saved = self.start
        wall_offset = self.wall_times[-1] if self.wall_times else 0.0
        t_run = time.perf_counter()
        non_finite = None
        with ckpt.InterruptRequest(enabled=self.checkpoints is not None) as stop:
            while done < num_evals and not stop.requested:
                n = min(blocks_per_chunk, num_evals - done)
                state, metrics = compiled.chunk(n, state)(state)
                metrics = compiled.fetch_metrics(metrics)
                self.chunks.append(metrics)
                now = time.perf_counter()
                self.wall_times += [wall_offset + now - t0] * n
                merged = {k: np.concatenate([c[k] for c in self.chunks], axis=1) for k in metrics}
                self._write_rows(merged, done, done + n)
                only = None if self.debug_nans else nan_guard.is_reward_metric
                if (non_finite := nan_guard.first_non_finite(metrics, done, only)) is not None:
                    break  # no checkpoint of a non-finite state: the latest one stays the last good one
                done += n
                due = done // self.every > saved // self.every or done == num_evals or stop.requested
                if self.checkpoints is not None and due:
                    self.checkpoint_path = self._save(done, compiled.fetch(self.checkpointed(state)), merged, compile_seconds, t_run)
                    saved = done
                if self.bar is not None:
                    self.bar.update(n * steps_per_run)
                    sps = ((done - self.start) * steps_per_run) / max(now - t_run, 1e-9)
                    text = self.postfix(metrics) + " | " if self.postfix is not None else ""
                    self.bar.set_postfix_str(f"{text}{sps:,.0f} steps/s")
        run_seconds = time.perf_counter() - t_run
        self.close()
        if non_finite is not None:
            raise nan_guard.NonFiniteMetricError(
                non_finite, num_evals, self.checkpoint_path, self.out, every_metric=self.debug_nans,
                run_name=self.run_name(non_finite.seed) if self.run_name is not None else None,
                rows_file=self.rows_file, last_good_use=self.last_good_use,
            )
        if done < num_evals:  # Ctrl-C, after a checkpoint of where it stopped
            raise ckpt.TrainingInterrupted(self.out, done, num_evals, self.checkpoint_path, self.resume_command)
        return Observed(
            state, {k: np.concatenate([c[k] for c in self.chunks], axis=1) for k in self.chunks[0]}, self.start,
            compile_seconds + self.earlier.get("compile_seconds", 0.0),
            run_seconds + self.earlier.get("run_seconds", 0.0),
            np.asarray(self.wall_times, np.float64), self.checkpoint_path,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.checkpoints is not None:
            self.checkpoints.close()
        for sink in self.sinks:
            sink.close()

    def finishing(self, path: Path):
        """Around the final outputs (plot, summary): a failed write names the last checkpoint."""
        return ckpt.writing(path, self.checkpoint_path, self.resume_command)
