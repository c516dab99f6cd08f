"""The single-file examples in examples/ run at their --tiny size and print their result line.

Each runs as a user runs it, `python examples/X.py --tiny`, in a subprocess. The tiny sizes only
check that the script works end to end (JAX compiles dominate their time); learning at the
default sizes is what examples/README.md reports."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _fast_compile import xla_flags

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str, timeout: float) -> str:
    env = {**os.environ, "XLA_FLAGS": xla_flags()}  # a smoke run (tests/_fast_compile.py)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), "--tiny", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, f"{name} exited with {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"no line matching {pattern!r} in:\n{text[-3000:]}"
    value = float(match.group(1))
    assert math.isfinite(value), match.group(0)
    return value


@pytest.mark.timeout(300)
def test_sac_brax_example_trains_vmapped_seeds_and_writes_a_learning_curve(tmp_path):
    pytest.importorskip("brax", reason="brax is an optional extra (pip install 'rlx[brax]')")
    out = tmp_path / "run"
    printed = run_example("sac_brax.py", "--agent", "dsac_t", "--out", str(out), timeout=290)
    match = re.search(r"dsac_t on brax/inverted_pendulum: final return per seed \[([^\]]*)\]", printed)
    assert match, printed
    returns = [float(r) for r in match.group(1).split(",")]
    assert len(returns) == 2 and all(0.0 < r <= 50.0 for r in returns), returns  # 2 seeds, 50-step episodes
    assert (out / "learning_curve.png").is_file() and (out / "metrics.jsonl").is_file()


@pytest.mark.timeout(300)
def test_morec_dataset_example_prints_a_normalized_score():
    printed = run_example("morec_dataset.py", timeout=290)
    assert "dataset: 2,000 transitions of rlx/Fridge-v0" in printed
    number(r"MOREC-MOPO on rlx/Fridge-v0: final normalized score (-?[\d.]+) \+-", printed)


@pytest.mark.timeout(300)
def test_gigpo_household_example_prints_success_rate_and_an_episode():
    printed = run_example("gigpo_household.py", timeout=290)
    success = number(r"GiGPO on rlx/Household-v0: final success rate ([\d.]+)", printed)
    assert 0.0 <= success <= 1.0
    assert re.search(r"\[ 0\] You are in room .*Task: .*\n     > \S", printed), printed
    assert re.search(r"episode: (success|time limit, no success) after \d+ steps", printed)


@pytest.mark.timeout(300)
def test_reward_free_plan_example_prints_coverage_and_a_planned_return():
    printed = run_example("reward_free_plan.py", timeout=290)
    coverage = number(r"APT exploration: coverage ([\d.]+) of the maze's floor", printed)
    assert 0.0 < coverage <= 1.0
    planned = number(r"planned return for goal \([-\d., ]+\): ([\d.]+) of 100 steps", printed)
    assert 0.0 <= planned <= 100.0
