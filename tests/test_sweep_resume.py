"""A sweep is one more axis of runs, so it has a run's checkpoints, resume, sinks and NaN guard:
a sweep stopped by Ctrl-C after a checkpoint continues (`rlx sweep ALGO --resume`) to the very
metrics of a sweep that never stopped; a NaN in one point stops the sweep, naming the point."""

import json
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.agents import sac
from rlx.cli import main
from rlx.run import TrainingInterrupted, nan_guard, run_sweep
from rlx.run import logging as runlog
from rlx.run.checkpoint import CHECKPOINT_DIR, RunCheckpoints
from rlx.run.sweep import resume_sweep

ENV = "gymnax/Pendulum-v1"
ENV_KWARGS = {"max_steps_in_episode": 50}
# Three evaluation blocks (steps 350, 600, 850); observation statistics must survive a checkpoint.
SMALL = sac.SACConfig(
    total_steps=850, learning_starts=100, eval_every=250, eval_episodes=2,
    batch_size=16, hidden_sizes=(16,), normalize_observations=True,
)
POINTS = {"tau": [0.005, 0.02]}
NUM_SEEDS = 2


class Recorder:
    """A logging sink that keeps what it gets."""

    def __init__(self):
        self.rows, self.closed = [], False

    def write(self, records):
        self.rows += records

    def close(self):
        self.closed = True


def _sweep(out, **options):
    return run_sweep(sac, SMALL, POINTS, ENV, env_kwargs=ENV_KWARGS, num_seeds=NUM_SEEDS, seed=1, out_dir=out,
                     progress=False, **options)


def _evaluations(folder):
    with RunCheckpoints(folder, write=False) as checkpoints:
        return checkpoints.evaluations()


def _point_rows(out):
    return {
        p.name: [{k: v for k, v in r.items() if k != "wall_time"} for r in runlog.read_jsonl(p / "metrics.jsonl")]
        for p in sorted((out / "points").iterdir())
    }


@pytest.fixture(scope="module")
def recorder():
    return Recorder()


@pytest.fixture(scope="module")
def full(tmp_path_factory, recorder):
    out = tmp_path_factory.mktemp("full") / "sweep"
    return _sweep(out, checkpoint_every=1, sinks=(recorder,))


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """The same sweep, stopped by Ctrl-C while its first chunk's rows were being written."""
    out = tmp_path_factory.mktemp("stopped") / "sweep"
    write = runlog.MetricsWriter.write
    pressed = []

    def write_then_ctrl_c(self, records):
        write(self, records)
        if records and not pressed:  # once: a second Ctrl-C stops at once
            pressed.append(True)
            signal.raise_signal(signal.SIGINT)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runlog.MetricsWriter, "write", write_then_ctrl_c)
        with pytest.raises(TrainingInterrupted) as stop:
            _sweep(out, checkpoint_every=1)
    return out, stop.value


@pytest.mark.timeout(300)
def test_a_sweep_checkpoints_every_run_and_feeds_the_sinks(full, recorder):
    out = full.out_dir
    assert _evaluations(out) == [1, 2, 3]
    with RunCheckpoints(out, write=False) as checkpoints:
        meta = checkpoints.read_meta(3)
    assert meta["agent"] == "sac" and meta["num_seeds"] == NUM_SEEDS and meta["num_runs"] == 2 * NUM_SEEDS
    assert meta["points"] == [{"tau": 0.005}, {"tau": 0.02}]
    # the sinks get one record per evaluation, every metric under its point's folder name
    assert [r["step"] for r in recorder.rows] == [350, 600, 850] and recorder.closed
    rows = _point_rows(out)
    for folder, point_rows in rows.items():
        assert [r["eval/return_mean"] for r in point_rows] == [r[f"{folder}/eval/return_mean"] for r in recorder.rows]


@pytest.mark.timeout(300)
def test_an_interrupted_sweep_resumes_bit_exact(full, stopped, tmp_path):
    out, stop = stopped
    assert stop.evaluation == 1 and stop.checkpoint == out / CHECKPOINT_DIR / "1"
    assert f"rlx sweep sac --resume {out}" in str(stop)
    assert _evaluations(out) == [1]
    assert not (out / "summary.json").exists()
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    resumed = resume_sweep(copy, progress=False)
    assert resumed.metrics.keys() == full.metrics.keys()
    for name in full.metrics:
        np.testing.assert_array_equal(resumed.metrics[name], full.metrics[name], err_msg=name)
    assert _point_rows(copy) == _point_rows(full.out_dir)
    a, b = (json.loads((d / "summary.json").read_text()) for d in (copy, full.out_dir))
    assert a["points"] == b["points"] and a["final_return_per_seed"] == b["final_return_per_seed"]
    assert _evaluations(copy) == [1, 2, 3]


@pytest.mark.timeout(300)
def test_rlx_sweep_resume_refuses_contradicting_flags_and_finishes_a_complete_sweep(full, capsys):
    out = full.out_dir
    assert main(["sweep", "sac", "--resume", str(out), "--seed", "5", "--no-progress"]) == 2
    assert "--seed 5: the sweep's seed is 1" in capsys.readouterr().err
    assert main(["sweep", "sac", "--resume", str(out), "--set", "tau=0.1,0.2", "--no-progress"]) == 2
    assert "--set: a resumed sweep trains the points of its sweep.json" in capsys.readouterr().err
    before = _point_rows(out)
    assert main(["sweep", "sac", "--resume", str(out), "--no-progress"]) == 0  # complete: nothing to train
    assert "2 points x 2 seeds" in capsys.readouterr().out
    assert _point_rows(out) == before
    # a point alone is still not resumed; the message says how to continue its sweep
    point = sorted((out / "points").iterdir())[0]
    assert main(["train", "sac", "--resume", str(point), "--no-progress"]) == 2
    assert f"rlx sweep ALGO --resume {out}" in capsys.readouterr().err


class PoisonedSAC:
    """SAC whose learner turns NaN once 350 env steps are done, in the points with tau > 0.01."""

    def __getattr__(self, name):
        return getattr(sac, name)

    NAME = "sac"

    @staticmethod
    def update(config, env, env_params, state):
        state, out = sac.update(config, env, env_params, state)
        poisoned = (state.env_steps >= 350) & (config.tau > 0.01)
        learner = jax.tree.map(
            lambda x: jnp.where(poisoned, x * jnp.nan, x) if jnp.issubdtype(x.dtype, jnp.floating) else x, state.learner
        )
        return state.replace(learner=learner), out


@pytest.mark.timeout(300)
def test_a_nan_in_one_point_stops_the_sweep_naming_it(tmp_path):
    config = sac.SACConfig(
        total_steps=700, learning_starts=100, eval_every=100, eval_episodes=2, batch_size=8, hidden_sizes=(8,)
    )
    out = tmp_path / "sweep"
    with pytest.raises(nan_guard.NonFiniteMetricError) as err:
        run_sweep(PoisonedSAC(), config, {"tau": [0.005, 0.02]}, "rlx/ProbeOneStep-v0", out_dir=out,
                  progress=False, checkpoint_every=1, debug_nans=True)
    found = err.value.found
    assert (found.evaluation, found.step, found.seed) == (2, 400, 1)  # run 1: point 1, seed 0
    message = str(err.value)
    assert "(evaluation 3 of 6, point 1 (tau=0.02), seed 0)" in message
    assert f"rlx sweep sac --resume {out} continues from it" in message
    assert _evaluations(out) == [1, 2]  # no checkpoint of the non-finite state
    assert str(err.value.checkpoint).endswith("checkpoints/2")
    for folder in (out / "points").iterdir():
        assert [r["step"] for r in runlog.read_jsonl(folder / "metrics.jsonl")] == [200, 300, 400]
    assert not (out / "summary.json").exists()
