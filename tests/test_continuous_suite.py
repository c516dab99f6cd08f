"""benchmarks/continuous_suite.py: equal env-step budgets cut into whole iterations, clear
refusals, and the gpu scale's SAC program (its parallel preset) compiling and running on this
CPU at tiny size, with every figure the tables need; PPO's brax preset keeps its structure there."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _benchmarks import load_benchmark
from _fast_compile import xla_flags

from rlx.envs import playground

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "continuous_suite.py"


@pytest.fixture(scope="module")
def suite():
    return load_benchmark("continuous_suite")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("scale", ["cpu", "gpu"])
def test_every_agent_gets_the_same_budget_in_whole_iterations(suite, scale):
    sc = suite.SCALES[scale]
    for name in suite.AGENTS:
        config = suite.agent_config(name, sc, sc.env_steps, sc.evals, tiny=False)
        per_iter, warmup = config.env_steps_per_iteration, config.warmup_env_steps
        block = config.eval_every
        assert block % per_iter == 0
        assert config.total_steps == warmup + sc.evals * block
        # at least the budget, and less than one iteration per evaluation block over it
        assert sc.env_steps <= config.total_steps < sc.env_steps + sc.evals * per_iter
        if name != "ppo":
            assert config.buffer_size <= config.total_steps
        if (preset := sc.presets.get(name)) is not None:
            for key, value in suite.AGENTS[name].PRESETS[preset].items():
                if not key.startswith("_") and key not in ("total_steps", "eval_every", "buffer_size"):
                    assert getattr(config, key) == value, (name, key)


@pytest.mark.timeout(60)
def test_bad_arguments_are_refused_before_anything_compiles(suite, capsys):
    with pytest.raises(SystemExit):
        suite.parse_args(["--agents", "sac,td4"])
    assert "td4" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        suite.parse_args(["--tasks", "brax/antt"])
    assert "brax/antt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        suite.parse_args(["--seeds", "0"])
    assert "--seeds" in capsys.readouterr().err


@pytest.mark.timeout(900)
@pytest.mark.skipif(not playground.playground_env_names(), reason="MuJoCo Playground is an optional extra")
def test_gpu_scale_compiles_and_runs_at_tiny_size(suite, tmp_path):
    task = "playground/CartpoleBalance"
    env = {**os.environ, "XLA_FLAGS": xla_flags(), "JAX_PLATFORMS": "cpu"}
    subprocess.run(
        [sys.executable, str(SCRIPT), "--scale", "gpu", "--tiny", "--tasks", task, "--agents", "sac",
         "--out", str(tmp_path), "--no-progress"],
        check=True, cwd=ROOT, env=env, timeout=850,
    )
    payload = json.loads((tmp_path / "continuous_suite-gpu-cpu-tiny.json").read_text())
    assert payload["machine"]["cpu_count"] and payload["versions"]["jax"]
    (sac,) = payload["results"]
    # the presets' structure survives the shrinking (PPO's brax preset is trained, shrunk, in
    # tests/test_ppo_continuous.py; here only its tiny config is built)
    assert sac["preset"] == "parallel" and sac["config"]["tau"] == 0.1 and sac["config"]["normalize_observations"]
    ppo = suite.agent_config("ppo", suite.SCALES["gpu"], suite.TINY_STEPS, suite.TINY_EVALS, tiny=True)
    assert ppo.reward_scale == 10.0 and ppo.activation == "silu" and ppo.total_steps >= suite.TINY_STEPS
    returns = np.asarray(sac["returns"])
    assert returns.shape == (2, 2) and np.isfinite(returns).all()
    assert sac["steps"][-1] == sac["env_steps_per_seed"] >= 256
    assert np.all(np.diff(sac["wall_seconds"]) > 0) and sac["wall_seconds"][0] >= sac["compile_seconds"]
    assert sac["env_steps_per_second"] > 0
    table = (tmp_path / "continuous_suite-gpu-cpu-tiny.md").read_text()
    assert "TINY" in table and f"## {task}" in table and "| sac |" in table
    assert (tmp_path / "continuous_suite-gpu-cpu-tiny.png").stat().st_size > 0
