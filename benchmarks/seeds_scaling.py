"""Seeds scaling: wall time of 1, 4, 16, 64 seeds of SAC on gymnax/Pendulum-v1 trained as one
vmapped program, for 64x64 and 256x256 networks.

    python benchmarks/seeds_scaling.py              # the full table (minutes on a 2-core CPU)
    python benchmarks/seeds_scaling.py --quick      # a smoke run with tiny settings (< 1 min)
    python benchmarks/seeds_scaling.py --seeds 1,4,16 --hidden 64x64 --steps 2000

Each run is short: ``learning_starts`` random steps, then one update per env step up to
``--steps``, one deterministic evaluation at the end. One seed is ``jax.jit(train)``; N seeds
are ``jax.jit(jax.vmap(train))``, sharded over the devices when several are visible (runs mode,
``rlx.run.mesh``). Programs are compiled ahead of time (``.lower(...).compile()``), so compile
and run time are measured apart; the run time is the median of ``--repeats`` calls after one
untimed call. The goal on a 2-core CPU: 16 seeds in at most 4 x the wall time of one seed.
Results: a Markdown table on stdout and ``<out>/seeds_scaling-<platform>.md`` / ``.json``
(``-quick`` added for a smoke run) with the machine, versions, date and settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax

import rlx.envs
from rlx.agents import sac
from rlx.run import logging as runlog
from rlx.run import make_train, runs_layout, seed_keys

TARGET_SEEDS, TARGET_FACTOR = 16, 4.0  # 16 seeds in <= 4 x one seed's wall time


@dataclasses.dataclass(frozen=True)
class Settings:
    env: str = "gymnax/Pendulum-v1"
    steps: int = 3_000
    learning_starts: int = 1_000
    batch_size: int = 256
    eval_episodes: int = 10
    seeds: tuple[int, ...] = (1, 4, 16, 64)
    hidden: tuple[tuple[int, ...], ...] = ((64, 64), (256, 256))
    repeats: int = 3
    seed: int = 0


QUICK = {"steps": 400, "learning_starts": 200, "batch_size": 32, "eval_episodes": 2,
         "seeds": (1, 4), "hidden": ((16, 16),), "repeats": 1}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measure(s: Settings, env, env_params, hidden: tuple[int, ...], num_seeds: int) -> dict:
    config = sac.SACConfig(
        total_steps=s.steps, learning_starts=s.learning_starts, batch_size=s.batch_size,
        hidden_sizes=hidden, eval_every=s.steps - s.learning_starts, eval_episodes=s.eval_episodes,
    )
    train = make_train(sac, config, env, env_params)
    keys = seed_keys(s.seed, num_seeds)
    layout = runs_layout(num_seeds)
    if num_seeds == 1:
        fn, arg = jax.jit(train), keys[0]
    else:
        fn, arg = layout.jit(jax.vmap(train)), layout.place(keys)
    t = time.perf_counter()
    compiled = fn.lower(arg).compile()
    compile_seconds = time.perf_counter() - t
    jax.block_until_ready(compiled(arg))  # untimed: first-call allocations
    times = []
    for _ in range(s.repeats):
        t = time.perf_counter()
        jax.block_until_ready(compiled(arg))
        times.append(time.perf_counter() - t)
    run_seconds = statistics.median(times)
    env_steps = train.schedule.total_env_steps
    return {
        "hidden_sizes": list(hidden),
        "num_seeds": num_seeds,
        "devices": layout.num_devices,
        "compile_seconds": round(compile_seconds, 3),
        "run_seconds": [round(x, 4) for x in times],
        "run_seconds_median": round(run_seconds, 4),
        "env_steps_per_seed": env_steps,
        "env_steps_per_second": round(env_steps * num_seeds / run_seconds, 1),
    }


def add_ratios(rows: list[dict]) -> None:
    """Wall time relative to one seed of the same network, and whether the goal is met."""
    one = {tuple(r["hidden_sizes"]): r["run_seconds_median"] for r in rows if r["num_seeds"] == 1}
    for r in rows:
        base = one.get(tuple(r["hidden_sizes"]))
        r["x_one_seed"] = None if base is None else round(r["run_seconds_median"] / base, 3)
        r["meets_target"] = (
            None if r["num_seeds"] != TARGET_SEEDS or base is None else r["x_one_seed"] <= TARGET_FACTOR
        )


def render_markdown(result: dict) -> str:
    s, m, v = result["settings"], result["machine"], result["versions"]
    quick = " (QUICK smoke run: tiny settings, not a result)" if result["quick"] else ""
    lines = [
        f"# Seeds scaling: SAC on {s['env']}{quick}",
        "",
        f"- date: {result['date']}",
        f"- machine: {m.get('cpu_model', m.get('processor'))}, {m['cpu_count']} CPU cores, "
        f"{m['device_count']} x {m['platform']} / {m['device_kind']}; load average at start "
        f"{m.get('load_average_at_start')}, at end {m.get('load_average_at_end')}",
        f"- versions: rlx {v.get('rlx')}, jax {v.get('jax')}, jaxlib {v.get('jaxlib')}, flax {v.get('flax')}, "
        f"gymnax {v.get('gymnax')}, python {v.get('python')}",
        f"- settings: {s['steps']:,} env steps per seed ({s['learning_starts']:,} random, then one update "
        f"per env step, batch {s['batch_size']}), one evaluation of {s['eval_episodes']} episodes at the end; "
        f"run time = median of {s['repeats']} calls of the compiled program after one untimed call",
        f"- goal: {TARGET_SEEDS} seeds in <= {TARGET_FACTOR:g} x the wall time of one seed",
        "",
        "| network | seeds | devices | compile | run (wall) | x one seed | env steps/s, all seeds | goal met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        met = {None: "", True: "yes", False: "no"}[r["meets_target"]]
        ratio = "" if r["x_one_seed"] is None else f"{r['x_one_seed']:.2f}"
        lines.append(
            f"| {'x'.join(map(str, r['hidden_sizes']))} | {r['num_seeds']} | {r['devices']} | "
            f"{r['compile_seconds']:.1f} s | {r['run_seconds_median']:.2f} s | {ratio} | "
            f"{r['env_steps_per_second']:,.0f} | {met} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> tuple[Settings, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    p.add_argument("--seeds", default=None, help="comma-separated seed counts (default 1,4,16,64)")
    p.add_argument("--hidden", default=None, help="comma-separated networks, e.g. 64x64,256x256")
    p.add_argument("--steps", type=int, default=None, help="env steps per seed (default 3000)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (default 3)")
    p.add_argument("--out", default="benchmarks/results/", help="folder for the .md and .json results")
    args = p.parse_args(argv)
    changes = dict(QUICK) if args.quick else {}
    if args.seeds:
        changes["seeds"] = tuple(int(x) for x in args.seeds.split(","))
    if args.hidden:
        changes["hidden"] = tuple(tuple(int(w) for w in h.split("x")) for h in args.hidden.split(","))
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.repeats is not None:
        changes["repeats"] = args.repeats
    s = dataclasses.replace(Settings(), **changes)
    if min(s.seeds) < 1 or s.repeats < 1 or s.steps <= s.learning_starts:
        raise SystemExit("seed counts and --repeats must be >= 1, and --steps larger than learning_starts")
    return s, args


def main(argv=None) -> dict:
    s, args = parse_args(argv)
    jax.config.update("jax_enable_compilation_cache", False)  # compile times are real compiles
    env, env_params = rlx.envs.make(s.env)
    result = {
        **runlog.benchmark_header("seeds_scaling", args.quick, argv, dataclasses.asdict(s)),
        "rows": [],
    }
    for hidden in s.hidden:
        for n in s.seeds:
            label = "x".join(map(str, hidden))
            log(f"{label}, {n} seed(s): compiling and running")
            row = measure(s, env, env_params, hidden, n)
            log(f"{label}, {n} seed(s): compile {row['compile_seconds']:.1f} s, run {row['run_seconds_median']:.2f} s")
            result["rows"].append(row)
    add_ratios(result["rows"])
    if hasattr(os, "getloadavg"):
        result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = render_markdown(result)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"seeds_scaling-{result['machine']['platform']}{'-quick' if args.quick else ''}"
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out / stem}.md and .json")
    return result


if __name__ == "__main__":
    main()
