"""The command line: help lists every field, a tiny run writes its folder, bad input exits 2
with a message naming what is wrong, before anything is compiled."""

import json
import subprocess
import sys

import pytest

from rlx.agents import sac
from rlx.cli import main

pytestmark = pytest.mark.timeout(300)

TINY_FLAGS = [
    "--env", "gymnax/Pendulum-v1", "--env-kwarg", "max_steps_in_episode=50",
    "--total-steps", "400", "--learning-starts", "100", "--eval-every", "150",
    "--eval-episodes", "2", "--batch-size", "16", "--hidden-sizes", "16", "--no-progress",
]


def test_help_lists_every_config_field():
    proc = subprocess.run(
        [sys.executable, "-m", "rlx", "train", "sac", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # undo argparse's line wrapping
    for name, _default, _, _, _ in sac.SACConfig.field_help():
        assert "--" + name.replace("_", "-") in text, name
    assert "critic learning rate (Adam) (default: 0.0003" in text
    assert "--preset {parallel}" in text and "parallel: massively parallel" in text  # each preset and what it sets


def test_train_writes_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "sac", *TINY_FLAGS, "--num-seeds", "2", "--out", str(out), "--critic-lr", "1e-3"]) == 0
    printed = capsys.readouterr().out
    assert "final evaluation return" in printed and str(out) in printed
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["critic_lr"] == 1e-3 and cfg["config"]["hidden_sizes"] == [16]
    assert cfg["env_kwargs"] == {"max_steps_in_episode": 50} and cfg["num_seeds"] == 2
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [250, 400]
    assert (out / "learning_curve.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--critic-lr", "-1"], "critic_lr=-1.0 is out of range"),
        (["--gamma", "abc"], "cannot read 'abc' as float"),
        (["--env", "gymnax/Pendulum-v9"], "unknown environment"),
        (["--env", "gymnax/CartPole-v1"], "continuous action spaces"),
        (["--num-seeds", "0"], "--num-seeds must be >= 1"),
        (["--env-kwarg", "max_steps"], "KEY=VALUE"),
        (["--env-kwarg", "bogus=1"], "bogus"),
        (["--critic-lr", "-1e-3"], "critic_lr=-0.001 is out of range"),  # scientific notation
        (["--total-steps", "100000000000"], "total_steps=100,000,000,000 is too large; allowed: at most 2,147,483,647"),
        (["--seed", "99999999999999999999"], "seed=99999999999999999999 is out of range"),
        (["--seed", "x1"], "argument --seed: 'x1' is not an integer"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(argv, message, tmp_path, capsys):
    out = tmp_path / "never"
    try:
        rc = main(["train", "sac", *TINY_FLAGS, "--out", str(out), *argv])
    except SystemExit as stop:  # argparse's own refusals
        rc = stop.code
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err
    assert not out.exists(), "nothing is written for refused input"


@pytest.mark.parametrize("agent, env", [("dsac_t", "gymnax/CartPole-v1"), ("grpo", "gymnax/Pendulum-v1")])
def test_wrong_action_space_names_the_agent_asked_for(agent, env, tmp_path, capsys):
    assert main(["train", agent, "--env", env, "--out", str(tmp_path / "never"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rlx: error: {agent} ") and "action space" in err, err


def test_negative_values_join_their_flag():
    from rlx.cli import join_negative_values

    assert join_negative_values(["--critic-lr", "-1e-3", "--tau", "-.5", "--seed", "-3", "-x"]) == [
        "--critic-lr=-1e-3", "--tau=-.5", "--seed=-3", "-x",
    ]
    assert join_negative_values(["--gamma=-1e-3", "-2e5"]) == ["--gamma=-1e-3", "-2e5"]


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "old"
    out.mkdir()
    (out / "metrics.jsonl").write_text("precious\n")
    assert main(["train", "sac", *TINY_FLAGS, "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_text() == "precious\n"


def test_envs_command_lists_names(capsys):
    assert main(["envs"]) == 0
    names = capsys.readouterr().out.split()
    assert "gymnax/Pendulum-v1" in names


@pytest.mark.timeout(240)
def test_ctrl_c_while_compiling_exits_130_at_once(tmp_path):
    """A KeyboardInterrupt is lost while XLA compiles; the command line quits at once instead."""
    import os
    import signal
    import time

    out = tmp_path / "run"
    flags = [f for f in TINY_FLAGS if f != "--no-progress"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlx", "train", "sac", *flags, "--total-steps", "20000", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen = b""
    while b"(compiling)" not in seen:  # the progress bar says when the compile starts
        chunk = os.read(proc.stderr.fileno(), 256)
        assert chunk, f"exited before compiling: {seen.decode(errors='replace')}"
        seen += chunk
    os.kill(proc.pid, signal.SIGINT)
    start = time.monotonic()
    _, rest = proc.communicate(timeout=120)
    err = (seen + rest).decode(errors="replace")
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.rstrip().endswith("rlx: interrupted") and "Traceback" not in err, err
    assert time.monotonic() - start < 30
    assert not (out / "summary.json").exists()
