"""Sweeps: a 2 x 2 grid x 2 seeds as one program through `rlx sweep`, its files, its sorted
summary, every point starting from the keys and initial state of a separate run of its config
and matching that run up to float rounding, static fields refused."""

import contextlib
import csv
import io
import json
import re

import jax
import numpy as np
import pytest

from rlx import envs
from rlx.agents import sac
from rlx.cli import main
from rlx.core.config import ConfigError
from rlx.run import grid, make_train, run, run_sweep, seed_keys
from rlx.run.sweep import run_inputs

pytestmark = pytest.mark.timeout(300)

TINY_FLAGS = [
    "--env", "gymnax/Pendulum-v1", "--env-kwarg", "max_steps_in_episode=50",
    "--total-steps", "600", "--learning-starts", "100", "--eval-every", "250",
    "--eval-episodes", "2", "--batch-size", "16", "--hidden-sizes", "16", "--no-progress",
]
TINY = sac.SACConfig(
    total_steps=600, learning_starts=100, eval_every=250, eval_episodes=2, batch_size=16, hidden_sizes=(16,)
)
CRITIC_LRS = (1e-4, 1e-3)
TAUS = (0.005, 0.02)
NUM_SEEDS = 2
SEED = 3


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "s"
    argv = [
        "sweep", "sac", *TINY_FLAGS, "--set", f"critic_lr={CRITIC_LRS[0]},{CRITIC_LRS[1]}",
        "--set", f"tau={TAUS[0]},{TAUS[1]}", "--num-seeds", str(NUM_SEEDS), "--seed", str(SEED),
        "--out", str(out),
    ]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return out, printed.getvalue()


def _points(out):
    return sorted((out / "points").iterdir())


def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_grid_is_every_combination_last_field_fastest():
    assert grid(a=[1, 2], b=[3, 4]) == [{"a": 1, "b": 3}, {"a": 1, "b": 4}, {"a": 2, "b": 3}, {"a": 2, "b": 4}]
    with pytest.raises(ConfigError, match="non-empty list"):
        grid(a=[])


def test_sweep_writes_one_folder_per_point_a_summary_and_a_plot(swept):
    out, printed = swept
    folders = [p.name for p in _points(out)]
    assert folders == [
        "0-critic_lr=0.0001,tau=0.005", "1-critic_lr=0.0001,tau=0.02",
        "2-critic_lr=0.001,tau=0.005", "3-critic_lr=0.001,tau=0.02",
    ]
    for folder in _points(out):
        assert {p.name for p in folder.iterdir()} == {"config.json", "metrics.jsonl", "metrics.csv"}
        rows = _rows(folder / "metrics.jsonl")
        assert [r["step"] for r in rows] == [350, 600]
        assert "seed1/eval/return_mean" in rows[0] and "loss/critic" in rows[0]
        assert len((folder / "metrics.csv").read_text().splitlines()) == 3
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["agent"] == "sac" and cfg["num_seeds"] == NUM_SEEDS and cfg["seed"] == SEED
        # a point's config.json holds the config a separate `rlx train` would use
        lr, tau = cfg["sweep_point"]["critic_lr"], cfg["sweep_point"]["tau"]
        assert sac.SACConfig.from_dict(cfg["config"]) == TINY.override(critic_lr=lr, tau=tau)
    sweep_info = json.loads((out / "sweep.json").read_text())
    assert sweep_info["fields"] == ["critic_lr", "tau"] and len(sweep_info["points"]) == 4
    assert sweep_info["runs_layout"]["runs"] == 4 * NUM_SEEDS
    assert {"summary.md", "summary.csv", "summary.json", "curves.png"} <= {p.name for p in out.iterdir()}
    assert (out / "curves.png").stat().st_size > 1000
    assert (out / "summary.md").read_text().split("\n\n", 1)[1] in printed  # the table, without its title
    assert "4 points x 2 seeds in one program" in printed


def test_summary_is_sorted_best_first_and_matches_the_metrics(swept):
    out, printed = swept
    with (out / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    means = [float(r["final_return_mean"]) for r in rows]
    assert means == sorted(means, reverse=True) and len(rows) == 4
    folders = _points(out)
    for r in rows:
        last = _rows(folders[int(r["point"])] / "metrics.jsonl")[-1]
        finals = [last[f"seed{i}/eval/return_mean"] for i in range(NUM_SEEDS)]
        assert float(r["final_return_mean"]) == pytest.approx(np.mean(finals), rel=1e-5)
        assert float(r["final_return_std"]) == pytest.approx(np.std(finals), rel=1e-4, abs=1e-3)
    # the printed Markdown table lists the points in the same order
    table_points = re.findall(r"^\| (\d+) \| (\d+) \|", printed, flags=re.M)
    assert [int(p) for _, p in table_points] == [int(r["point"]) for r in rows]


def test_every_point_matches_a_separate_run_of_its_config_up_to_float_rounding(swept):
    """Equal up to rounding, not bit for bit: the last bits of some gradients differ from the
    first update on (see the next tests); over these 600 steps the metrics agree to ~1e-7."""
    out, _ = swept
    env, params = envs.make("gymnax/Pendulum-v1", max_steps_in_episode=50)
    keys = seed_keys(SEED, NUM_SEEDS)  # what `rlx train --seed 3 --num-seeds 2` uses
    # One compiled program serves every point: the config is an (unbatched) argument.
    separate = jax.jit(jax.vmap(lambda c, k: make_train(sac, c, env, params)(k).metrics, in_axes=(None, 0)))
    for folder in _points(out):
        point = json.loads((folder / "config.json").read_text())["sweep_point"]
        config = TINY.override(critic_lr=point["critic_lr"], tau=point["tau"])
        alone = jax.device_get(separate(config, keys))
        rows = _rows(folder / "metrics.jsonl")
        for i in range(NUM_SEEDS):
            got = [r[f"seed{i}/eval/return_mean"] for r in rows]
            np.testing.assert_allclose(got, alone["eval/return_mean"][i], rtol=1e-4, atol=1e-3, err_msg=folder.name)
        for name in ("loss/critic", "loss/actor", "alpha", "q_mean"):
            got = [r[name] for r in rows]
            np.testing.assert_allclose(got, alone[name].mean(axis=0), rtol=1e-4, atol=1e-4, err_msg=f"{folder.name} {name}")


def test_every_point_gets_the_keys_and_initial_state_of_rlx_train():
    """Bit for bit: run r of a sweep is point r // seeds with the key `rlx train --seed S
    --num-seeds N` gives seed r % seeds, and initializing with the tunable values as batched
    arguments (the sweep) gives the state that compiling them in as constants (`rlx train`) does."""
    env, params = envs.make("gymnax/Pendulum-v1", max_steps_in_episode=50)
    configs = [TINY.override(critic_lr=1e-4, init_alpha=0.2), TINY.override(critic_lr=1e-3, init_alpha=0.5)]
    run_configs, run_keys = run_inputs(configs, SEED, NUM_SEEDS)
    keys = np.asarray(seed_keys(SEED, NUM_SEEDS))
    swept_init = jax.jit(jax.vmap(lambda c, k: make_train(sac, c, env, params).init(k)))(run_configs, run_keys)
    for p, config in enumerate(configs):
        runs = slice(p * NUM_SEEDS, (p + 1) * NUM_SEEDS)
        np.testing.assert_array_equal(run_keys[runs], keys)
        for r in range(runs.start, runs.stop):
            assert [float(leaf[r]) for leaf in jax.tree.leaves(run_configs)] == [float(np.float32(v)) for v in jax.tree.leaves(config)]
        alone = jax.jit(jax.vmap(make_train(sac, config, env, params).init))(keys)  # as rlx.run.run does
        jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda x, runs=runs: x[runs], swept_init), alone)
        np.testing.assert_allclose(np.exp(alone.agent_state.learner.log_alpha), config.init_alpha, rtol=1e-6)


def test_a_point_parts_from_rlx_run_only_by_rounding(swept):
    """The point (critic_lr=1e-3, tau=0.02) against `rlx.run.run` with its config, seed and
    seeds, which is `rlx train`: the first evaluation after 250 updates agrees to 1e-5
    relative, the whole run to 1e-4 (rounding grows with training; long runs differ more)."""
    out, _ = swept
    folder = _points(out)[3]
    point = json.loads((folder / "config.json").read_text())["sweep_point"]
    assert (point["critic_lr"], point["tau"]) == (CRITIC_LRS[1], TAUS[1])
    config = TINY.override(critic_lr=point["critic_lr"], tau=point["tau"])
    alone = run(
        sac, config, "gymnax/Pendulum-v1", env_kwargs={"max_steps_in_episode": 50}, seed=SEED,
        num_seeds=NUM_SEEDS, progress=False,
    ).metrics
    rows = _rows(folder / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(alone["step"][0])
    for i in range(NUM_SEEDS):
        got = [r[f"seed{i}/eval/return_mean"] for r in rows]
        np.testing.assert_allclose(got[0], alone["eval/return_mean"][i, 0], rtol=1e-5)
        np.testing.assert_allclose(got, alone["eval/return_mean"][i], rtol=1e-4, atol=1e-3)
    for name in ("loss/critic", "loss/actor", "alpha", "q_mean", "entropy"):
        got, expected = [r[name] for r in rows], alone[name].mean(axis=0)
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize(
    "sets, message",
    [
        (["activation=relu,tanh"], "static field activation differs ('relu' vs 'tanh'): it fixes shapes or loop lengths"),
        (["num_envs=1,2"], "static field num_envs differs"),
        (["critic_lr=1e-4,-1"], "critic_lr=-1.0 is out of range"),
        (["critic_lr"], "--set expects FIELD=V1,V2,..."),
        (["critic_lr=1e-4", "critic_lr=1e-3"], "given twice"),
        (["critic_lr=1e-4,1e-4"], "sweep points 0 and 1 are the same config"),
        (["bogus=1,2"], "unknown field(s) bogus"),
        ([], "needs at least one --set"),
    ],
)
def test_bad_sweeps_are_refused_before_compiling(sets, message, tmp_path, capsys):
    out = tmp_path / "never"
    argv = ["sweep", "sac", *TINY_FLAGS, "--out", str(out)]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_field_both_as_flag_and_in_set_is_refused(tmp_path, capsys):
    argv = ["sweep", "sac", *TINY_FLAGS, "--critic-lr", "1e-3", "--set", "critic_lr=1e-4,3e-4", "--out", str(tmp_path / "x")]
    assert main(argv) == 2
    assert "critic_lr given both as a flag and in --set" in capsys.readouterr().err


def test_python_api_refuses_static_field():
    env, params = envs.make("gymnax/Pendulum-v1", max_steps_in_episode=50)
    with pytest.raises(ConfigError, match=re.escape("static field batch_size differs (16 vs 32)")):
        run_sweep(sac, TINY, {"batch_size": [16, 32]}, env, params, progress=False)


def test_sweep_help_lists_set_and_config_fields(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "sac", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--set FIELD=V1,V2,..." in text and "--critic-lr" in text and "--devices" in text
