"""Runs mode on 8 CPU devices: seeds sharded over a mesh give the single-device result.

The device count of the CPU platform is fixed when jax starts
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``), and the rest of the suite runs on one
device, so the sharded programs run in a child process (tests/_eight_devices.py, shared with
tests/test_data_parallel.py): it calls ``_child`` below, which trains everything once and saves
the results, and the tests below check them. No jax import at module level: the child must set
XLA_FLAGS before jax is imported.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from _eight_devices import NUM_DEVICES

# One child serves this file and test_data_parallel.py; its launch is timed against the first
# test that uses it, here or there.
pytestmark = pytest.mark.timeout(590)
XDIST_GROUP = "eight_devices"  # one xdist worker runs both files (tests/_xdist_groups.py)
NUM_SEEDS = 5  # divides neither 8 devices nor the 4 the driver is limited to


@pytest.fixture(scope="module")
def sharded(eight_devices):
    """What the 8-device child (tests/_eight_devices.py) saved from ``_child`` below."""
    out = eight_devices / "mesh"
    info = json.loads((out / "info.json").read_text())
    arrays = np.load(out / "metrics.npz")
    metrics = {}
    for name in arrays.files:
        kind, key = name.split(":", 1)
        metrics.setdefault(kind, {})[key] = arrays[name]
    return info, metrics, out


def _assert_close(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-4, err_msg=k)


def test_plan_spreads_runs_with_least_padding():
    from rlx.run.mesh import plan_runs

    assert plan_runs(8, 8) == (8, 1)
    assert plan_runs(3, 8) == (3, 1)  # fewer runs than devices: one each
    assert plan_runs(10, 8) == (5, 2)  # 2 per device on 5 devices, no padding
    assert plan_runs(11, 8) == (6, 2)  # 1 padding run
    assert plan_runs(5, 4) == (3, 2)  # 1 padding run
    assert plan_runs(64, 8) == (8, 8)
    assert plan_runs(5, 1) == (1, 5)
    assert plan_runs(5, 4, processes=2) == (4, 2)  # several hosts: every device takes part


def test_child_sees_eight_devices(sharded):
    info, _, _ = sharded
    assert info["device_count"] == NUM_DEVICES


def test_one_shot_runs_mode_equals_single_device(sharded):
    info, metrics, _ = sharded
    assert info["one_shot_layout"] == {"runs": 5, "devices": 3, "runs_per_device": 2, "padding": 1, "processes": 1}
    assert info["one_shot_output_devices"] == 3  # the result really lives on 3 devices
    assert info["one_shot_collectives"] == []  # independent runs: no communication at all
    assert metrics["one_shot"]["eval/return_mean"].shape == (NUM_SEEDS, 2)  # padding dropped
    _assert_close(metrics["one_shot"], metrics["reference"])


def test_driver_uses_runs_mode_and_equals_single_device(sharded):
    info, metrics, out = sharded
    layout = json.loads((out / "run" / "config.json").read_text())["runs_layout"]
    assert layout == {"runs": 5, "devices": 3, "runs_per_device": 2, "padding": 1, "processes": 1}
    assert info["driver_state_leading_axis"] == NUM_SEEDS  # final state without the padding
    _assert_close(metrics["driver"], metrics["reference"])
    rows = [json.loads(x) for x in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [350, 600]
    assert f"seed{NUM_SEEDS - 1}/eval/return_mean" in rows[0] and f"seed{NUM_SEEDS}/eval/return_mean" not in rows[0]


def test_default_layout_uses_every_needed_device(sharded):
    info, _, _ = sharded
    assert info["default_layouts"] == {
        "1": {"runs": 1, "devices": 1, "runs_per_device": 1, "padding": 0, "processes": 1},
        "5": {"runs": 5, "devices": 5, "runs_per_device": 1, "padding": 0, "processes": 1},
        "20": {"runs": 20, "devices": 7, "runs_per_device": 3, "padding": 1, "processes": 1},
    }


def test_too_many_devices_is_refused(sharded):
    info, _, _ = sharded
    assert "devices must be between 1 and the 8 visible device(s), got 9" in info["too_many_devices_error"]


# ---------------------------------------------------------------------------------------------
# The child process
# ---------------------------------------------------------------------------------------------
def _child(out: Path) -> None:
    import jax

    from rlx import envs
    from rlx.agents import sac
    from rlx.run import make_train, run, seed_keys
    from rlx.run.mesh import hlo_collectives, runs_layout

    tiny = sac.SACConfig(
        total_steps=600, learning_starts=100, eval_every=250, eval_episodes=2, batch_size=16, hidden_sizes=(16,)
    )
    env, params = envs.make("gymnax/Pendulum-v1", max_steps_in_episode=50)
    train = make_train(sac, tiny, env, params)
    keys = seed_keys(0, NUM_SEEDS)
    info = {"device_count": jax.device_count()}
    saved = {}

    # Reference: every seed vmapped on one device.
    reference = jax.jit(jax.vmap(train))(keys)
    saved["reference"] = jax.device_get(reference.metrics)

    # One-shot runs mode: 5 seeds on at most 4 devices -> 3 devices x 2 runs, 1 padding run.
    layout = runs_layout(NUM_SEEDS, devices=4)
    placed = layout.place(keys)
    compiled = layout.jit(jax.vmap(train)).lower(placed).compile()
    sharded_out = compiled(placed)
    info["one_shot_layout"] = layout.describe()
    info["one_shot_collectives"] = hlo_collectives(compiled)
    info["one_shot_output_devices"] = len(sharded_out.metrics["eval/return_mean"].sharding.device_set)
    saved["one_shot"] = layout.fetch(sharded_out.metrics)

    # The chunked driver (what `rlx train --devices 4` runs).
    result = run(sac, tiny, env, params, num_seeds=NUM_SEEDS, devices=4, out_dir=out / "run", progress=False)
    saved["driver"] = result.metrics
    info["driver_state_leading_axis"] = int(jax.tree.leaves(result.state)[0].shape[0])

    info["default_layouts"] = {str(n): runs_layout(n).describe() for n in (1, 5, 20)}
    try:
        runs_layout(NUM_SEEDS, devices=9)
    except ValueError as err:
        info["too_many_devices_error"] = str(err)

    (out / "info.json").write_text(json.dumps(info))
    np.savez(out / "metrics.npz", **{f"{kind}:{k}": np.asarray(v) for kind, m in saved.items() for k, v in m.items()})
