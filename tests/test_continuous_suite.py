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
@pytest.mark.parametrize("scale", ["cpu", "gpu", "paper"])
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
    # brax's pendulum compiles in two thirds of Playground's cartpole's time (Playground's own
    # programs are compiled in tests/test_playground.py); the presets are what this test is for.
    task = "brax/inverted_pendulum"
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


def _stored(suite, name="sac", seeds=(0, 1), config=None):
    scale = suite.SCALES["cpu"]
    config = config or suite.agent_config(name, scale, scale.env_steps, scale.evals, tiny=False)
    returns = [[float(10 * i + j) for j in range(scale.evals)] for i in seeds]
    return {"task": "brax/inverted_pendulum", "agent": name, "config": config.to_dict(), "env_kwargs": {},
            "seeds": len(seeds), "seed_indices": list(seeds), "steps": list(range(scale.evals)),
            "returns": returns, "final_mean": 0.0, "final_std": 0.0, "compile_seconds": 1.0, "run_seconds": 2.0,
            "env_steps_per_second": 3.0, "wall_seconds": list(range(scale.evals))}


@pytest.mark.timeout(60)
def test_merge_adds_new_seeds_in_order_and_refuses_what_differs(suite):
    scale = suite.SCALES["cpu"]
    config = suite.agent_config("sac", scale, scale.env_steps, scale.evals, tiny=False)
    stored = [_stored(suite, seeds=(0, 1)), _stored(suite, "dsac_t")]
    task = "brax/inverted_pendulum"
    assert suite.merge_check(stored, task, "sac", config, {}, [2, 3, 4]) is None
    assert suite.merge_check(stored, task, "ppo", config, {}, [0]) is None  # a new pair
    assert "seeds [1] are already stored" in suite.merge_check(stored, task, "sac", config, {}, [1, 2])
    assert "--first-seed 2" in suite.merge_check(stored, task, "sac", config, {}, [1, 2])
    other = config.override(actor_lr=1e-3)
    assert "differs in actor_lr" in suite.merge_check(stored, task, "sac", other, {}, [2])
    assert "env_kwargs" in suite.merge_check(stored, task, "sac", config, {"episode_length": 20}, [2])

    merged = suite.merge(stored, _stored(suite, seeds=(3, 2)))
    sac = merged[0]
    assert merged[1] == stored[1] and len(merged) == 2
    assert sac["seed_indices"] == [0, 1, 2, 3] and sac["seeds"] == 4
    finals = np.asarray(sac["returns"])[:, -1]
    np.testing.assert_array_equal(finals, [9, 19, 29, 39])  # sorted by seed index: 10 * i + last eval
    assert sac["final_mean"] == pytest.approx(24.0)
    assert [b["seed_indices"] for b in sac["batches"]] == [[0, 1], [3, 2]]
    assert sac["wall_seconds"] == stored[0]["wall_seconds"]  # the timing columns are the first batch's
    iqm, lo, hi = suite.final_iqm(sac)
    assert iqm == pytest.approx(24.0) and lo <= iqm <= hi  # IQM of 4: mean of the middle two


@pytest.mark.timeout(60)
def test_merge_is_refused_before_anything_trains(suite, tmp_path):
    with pytest.raises(SystemExit):
        suite.parse_args(["--first-seed", "2"])  # seeds added to nothing
    args = suite.parse_args(["--merge", "--first-seed", "1", "--tasks", "brax/inverted_pendulum", "--agents", "sac",
                             "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="no stored results"):
        suite.main(["--merge", "--first-seed", "1", "--tasks", "brax/inverted_pendulum", "--agents", "sac",
                    "--out", str(tmp_path)])
    path = tmp_path / "stored.json"
    path.write_text(json.dumps({"settings": {"seed": 0}, "date": "d", "command": "c", "machine": {},
                                "results": [_stored(suite, seeds=(0, 1))]}))
    with pytest.raises(SystemExit, match=r"(?s)nothing trained.*seeds \[1\] are already stored"):
        suite.stored_results(path, args, suite.SCALES["cpu"], {"command": "now"})
    args.first_seed = 2
    results, header = suite.stored_results(path, args, suite.SCALES["cpu"], {"command": "now"})
    assert results[0]["seed_indices"] == [0, 1] and header["earlier_runs"][0]["command"] == "c"
    args.seed = 5
    with pytest.raises(SystemExit, match="seeds of --seed 0, not 5"):
        suite.stored_results(path, args, suite.SCALES["cpu"], {"command": "now"})


@pytest.mark.timeout(60)
def test_paper_scale_is_the_papers_settings_at_equal_env_steps(suite):
    from rlx.agents import sac

    scale = suite.SCALES["paper"]
    assert scale.seeds == 5 and all(task.startswith("brax/") for task in scale.tasks)
    assert all(scale.env_kwargs[task] == {"backend": "generalized"} for task in scale.tasks)
    configs = {name: suite.agent_config(name, scale, scale.env_steps, scale.evals, tiny=False) for name in suite.AGENTS}
    assert configs["sac"].hidden_sizes == sac.SACConfig().hidden_sizes == (256, 256)
    assert (configs["dsac_t"].hidden_sizes, configs["dsac_t"].critic_lr) == ((256, 256, 256), 1e-4)
    for name in ("sac", "dsac_t"):  # one gradient step per env step: equal updates at equal env steps
        assert configs[name].env_steps_per_iteration == configs[name].gradient_steps == 1
        assert 1_500_000 <= configs[name].total_steps < 1_500_000 + scale.evals


@pytest.mark.timeout(60)
def test_gigpo_benchmark_renders_a_stored_result_with_iqm_intervals(tmp_path):
    """benchmarks/gigpo_vs_grpo_ppo.py --render: the table again from the JSON, with the IQM
    over seeds of the last-three-evaluation success and its bootstrap interval."""
    bench = load_benchmark("gigpo_vs_grpo_ppo")
    stored = ROOT / "benchmarks" / "results" / "gigpo_vs_grpo_ppo-cpu.json"
    path = tmp_path / stored.name
    path.write_text(stored.read_text())
    bench.main(["--render", str(path)])
    table = path.with_suffix(".md").read_text()
    payload = json.loads(stored.read_text())
    for r in payload["results"]:
        mid, lo, hi = bench.iqm_last3(r)
        values = np.sort(r["last3_success_per_seed"])
        assert mid == pytest.approx(values[1:3].mean())  # IQM of 4: the middle two
        assert lo <= mid <= hi
        assert f"| {r['env']} | {r['agent']} | {mid:.3f} [{lo:.3f}, {hi:.3f}] |" in table
    assert path.with_suffix(".png").stat().st_size > 0
    with pytest.raises(SystemExit, match="no such file"):
        bench.main(["--render", str(tmp_path / "missing.json")])


@pytest.mark.timeout(60)
def test_gigpo_benchmark_scales(capsys):
    """--scale cpu is what the stored results ran; --scale paper is the paper's GiGPO/GRPO preset."""
    bench = load_benchmark("gigpo_vs_grpo_ppo")
    names = list(bench.AGENTS)
    cpu = bench.parse_args([])
    assert (cpu.seeds, bench.schedule(cpu, names)) == (4, (46_080, 460_800))
    assert bench.agent_config("gigpo", cpu, 1, 1).num_envs == 8  # rlx's defaults
    paper = bench.parse_args(["--scale", "paper"])
    assert paper.seeds == 5 and bench.schedule(paper, names) == (102_400, 1_024_000)  # lcm(6,400, 512)
    for name in ("gigpo", "grpo"):
        config = bench.agent_config(name, paper, 1, 1)
        assert (config.num_envs, config.group_size, config.max_episode_steps, config.kl_coef) == (16, 8, 50, 0.01)
    assert bench.agent_config("ppo", paper, 1, 1).eval_policy == "sample"
    with pytest.raises(SystemExit):
        bench.parse_args(["--scale", "paper", "--seeds", "0"])
    assert "--seeds must be >= 1" in capsys.readouterr().err
