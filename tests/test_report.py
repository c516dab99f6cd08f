"""``rlx report``: IQM and bootstrap intervals, known values on synthetic runs, files and CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from rlx.cli import main
from rlx.run import logging as runlog
from rlx.run import report as rep


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------
def test_iqm_known_values():
    assert rep.iqm(np.arange(1, 9)) == 4.5  # drops 1, 2 and 7, 8
    assert rep.iqm([1.0, 2.0, 6.0]) == 3.0  # n < 4: nothing dropped
    assert rep.iqm([0.0, 1.0, 1.0, 100.0]) == 1.0  # one outlier each side dropped
    assert rep.iqm([5.0, -3.0, 2.0, 9.0, 0.0, 1.0, 7.0, 4.0]) == 3.0  # unsorted input: middle 1, 2, 4, 5
    with pytest.raises(ValueError, match="no scores"):
        rep.iqm([])


def test_iqm_matches_scipy_trim_mean():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for n in (1, 3, 4, 5, 10, 17, 64):
        x = rng.standard_cauchy(n)
        assert rep.iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25), rel=1e-12)


def test_bootstrap_interval_properties():
    assert rep.bootstrap_ci([2.0] * 7) == (2.0, 2.0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=10)
    lo, hi = rep.bootstrap_ci(x)
    assert lo < rep.iqm(x) < hi
    assert rep.bootstrap_ci(x) == (lo, hi)  # fixed seed: reproducible
    assert rep.bootstrap_ci(x, seed=1) != (lo, hi)
    wide = hi - lo
    lo100, hi100 = rep.bootstrap_ci(rng.normal(size=100))
    assert hi100 - lo100 < wide / 2  # ~ 1 / sqrt(n)
    lo_mean, hi_mean = rep.bootstrap_ci(x, np.mean, resamples=500)
    assert lo_mean < np.mean(x) < hi_mean
    with pytest.raises(ValueError, match="confidence"):
        rep.bootstrap_ci(x, confidence=1.5)


@pytest.mark.timeout(60)
def test_bootstrap_interval_coverage():
    """95 % intervals of the IQM of 20 normal scores contain the true IQM (0) ~95 % of the time."""
    rng = np.random.default_rng(42)
    trials = 200
    hits = 0
    for t in range(trials):
        lo, hi = rep.bootstrap_ci(rng.normal(size=20), resamples=1000, seed=t)
        hits += lo <= 0.0 <= hi
    assert 0.85 <= hits / trials <= 0.99, hits / trials


def test_stratified_bootstrap_keeps_each_task_size():
    # Task A (2 runs) all 0, task B (6 runs) all 1: every stratified resample pools two 0s and six
    # 1s, whose IQM (drop 2 each side) is exactly 1. A pooled (unstratified) resample would vary.
    assert rep.stratified_bootstrap_ci([[0.0, 0.0], [1.0] * 6]) == (1.0, 1.0)
    lo, hi = rep.bootstrap_ci([0.0, 0.0] + [1.0] * 6)
    assert lo < 1.0


# ---------------------------------------------------------------------------------------------
# Synthetic run folders in the format rlx train writes
# ---------------------------------------------------------------------------------------------
def write_run(folder, agent, env, finals, config=None, num_evals=3, **info):
    """A run folder whose seeds end at ``finals`` (earlier evaluations lower); ``info``: more
    config.json fields (env_kwargs, schedule)."""
    finals = np.asarray(finals, dtype=float)
    folder.mkdir(parents=True)
    num_seeds = finals.size
    runlog.write_json(folder / "config.json", {
        "agent": agent, "env": env, "seed": 0, "num_seeds": num_seeds, "config": config or {"critic_lr": 3e-4}, **info,
    })
    ramp = np.linspace(0.5, 1.0, num_evals)
    metrics = {
        "step": np.tile(np.arange(1, num_evals + 1) * 1000, (num_seeds, 1)),
        "eval/return_mean": finals[:, None] * ramp[None, :],
        "eval/return_std": np.zeros((num_seeds, num_evals)),
    }
    writer = runlog.MetricsWriter(folder)
    writer.write(runlog.eval_records(metrics, 0, num_evals, [1.0] * num_evals))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    # sac on KeyDoor: two runs of four seeds; pooled finals 0.1 ... 0.8, IQM 0.45.
    write_run(root / "sac-kd-0", "sac", "rlx/KeyDoor-v0", [0.1, 0.5, 0.3, 0.7])
    write_run(root / "sac-kd-1", "sac", "rlx/KeyDoor-v0", [0.8, 0.2, 0.6, 0.4])
    # sac on CartPole: 100, 200, 300, 400 -> IQM 250, normalized 0.2 ... 0.8.
    write_run(root / "sac-cp", "sac", "gymnax/CartPole-v1", [100, 200, 300, 400])
    # sac on Pendulum (no normalization): -300, -200, -150, -100 -> IQM -175.
    write_run(root / "sac-pd", "sac", "gymnax/Pendulum-v1", [-300, -200, -150, -100])
    # ppo on KeyDoor: one run, finals 1, 1, 0, 1 -> IQM 1.
    write_run(root / "ppo-kd", "ppo", "rlx/KeyDoor-v0", [1.0, 1.0, 0.0, 1.0], config={"learning_rate": 2.5e-4})
    return root


def test_report_known_values(runs):
    report = rep.aggregate([runs])
    by = {(t.label, t.task): t for t in report.tasks}
    assert set(by) == {("sac", "rlx/KeyDoor-v0"), ("sac", "gymnax/CartPole-v1"), ("sac", "gymnax/Pendulum-v1"),
                       ("ppo", "rlx/KeyDoor-v0")}
    kd = by[("sac", "rlx/KeyDoor-v0")]
    assert kd.scores.size == 8 and kd.iqm == pytest.approx(0.45)
    assert kd.ci[0] < 0.45 < kd.ci[1]
    assert by[("sac", "gymnax/CartPole-v1")].iqm == pytest.approx(250.0)
    assert by[("sac", "gymnax/Pendulum-v1")].iqm == pytest.approx(-175.0)
    assert not by[("sac", "gymnax/Pendulum-v1")].normalized
    assert by[("ppo", "rlx/KeyDoor-v0")].iqm == pytest.approx(1.0)
    agg = {a.label: a for a in report.aggregates}
    # sac across normalized tasks: KeyDoor 0.1..0.8 and CartPole 0.2, 0.4, 0.6, 0.8 pooled (12 scores,
    # drop 3 each side): the middle six are 0.3, 0.4, 0.4, 0.5, 0.6, 0.6 -> 2.8 / 6.
    assert agg["sac"].tasks == ["gymnax/CartPole-v1", "rlx/KeyDoor-v0"]
    assert agg["sac"].num_scores == 12
    assert agg["sac"].iqm == pytest.approx(2.8 / 6)
    assert agg["sac"].ci[0] <= agg["sac"].iqm <= agg["sac"].ci[1]
    # A normalization given by the user brings Pendulum in.
    with_pd = rep.aggregate([runs], normalization={"gymnax/Pendulum-v1": (-300.0, -100.0)})
    assert {a.label: a for a in with_pd.aggregates}["sac"].num_scores == 16


def test_report_last_k_and_curves(runs):
    report = rep.aggregate([runs / "sac-cp"], last=2)
    (task,) = report.tasks
    # the last two evaluations are 0.75 and 1.0 of the finals: mean 0.875
    assert task.iqm == pytest.approx(0.875 * 250.0)
    assert list(task.steps) == [1000, 2000, 3000]
    assert task.curve.shape == (4, 3)


def test_report_files_and_cli(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| sac | rlx/KeyDoor-v0 | 8 | 0.45 |" in printed
    md = (out / "report.md").read_text()
    assert "Across tasks" in md and "IQM" in md
    with (out / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    kd = next(r for r in rows if r["agent"] == "sac" and r["task"] == "rlx/KeyDoor-v0")
    assert float(kd["iqm"]) == pytest.approx(0.45) and kd["seeds"] == "8"
    assert any(r["task"] == "all (normalized)" and r["agent"] == "sac" for r in rows)
    assert (out / "report.png").stat().st_size > 10_000


def test_labels_separate_configs(tmp_path):
    write_run(tmp_path / "a", "sac", "rlx/KeyDoor-v0", [0.1, 0.2], config={"critic_lr": 1e-3, "tau": 0.005})
    write_run(tmp_path / "b", "sac", "rlx/KeyDoor-v0", [0.9, 0.8], config={"critic_lr": 3e-4, "tau": 0.005})
    labels = sorted(t.label for t in rep.aggregate([tmp_path]).tasks)
    assert labels == ["sac (critic_lr=0.0003)", "sac (critic_lr=0.001)"]


def test_report_refusals(tmp_path, capsys):
    with pytest.raises(ValueError, match="no such folder"):
        rep.aggregate([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a run folder"):
        rep.aggregate([tmp_path / "empty"])
    write_run(tmp_path / "nan", "sac", "rlx/KeyDoor-v0", [0.1, np.nan])
    with pytest.raises(ValueError, match="non-finite evaluation returns"):
        rep.aggregate([tmp_path / "nan"])
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nan"), "--normalize", "gymnax/Pendulum-v1=-100"]) == 2
    assert "ENV=LOW,HIGH" in capsys.readouterr().err


def test_report_reads_real_run_layout(tmp_path):
    """config.json and metrics.jsonl as rlx train writes them (one seed, no seed axis in files)."""
    folder = tmp_path / "one"
    write_run(folder, "sac", "rlx/Household-v0", [0.25])
    row = json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["seed0/eval/return_mean"] == 0.25
    (task,) = rep.aggregate([folder]).tasks
    assert task.iqm == 0.25 and task.ci == (0.25, 0.25)


def test_runs_with_other_env_kwargs_are_other_tasks(tmp_path):
    write_run(tmp_path / "a", "ppo", "rlx/KeyDoor-v0", [0.2, 0.4], env_kwargs={"size": 9})
    write_run(tmp_path / "b", "ppo", "rlx/KeyDoor-v0", [0.8, 1.0])
    write_run(tmp_path / "c", "ppo", "gymnax/CartPole-v1", [100.0, 300.0], env_kwargs={"max_steps_in_episode": 200})
    report = rep.aggregate([tmp_path])
    by = {t.task: t for t in report.tasks}
    assert set(by) == {"rlx/KeyDoor-v0 [size=9]", "rlx/KeyDoor-v0", "gymnax/CartPole-v1 [max_steps_in_episode=200]"}
    assert by["rlx/KeyDoor-v0 [size=9]"].iqm == pytest.approx(0.3) and by["rlx/KeyDoor-v0"].iqm == pytest.approx(0.9)
    # a success rate stays one with other options; CartPole's 0..500 return range does not
    assert by["rlx/KeyDoor-v0 [size=9]"].normalized and not by["gymnax/CartPole-v1 [max_steps_in_episode=200]"].normalized
    assert "| ppo | rlx/KeyDoor-v0 [size=9] | 2 |" in report.markdown()


def test_report_default_out_is_inside_the_runs_folder(runs, tmp_path, monkeypatch, capsys):
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(runs, root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["report", str(root)]) == 0
    assert (root / "report" / "report.md").is_file() and not (elsewhere / "report").exists()
    assert f"wrote {root / 'report' / 'report.md'}" in capsys.readouterr().out
    # the report folder is not read as a run the next time
    assert main(["report", str(root)]) == 0


def test_report_plot_markers_and_step_unit(tmp_path, saved_figures):
    figures = saved_figures
    write_run(tmp_path / "runs" / "offline", "mopo", "gymnax/Pendulum-v1", [-200.0, -150.0], num_evals=1,
              schedule={"step_unit": "gradient steps"})
    write_run(tmp_path / "runs" / "old", "morec_mobile", "gymnax/Acrobot-v1", [-100.0], num_evals=1)  # no unit in file
    write_run(tmp_path / "runs" / "online", "sac", "gymnax/CartPole-v1", [100.0], num_evals=1)
    report = rep.aggregate([tmp_path / "runs"])
    assert {t.task: t.step_unit for t in report.tasks} == {
        "gymnax/Pendulum-v1": "gradient steps", "gymnax/Acrobot-v1": "gradient steps", "gymnax/CartPole-v1": "env steps",
    }
    rep.write_report(report, tmp_path / "out")
    axes = {ax.get_title(): ax for ax in figures[-1].axes if ax.get_title()}
    assert axes["gymnax/Pendulum-v1"].get_xlabel() == "gradient steps"
    assert axes["gymnax/CartPole-v1"].get_xlabel() == "env steps"
    for task in ("gymnax/Pendulum-v1", "gymnax/Acrobot-v1", "gymnax/CartPole-v1"):
        (line,) = axes[task].lines
        assert line.get_marker() not in (None, "None", "", " "), task  # one evaluation: a visible dot


def test_runs_from_other_datasets_are_other_tasks(tmp_path):
    """Offline runs of one env trained from different datasets are not pooled: the dataset named
    in config.json (``dataset``, else the folder in ``agent_inputs``) is part of the task."""
    write_run(tmp_path / "a", "iql", "brax/hopper", [10.0, 30.0], agent_inputs={"dataset": "/data/hopper/medium"})
    write_run(tmp_path / "b", "iql", "brax/hopper", [50.0, 70.0], agent_inputs={"dataset": "/data/hopper/expert"})
    write_run(tmp_path / "c", "iql", "brax/hopper", [90.0, 110.0], dataset="hopper-replay")
    report = rep.aggregate([tmp_path], normalization={"brax/hopper [dataset=hopper/expert]": (0.0, 100.0)})
    by = {t.task: t for t in report.tasks}
    assert set(by) == {"brax/hopper [dataset=hopper/medium]", "brax/hopper [dataset=hopper/expert]",
                       "brax/hopper [dataset=hopper-replay]"}
    assert by["brax/hopper [dataset=hopper/medium]"].iqm == pytest.approx(20.0)
    assert by["brax/hopper [dataset=hopper/expert]"].normalized and not by["brax/hopper [dataset=hopper/medium]"].normalized
