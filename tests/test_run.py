"""The runner: determinism, vmapped seeds, chunked driver, output folder, validation errors."""

import dataclasses
import json
import re

import jax
import numpy as np
import pytest

from rlx import envs
from rlx.agents import sac
from rlx.core.config import ConfigError
from rlx.run import make_train, run, seed_keys
from rlx.run.logging import OutputDirError

pytestmark = pytest.mark.timeout(300)

TINY = sac.SACConfig(
    total_steps=600, learning_starts=100, eval_every=250, eval_episodes=2,
    batch_size=16, hidden_sizes=(16,),
)


@pytest.fixture(scope="module")
def pendulum():
    return envs.make("gymnax/Pendulum-v1", max_steps_in_episode=50)


@pytest.fixture(scope="module")
def train_fn(pendulum):
    env, params = pendulum
    return jax.jit(make_train(sac, TINY, env, params))


@pytest.fixture(scope="module")
def one_shot(train_fn):
    return jax.device_get(train_fn(seed_keys(0, 1)[0]).metrics)


def _assert_same(a, b, exact=True):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
        else:
            np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-4, atol=1e-4, err_msg=k)


def test_schedule_and_metric_shapes(one_shot):
    # warm-up 100, then blocks of 250 steps until at least 600 in total: 100 + 2 * 250
    np.testing.assert_array_equal(one_shot["step"], [350, 600])
    for name in ("eval/return_mean", "eval/return_std", "loss/critic", "loss/actor", "alpha", "entropy"):
        assert one_shot[name].shape == (2,), name
        assert np.all(np.isfinite(one_shot[name])), name


_FRESH_PROCESS = """
import json, sys
import jax, numpy as np
from rlx import envs
from rlx.agents import sac
from rlx.run import make_train, seed_keys
config = sac.SACConfig.from_dict(json.loads(sys.argv[1]))
env, params = envs.make("gymnax/Pendulum-v1", max_steps_in_episode=50)
metrics = jax.device_get(jax.jit(make_train(sac, config, env, params))(seed_keys(0, 1)[0]).metrics)
np.savez(sys.argv[2], **{k.replace("/", "|"): np.asarray(v) for k, v in metrics.items()})
"""


def test_same_key_gives_identical_metrics_in_another_process(one_shot, tmp_path):
    """The program is built, compiled and run again in a fresh interpreter with another hash
    seed (set iteration order, ids and dict-building differ there): the same metrics, bit for bit."""
    import os
    import subprocess
    import sys

    out = tmp_path / "metrics.npz"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "JAX_PLATFORMS": "cpu"}
    subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, json.dumps(TINY.to_dict()), str(out)], env=env, check=True, timeout=240
    )
    with np.load(out) as saved:
        _assert_same(one_shot, {k.replace("|", "/"): saved[k] for k in saved.files})


def test_other_key_gives_other_metrics(train_fn, one_shot):
    other = jax.device_get(train_fn(seed_keys(1, 1)[0]).metrics)
    assert not np.array_equal(other["loss/critic"], one_shot["loss/critic"])


def test_vmapped_seeds_equal_sequential_runs(pendulum, train_fn):
    env, params = pendulum
    keys = seed_keys(3, 4)
    batched = jax.device_get(jax.jit(jax.vmap(make_train(sac, TINY, env, params)))(keys).metrics)
    for i in range(4):
        single = jax.device_get(train_fn(keys[i]).metrics)
        _assert_same({k: v[i] for k, v in batched.items()}, single, exact=False)


def test_chunked_driver_equals_one_shot(pendulum, one_shot, tmp_path):
    env, params = pendulum
    result = run(sac, TINY, env, params, seed=0, num_seeds=1, out_dir=tmp_path / "run", progress=False)
    _assert_same({k: v[0] for k, v in result.metrics.items()}, one_shot)


def test_output_folder(pendulum, tmp_path):
    env, params = pendulum
    out = tmp_path / "run"
    result = run(sac, TINY, "gymnax/Pendulum-v1", env_kwargs={"max_steps_in_episode": 50},
                 num_seeds=2, out_dir=out, progress=False)
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.jsonl", "metrics.csv", "learning_curve.png", "summary.json"} <= files
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["agent"] == "sac" and cfg["env"] == "gymnax/Pendulum-v1" and cfg["num_seeds"] == 2
    assert sac.SACConfig.from_dict(cfg["config"]) == TINY
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [350, 600]
    for key in ("wall_time", "eval/return_mean", "eval/return_std", "seed0/eval/return_mean",
                "seed1/eval/return_mean", "loss/critic"):
        assert key in lines[0], key
    assert lines[-1]["eval/return_mean"] == pytest.approx(float(np.mean(result.final_return)), rel=1e-6)
    # The seeds' own keys train the same runs (how a comparison gains seeds 2, 3, ... later:
    # the keys of more seeds start with those of fewer).
    np.testing.assert_array_equal(seed_keys(0, 5)[:2], seed_keys(0, 2))
    with pytest.raises(ValueError, match=r"key holds 3 per-seed keys but num_seeds=2"):
        run(sac, TINY, "gymnax/Pendulum-v1", num_seeds=2, key=seed_keys(0, 3), progress=False)
    again = run(sac, TINY, "gymnax/Pendulum-v1", env_kwargs={"max_steps_in_episode": 50}, num_seeds=2,
                key=seed_keys(0, 5)[:2], progress=False)
    _assert_same(again.metrics, result.metrics)
    csv_rows = (out / "metrics.csv").read_text().splitlines()
    assert len(csv_rows) == 3 and csv_rows[0].startswith("step,wall_time")
    # never overwritten silently; the existing run stays as it was
    before = (out / "metrics.jsonl").read_text()
    with pytest.raises(OutputDirError, match="not empty"):
        run(sac, TINY, env, params, out_dir=out, progress=False)
    assert (out / "metrics.jsonl").read_text() == before


# --- validation: clear errors, before any compilation ---------------------------------------
@pytest.mark.parametrize(
    "changes, match",
    [
        ({"critic_lr": -1e-3}, "critic_lr=-0.001 is out of range; allowed: 0.0 < value"),
        ({"gamma": 1.5}, "gamma=1.5 is out of range"),
        ({"tau": -0.1}, "tau=-0.1 is out of range"),
        ({"batch_size": 0}, "batch_size=0 is out of range"),
        ({"batch_size": 700}, "batch_size=700 is larger than the replay capacity 600"),
        ({"learning_starts": 600}, "learning_starts=600 must be < total_steps=600"),
        ({"hidden_sizes": ()}, "hidden_sizes"),
        ({"activation": "sigmoid"}, "activation='sigmoid' is not allowed; allowed: one of 'relu'"),
        ({"log_std_min": 3.0}, "log_std_min=3.0 must be < log_std_max=2.0"),
        ({"num_envs": 0}, "num_envs=0 is out of range"),
    ],
)
def test_invalid_config_is_refused(changes, match):
    with pytest.raises(ConfigError, match=re.escape(match)):
        TINY.override(**changes)


def test_invalid_config_refused_by_make_train_without_override(pendulum):
    import dataclasses

    env, params = pendulum
    bad = dataclasses.replace(TINY, actor_lr=0.0)  # bypasses override's validation
    with pytest.raises(ConfigError, match="actor_lr=0.0"):
        make_train(sac, bad, env, params)


def test_discrete_env_refused_for_sac():
    env, params = envs.make("gymnax/CartPole-v1")
    with pytest.raises(ConfigError, match="continuous action spaces.*Discrete"):
        make_train(sac, TINY, env, params)


def test_run_refuses_bad_seed_count(pendulum):
    env, params = pendulum
    with pytest.raises(ValueError, match="num_seeds must be >= 1"):
        run(sac, TINY, env, params, num_seeds=0, progress=False)


def test_sweep_over_tunable_fields_is_one_vmapped_program(pendulum, train_fn):
    from rlx.core.config import stack_configs

    env, params = pendulum
    points = [TINY.override(critic_lr=lr, tau=tau) for lr, tau in ((3e-4, 0.005), (1e-3, 0.02))]
    stacked = stack_configs(points)
    assert np.asarray(stacked.critic_lr).shape == (2,)
    key = seed_keys(0, 1)[0]
    sweep = jax.jit(jax.vmap(lambda c: make_train(sac, c, env, params)(key)))(stacked)
    swept = jax.device_get(sweep.metrics)
    first = jax.device_get(train_fn(key).metrics)  # TINY is point 0
    _assert_same({k: v[0] for k, v in swept.items()}, first, exact=False)
    assert not np.allclose(swept["loss/critic"][0], swept["loss/critic"][1])


def test_sweep_refuses_static_field_changes():
    from rlx.core.config import stack_configs

    with pytest.raises(ConfigError, match="static field hidden_sizes differs"):
        stack_configs([TINY, TINY.override(hidden_sizes=(32,))])
    with pytest.raises(ConfigError, match="tau=2.0 is out of range"):
        stack_configs([TINY, dataclasses.replace(TINY, tau=2.0)])


def test_observation_normalization_runs_and_feeds_evaluation(pendulum):
    env, params = pendulum
    config = TINY.override(normalize_observations=True)
    out = jax.jit(make_train(sac, config, env, params))(seed_keys(0, 1)[0])
    stats = out.state.agent_state.env_state.obs_stats
    assert float(stats.count) == 1 + 600  # reset batch + every env step (1 env)
    assert np.all(np.isfinite(np.asarray(out.metrics["eval/return_mean"])))
