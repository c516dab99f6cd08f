"""Memory estimates: the training state's bytes from shapes, refusals before allocation, --dry-run."""

from __future__ import annotations

import numpy as np
import pytest

import rlx.envs
from rlx.agents import sac
from rlx.cli import main
from rlx.core import memory
from rlx.run import make_train, run

TINY = [
    "--env", "rlx/ProbeOneStep-v0", "--total-steps", "300", "--learning-starts", "100", "--eval-every", "100",
    "--eval-episodes", "2", "--batch-size", "8", "--hidden-sizes", "8", "--no-progress",
]


def tiny_config(**kw):
    base = {"total_steps": 300, "learning_starts": 100, "batch_size": 8, "hidden_sizes": (8,), "eval_every": 100,
            "eval_episodes": 2}
    return sac.SACConfig(**{**base, **kw})


def test_state_estimate_counts_the_replay_buffer():
    env, params = rlx.envs.make("rlx/ProbeOneStep-v0")
    config = tiny_config(total_steps=50_000, buffer_size=40_000)
    estimate = memory.state_estimate(make_train(sac, config, env, params))
    # A transition: obs (2) + action (1) + reward + next_obs (2) + terminated + truncated = 8 float32.
    per_transition = 8 * 4
    assert next(iter(estimate.parts)) == "buffer"  # the largest part
    assert 40_000 * per_transition <= estimate.parts["buffer"] <= 40_000 * per_transition + 64
    assert estimate.bytes_per_run == sum(estimate.parts.values())
    assert memory.state_estimate(make_train(sac, config, env, params), runs_per_device=4).bytes_per_device == 4 * estimate.bytes_per_run


def test_device_memory_on_this_machine():
    info = memory.device_memory()
    assert info.free_bytes is None or info.free_bytes > 0
    assert "free" in info.describe()
    assert memory.format_bytes(3 * 1024**3) == "3.00 GiB"
    assert memory.format_bytes(512) == "512 B"


@pytest.mark.timeout(120)
def test_run_refuses_a_buffer_that_cannot_fit(tmp_path):
    # 64 seeds of 2e9 transitions of 32 bytes: 3.7 TiB on one device, more than any device has.
    # Nothing is allocated: the estimate comes from shapes alone, and the refusal comes before
    # the run folder is created.
    config = tiny_config(total_steps=2 * 10**9, buffer_size=2 * 10**9, eval_every=10**8)
    out = tmp_path / "run"
    with pytest.raises(memory.MemoryEstimateError) as err:
        run(sac, config, "rlx/ProbeOneStep-v0", num_seeds=64, devices=1, out_dir=out, progress=False)
    message = str(err.value)
    assert "the training state" in message and "needs an estimated 3.73 TiB" in message
    assert "59.60 GiB per run x 64 runs on one device; buffer 59.60 GiB" in message  # the largest part
    assert "free" in message and "on cpu:0" in message  # the device's free memory
    assert "lower buffer_size (now 2,000,000,000)" in message
    assert "train fewer seeds at once (now 64)" in message
    assert not out.exists()


def test_refusal_uses_the_device_free_memory(monkeypatch):
    small = memory.DeviceMemory("gpu:0 (test device)", 1024**2, 2 * 1024**2, "device.memory_stats()")
    monkeypatch.setattr(memory, "device_memory", lambda device=None: small)
    env, params = rlx.envs.make("rlx/ProbeOneStep-v0")
    train = make_train(sac, tiny_config(total_steps=100_000, buffer_size=100_000), env, params)
    with pytest.raises(memory.MemoryEstimateError, match=r"1.00 MiB free of 2.00 MiB on gpu:0 \(test device\)"):
        memory.check_run_fits(train, num_runs=8, runs_per_device=8)
    with pytest.raises(memory.MemoryEstimateError, match="train fewer seeds at once"):
        memory.check_run_fits(train, num_runs=8, runs_per_device=8)
    # A dataset on its way to the device: refused before any of it is copied.
    dataset = {"obs": np.zeros((100_000, 4), np.float32), "reward": np.zeros(100_000, np.float32)}
    with pytest.raises(memory.MemoryEstimateError, match=r"offline dataset needs an estimated 1.91 MiB"):
        memory.device_put_checked(dataset, "the offline dataset")
    small_data = {"obs": np.zeros((10, 4), np.float32)}
    placed = memory.device_put_checked(small_data, "the offline dataset")
    assert placed["obs"].shape == (10, 4)


@pytest.mark.timeout(300)
def test_dry_run_prints_estimate_and_memory_analysis(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["train", "sac", *TINY, "--num-seeds", "2", "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "training state:" in text and "per run" in text and "buffer" in text
    assert "free" in text and "fits" in text
    assert "training chunk (1 evaluation block(s))" in text
    assert "temporaries" in text and "peak" in text
    assert "dry run: nothing was trained or written" in text
    assert not out.exists()


def test_dataset_to_device_is_refused_when_it_cannot_fit(monkeypatch):
    from rlx.buffers.dataset import Dataset, to_device

    rows = 50_000
    data = Dataset(*(np.zeros((rows, 3), np.float32) for _ in range(2)), np.zeros(rows, np.float32),
                   np.zeros((rows, 3), np.float32), np.zeros(rows, np.float32), np.zeros(rows, np.float32))
    tiny = memory.DeviceMemory("gpu:0 (test device)", 1024, 1024, "device.memory_stats()")
    monkeypatch.setattr(memory, "device_memory", lambda device=None: tiny)
    with pytest.raises(memory.MemoryEstimateError, match=r"the dataset \(50,000 transitions\) needs an estimated 2.29 MiB"):
        to_device(data)
