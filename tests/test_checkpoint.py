"""Checkpoints: exact resume (after Ctrl-C, after a kill), killed saves, refused checkpoints that
leave the run folder as it was, and evaluation of a saved run; the logging sinks ride along.

Three small runs are shared by the whole module (one seed uninterrupted, one seed stopped by
Ctrl-C after its first evaluation, two seeds uninterrupted); every test that changes a run
folder works on a copy.
"""

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from rlx import envs
from rlx.agents import sac
from rlx.cli import main
from rlx.run import (
    CheckpointError,
    TrainingInterrupted,
    evaluate,
    evaluate_run,
    make_train,
    resume_run,
    run,
    seed_keys,
)
from rlx.run import logging as runlog
from rlx.run.checkpoint import (
    CHECKPOINT_DIR,
    RunCheckpoints,
    abstract_runner_state,
    default_checkpoint_every,
    run_identity,
    split_buffers,
)
from rlx.run.sinks import SinkUnavailableError, TensorBoardSink

ENV = "gymnax/Pendulum-v1"
ENV_KWARGS = {"max_steps_in_episode": 50}
# Three evaluation blocks (steps 350, 600, 850); observation normalization on, so its running
# statistics are part of what must survive a checkpoint.
SMALL = sac.SACConfig(
    total_steps=850, learning_starts=100, eval_every=250, eval_episodes=2,
    batch_size=16, hidden_sizes=(16,), normalize_observations=True,
)


def _run(out, num_seeds=1, **options):
    return run(sac, SMALL, ENV, env_kwargs=ENV_KWARGS, num_seeds=num_seeds, out_dir=out, progress=False, **options)


class Recorder:
    """A logging sink that keeps what it gets."""

    def __init__(self):
        self.rows, self.closed = [], False

    def write(self, records):
        self.rows += records

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def recorder():
    return Recorder()


@pytest.fixture(scope="module")
def full1(tmp_path_factory, recorder):
    out = tmp_path_factory.mktemp("full1") / "run"
    try:
        tensorboard = (TensorBoardSink(out / "tensorboard"),)
    except SinkUnavailableError:  # tensorboardX comes with brax; without it that check is skipped
        tensorboard = ()
    return _run(out, checkpoint_every=1, sinks=(recorder, *tensorboard))


@pytest.fixture(scope="module")
def full2(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("full2") / "run", num_seeds=2, checkpoint_every=1, keep_checkpoints=2)


@pytest.fixture(scope="module")
def stopped1(tmp_path_factory):
    """The one-seed run, stopped by Ctrl-C while its first chunk was being written."""
    out = tmp_path_factory.mktemp("stopped1") / "run"
    write = runlog.MetricsWriter.write

    def write_then_ctrl_c(self, records):
        write(self, records)
        if records:
            signal.raise_signal(signal.SIGINT)

    handler_before = signal.getsignal(signal.SIGINT)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runlog.MetricsWriter, "write", write_then_ctrl_c)
        with pytest.raises(TrainingInterrupted) as stop:
            _run(out, checkpoint_every=1)
    return out, stop.value, handler_before


@pytest.fixture(scope="module")
def template1():
    env, params = envs.make(ENV, **ENV_KWARGS)
    return abstract_runner_state(make_train(sac, SMALL, env, params), 1, seed_keys(0, 1))


def _evaluations(folder: Path) -> list[int]:
    with RunCheckpoints(folder, write=False) as checkpoints:
        return checkpoints.evaluations()


def _meta(folder: Path, evaluation: int) -> dict:
    with RunCheckpoints(folder, write=False) as checkpoints:
        return checkpoints.read_meta(evaluation)


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def _rows(path: Path, drop=("wall_time",)) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in drop} for r in runlog.read_jsonl(path / "metrics.jsonl")]


def _snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def _assert_same_metrics(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# --- what a checkpoint holds -------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_checkpoint_layout_and_metadata(full1, full2):
    out = full1.out_dir
    assert _evaluations(out) == [1, 2, 3]
    assert full1.checkpoint == out / CHECKPOINT_DIR / "3"
    for item in ("state", "buffers", "meta", "metrics"):
        assert (out / CHECKPOINT_DIR / "3" / item).is_dir(), item
    meta = _meta(out, 3)
    identity = run_identity("sac", ENV, ENV_KWARGS, 0, 1, SMALL)
    assert {k: meta[k] for k in identity} == identity
    assert meta["evaluation"] == 3 and meta["env_steps"] == 850 and meta["has_buffers"] is True
    assert len(meta["wall_time"]) == 3
    # keep_checkpoints=2 keeps the last two
    assert _evaluations(full2.out_dir) == [2, 3]


@pytest.mark.timeout(60)
def test_default_checkpoint_every():
    assert [default_checkpoint_every(n) for n in (1, 3, 10, 11, 200)] == [1, 1, 1, 2, 20]


# --- Ctrl-C and resume -------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_ctrl_c_finishes_the_chunk_saves_and_raises(stopped1):
    out, stop, handler_before = stopped1
    assert isinstance(stop, KeyboardInterrupt)
    assert (stop.evaluation, stop.num_evals) == (1, 3)
    assert stop.checkpoint == out / CHECKPOINT_DIR / "1"
    assert f"rlx train sac --resume {out}" in str(stop)
    assert _evaluations(out) == [1]
    assert len(runlog.read_jsonl(out / "metrics.jsonl")) == 1
    assert not (out / "summary.json").exists()
    assert signal.getsignal(signal.SIGINT) is handler_before


@pytest.mark.timeout(300)
def test_resume_after_ctrl_c_is_bit_exact_one_seed(full1, stopped1, tmp_path):
    folder = _copy(stopped1[0], tmp_path)
    sink = Recorder()
    result = resume_run(folder, progress=False, sinks=(sink,))
    assert result.start_evaluation == 1
    assert [r["step"] for r in sink.rows] == [600, 850] and sink.closed  # only the rows it trained
    _assert_same_metrics(result.metrics, full1.metrics)
    # the whole final state too: parameters, optimizer states, buffer, env and key streams
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(result.state), jax.device_get(full1.state))
    assert _rows(folder) == _rows(full1.out_dir)
    assert len((folder / "metrics.csv").read_text().splitlines()) == 1 + 3
    assert json.loads((folder / "summary.json").read_text())["final_return_per_seed"] == pytest.approx(
        [float(x) for x in full1.final_return], rel=0, abs=0
    )
    assert _evaluations(folder) == [1, 2, 3]


@pytest.mark.timeout(300)
def test_resume_two_seeds_drops_rows_after_the_checkpoint(full2, tmp_path):
    folder = _copy(full2.out_dir, tmp_path)
    shutil.rmtree(folder / CHECKPOINT_DIR / "3")  # as if killed after writing row 3, before its checkpoint
    with (folder / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 99999}) + "\n")
    kept = runlog.read_jsonl(folder / "metrics.jsonl")[:2]
    result = resume_run(folder, progress=False)
    assert result.start_evaluation == 2
    _assert_same_metrics(result.metrics, full2.metrics)
    rows = runlog.read_jsonl(folder / "metrics.jsonl")
    assert rows[:2] == kept  # rows up to the checkpoint stay as they were, wall time included
    assert _rows(folder) == _rows(full2.out_dir)
    csv_lines = (folder / "metrics.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 3 and csv_lines[0] == (full2.out_dir / "metrics.csv").read_text().splitlines()[0]


@pytest.mark.timeout(300)
def test_resuming_a_complete_run_says_so_and_changes_nothing(full1, tmp_path, capsys):
    folder = _copy(full1.out_dir, tmp_path)
    before = _snapshot(folder)
    assert main(["train", "sac", "--resume", str(folder), "--no-progress"]) == 0
    assert "already complete" in capsys.readouterr().out
    assert _snapshot(folder) == before


# --- killed saves --------------------------------------------------------------------------------
KILLED_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from orbax.checkpoint._src.path import atomicity
    from rlx.run.checkpoint import RunCheckpoints

    async def killed(self):  # everything is written; the process dies before the final rename
        os.kill(os.getpid(), signal.SIGKILL)

    atomicity.AtomicRenameTemporaryPath.finalize = killed
    RunCheckpoints(sys.argv[1]).save(2, {"w": np.ones(3, np.float32)}, {}, {"note": "never finalized"})
    """
)


@pytest.mark.timeout(300)
def test_a_killed_save_never_loads_as_a_checkpoint(stopped1, template1, tmp_path):
    folder = _copy(stopped1[0], tmp_path)
    proc = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(folder)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    leftovers = [p.name for p in (folder / CHECKPOINT_DIR).iterdir() if p.name.startswith("2")]
    assert leftovers and all(".orbax-checkpoint-tmp" in name for name in leftovers), leftovers
    with RunCheckpoints(folder, write=False) as checkpoints:
        assert checkpoints.evaluations() == [1]
        restored = checkpoints.restore(template1, run_identity("sac", ENV, ENV_KWARGS, 0, 1, SMALL))
    assert restored.evaluation == 1 and restored.meta["env_steps"] == 350
    # a run that writes checkpoints again clears the leftover away (orbax does it in the background)
    writer = RunCheckpoints(folder)
    deadline = time.monotonic() + 30
    while any(".orbax-checkpoint-tmp" in p.name for p in (folder / CHECKPOINT_DIR).iterdir()):
        assert time.monotonic() < deadline, "the leftover of the killed save is still there"
        time.sleep(0.05)
    writer.close()
    assert writer.evaluations() == [1]


# --- refused checkpoints leave everything as it was --------------------------------------------
@pytest.mark.timeout(300)
def test_incompatible_checkpoints_are_refused_with_what_differs(full1, full2, tmp_path):
    folder = _copy(full1.out_dir, tmp_path)
    ckpts = folder / CHECKPOINT_DIR

    def refused(match, call=lambda: resume_run(folder, progress=False)):
        before = _snapshot(folder)
        with pytest.raises(CheckpointError, match=match) as err:
            call()
        assert _snapshot(folder) == before
        return str(err.value)

    # the run asked for is not the run in the folder (other network shape)
    other = SMALL.override(hidden_sizes=(32,))
    text = refused("config.json", lambda: run(
        sac, other, ENV, env_kwargs=ENV_KWARGS, out_dir=folder, resume=True, progress=False))
    assert "config.hidden_sizes: config.json [16], this run [32]" in text

    # a checkpoint of another run (two seeds) put into this folder
    shutil.copytree(full2.out_dir / CHECKPOINT_DIR / "3", ckpts / "4")
    text = refused("was written by a different run")
    assert "num_seeds: checkpoint 2, this run 1" in text
    shutil.rmtree(ckpts / "4")

    # a checkpoint of another agent
    meta = _meta(folder, 3)
    writer = RunCheckpoints(folder, keep=100)
    writer.save(5, full1.state, full1.metrics, {**meta, "agent": "dsac_t"})
    writer.close()
    assert "agent: checkpoint 'dsac_t', this run 'sac'" in refused("was written by a different run")
    shutil.rmtree(ckpts / "5")

    # same description, arrays of another shape (a different actor network)
    def widen(path, x):
        return np.zeros((2 * x.shape[0],) + x.shape[1:], x.dtype) if "actor_params" in jax.tree_util.keystr(path) else x

    wider = jax.tree_util.tree_map_with_path(widen, jax.device_get(full1.state))
    writer = RunCheckpoints(folder, keep=100)
    writer.save(6, wider, full1.metrics, meta)
    writer.close()
    text = refused("holds arrays of other shapes than this run's state")
    assert "actor_params" in text and "checkpoint float32[" in text


@pytest.mark.timeout(300)
# orbax's reader sometimes leaves a callback for its closed event loop behind after a failed read
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_damaged_checkpoint_gets_a_clear_error_and_nothing_is_touched(full1, tmp_path):
    folder = _copy(full1.out_dir, tmp_path)
    for f in (folder / CHECKPOINT_DIR / "3" / "state" / "d").iterdir():
        f.write_bytes(f.read_bytes()[:100])
    before = _snapshot(folder)
    for call in (lambda: resume_run(folder, progress=False), lambda: evaluate_run(folder, episodes=2)):
        with pytest.raises(CheckpointError, match=r"checkpoints/3 cannot be read, it is damaged") as err:
            call()
        assert "use the previous checkpoint" in str(err.value) and "checkpoints/2" in str(err.value)
    (folder / CHECKPOINT_DIR / "3" / "meta" / "metadata").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"checkpoints/3 cannot be read"):
        resume_run(folder, progress=False)
    assert {k: v for k, v in _snapshot(folder).items() if not k.endswith("meta/metadata")} == {
        k: v for k, v in before.items() if not k.endswith("meta/metadata")
    }


@pytest.mark.timeout(300)
def test_checkpoint_without_buffer_evaluates_but_does_not_resume(full1, template1, tmp_path):
    folder = _copy(full1.out_dir, tmp_path)
    identity = run_identity("sac", ENV, ENV_KWARGS, 0, 1, SMALL)
    with RunCheckpoints(folder, write=False) as checkpoints:
        at2 = checkpoints.restore(template1, identity, evaluation=2)
        at3 = checkpoints.restore(template1, identity, evaluation=3)
    shutil.rmtree(folder / CHECKPOINT_DIR)
    with RunCheckpoints(folder, save_buffer=False) as writer:
        writer.save(2, at2.state, at2.metrics, at2.meta)
    assert not (folder / CHECKPOINT_DIR / "2" / "buffers").exists()
    before = _snapshot(folder)
    with pytest.raises(CheckpointError, match="saved without its replay buffer"):
        resume_run(folder, progress=False)
    assert _snapshot(folder) == before
    # what evaluate_run restores: everything but the buffer
    with RunCheckpoints(folder, write=False) as checkpoints:
        restored = checkpoints.restore(template1, identity, buffers=False)
    without, buffers = split_buffers(restored.state)
    assert buffers == []
    jax.tree.map(np.testing.assert_array_equal, without, split_buffers(jax.device_get(at2.state))[0])
    # a complete run needs no buffer: it says it is complete
    with RunCheckpoints(folder, save_buffer=False) as writer:
        writer.save(3, at3.state, at3.metrics, at3.meta)
    assert resume_run(folder, progress=False).start_evaluation == 3


# --- evaluation of a saved run -------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_evaluate_run_uses_the_saved_policy_and_statistics(full1):
    report = evaluate_run(full1.out_dir, episodes=4, seed=7)
    assert report.returns.shape == (1, 4) and report.evaluation == 3 and report.env_steps == 850
    env, params = envs.make(ENV, **ENV_KWARGS)
    agent_state = full1.state.agent_state
    direct = jax.jit(lambda s, k: evaluate(
        sac.make_policy(SMALL, s, deterministic=True), env, params, k, 4, sac.observation_stats(s)
    ))(agent_state, jax.random.PRNGKey(7))
    np.testing.assert_allclose(report.returns[0], np.asarray(direct), rtol=1e-5)
    d = report.to_dict()
    assert d["return_mean"] == pytest.approx(float(np.mean(direct)), rel=1e-5) and len(d["per_seed"]) == 1


@pytest.mark.timeout(300)
def test_eval_command_reports_each_seed(full2, capsys):
    assert main(["eval", str(full2.out_dir), "--episodes", "3"]) == 0
    out = capsys.readouterr().out
    assert "checkpoints/3" in out and "3 episodes per seed" in out
    assert "seed 0: return" in out and "seed 1: return" in out and "all seeds: return" in out
    assert main(["eval", str(full2.out_dir / "nowhere")]) == 2
    assert "not a run folder" in capsys.readouterr().err


# --- the command line: Ctrl-C in a real process, contradicting flags ----------------------------
LONG_FLAGS = [
    "--env", ENV, "--env-kwarg", "max_steps_in_episode=50", "--total-steps", "20100",
    "--learning-starts", "100", "--eval-every", "100", "--eval-episodes", "2", "--batch-size", "16",
    "--hidden-sizes", "16", "--no-progress", "--checkpoint-every", "1000",
]


@pytest.mark.timeout(300)
def test_ctrl_c_in_the_command_line_checkpoints_and_exits_130(tmp_path, capsys):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlx", "train", "sac", *LONG_FLAGS, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 200
    while not (metrics.exists() and metrics.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no metrics line appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert f"continue with: rlx train sac --resume {out}" in err
    done = len(runlog.read_jsonl(metrics))
    assert 1 <= done < 200
    assert _evaluations(out) == [done]  # only the Ctrl-C one (every 1000)

    # a resumed run keeps its config: contradicting flags are refused before anything is touched
    before = _snapshot(out)
    for argv, message in (
        (["--seed", "3"], "--seed 3: the run's seed is 0"),
        (["--hidden-sizes", "32"], "--hidden-sizes 32: the run's hidden_sizes is (16,)"),
        (["--out", str(tmp_path / "other")], "a resumed run continues in its own folder"),
    ):
        assert main(["train", "sac", "--resume", str(out), *argv]) == 2
        assert message in capsys.readouterr().err
    # flags that repeat the run's own values are no contradiction
    assert main(["train", "sac", "--resume", str(out), "--seed", "0", "--batch-size", "16", "--tau", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "--tau 0.01: the run's tau is 0.005" in err and "--seed" not in err and "--batch-size" not in err
    assert _snapshot(out) == before


@pytest.mark.timeout(120)
def test_run_refuses_bad_checkpoint_arguments(tmp_path):
    with pytest.raises(ValueError, match="keep_checkpoints must be >= 1"):
        _run(tmp_path / "a", keep_checkpoints=0)
    with pytest.raises(ValueError, match="checkpoint_every must be >= 0"):
        _run(tmp_path / "b", checkpoint_every=-1)
    with pytest.raises(ValueError, match="resume=True needs out_dir"):
        _run(None, resume=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a run folder"):
        _run(tmp_path / "empty", resume=True)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert not any((tmp_path / "empty").iterdir())


# --- logging sinks -------------------------------------------------------------------------------
def _tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    import struct

    from tensorboardX.proto import event_pb2

    out = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):  # TFRecord: length, its crc, the event, its crc
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            i += 16 + n
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


@pytest.mark.timeout(120)
def test_sinks_get_the_rows_of_the_metrics_file(full1, recorder):
    rows = runlog.read_jsonl(full1.out_dir / "metrics.jsonl")
    assert recorder.rows == rows and recorder.closed
    pytest.importorskip("tensorboardX")
    scalars = _tensorboard_scalars(full1.out_dir / "tensorboard")
    assert [step for step, _ in scalars["eval/return_mean"]] == [350, 600, 850]
    np.testing.assert_allclose([v for _, v in scalars["eval/return_mean"]], [r["eval/return_mean"] for r in rows], rtol=1e-6)
    assert "loss/critic" in scalars and "seed0/eval/return_mean" in scalars


@pytest.mark.timeout(120)
def test_wandb_sink_logs_each_row_and_reports_a_missing_package(tmp_path, monkeypatch, capsys):
    import types

    from rlx.run.sinks import WandbSink, wandb_run_id

    calls = []

    class FakeRun:
        def log(self, values, step):
            calls.append(("log", step, values))

        def finish(self):
            calls.append(("finish",))

    def init(**kwargs):
        calls.append(("init", kwargs))
        return FakeRun()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    sink = WandbSink("proj", name="x", config={"tau": 0.005}, run_dir=tmp_path / "run")
    assert calls == []  # nothing opened before the first rows
    sink.write([{"step": 350, "wall_time": 1.5, "eval/return_mean": -300.0, "train/episode_return": None}])
    sink.close()
    (_, init_kwargs), log, finish = calls
    assert init_kwargs["project"] == "proj" and init_kwargs["config"] == {"tau": 0.005}
    assert init_kwargs["id"] == wandb_run_id(tmp_path / "run") and init_kwargs["resume"] == "allow"
    assert log == ("log", 350, {"wall_time": 1.5, "eval/return_mean": -300.0}) and finish == ("finish",)

    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    with pytest.raises(SinkUnavailableError, match="pip install wandb"):
        WandbSink("proj")
    out = tmp_path / "never"
    assert main(["train", "sac", "--out", str(out), "--wandb", "proj", "--no-progress"]) == 2
    assert "pip install wandb" in capsys.readouterr().err and not out.exists()
