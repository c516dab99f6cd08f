"""``rlx report RUN_DIR...``: aggregate runs and seeds with the interquartile mean and bootstrap
confidence intervals, per task and across tasks.

Few seeds and heavy-tailed returns make a plain mean +- std misleading. Following Agarwal et al.
("Deep Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS 2021, the
rliable library), the report gives, for every (agent, task):

* the interquartile mean (IQM): the mean of the middle 50 % of the runs' scores, i.e. the mean
  after discarding the lowest and highest ``floor(n / 4)`` (what ``scipy.stats.trim_mean(x,
  0.25)`` computes);
* a percentile bootstrap confidence interval of the IQM (95 % by default, 2,000 resamples of
  the runs with replacement, a fixed seed so the report is reproducible);

and, across tasks, the IQM of the pooled normalized scores with a *stratified* bootstrap interval
(every task's runs are resampled separately, so each task keeps its number of runs). A task enters
the aggregate only when its score has a normalization: ``(score - low) / (high - low)`` with the
ranges in :data:`NORMALIZATION` (returns whose range is fixed by the environment) or given with
``--normalize ENV=LOW,HIGH``.

A run's score is its last evaluation return per seed (``--last K``: the mean of the last K
evaluations). Runs are grouped by agent, config and task, a task being the env with its env
kwargs and, for offline agents, its dataset (``rlx/KeyDoor-v0 [size=9]``,
``brax/hopper [dataset=hopper/medium]``): the seeds of one run and runs that differ only in their
seed are pooled; agents with several configs are labelled by the fields that differ. Curves are
drawn against the runs' own step counter: env steps, or gradient steps for offline agents.
Written to ``--out`` (default: ``report/`` inside the first RUN_DIR): ``report.md``,
``report.csv`` and ``report.png`` (IQM learning curves with their intervals per task, and the
final IQMs with intervals).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# Return ranges fixed by the environment itself: success-rate envs (reward 1 on success only),
# and gymnax tasks whose per-step reward and episode limit bound the return exactly.
NORMALIZATION: dict[str, tuple[float, float, str]] = {
    "rlx/KeyDoor-v0": (0.0, 1.0, "success rate"),
    "rlx/Household-v0": (0.0, 1.0, "success rate"),
    "gymnax/CartPole-v1": (0.0, 500.0, "return range: +1 per step, 500 steps"),
    "gymnax/Acrobot-v1": (-500.0, 0.0, "return range: -1 per step, 500 steps"),
}

# Agents whose step counter counts gradient steps (offline: no env step is taken); read from a
# run's config.json "schedule" when it names its step_unit.
OFFLINE_AGENTS = ("mopo", "mobile", "morec_mopo", "morec_mobile", "bc", "td3_bc", "iql")

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------
def iqm(scores) -> float:
    """Interquartile mean: the mean of ``scores`` without the lowest and highest floor(n/4)."""
    x = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if x.size == 0:
        raise ValueError("iqm of no scores")
    cut = int(0.25 * x.size)
    return float(np.mean(x[cut : x.size - cut]))


def _iqm_rows(samples: np.ndarray) -> np.ndarray:
    """IQM of every row of ``samples`` (resamples x n)."""
    x = np.sort(samples, axis=1)
    cut = int(0.25 * x.shape[1])
    return np.mean(x[:, cut : x.shape[1] - cut], axis=1)


def bootstrap_ci(
    scores, statistic=None, *, resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` (default: IQM) over ``scores``."""
    return stratified_bootstrap_ci([scores], statistic, resamples=resamples, confidence=confidence, seed=seed)


def stratified_bootstrap_ci(
    groups: Sequence, statistic=None, *, resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE, seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` of the pooled ``groups`` (one per task),
    each group resampled with replacement on its own (stratified, as rliable does across tasks)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    groups = [np.asarray(g, dtype=np.float64).ravel() for g in groups]
    if not groups or any(g.size == 0 for g in groups):
        raise ValueError("bootstrap over an empty group of scores")
    rng = np.random.default_rng(seed)
    pooled = np.concatenate(
        [g[rng.integers(0, g.size, size=(resamples, g.size))] for g in groups], axis=1
    )
    if statistic is None:
        values = _iqm_rows(pooled)
    else:
        values = np.array([statistic(row) for row in pooled])
    alpha = 1.0 - confidence
    lo, hi = np.quantile(values, [alpha / 2, 1.0 - alpha / 2])
    return float(lo), float(hi)


def normalize(scores, low: float, high: float) -> np.ndarray:
    if not high > low:
        raise ValueError(f"normalization needs low < high, got low={low}, high={high}")
    return (np.asarray(scores, dtype=np.float64) - low) / (high - low)


# ---------------------------------------------------------------------------------------------
# Reading runs
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunData:
    """One run folder: its seeds' evaluation returns."""

    path: Path
    agent: str
    env: str
    config: dict
    steps: np.ndarray  # (num_evals,)
    returns: np.ndarray  # (num_seeds, num_evals): each seed's mean evaluation return
    env_kwargs: dict = dataclasses.field(default_factory=dict)
    step_unit: str = "env steps"  # "gradient steps" for an offline agent
    dataset: str | None = None  # an offline agent's dataset (see _dataset_of)

    @property
    def task(self) -> str:
        """The env, with its dataset and env kwargs when it has them: runs of one env with
        different options, or trained from different datasets, are different tasks."""
        tags = ([f"dataset={self.dataset}"] if self.dataset else []) + [f"{k}={v}" for k, v in sorted(self.env_kwargs.items())]
        return f"{self.env} [{', '.join(tags)}]" if tags else self.env


def _dataset_of(info: dict) -> str | None:
    """The dataset an offline run trained from: config.json's ``dataset`` (a name given with
    ``run(..., extra_info={"dataset": ...})``), else the folder ``rlx train --dataset`` recorded
    in ``agent_inputs``, by its last two path parts (``hopper/medium``)."""
    if info.get("dataset"):
        return str(info["dataset"])
    path = (info.get("agent_inputs") or {}).get("dataset")
    return None if not path else "/".join(Path(path).parts[-2:])


def _read_run(path: Path) -> RunData:
    info = json.loads((path / "config.json").read_text())
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path}/metrics.jsonl has no evaluation rows yet; nothing to report")
    for field in ("agent", "env"):
        if field not in info:
            raise ValueError(f"{path}/config.json has no {field!r} field; is it a folder written by rlx train?")
    num_seeds = int(info.get("num_seeds", 1))
    returns = np.full((num_seeds, len(rows)), np.nan)
    for e, row in enumerate(rows):
        for i in range(num_seeds):
            value = row.get(f"seed{i}/eval/return_mean", row.get("eval/return_mean") if num_seeds == 1 else None)
            returns[i, e] = np.nan if value is None else float(value)
    steps = np.array([int(row["step"]) for row in rows])
    unit = (info.get("schedule") or {}).get("step_unit")
    if unit is None:  # written before the schedule named its unit
        unit = "gradient steps" if str(info["agent"]) in OFFLINE_AGENTS else "env steps"
    return RunData(
        path, str(info["agent"]), str(info["env"]), dict(info.get("config", {})), steps, returns,
        dict(info.get("env_kwargs") or {}), str(unit), _dataset_of(info),
    )


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders (a ``config.json`` next to a ``metrics.jsonl``) at or below ``paths``."""
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise ValueError(f"{p}: no such folder")
        if (p / "config.json").is_file() and (p / "metrics.jsonl").is_file():
            found.append(p)
            continue
        below = sorted({c.parent for c in p.rglob("metrics.jsonl") if (c.parent / "config.json").is_file()})
        if not below:
            raise ValueError(f"{p}: neither a run folder (config.json and metrics.jsonl) nor a folder containing one")
        found.extend(below)
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TaskResult:
    label: str
    task: str
    scores: np.ndarray  # one score per seed (pooled over runs)
    iqm: float
    ci: tuple[float, float]
    mean: float
    median: float
    normalized: bool  # whether the aggregate across tasks uses this task
    norm_range: tuple[float, float] | None
    steps: np.ndarray  # common evaluation steps of the curves
    curve: np.ndarray  # (num_scores, len(steps)) returns at the common steps
    step_unit: str = "env steps"  # of ``steps``: "gradient steps" for an offline agent


@dataclasses.dataclass
class AggregateResult:
    label: str
    tasks: list[str]
    num_scores: int
    iqm: float
    ci: tuple[float, float]


@dataclasses.dataclass
class Report:
    tasks: list[TaskResult]
    aggregates: list[AggregateResult]
    runs: list[Path]
    last: int
    confidence: float
    resamples: int
    seed: int

    def markdown(self) -> str:
        pct = f"{self.confidence:.0%}"
        lines = [
            "# rlx report",
            "",
            f"{len(self.runs)} run folder(s). Score: each seed's evaluation return, "
            + ("last evaluation" if self.last == 1 else f"mean of the last {self.last} evaluations")
            + f". IQM = interquartile mean; CI = {pct} percentile bootstrap interval "
            f"({self.resamples:,} resamples, seed {self.seed}).",
            "",
            "## Per task",
            "",
            f"| agent | task | seeds | IQM | {pct} CI | mean | median |",
            "|---|---|---|---|---|---|---|",
        ]
        for t in self.tasks:
            lines.append(
                f"| {t.label} | {t.task} | {t.scores.size} | {t.iqm:.4g} | [{t.ci[0]:.4g}, {t.ci[1]:.4g}] "
                f"| {t.mean:.4g} | {t.median:.4g} |"
            )
        lines += ["", "## Across tasks (normalized scores)", ""]
        if self.aggregates:
            lines += [f"| agent | tasks | scores | IQM | {pct} CI (stratified) |", "|---|---|---|---|---|"]
            for a in self.aggregates:
                lines.append(
                    f"| {a.label} | {', '.join(a.tasks)} | {a.num_scores} | {a.iqm:.4g} | [{a.ci[0]:.4g}, {a.ci[1]:.4g}] |"
                )
            used = sorted({(t.task, t.norm_range) for t in self.tasks if t.normalized})
            lines += ["", "Normalization (score - low) / (high - low): " + "; ".join(
                f"{task} [{lo:g}, {hi:g}]" for task, (lo, hi) in used)]
        else:
            lines.append(
                "No task has a normalization, so no aggregate across tasks "
                "(give one with --normalize ENV=LOW,HIGH)."
            )
        lines += ["", "Runs: " + ", ".join(str(p) for p in self.runs), ""]
        return "\n".join(lines)

    def csv_rows(self) -> list[dict]:
        rows = []
        for t in self.tasks:
            rows.append({
                "agent": t.label, "task": t.task, "seeds": t.scores.size, "iqm": t.iqm, "ci_low": t.ci[0],
                "ci_high": t.ci[1], "mean": t.mean, "median": t.median, "normalized": False,
            })
        for a in self.aggregates:
            rows.append({
                "agent": a.label, "task": "all (normalized)", "seeds": a.num_scores, "iqm": a.iqm, "ci_low": a.ci[0],
                "ci_high": a.ci[1], "mean": "", "median": "", "normalized": True,
            })
        return rows


def _labels(runs: list[RunData]) -> list[str]:
    """Agent name, plus the config fields that differ between that agent's configs."""
    by_agent: dict[str, list[dict]] = {}
    for r in runs:
        by_agent.setdefault(r.agent, []).append(r.config)
    labels = []
    for r in runs:
        configs = by_agent[r.agent]
        differ = sorted(k for k in set().union(*configs) if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1)
        differ = [k for k in differ if k not in ("seed",)]
        extra = ",".join(f"{k}={r.config.get(k)}" for k in differ)
        labels.append(f"{r.agent} ({extra})" if extra else r.agent)
    return labels


def _common_curve(runs: list[RunData]) -> tuple[np.ndarray, np.ndarray]:
    steps = runs[0].steps
    for r in runs[1:]:
        steps = np.intersect1d(steps, r.steps)
    curves = [r.returns[:, np.searchsorted(r.steps, steps)] for r in runs]
    return steps, np.concatenate(curves, axis=0)


def _task_range(task: str, run: RunData, given: dict) -> tuple[float, float] | None:
    """The normalization of a task: given for the task itself (env with kwargs) or its env, or a
    built-in one of its env; a built-in return range holds for the default env options only,
    a success rate for any."""
    for key in (task, run.env):
        if key in given:
            return tuple(given[key])
    builtin = NORMALIZATION.get(run.env)
    if builtin is not None and (not run.env_kwargs or builtin[2] == "success rate"):
        return builtin[0], builtin[1]
    return None


def aggregate(
    run_dirs: Sequence[str | Path], *, last: int = 1, normalization: dict[str, tuple[float, float]] | None = None,
    resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE, seed: int = DEFAULT_SEED,
) -> Report:
    """Read ``run_dirs`` (run folders or folders containing them) and compute the report."""
    if last < 1:
        raise ValueError(f"--last must be >= 1, got {last}")
    paths = find_runs(run_dirs)
    runs = [_read_run(p) for p in paths]
    groups: dict[tuple[str, str], list[RunData]] = {}
    for label, r in zip(_labels(runs), runs, strict=True):
        groups.setdefault((label, r.task), []).append(r)
    tasks = []
    for (label, env), members in sorted(groups.items()):
        scores = np.concatenate([np.mean(r.returns[:, -last:], axis=1) for r in members])
        if not np.all(np.isfinite(scores)):
            bad = [str(r.path) for r in members if not np.all(np.isfinite(r.returns[:, -last:]))]
            raise ValueError(f"non-finite evaluation returns in {', '.join(bad)}; cannot aggregate them")
        steps, curve = _common_curve(members)
        norm = _task_range(env, members[0], normalization or {})
        tasks.append(TaskResult(
            label, env, scores, iqm(scores), bootstrap_ci(scores, resamples=resamples, confidence=confidence, seed=seed),
            float(np.mean(scores)), float(np.median(scores)), norm is not None, norm, steps, curve,
            members[0].step_unit if len({r.step_unit for r in members}) == 1 else "steps",
        ))
    aggregates = []
    for label in sorted({t.label for t in tasks}):
        mine = [t for t in tasks if t.label == label and t.normalized]
        if not mine:
            continue
        normed = [normalize(t.scores, *t.norm_range) for t in mine]
        aggregates.append(AggregateResult(
            label, [t.task for t in mine], sum(n.size for n in normed), iqm(np.concatenate(normed)),
            stratified_bootstrap_ci(normed, resamples=resamples, confidence=confidence, seed=seed),
        ))
    return Report(tasks, aggregates, paths, last, confidence, resamples, seed)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def plot_report(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from rlx.run.plot import curve_marker

    task_names = sorted({t.task for t in report.tasks})
    panels = len(task_names) + (1 if report.aggregates else 0)
    cols = min(3, panels)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    labels = sorted({t.label for t in report.tasks})
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    rng_seed = report.seed
    for ax, task in zip(axes.flat, task_names, strict=False):
        for t in (t for t in report.tasks if t.task == task):
            curve_iqm = np.array([iqm(t.curve[:, j]) for j in range(t.steps.size)])
            bands = np.array([
                bootstrap_ci(t.curve[:, j], resamples=min(report.resamples, 500), confidence=report.confidence, seed=rng_seed)
                for j in range(t.steps.size)
            ])
            ax.plot(
                t.steps, curve_iqm, color=colors[t.label], label=f"{t.label} (n={t.scores.size})",
                marker=curve_marker(t.steps.size), markersize=4,
            )
            ax.fill_between(t.steps, bands[:, 0], bands[:, 1], color=colors[t.label], alpha=0.25)
        ax.set_title(task)
        units = sorted({t.step_unit for t in report.tasks if t.task == task})
        ax.set_xlabel(units[0] if len(units) == 1 else " / ".join(units))
        ax.set_ylabel("evaluation return (IQM)")
        ax.legend(fontsize=8)
    if report.aggregates:
        ax = axes.flat[len(task_names)]
        for i, a in enumerate(report.aggregates):
            ax.errorbar(
                [a.iqm], [i], xerr=[[a.iqm - a.ci[0]], [a.ci[1] - a.iqm]], fmt="o", color=colors[a.label], capsize=4
            )
        ax.set_yticks(range(len(report.aggregates)), [a.label for a in report.aggregates])
        ax.set_xlabel(f"normalized score, IQM with {report.confidence:.0%} CI")
        ax.set_title("across tasks")
    for ax in list(axes.flat)[panels:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "csv": out / "report.csv", "png": out / "report.png"}
    paths["md"].write_text(report.markdown())
    rows = report.csv_rows()
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_report(report, paths["png"])
    return paths


def default_out(run_dirs: Sequence[str | Path]) -> Path:
    """Where a report goes without ``--out``: ``report/`` inside the first folder given, next to
    the runs it describes (not in the current folder)."""
    return Path(run_dirs[0]) / "report"
