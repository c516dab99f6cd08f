"""Sweeps: a grid of tunable hyperparameters x seeds, trained as one compiled program.

Tunable config fields are pytree leaves (:mod:`rlx.core.config`), so the points of a sweep
stack into one config with a leading axis (:func:`rlx.core.config.stack_configs`). Every point
is repeated for every seed, and ``jax.vmap`` over (config, key) pairs trains all
points x seeds at once; with several devices the runs are sharded over them
(:mod:`rlx.run.mesh`). Every point uses the same seed keys as ``rlx train`` with the same
``--seed`` and ``--num-seeds`` (:func:`run_inputs`), so it starts from the initial state of a
separate run of its config, bit for bit. From the first update on the two agree only up to
float rounding: the separate run compiles its tunable values in as constants, the sweep passes
them as batched arguments, and XLA folds and fuses some arithmetic differently, so the last
bits of some gradients differ. Training amplifies such differences, slowly at first and then
chaotically (SAC on Pendulum: about 1e-7 relative after 100 updates, 1e-3 after 2,000; final
returns after 20,000 steps as far apart as two seeds'), so a point is a sample of its config's
runs rather than a replay of ``rlx train``.

    rlx sweep sac --env gymnax/Pendulum-v1 --set critic_lr=1e-4,3e-4,1e-3 --set tau=0.005,0.01 \\
        --num-seeds 4 --out runs/s

writes into ``--out``:

* ``sweep.json``: agent, env, seeds, the points, the base config, versions, devices, command;
* ``points/<i>-<field>=<value>,.../``: each point's ``config.json`` and ``metrics.jsonl`` /
  ``metrics.csv`` (the format of an ``rlx train`` run folder), appended after every chunk;
* ``summary.md`` / ``summary.csv`` / ``summary.json``: final evaluation return, mean +- std over
  seeds, per point, best first;
* ``curves.png``: evaluation return against env steps, one line per point (mean over seeds,
  +- one standard deviation shaded).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rlx.core import contract
from rlx.core.config import ConfigError, stack_configs
from rlx.run import logging as runlog
from rlx.run.driver import _progress_bar, _resolve_env, seed_keys
from rlx.run.mesh import runs_layout
from rlx.run.train import Schedule, make_train

__all__ = ["SweepResult", "grid", "run_inputs", "run_sweep"]


def grid(**values: Sequence) -> list[dict[str, Any]]:
    """Every combination of the given field values, the last field varying fastest.

    ``grid(critic_lr=[1e-4, 3e-4], tau=[0.005, 0.01])`` gives four points.
    """
    for name, options in values.items():
        if isinstance(options, (str, bytes)) or not isinstance(options, Sequence) or len(options) == 0:
            raise ConfigError(f"sweep field {name} needs a non-empty list of values, got {options!r}")
    names = list(values)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values.values())]


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return str(value)


def point_label(values: Mapping[str, Any]) -> str:
    """``critic_lr=0.0003,tau=0.005`` (``base`` for a point that changes nothing)."""
    return ",".join(f"{k}={_format_value(v)}" for k, v in values.items()) or "base"


def run_inputs(configs: Sequence[Any], seed: int, num_seeds: int) -> tuple[Any, np.ndarray]:
    """The config and key of every run of a sweep, along a leading runs axis.

    Run r is point r // num_seeds with seed r % num_seeds; its key is the one ``rlx train --seed
    seed --num-seeds num_seeds`` gives that seed (:func:`rlx.run.driver.seed_keys`).
    """
    stacked = stack_configs(configs)
    run_configs = jax.tree.map(lambda x: np.repeat(x, num_seeds, axis=0), stacked)
    run_keys = np.tile(np.asarray(seed_keys(seed, num_seeds)), (len(configs), 1))
    return run_configs, run_keys


@dataclasses.dataclass
class SweepResult:
    """What :func:`run_sweep` returns. ``metrics`` leaves have shape (points, seeds, evals)."""

    points: list[dict[str, Any]]  # the swept field values of each point
    configs: list[Any]
    metrics: dict[str, np.ndarray]
    schedule: Schedule
    out_dir: Path | None
    compile_seconds: float
    run_seconds: float

    @property
    def labels(self) -> list[str]:
        return [point_label(p) for p in self.points]

    @property
    def steps(self) -> np.ndarray:
        return self.metrics["step"][0, 0]

    @property
    def final_return(self) -> np.ndarray:
        """Last evaluation's mean return, shape (points, seeds)."""
        return self.metrics["eval/return_mean"][:, :, -1]

    def table(self) -> list[dict[str, Any]]:
        """One row per point, best final return (mean over seeds) first; NaN last."""
        final = self.final_return
        rows = [
            {
                "point": i,
                **point,
                "final_return_mean": float(np.mean(final[i])),
                "final_return_std": float(np.std(final[i])),
                "seeds": int(final.shape[1]),
            }
            for i, point in enumerate(self.points)
        ]
        return sorted(rows, key=lambda r: (math.isnan(r["final_return_mean"]), -np.nan_to_num(r["final_return_mean"])))

    def summary_markdown(self, title: str = "") -> str:
        fields = list(self.points[0])
        head = ["rank", "point", *fields, "final return (mean +- std over seeds)"]
        lines = [f"# {title}", ""] if title else []
        lines += [
            f"Final evaluation return after {self.schedule.total_env_steps:,} {self.schedule.step_unit}, "
            f"{self.final_return.shape[1]} seed(s) per point, best first.",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for rank, row in enumerate(self.table(), start=1):
            cells = [str(rank), str(row["point"]), *(_format_value(row[f]) for f in fields)]
            cells.append(f"{row['final_return_mean']:.1f} +- {row['final_return_std']:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def run_sweep(
    agent,
    base_config,
    points: Mapping[str, Sequence] | Sequence[Mapping[str, Any]],
    env,
    env_params=None,
    *,
    env_kwargs: dict | None = None,
    seed: int = 0,
    num_seeds: int = 1,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    blocks_per_chunk: int = 1,
    devices: int | None = None,
    extra_info: dict | None = None,
) -> SweepResult:
    """Train every point of a sweep with ``num_seeds`` seeds in one compiled program.

    ``points`` is a grid (``{"critic_lr": [1e-4, 3e-4], "tau": [0.005, 0.01]}``, see
    :func:`grid`) or an explicit list of field-value dicts; each point is
    ``base_config.override(**point)``. Only tunable fields may differ between points: a
    static one fixes shapes or loop lengths and is refused (by ``stack_configs``) before
    anything is compiled, as is every invalid value.
    """
    if num_seeds < 1:
        raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
    if blocks_per_chunk < 1:
        raise ValueError(f"blocks_per_chunk must be >= 1, got {blocks_per_chunk}")
    points = grid(**points) if isinstance(points, Mapping) else [dict(p) for p in points]
    if not points:
        raise ConfigError("a sweep needs at least one point")
    configs = [base_config.override(**p) for p in points]
    stack_configs(configs)  # refuses differing static fields, saying why
    # The swept values as the configs hold them (strings from the command line are coerced).
    points = [{name: getattr(c, name) for name in p} for c, p in zip(configs, points, strict=True)]
    for i, j in itertools.combinations(range(len(configs)), 2):
        if configs[i] == configs[j]:
            raise ConfigError(f"sweep points {i} and {j} are the same config ({point_label(points[i])})")
    env_name, env, env_params = _resolve_env(env, env_params, env_kwargs)
    schedule: Schedule = make_train(agent, configs[0], env, env_params).schedule  # checks the env

    num_points = len(configs)
    num_runs = num_points * num_seeds
    run_configs, run_keys = run_inputs(configs, seed, num_seeds)
    layout = runs_layout(num_runs, devices)
    agent_name = contract.name_of(agent)

    writers = _prepare_outputs(
        out_dir, overwrite, points, configs,
        {
            "agent": agent_name, "env": env_name, "env_kwargs": env_kwargs or {},
            "seed": seed, "num_seeds": num_seeds, "schedule": dataclasses.asdict(schedule),
            **(extra_info or {}),
        },
        base_config, layout,
    )
    out = None if writers is None else Path(out_dir)

    def init(config, key):
        return config, make_train(agent, config, env, env_params).init(key)

    def run_blocks(carry, num_blocks):
        config, runner_state = carry
        runner_state, metrics = make_train(agent, config, env, env_params).run_blocks(runner_state, num_blocks)
        return (config, runner_state), metrics

    bar = _progress_bar(progress, schedule.total_env_steps * num_runs, f"sweep {env_name}")
    t0 = time.perf_counter()
    carry = layout.jit(jax.vmap(init))(*layout.place((run_configs, run_keys)))
    chunk_fns: dict[int, Any] = {}

    def chunk_fn(n):
        if n not in chunk_fns:
            fn = layout.jit(jax.vmap(lambda c: run_blocks(c, n)), donate_argnums=0)
            chunk_fns[n] = fn.lower(carry).compile()
        return chunk_fns[n]

    if bar is not None:
        bar.set_description(f"sweep {env_name} (compiling)")
    chunk_fn(min(blocks_per_chunk, schedule.num_evals))
    jax.block_until_ready(carry)
    compile_seconds = time.perf_counter() - t0
    if bar is not None:
        bar.set_description(f"sweep {env_name}")
        bar.update(schedule.warmup_env_steps * num_runs)

    chunks: list[dict[str, np.ndarray]] = []
    done = 0
    t_run = time.perf_counter()
    while done < schedule.num_evals:
        n = min(blocks_per_chunk, schedule.num_evals - done)
        carry, metrics = chunk_fn(n)(carry)
        metrics = {k: v.reshape(num_points, num_seeds, n) for k, v in layout.fetch(metrics).items()}
        chunks.append(metrics)
        now = time.perf_counter()
        if writers is not None:
            for p, writer in enumerate(writers):
                point_metrics = {k: v[p] for k, v in metrics.items()}
                writer.write(runlog.eval_records(point_metrics, 0, n, [now - t0] * n))
        done += n
        if bar is not None:
            bar.update(n * schedule.env_steps_per_eval * num_runs)
            best = float(np.nanmax(np.mean(metrics["eval/return_mean"][:, :, -1], axis=1)))
            sps = (done * schedule.env_steps_per_eval * num_runs) / max(now - t_run, 1e-9)
            bar.set_postfix_str(f"best point {best:8.1f} | {sps:,.0f} steps/s")
    run_seconds = time.perf_counter() - t_run
    if bar is not None:
        bar.close()

    all_metrics = {k: np.concatenate([c[k] for c in chunks], axis=2) for k in chunks[0]}
    result = SweepResult(points, configs, all_metrics, schedule, out, compile_seconds, run_seconds)
    if out is not None:
        _write_summary(result, out, f"{agent_name} on {env_name}")
    return result


def _prepare_outputs(out_dir, overwrite, points, configs, info, base_config, layout):
    """``sweep.json`` and every point's folder with its ``config.json``; the metrics writers."""
    # With several hosts (jax.distributed) every host has all metrics; the first one writes them.
    if out_dir is None or jax.process_index() != 0:
        return None
    out = runlog.prepare_run_dir(out_dir, overwrite)
    width = len(str(len(points) - 1))
    folders = [out / "points" / f"{i:0{width}d}-{point_label(p)}" for i, p in enumerate(points)]
    runlog.write_json(
        out / "sweep.json",
        {
            **info,
            "fields": list(points[0]),
            "points": [{"point": i, "folder": str(f.relative_to(out)), **p} for i, (f, p) in enumerate(zip(folders, points, strict=True))],
            "base_config": base_config.to_dict(),
            "versions": runlog.versions(),
            "device": runlog.device_info(),
            "runs_layout": layout.describe(),
            "command": runlog.command_line(),
        },
    )
    writers = []
    for i, (folder, point, config) in enumerate(zip(folders, points, configs, strict=True)):
        folder.mkdir(parents=True, exist_ok=True)
        runlog.write_json(folder / "config.json", {
            **info, "config": config.to_dict(), "sweep_point": {"point": i, **point},
            # Each point's folder describes itself, as a run folder does.
            "versions": runlog.versions(), "device": runlog.device_info(), "command": runlog.command_line(),
        })
        writers.append(runlog.MetricsWriter(folder))
    return writers


def _write_summary(result: SweepResult, out: Path, title: str) -> None:
    rows = result.table()
    (out / "summary.md").write_text(result.summary_markdown(title))
    with (out / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: _format_value(v) if isinstance(v, tuple) else v for k, v in r.items()} for r in rows)
    runlog.write_json(
        out / "summary.json",
        {
            "points": rows,
            "final_return_per_seed": [[float(x) for x in r] for r in result.final_return],
            "env_steps_per_run": int(result.schedule.total_env_steps),
            "step_unit": result.schedule.step_unit,  # "gradient steps" for an offline agent
            "compile_seconds": round(result.compile_seconds, 3),
            "run_seconds": round(result.run_seconds, 3),
            "env_steps_per_second": round(
                result.schedule.total_env_steps * result.final_return.size / max(result.run_seconds, 1e-9), 1
            ),
        },
    )
    plot_sweep(result.steps, result.metrics["eval/return_mean"], result.labels, out / "curves.png", title)


def plot_sweep(steps, returns, labels, path, title: str = "") -> Path:
    """One line per point: the mean over seeds of the evaluation return, +- one std shaded.

    ``returns`` has shape (points, seeds, evals).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    returns = np.asarray(returns, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(7.2, 4.4), dpi=120)
    colors = plt.get_cmap("tab10" if len(labels) <= 10 else "viridis")
    for i, (curves, label) in enumerate(zip(returns, labels, strict=True)):
        color = colors(i if len(labels) <= 10 else i / max(len(labels) - 1, 1))
        mean = curves.mean(axis=0)
        ax.plot(steps, mean, color=color, linewidth=1.6, label=label)
        if curves.shape[0] > 1:
            std = curves.std(axis=0)
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.12, linewidth=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small" if len(labels) <= 10 else "x-small")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def parse_set(items: list[str]) -> dict[str, list[str]]:
    """``["critic_lr=1e-4,3e-4", "tau=0.005"]`` -> ``{"critic_lr": ["1e-4", "3e-4"], "tau": ["0.005"]}``."""
    values: dict[str, list[str]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        options = [v.strip() for v in text.split(",") if v.strip()]
        if not sep or not name or not options:
            raise ConfigError(f"--set expects FIELD=V1,V2,..., got {item!r}")
        if name in values:
            raise ConfigError(f"--set {name} is given twice; list all its values in one --set")
        values[name] = options
    return values
