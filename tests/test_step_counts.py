"""What a run's step counts mean and show: exact default schedules, visible rounding, the unit
(env steps online, gradient steps offline) in summaries and plots, curves of one evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlx import envs
from rlx.agents import AGENTS, get_agent
from rlx.run import driver
from rlx.run.plot import plot_learning_curve
from rlx.run.train import Schedule, make_train

pytestmark = pytest.mark.timeout(300)

OFFLINE = {"mopo", "mobile", "morec_mopo", "morec_mobile", "bc", "td3_bc", "iql"}
# The env each online agent is meant for by default (the CLI's --env default is Pendulum).
DEFAULT_ENVS = {
    "sac": "gymnax/Pendulum-v1", "dsac_t": "gymnax/Pendulum-v1", "ppo": "gymnax/CartPole-v1",
    "grpo": "rlx/KeyDoor-v0", "gigpo": "rlx/KeyDoor-v0",
}


def test_every_agent_runs_exactly_its_default_total_steps():
    assert set(AGENTS) == OFFLINE | set(DEFAULT_ENVS)
    for name in AGENTS:
        agent = get_agent(name)
        config = agent.Config()
        if name in OFFLINE:  # needs a dataset to build; its schedule is the config's alone
            schedule = Schedule.from_config(config)
            assert schedule.step_unit == "gradient steps", name
        else:
            env, params = envs.make(DEFAULT_ENVS[name])
            schedule = make_train(agent, config, env, params).schedule
            assert schedule.step_unit == "env steps", name
        assert schedule.total_env_steps == config.total_steps, (name, schedule)
        assert schedule.env_steps_per_eval == config.eval_every, (name, schedule)
        assert schedule.rounding_note(config) is None, name


def test_sac_defaults_keep_warm_up_and_total():
    config = get_agent("sac").Config()
    assert (config.total_steps, config.learning_starts, config.eval_every) == (20_000, 1_000, 1_000)


def test_rounding_is_named_in_a_note():
    gigpo = get_agent("gigpo")
    config = gigpo.Config(eval_every=5_000, total_steps=20_000)
    note = Schedule.from_config(config).rounding_note(config)
    # one iteration is 8 groups x 8 rollouts x 30 steps = 1,920 env steps
    assert "eval_every=5,000 runs as 3,840 env steps" in note
    assert "total_steps=20,000 runs as 23,040 env steps" in note and "multiple of 1,920" in note
    sac = get_agent("sac")
    config = sac.Config(total_steps=20_000, eval_every=2_000)
    note = Schedule.from_config(config).rounding_note(config)
    assert "runs as 21,000 env steps per seed (warm-up 1,000 + 10 evaluation block(s) of 2,000)" in note
    assert "eval_every=" not in note  # eval_every itself runs exactly


def _fake_result(schedule: Schedule) -> driver.RunResult:
    steps = np.arange(1, schedule.num_evals + 1) * schedule.env_steps_per_eval
    metrics = {"step": steps[None], "eval/return_mean": np.full((1, steps.size), -100.0)}
    return driver.RunResult(metrics, None, schedule, None, None, compile_seconds=1.0, run_seconds=2.0)


def test_offline_summary_counts_gradient_steps():
    mopo = get_agent("mopo")
    config = mopo.Config(total_steps=4_000, eval_every=2_000)
    result = _fake_result(Schedule.from_config(config))
    assert result.step_unit == "gradient steps"
    summary = driver.summarize(result)
    assert summary["step_unit"] == "gradient steps"
    assert summary["gradient_steps_per_seed"] == 4_000 and summary["gradient_steps_per_second"] == 2_000.0
    assert not any(key.startswith("env_steps") for key in summary)
    online = driver.summarize(_fake_result(Schedule(1, 0, 10, 2)))
    assert online["step_unit"] == "env steps" and online["env_steps_per_seed"] == 20
    json.dumps(summary)


def test_one_evaluation_draws_a_marker_and_names_the_unit(tmp_path, saved_figures):
    plot_learning_curve(np.array([1_000]), np.array([[-150.0]]), tmp_path / "one.png", xlabel="gradient steps")
    plot_learning_curve(np.array([1_000]), np.array([[-150.0], [-120.0]]), tmp_path / "two.png")
    plot_learning_curve(np.arange(1, 201), np.zeros((1, 200)), tmp_path / "many.png")
    one, two, many = (fig.axes[0] for fig in saved_figures)
    assert one.get_xlabel() == "gradient steps" and two.get_xlabel() == "env steps"
    for ax in (one, two):
        assert all(line.get_marker() not in (None, "None", "", " ") for line in ax.lines)
    assert all(line.get_marker() in (None, "None", "", " ") for line in many.lines)  # long curves stay plain
