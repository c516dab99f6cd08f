"""Run folders that are damaged, full, overwritten or not resumable: every case ends in a clear
message, never in a traceback or in numbers that silently differ.

- a checkpoint whose array bytes changed on disk is refused (checksums saved with it);
- a checkpoint whose metrics item was replaced is refused, also without checksums;
- ``--overwrite`` removes the old run's checkpoints and files, nothing else;
- a save that fails (disk full, read-only folder) names what failed and keeps the last good one;
- a sweep point cannot be resumed (it has no checkpoint), and nothing is written.
"""

import errno
import json
import os
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from rlx import envs
from rlx.agents import sac
from rlx.cli import main
from rlx.run import CheckpointError, evaluate_run, make_train, resume_run, run, run_sweep, seed_keys
from rlx.run import checkpoint as ckpt
from rlx.run import logging as runlog
from rlx.run.checkpoint import (
    CHECKPOINT_DIR,
    RunCheckpoints,
    abstract_runner_state,
    load_trained_run,
    run_identity,
)

pytestmark = pytest.mark.timeout(300)

ENV = "gymnax/Pendulum-v1"
ENV_KWARGS = {"max_steps_in_episode": 50}
# Two evaluation blocks (steps 350, 600). A hidden layer of 64 puts arrays larger than orbax's
# inline limit (1 KiB) into the state's data files, where changed bytes go unnoticed by orbax.
WIDE = sac.SACConfig(
    total_steps=600, learning_starts=100, eval_every=250, eval_episodes=2, batch_size=16, hidden_sizes=(64,),
)
IDENTITY = run_identity("sac", ENV, ENV_KWARGS, 0, 1, WIDE)
TINY_FLAGS = [
    "--env", ENV, "--env-kwarg", "max_steps_in_episode=50", "--total-steps", "600",
    "--learning-starts", "100", "--eval-every", "250", "--eval-episodes", "2", "--batch-size", "16",
    "--hidden-sizes", "16", "--no-progress",
]


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A finished one-seed run with checkpoints 1 and 2 (replay buffer included)."""
    out = tmp_path_factory.mktemp("wide") / "run"
    return run(sac, WIDE, ENV, env_kwargs=ENV_KWARGS, out_dir=out, progress=False, checkpoint_every=1)


@pytest.fixture(scope="module")
def template():
    env, params = envs.make(ENV, **ENV_KWARGS)
    return abstract_runner_state(make_train(sac, WIDE, env, params), 1, seed_keys(0, 1))


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def _snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def _restore(folder: Path, template, evaluation=None, buffers=True):
    with RunCheckpoints(folder, write=False) as checkpoints:
        restored = checkpoints.restore(template, IDENTITY, evaluation=evaluation, buffers=buffers)
    return restored._replace(state=jax.device_get(restored.state))


def _differing_leaves(a, b) -> list[str]:
    leaves_a, leaves_b = jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    return [
        jax.tree_util.keystr(path) for (path, x), y in zip(leaves_a, leaves_b, strict=True)
        if not np.array_equal(np.asarray(x), np.asarray(y))
    ]


def _flip(path: Path, pristine: bytes, at: float, count: int = 64) -> None:
    data = bytearray(pristine)
    start = int(len(data) * at)
    for i in range(start, min(start + count, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _flip_silently(folder: Path, item: str, template, monkeypatch) -> list[str]:
    """Flip 64 bytes of a data file of checkpoint 2's ``item`` where orbax itself reads the
    changed bytes back without an error; returns the leaves whose values then differ.

    Parts of orbax's data files are never read back, and others are compressed (a flip there
    already fails to decompress), so the data files are tried largest first, each from its
    middle outwards, until a flip changes values with the checksum check turned off: the
    damage the check must catch.
    """
    good = _restore(folder, template, evaluation=2).state
    files = [f for f in (folder / CHECKPOINT_DIR / "2" / item).rglob("*") if f.is_file() and f.parent.name == "d"]
    for data_file in sorted(files, key=lambda f: f.stat().st_size, reverse=True):
        pristine = data_file.read_bytes()
        for at in (0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.6, 0.7, 0.8, 0.9):
            _flip(data_file, pristine, at)
            with monkeypatch.context() as unchecked:
                unchecked.setattr(ckpt, "checksum_problems", lambda *args, **kwargs: [], raising=False)
                try:
                    changed = _differing_leaves(good, _restore(folder, template, evaluation=2).state)
                except CheckpointError:  # orbax noticed this one itself
                    continue
            if changed:
                return changed
        data_file.write_bytes(pristine)
    pytest.fail(f"no flip in the data files of {folder / CHECKPOINT_DIR / '2' / item} changes what orbax reads back")


# --- changed bytes --------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_changed_state_bytes_are_refused_naming_the_previous_checkpoint(wide, template, tmp_path, monkeypatch):
    folder = _copy(wide.out_dir, tmp_path)
    changed = _flip_silently(folder, "state", template, monkeypatch)
    assert changed and not any("buffer" in leaf for leaf in changed), changed
    before = _snapshot(folder)
    for call in (
        lambda: resume_run(folder, progress=False),
        lambda: evaluate_run(folder, episodes=2),
        lambda: _restore(folder, template, buffers=False),
    ):
        with pytest.raises(CheckpointError, match=r"checkpoints/2 cannot be read, it is damaged") as err:
            call()
        text = str(err.value)
        assert "checksum" in text and f"use the previous checkpoint ({folder / CHECKPOINT_DIR / '1'})" in text, text
    assert _snapshot(folder) == before  # refusals write nothing
    # the previous checkpoint is intact and still restores
    assert _restore(folder, template, evaluation=1).evaluation == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_changed_buffer_bytes_are_refused_for_resume(wide, template, tmp_path, monkeypatch, capsys):
    folder = _copy(wide.out_dir, tmp_path)
    changed = _flip_silently(folder, "buffers", template, monkeypatch)
    assert changed and all("buffer" in leaf for leaf in changed), changed
    with pytest.raises(CheckpointError, match=r"checkpoints/2 cannot be read, it is damaged") as err:
        _restore(folder, template)
    assert "checksum" in str(err.value) and "previous checkpoint" in str(err.value)
    # the command line: a message, no traceback; nothing written
    before = _snapshot(folder)
    assert main(["train", "sac", "--resume", str(folder), "--no-progress"]) == 2
    assert "checkpoints/2 cannot be read" in capsys.readouterr().err
    assert _snapshot(folder) == before
    # evaluation reads no buffer, so the policy of that checkpoint is still usable
    assert load_trained_run(folder).restored.evaluation == 2


def test_checkpoints_without_checksums_still_load(wide, template, tmp_path):
    folder = _copy(wide.out_dir, tmp_path)
    meta_file = folder / CHECKPOINT_DIR / "2" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    assert set(meta["checksums"]) >= {"state", "buffers", "metrics"}
    del meta["checksums"]  # as written before checksums were saved
    meta_file.write_text(json.dumps(meta))
    restored = _restore(folder, template)
    assert _differing_leaves(jax.device_get(wide.state), restored.state) == []


# --- the metrics item replaced ---------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("with_checksums", [True, False])
def test_replaced_metrics_item_is_refused_cleanly(wide, template, tmp_path, with_checksums, capsys):
    folder = _copy(wide.out_dir, tmp_path)
    metrics_file = folder / CHECKPOINT_DIR / "2" / "metrics" / "metrics"
    payload = json.loads(metrics_file.read_text())
    if not with_checksums:
        meta_file = folder / CHECKPOINT_DIR / "2" / "meta" / "metadata"
        meta_file.write_text(json.dumps({k: v for k, v in json.loads(meta_file.read_text()).items() if k != "checksums"}))
    for replacement in ({}, {k: v for k, v in payload.items() if k != "step"}, {"step": 5}, []):
        metrics_file.write_text(json.dumps(replacement))
        for call in (
            lambda: _restore(folder, template),
            lambda: load_trained_run(folder),
            lambda: resume_run(folder, progress=False),
        ):
            with pytest.raises(CheckpointError, match=r"checkpoints/2 cannot be read, it is damaged") as err:
                call()
            assert "previous checkpoint" in str(err.value) and "KeyError" not in str(err.value)
    assert main(["train", "sac", "--resume", str(folder), "--no-progress"]) == 2
    assert "checkpoints/2 cannot be read" in capsys.readouterr().err


# --- --overwrite removes the old run -----------------------------------------------------------------
def test_overwrite_removes_the_old_runs_files_and_keeps_the_users(wide, tmp_path, capsys):
    folder = _copy(wide.out_dir, tmp_path)
    (folder / "notes.txt").write_text("mine")
    (folder / "data").mkdir()
    (folder / "data" / "x.npy").write_bytes(b"keep")
    argv = ["train", "sac", *TINY_FLAGS, "--out", str(folder), "--overwrite", "--checkpoint-every", "0"]
    assert main(argv) == 0
    capsys.readouterr()
    assert not (folder / CHECKPOINT_DIR).exists()
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "data" / "x.npy").read_bytes() == b"keep"
    assert json.loads((folder / "config.json").read_text())["config"]["hidden_sizes"] == [16]
    assert [r["step"] for r in runlog.read_jsonl(folder / "metrics.jsonl")] == [350, 600]
    # evaluation says there is no checkpoint, instead of evaluating (or refusing) the old run's
    assert main(["eval", str(folder)]) == 2
    assert "has no checkpoint to evaluate" in capsys.readouterr().err


def test_prepare_run_dir_removes_only_what_runs_and_sweeps_write(tmp_path):
    folder = tmp_path / "out"
    (folder / "checkpoints" / "3" / "state").mkdir(parents=True)
    (folder / "points" / "0-tau=0.01").mkdir(parents=True)
    (folder / "tensorboard").mkdir()
    written = [
        "config.json", "metrics.jsonl", "metrics.csv", "summary.json", "learning_curve.png",
        "sweep.json", "summary.md", "summary.csv", "curves.png", "config.json.tmp",
    ]
    for name in [*written, "notes.md", "my.csv"]:
        (folder / name).write_text("x")
    (folder / "keep").mkdir()
    with pytest.raises(runlog.OutputDirError, match="--overwrite"):
        runlog.prepare_run_dir(folder)
    assert (folder / "checkpoints").is_dir()
    assert runlog.prepare_run_dir(folder, overwrite=True) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["keep", "my.csv", "notes.md"]
    # a folder that cannot be created is a clear error, not a traceback
    (tmp_path / "file").write_text("x")
    with pytest.raises(runlog.OutputDirError, match="cannot create"):
        runlog.prepare_run_dir(tmp_path / "file" / "run")


# --- a save that fails ---------------------------------------------------------------------------------
def test_failed_save_names_the_cause_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "ckpts"
    with RunCheckpoints(folder) as checkpoints:
        checkpoints.save(1, {"w": np.ones(3, np.float32)}, {}, {"agent": "sac"})
    tensorstore_text = (
        "RESOURCE_EXHAUSTED: Error opening \"zarr\" driver: Failed to write 176 bytes to file 14: "
        "No space left on device [os_error_code='28'] [tensorstore_spec='{\"driver\":\"zarr\"}']"
    )
    for failure in (OSError(errno.ENOSPC, "No space left on device"), ValueError(tensorstore_text)):
        def fail(self, *args, failure=failure, **kwargs):
            raise failure

        with monkeypatch.context() as patch, RunCheckpoints(folder) as checkpoints:
            patch.setattr(ocp.CheckpointManager, "save", fail)
            with pytest.raises(ckpt.CheckpointSaveError) as err:
                checkpoints.save(2, {"w": np.zeros(3, np.float32)}, {}, {"agent": "sac"})
        text = str(err.value)
        assert isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC
        assert f"checkpoint {folder / CHECKPOINT_DIR / '2'}" in text and "No space left on device" in text
        assert f"last good checkpoint is {folder / CHECKPOINT_DIR / '1'}" in text
        assert f"rlx train sac --resume {folder}" in text and "tensorstore_spec" not in text
    # other errors are not disguised as a full disk
    with monkeypatch.context() as patch, RunCheckpoints(folder) as checkpoints:
        patch.setattr(ocp.CheckpointManager, "save", lambda self, *a, **k: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            checkpoints.save(2, {"w": np.zeros(3, np.float32)}, {}, {"agent": "sac"})
    with RunCheckpoints(folder, write=False) as checkpoints:
        assert checkpoints.evaluations() == [1]


def test_full_or_read_only_out_during_training_exits_with_the_resume_command(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    save = RunCheckpoints.save
    as_root = os.geteuid() == 0  # root writes through a read-only folder: a full disk stands in

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    def save_then_fill_the_disk(self, evaluation, *args, **kwargs):
        if evaluation == 1:
            path = save(self, evaluation, *args, **kwargs)
            if not as_root:
                self.directory.chmod(0o555)
            return path
        with monkeypatch.context() as patch:
            if as_root:
                patch.setattr(ocp.CheckpointManager, "save", no_space)
            return save(self, evaluation, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(RunCheckpoints, "save", save_then_fill_the_disk)
        code = main(["train", "sac", *TINY_FLAGS, "--out", str(out), "--checkpoint-every", "1"])
    (out / CHECKPOINT_DIR).chmod(0o755)
    err = capsys.readouterr().err
    assert code == 74, err[-3000:]
    assert "Traceback" not in err
    assert f"rlx: error: could not write checkpoint {out / CHECKPOINT_DIR / '2'}" in err
    assert ("No space left on device" in err) or ("Permission denied" in err)
    assert f"last good checkpoint is {out / CHECKPOINT_DIR / '1'}" in err
    assert f"rlx train sac --resume {out}" in err
    with RunCheckpoints(out, write=False) as checkpoints:
        assert checkpoints.evaluations() == [1]

    # the metrics files failing to write: the same kind of message
    def full(self, records):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.jsonl_path))

    with monkeypatch.context() as patch:
        patch.setattr(runlog.MetricsWriter, "write", full)
        with pytest.raises(ckpt.CheckpointSaveError) as stop:
            resume_run(out, progress=False)
    assert f"could not write {out / 'metrics.jsonl'}" in str(stop.value)
    assert f"last good checkpoint is {out / CHECKPOINT_DIR / '1'}" in str(stop.value)
    # once there is space again the run continues from its last good checkpoint
    result = resume_run(out, progress=False)
    assert result.start_evaluation == 1 and [r["step"] for r in runlog.read_jsonl(out / "metrics.jsonl")] == [350, 600]


# --- sweep points --------------------------------------------------------------------------------------
def test_a_sweep_point_is_not_resumed_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "sweep"
    tiny = sac.SACConfig(total_steps=600, learning_starts=100, eval_every=250, eval_episodes=2, batch_size=16, hidden_sizes=(16,))
    run_sweep(sac, tiny, {"tau": [0.005, 0.02]}, ENV, env_kwargs=ENV_KWARGS, out_dir=out, progress=False)
    point = sorted((out / "points").iterdir())[1]
    before = _snapshot(out)
    assert main(["train", "sac", "--resume", str(point), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{point} is point 1 of the sweep in {out}" in err and "cannot be resumed" in err, err
    assert "rlx sweep" in err or "run the sweep again" in err
    with pytest.raises(CheckpointError, match="cannot be resumed"):
        resume_run(point, progress=False)
    with pytest.raises(CheckpointError, match="cannot be resumed"):
        run(sac, tiny.override(tau=0.02), ENV, env_kwargs=ENV_KWARGS, out_dir=point, resume=True, progress=False)
    # the sweep's own folder: said what it is
    assert main(["train", "sac", "--resume", str(out), "--no-progress"]) == 2
    assert "is a sweep folder" in capsys.readouterr().err
    # evaluating a point says why there is nothing to evaluate
    assert main(["eval", str(point)]) == 2
    assert "sweep point" in capsys.readouterr().err
    assert _snapshot(out) == before


# --- a run folder with a damaged description -------------------------------------------------------------
@pytest.mark.parametrize("config_json", [
    '{"agent": "sac", "env": "gymnax/Pendulum-v1", "config": [1, 2]}',
    '{"agent": "sac", "env": "gymnax/Pendulum-v1", "config": {}, "seed": "abc"}',
    '{"agent": "sac", "env": "gymnax/Pendulum-v1", "config": {}, "runs_layout": "x"}',
    '{"agent": 7, "env": "gymnax/Pendulum-v1", "config": {}}',
    '{"agent": "sac", "env": "gymnax/Pendulum-v1", "config": {}, "num_seeds": 0}',
])
def test_garbage_config_json_is_a_message(tmp_path, capsys, config_json):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(config_json)
    for argv in (["eval", str(folder)], ["train", "sac", "--resume", str(folder), "--no-progress"]):
        assert main(argv) == 2
        assert "config.json" in capsys.readouterr().err
