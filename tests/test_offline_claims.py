"""benchmarks/offline_claims.py: a tiny run on the refrigerator writes one run folder per variant
and a report whose rows carry finite IQMs inside their bootstrap intervals; a second invocation
reads the finished folders back without training; bad arguments and folders written with other
settings are refused before anything is compiled."""

import json
from pathlib import Path

import numpy as np
import pytest
from _benchmarks import load_benchmark

VARIANTS = ("bc", "morec_mopo")


@pytest.fixture(scope="module")
def claims():
    return load_benchmark("offline_claims")


def tiny_argv(root: Path) -> list[str]:
    return ["--tiny", "--datasets", "fridge", "--variants", ",".join(VARIANTS), "--runs-dir", str(root / "runs"),
            "--out", str(root / "out"), "--no-progress"]


@pytest.fixture(scope="module")
def tiny_run(claims, tmp_path_factory):
    root = tmp_path_factory.mktemp("offline_claims")
    return root, claims.main(tiny_argv(root))


def no_training(claims, monkeypatch):
    """Make every training entry point of the benchmark fail loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError("trained or compiled something")

    monkeypatch.setattr(claims, "run", refuse)
    for stage in ("data", "dynamics", "dynamics_reward"):
        monkeypatch.setattr(claims.Shared, stage, refuse)


@pytest.mark.timeout(60)
def test_bad_arguments_are_refused_before_anything_compiles(claims, tmp_path, capsys, monkeypatch):
    no_training(claims, monkeypatch)
    for argv, named, allowed in (
        (["--variants", "bc,morec_mopoo"], "morec_mopoo", "morec_mobile_base"),
        (["--datasets", "fridge,hopper-mediumm"], "hopper-mediumm", "walker2d"),
        (["--datasets", "ant-medium"], "ant-medium", "medium-replay"),
        (["--seeds", "0"], "--seeds", ">= 1"),
    ):
        with pytest.raises(SystemExit):
            claims.main([*argv, "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert named in err and allowed in err, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


@pytest.mark.timeout(300)
def test_tiny_run_writes_run_folders_and_a_report(tiny_run):
    root, result = tiny_run
    for name in VARIANTS:
        folder = root / "runs" / "fridge" / name
        info = json.loads((folder / "config.json").read_text())
        assert (info["variant"], info["dataset"], info["agent"], info["num_seeds"]) == (name, "fridge", name, 3)
        assert (folder / "summary.json").exists() and (folder / "metrics.jsonl").read_text().count("\n") == 2
    shared = root / "runs" / "fridge" / "shared"
    assert (shared / "dynamics").is_dir() and (shared / "dynamics_reward").is_dir()
    # the MOREC run's config describes the shared models it used
    config = json.loads((root / "runs" / "fridge" / "morec_mopo" / "config.json").read_text())["config"]
    assert (config["ensemble_size"], config["reward_iterations"], config["reward_keep_every"]) == (3, 40, 10)

    payload = json.loads((root / "out" / "offline_claims-cpu-cpu-tiny.json").read_text())
    rows = {r["variant"]: r for r in payload["datasets"]["fridge"]["rows"]}
    assert set(rows) == set(VARIANTS)
    for r in rows.values():
        assert r["seeds"] == 3 and len(r["per_seed"]) == 3 and np.all(np.isfinite(r["per_seed"]))
        low, high = r["ci"]
        assert np.isfinite([r["iqm"], low, high]).all() and low <= r["iqm"] <= high
        assert r["wall_seconds"] > 0 and not r["reused"]
    fridge = payload["datasets"]["fridge"]
    assert fridge["normalization"]["random"] < fridge["normalization"]["high"]
    assert {"dataset", "normalization", "dynamics", "dynamics_reward"} <= set(fridge["stages"])
    assert payload["header"]["machine"]["load_average_at_end"] is not None
    table = (root / "out" / "offline_claims-cpu-cpu-tiny.md").read_text()
    assert "TINY" in table and "## fridge" in table and "| bc | bc |" in table and "| morec_mopo | morec_mopo |" in table
    assert "Settings other than the papers'" in table and "rollout_length 3 (paper 100)" in table
    assert (root / "out" / "offline_claims-cpu-cpu-tiny-fridge.png").stat().st_size > 0
    assert result["datasets"]["fridge"]["rows"] == payload["datasets"]["fridge"]["rows"]


@pytest.mark.timeout(120)
def test_second_invocation_reuses_the_run_folders(claims, tiny_run, capsys, monkeypatch):
    root, first = tiny_run
    summaries = {n: (root / "runs" / "fridge" / n / "summary.json").stat().st_mtime_ns for n in VARIANTS}
    no_training(claims, monkeypatch)
    capsys.readouterr()
    again = claims.main(tiny_argv(root))
    err = capsys.readouterr().err
    assert all(f"fridge: {n} reused" in err for n in VARIANTS), err
    assert summaries == {n: (root / "runs" / "fridge" / n / "summary.json").stat().st_mtime_ns for n in VARIANTS}
    rows, before = again["datasets"]["fridge"]["rows"], first["datasets"]["fridge"]["rows"]
    assert [r["reused"] for r in rows] == [True, True]
    for r, b in zip(rows, before, strict=True):
        assert (r["iqm"], r["ci"], r["per_seed"]) == (b["iqm"], b["ci"], b["per_seed"])
    # the same runs folder with other settings: refused, naming what differs
    with pytest.raises(SystemExit, match="num_seeds"):
        claims.main([*tiny_argv(root), "--seeds", "2"])
