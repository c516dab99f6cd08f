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
  +- one standard deviation shaded);
* ``checkpoints/``: the state of every run (points x seeds), as a run folder's.

A sweep is one more axis of runs: it trains through the :class:`~rlx.run.compiled.CompiledRun`
and :class:`~rlx.run.observer.RunObserver` that :func:`rlx.run.run` uses, so it has a run's
checkpoints, Ctrl-C handling, ``--resume`` (:func:`resume_sweep`, ``rlx sweep ALGO --resume
DIR``: bit for bit the sweep that never stopped), logging sinks and NaN guard.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rlx.core import contract
from rlx.core.config import ConfigError, stack_configs
from rlx.run import checkpoint as ckpt
from rlx.run import logging as runlog
from rlx.run.compiled import CompiledRun
from rlx.run.driver import _resolve_env, seed_keys
from rlx.run.mesh import runs_layout
from rlx.run.observer import MetricsFolder, RunObserver, progress_bar, start_folder
from rlx.run.train import Schedule, make_train

__all__ = ["SweepResult", "SweepSpec", "grid", "load_sweep_spec", "resume_sweep", "run_inputs", "run_sweep"]


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
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 3,
    save_buffer: bool = True,
    resume: bool = False,
    sinks: tuple = (),
    debug_nans: bool = False,
) -> SweepResult:
    """Train every point of a sweep with ``num_seeds`` seeds in one compiled program.

    ``points`` is a grid (``{"critic_lr": [1e-4, 3e-4], "tau": [0.005, 0.01]}``, see
    :func:`grid`) or an explicit list of field-value dicts; each point is
    ``base_config.override(**point)``. Only tunable fields may differ between points: a
    static one fixes shapes or loop lengths and is refused (by ``stack_configs``) before
    anything is compiled, as is every invalid value.

    A sweep is a run whose runs are points x seeds, so it has what :func:`rlx.run.run` has:
    checkpoints of every run in ``<out_dir>/checkpoints/`` (``checkpoint_every``,
    ``keep_checkpoints``, ``save_buffer``; Ctrl-C saves one and raises
    :class:`rlx.run.checkpoint.TrainingInterrupted`), ``resume=True`` (continue the sweep in
    ``out_dir`` from its latest checkpoint, bit for bit; the arguments must describe the sweep
    its ``sweep.json`` describes), ``sinks`` (each metric under its point's folder name) and
    the NaN guard (``debug_nans``: every metric, not only rewards and returns).
    """
    if num_seeds < 1:
        raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
    if blocks_per_chunk < 1:
        raise ValueError(f"blocks_per_chunk must be >= 1, got {blocks_per_chunk}")
    if checkpoint_every is not None and checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 (0: no checkpoints), got {checkpoint_every}")
    if keep_checkpoints < 1:
        raise ValueError(f"keep_checkpoints must be >= 1, got {keep_checkpoints}")
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

    def init(inputs):
        config, key = inputs
        return config, make_train(agent, config, env, env_params).init(key)

    def run_blocks(carry, num_blocks):
        config, runner_state = carry
        runner_state, metrics = make_train(agent, config, env, env_params).run_blocks(runner_state, num_blocks)
        return (config, runner_state), metrics

    # Every run is vmapped, even a sweep of one run: the configs are batched arguments.
    compiled = CompiledRun(init, run_blocks, layout, batched=True)
    inputs = (run_configs, run_keys)
    identity = {
        **ckpt.run_identity(agent_name, env_name, env_kwargs, seed, num_seeds, base_config),
        "points": ckpt.plain(points), "num_runs": num_runs,
    }
    info = {
        "agent": agent_name, "env": env_name, "env_kwargs": env_kwargs or {},
        "seed": seed, "num_seeds": num_seeds, "schedule": dataclasses.asdict(schedule),
        **(extra_info or {}),
    }
    folders = point_folders(points)
    restored = None
    if resume:
        if out_dir is None:
            raise ValueError("resume=True needs out_dir, the folder of the sweep to continue")
        if jax.process_count() > 1:
            raise ValueError("resuming a sweep is supported on one host only")
        out = Path(out_dir)
        restored = ckpt.open_for_resume(
            out, identity, lambda: compiled.abstract_state(inputs)[1], saved=_saved_identity(out), described_in="sweep.json"
        )
    elif out_dir is not None and jax.process_index() == 0:  # with several hosts the first one writes
        out = start_folder(out_dir, overwrite, _descriptions(info, points, configs, folders, base_config, layout))
    else:
        out = None
    complete = restored is not None and restored.evaluation >= schedule.num_evals
    observer = RunObserver(
        out, schedule, num_runs=num_runs, identity=identity, resume_command=f"rlx sweep {agent_name} --resume {out}",
        restored=restored, checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints,
        save_buffer=save_buffer, sinks=sinks, debug_nans=debug_nans,
        folders=[
            MetricsFolder(None if out is None else out / folder, slice(p * num_seeds, (p + 1) * num_seeds), folder.name)
            for p, folder in enumerate(folders)
        ],
        run_name=lambda r: f"point {r // num_seeds} ({point_label(points[r // num_seeds])}), seed {r % num_seeds}",
        rows_file="points/*/metrics.jsonl", last_good_use=f"rlx sweep {agent_name} --resume {out} continues from it",
        bar=progress_bar(progress and not complete, schedule.total_env_steps * num_runs, f"sweep {env_name}"),
        description=f"sweep {env_name}",
        postfix=lambda m: "best point "
        f"{float(np.nanmax(np.mean(m['eval/return_mean'][:, -1].reshape(num_points, num_seeds), axis=1))):8.1f}",
        checkpointed=lambda carry: carry[1],  # the configs are the sweep's inputs, not its state
    )
    t0 = time.perf_counter()
    if restored is None:
        carry = compiled.init(inputs)
    else:
        carry = compiled.restore((run_configs, restored.state))
    done = observer.train(compiled, carry, blocks_per_chunk, t0)
    metrics = {k: v.reshape(num_points, num_seeds, -1) for k, v in done.metrics.items()}
    result = SweepResult(points, configs, metrics, schedule, out, done.compile_seconds, done.run_seconds)
    if out is not None and not (complete and (out / "summary.json").exists()):
        with observer.finishing(out / "summary.json"):
            _write_summary(result, out, f"{agent_name} on {env_name}")
    return result


def point_folders(points: Sequence[Mapping[str, Any]]) -> list[Path]:
    """Each point's metrics folder, relative to the sweep's: ``points/<i>-<label>``."""
    width = len(str(len(points) - 1))
    return [Path("points") / f"{i:0{width}d}-{point_label(p)}" for i, p in enumerate(points)]


def _descriptions(info, points, configs, folders, base_config, layout) -> dict[str, dict]:
    """``sweep.json`` and every point's ``config.json``."""
    files = {
        "sweep.json": {
            **info,
            "fields": list(points[0]),
            "points": [{"point": i, "folder": str(f), **p} for i, (f, p) in enumerate(zip(folders, points, strict=True))],
            "base_config": base_config.to_dict(),
            "versions": runlog.versions(),
            "device": runlog.device_info(),
            "runs_layout": layout.describe(),
            "command": runlog.command_line(),
        }
    }
    for i, (folder, point, config) in enumerate(zip(folders, points, configs, strict=True)):
        files[str(folder / "config.json")] = {
            **info, "config": config.to_dict(), "sweep_point": {"point": i, **point},
            # Each point's folder describes itself, as a run folder does.
            "versions": runlog.versions(), "device": runlog.device_info(), "command": runlog.command_line(),
        }
    return files


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What ``sweep.json`` says about a sweep: enough to run it again or continue it."""

    sweep_dir: Path
    agent: Any
    base_config: Any
    points: list[dict[str, Any]]
    env: str
    env_kwargs: dict
    seed: int
    num_seeds: int
    info: dict  # the whole sweep.json


def _read_sweep_json(sweep_dir: Path) -> dict:
    path = sweep_dir / "sweep.json"
    if not path.is_file():
        raise ckpt.CheckpointError(f"{sweep_dir} is not a sweep folder: it has no sweep.json")
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ckpt.CheckpointError(f"{path} cannot be read ({type(err).__name__}: {err})") from err
    if not isinstance(info, dict):
        raise ckpt.CheckpointError(f"{path} is not a sweep description")
    return info


def _saved_identity(sweep_dir: Path) -> dict:
    info = _read_sweep_json(sweep_dir)
    fields = info.get("fields") or []
    return {
        **{key: info.get(key) for key in ckpt.IDENTITY_KEYS},
        "env_kwargs": info.get("env_kwargs") or {},
        "config": info.get("base_config", {}),
        "points": [{f: p.get(f) for f in fields} for p in info.get("points") or []],
    }


def load_sweep_spec(sweep_dir) -> SweepSpec:
    """Read ``<sweep_dir>/sweep.json``; a clear error when it is not a sweep folder."""
    from rlx import envs as rlx_envs
    from rlx.agents import get_agent

    sweep_dir = Path(sweep_dir)
    info = _read_sweep_json(sweep_dir)
    path = sweep_dir / "sweep.json"
    for module in info.get("env_modules") or ():
        try:
            rlx_envs.import_env_module(module)
        except (ImportError, ValueError) as err:
            raise ckpt.CheckpointError(f"{path} names env module {module!r}, which cannot be imported now ({err})") from err
    try:
        agent = get_agent(info["agent"])
        base = agent.Config.from_dict(info["base_config"])
        points = _saved_identity(sweep_dir)["points"]
        if not points:
            raise ValueError("it has no points")
        return SweepSpec(
            sweep_dir, agent, base, points, info["env"], dict(info.get("env_kwargs") or {}),
            int(info.get("seed", 0)), int(info.get("num_seeds", 1)), info,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ckpt.CheckpointError(f"{path} cannot be read as a sweep description ({type(err).__name__}: {err})") from err


def resume_sweep(sweep_dir, agent=None, **options) -> SweepResult:
    """Continue the sweep in ``sweep_dir`` from its latest checkpoint (:func:`run_sweep` with
    ``resume=True``): agent, base config, points, env and seeds come from its ``sweep.json``;
    ``options`` are :func:`run_sweep`'s run options (``progress``, ``blocks_per_chunk``,
    ``checkpoint_every``, ``keep_checkpoints``, ``save_buffer``, ``devices``, ``sinks``,
    ``debug_nans``). An offline agent is built again from the inputs the sweep names."""
    spec = load_sweep_spec(sweep_dir)
    if agent is None:
        run_spec = ckpt.RunSpec(
            spec.sweep_dir, spec.agent, spec.base_config, spec.env, spec.env_kwargs, spec.seed, spec.num_seeds, spec.info,
        )
        agent = ckpt.bind_inputs(run_spec).agent
    return run_sweep(
        agent, spec.base_config, spec.points, spec.env, env_kwargs=spec.env_kwargs, seed=spec.seed,
        num_seeds=spec.num_seeds, out_dir=spec.sweep_dir, resume=True, **options,
    )


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
