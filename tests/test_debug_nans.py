"""The NaN/Inf guard (``--debug-nans``): the first non-finite metric stops the run, named with its
step, and the latest checkpoint stays the last good state."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.agents import sac
from rlx.cli import main
from rlx.run import nan_guard, run


def metrics(**values):
    base = {"step": np.array([[100, 200, 300], [100, 200, 300]])}
    return {**base, **{k.replace("__", "/"): np.asarray(v, dtype=float) for k, v in values.items()}}


def test_first_non_finite_finds_the_earliest_block_and_names_it():
    m = metrics(
        loss__critic=[[1.0, 2.0, np.nan], [1.0, np.inf, np.nan]],
        eval__return_mean=[[0.0, np.nan, np.nan], [0.0, 1.0, 2.0]],
        q_mean=[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
    )
    found = nan_guard.first_non_finite(m, first_evaluation=10)
    # Block 1: seed 0 has a NaN evaluation, seed 1 an infinite critic loss. Seed 0 comes first.
    assert (found.metric, found.evaluation, found.step, found.seed) == ("eval/return_mean", 11, 200, 0)
    m["loss/critic"][0, 1] = np.nan  # an update metric in the same block is named before the evaluation
    found = nan_guard.first_non_finite(m)
    assert (found.metric, found.others) == ("loss/critic", ("eval/return_mean",))
    assert nan_guard.first_non_finite(metrics(q_mean=np.ones((2, 3)))) is None


def test_training_return_without_episodes_is_not_an_error():
    ok = metrics(train__episode_return=[[np.nan, 1.0, 2.0]] * 2, train__episodes=[[0, 1, 1]] * 2)
    assert nan_guard.first_non_finite(ok) is None
    bad = metrics(train__episode_return=[[np.nan, 1.0, 2.0]] * 2, train__episodes=[[3, 1, 1]] * 2)
    assert nan_guard.first_non_finite(bad).metric == "train/episode_return"
    inf = metrics(train__episode_return=[[np.inf, 1.0, 2.0]] * 2, train__episodes=[[0, 1, 1]] * 2)
    assert nan_guard.first_non_finite(inf).metric == "train/episode_return"


POISON_AT = 350  # env steps: inside the third evaluation block (steps 301-400)


class PoisonedSAC:
    """SAC whose learner parameters turn NaN once ``POISON_AT`` env steps are done, as a diverging
    learner's would: every loss and the evaluation after that point are computed from NaNs."""

    def __getattr__(self, name):
        return getattr(sac, name)

    NAME = "sac"

    @staticmethod
    def update(config, env, env_params, state):
        state, out = sac.update(config, env, env_params, state)
        poisoned = state.env_steps >= POISON_AT
        learner = jax.tree.map(lambda x: jnp.where(poisoned, x * jnp.nan, x) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                               state.learner)
        return state.replace(learner=learner), out


@pytest.mark.timeout(300)
def test_run_stops_at_the_first_non_finite_metric_and_keeps_the_last_good_checkpoint(tmp_path):
    config = sac.SACConfig(
        total_steps=700, learning_starts=100, eval_every=100, eval_episodes=2, batch_size=8, hidden_sizes=(8,)
    )
    out = tmp_path / "run"
    with pytest.raises(nan_guard.NonFiniteMetricError) as err:
        run(PoisonedSAC(), config, "rlx/ProbeOneStep-v0", out_dir=out, progress=False, checkpoint_every=1,
            debug_nans=True)
    found = err.value.found
    assert (found.evaluation, found.step, found.seed) == (2, 400, 0)
    assert found.metric != "eval/return_mean"  # an update metric is named first
    message = str(err.value)
    assert f"non-finite metric {found.metric} = nan at step 400 (evaluation 3 of 6, seed 0)" in message
    assert "holds the last good state" in message
    # Checkpoints after evaluations 1 and 2 only; the latest is named in the message.
    saved = sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())
    assert saved == [1, 2]
    assert str(err.value.checkpoint).endswith("checkpoints/2")
    # The rows up to the non-finite one are written (as evidence), nothing after it.
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [200, 300, 400]
    assert all(np.isfinite(v) for r in rows[:2] for k, v in r.items() if k.startswith(("loss/", "eval/")))
    assert rows[2][found.metric] is None  # written as null: the evidence of what stopped the run
    assert not (out / "summary.json").exists()


@pytest.mark.timeout(60)
def test_cli_reports_the_guard_and_exits_3(tmp_path, monkeypatch, capsys):
    found = nan_guard.NonFinite("loss/critic", float("nan"), 4, 5000, 1, ("q_mean",))

    def stop(*args, **kwargs):
        assert kwargs["debug_nans"] is True
        raise nan_guard.NonFiniteMetricError(found, 10, tmp_path / "checkpoints" / "4", tmp_path)

    import rlx.run

    monkeypatch.setattr(rlx.run, "run", stop)
    argv = ["train", "sac", "--env", "rlx/ProbeOneStep-v0", "--no-progress", "--debug-nans", "--out", str(tmp_path / "x")]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "non-finite metric loss/critic = nan at step 5,000 (evaluation 5 of 10, seed 1)" in err
    assert "also non-finite there: q_mean" in err and "checkpoints/4" in err


class NaNRewardProbe:
    """The one-step probe, but every reward is NaN (a broken custom env)."""

    def __init__(self):
        from rlx import envs as rlx_envs

        self.env, self.default_params = rlx_envs.make("rlx/ProbeOneStep-v0")
        self.name = "NaNRewardProbe"

    def __getattr__(self, name):
        return getattr(self.env, name)

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        return obs, state, reward * jnp.nan, terminated, truncated, info


@pytest.mark.timeout(300)
def test_nan_rewards_stop_a_run_without_debug_nans(tmp_path):
    """Rewards and returns are guarded by default: a NaN reward stops the run at the first block."""
    config = sac.SACConfig(
        total_steps=500, learning_starts=100, eval_every=100, eval_episodes=2, batch_size=8, hidden_sizes=(8,)
    )
    out = tmp_path / "run"
    with pytest.raises(nan_guard.NonFiniteMetricError) as err:
        run(sac, config, NaNRewardProbe(), out_dir=out, progress=False, checkpoint_every=1)
    assert err.value.found.evaluation == 0 and "return" in err.value.found.metric
    message = str(err.value)
    assert "rewards and returns are always checked" in message and "NaN reward" in message
    assert not (out / "summary.json").exists() and not (out / "checkpoints").exists() or not any(
        p.name.isdigit() for p in (out / "checkpoints").iterdir()
    )
