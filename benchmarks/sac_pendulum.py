"""SAC on gymnax/Pendulum-v1: compile time, loop throughput, the raw-update floor, time to solve,
seeds scaling, and the same task run by peer libraries when they are installed.

    python benchmarks/sac_pendulum.py                 # the full benchmark (~30 min on 2 CPU cores)
    python benchmarks/sac_pendulum.py --quick         # a smoke run with tiny settings (< 1 min)
    python benchmarks/sac_pendulum.py --parts floor,loop

Settings (the full run): 20,000 env steps, one gradient update per env step, batch 256, 256x256
MLPs, learning_starts 1,000, one env, 10 deterministic evaluation episodes every 2,000 steps;
"solved" means an evaluation mean >= -250. Everything is timed with ``time.perf_counter`` around
ahead-of-time compiled programs (``jax.jit(f).lower(...).compile()``), so compile time and run
time are measured apart. Results: a Markdown table on stdout, and
``<out>/sac_pendulum-<platform>.md`` / ``.json`` with the machine, versions, date and settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import rlx.envs
from rlx.agents import sac
from rlx.buffers import sample
from rlx.run import logging as runlog
from rlx.run import make_train, seed_keys

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sac_pendulum_peers as peers  # noqa: E402

PARTS = ("loop", "floor", "learn", "scaling", "peers")

# What rlx aims for on this task (the project's benchmark goals).
TARGETS = {
    "loop_to_floor": 0.95,
    "compile_seconds": 10.0,
    "seeds_solved_fraction": 1.0,
    "median_steps_to_solve": 4_000,
    "scaling_efficiency": 0.95,
}


@dataclasses.dataclass(frozen=True)
class Settings:
    env: str = "gymnax/Pendulum-v1"
    total_steps: int = 20_000
    learning_starts: int = 1_000
    batch_size: int = 256
    hidden_sizes: tuple[int, ...] = (256, 256)
    eval_every: int = 2_000
    eval_episodes: int = 10
    solved_at: float = -250.0
    seed: int = 0
    seeds: int = 8  # learning part
    sequential_seeds: bool = False
    repeats: int = 3  # timed runs of warm programs (median reported); one untimed run before
    floor_updates: int = 4_000
    floor_repeats: int = 5
    scaling_steps: int = 3_000
    scaling_seeds: tuple[int, ...] = (1, 2, 4, 8)
    scaling_hidden: tuple[tuple[int, ...], ...] = ((64, 64), (256, 256))
    peer_seeds: int = 2


QUICK = {
    "total_steps": 600,
    "learning_starts": 300,
    "eval_every": 150,
    "seeds": 2,
    "repeats": 1,
    "floor_updates": 300,
    "floor_repeats": 1,
    "scaling_steps": 500,
    "scaling_seeds": (1, 2),
    "scaling_hidden": ((64, 64),),
    "peer_seeds": 1,
}


_T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def sac_config(s: Settings, total_steps: int, hidden, eval_every: int | None = None) -> sac.SACConfig:
    return sac.SACConfig(
        total_steps=total_steps,
        learning_starts=s.learning_starts,
        batch_size=s.batch_size,
        hidden_sizes=tuple(hidden),
        eval_every=s.eval_every if eval_every is None else eval_every,
        eval_episodes=s.eval_episodes,
    )


def aot_compile(fn, *args):
    """``fn.lower(*args).compile()`` and its wall seconds."""
    t = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - t


def timed_runs(compiled, args, repeats: int):
    """Seconds of ``repeats`` calls of a compiled program, after one untimed warm-up call;
    and the last call's output."""
    out = jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t)
    return times, out


def first_solved(steps, returns, walls, threshold):
    """(env steps, wall) at the first evaluation >= threshold, or (None, None)."""
    for st, r, w in zip(steps, returns, walls, strict=True):
        if r >= threshold:
            return int(st), float(w)
    return None, None


def median_or_none(values):
    """Median where a missing value (never solved) counts as +infinity; None if that is the median."""
    vals = [np.inf if v is None else v for v in values]
    if not vals:
        return None
    m = float(np.median(vals))
    return None if not np.isfinite(m) else m


# ---------------------------------------------------------------------------------------------
# 1 + 2: compile time and throughput of the one-shot training program
# ---------------------------------------------------------------------------------------------
def bench_loop(s: Settings, env, env_params) -> dict:
    config = sac_config(s, s.total_steps, s.hidden_sizes)
    train = make_train(sac, config, env, env_params)
    key = seed_keys(s.seed, 1)[0]
    log("loop: compiling the one-shot training program (1 seed)")
    compiled, compile_s = aot_compile(jax.jit(train), key)
    log(f"loop: compiled in {compile_s:.1f} s; running {s.repeats} timed + 1 warm-up")
    times, out = timed_runs(compiled, (key,), s.repeats)
    env_steps = int(out.state.agent_state.env_steps)
    updates = int(out.state.agent_state.gradient_steps)
    t = statistics.median(times)
    return {
        "compile_seconds": compile_s,
        "run_seconds": times,
        "run_seconds_median": t,
        "env_steps": env_steps,
        "updates": updates,
        "env_steps_per_second": env_steps / t,
        "updates_per_second": updates / t,
        "eval_steps": [int(x) for x in np.asarray(out.metrics["step"])],
    }


# ---------------------------------------------------------------------------------------------
# 3: time to solve, final return (the chunked program: one evaluation block per call)
# ---------------------------------------------------------------------------------------------
def bench_learning(s: Settings, env, env_params) -> dict:
    config = sac_config(s, s.total_steps, s.hidden_sizes)
    train = make_train(sac, config, env, env_params)
    keys = seed_keys(s.seed, s.seeds)
    if s.sequential_seeds:
        lift, groups = (lambda f: f), [keys[i] for i in range(s.seeds)]
    else:
        lift, groups = jax.vmap, [keys]
    mode = "sequential" if s.sequential_seeds else "vmapped"
    log(f"learn: compiling init + one evaluation block ({s.seeds} seeds, {mode})")
    init_c, compile_init = aot_compile(jax.jit(lift(train.init)), groups[0])
    state_spec = jax.eval_shape(lift(train.init), groups[0])
    block_c, compile_block = aot_compile(
        jax.jit(lift(lambda rs: train.run_blocks(rs, 1)), donate_argnums=0), state_spec
    )
    compile_s = compile_init + compile_block
    log(f"learn: compiled in {compile_s:.1f} s")

    curves, steps, walls, run_seconds = [], None, [], []
    for g, group_keys in enumerate(groups):
        t = time.perf_counter()
        state = jax.block_until_ready(init_c(group_keys))
        marks, blocks = [], []
        for _ in range(train.schedule.num_evals):
            state, metrics = block_c(state)
            blocks.append(jax.device_get(metrics))
            marks.append(time.perf_counter() - t)
        run_seconds.append(marks[-1])
        returns = np.concatenate([np.reshape(b["eval/return_mean"], (-1, 1)) for b in blocks], axis=1)
        steps = [int(np.reshape(b["step"], -1)[0]) for b in blocks]
        for r in returns:  # (seeds in this group, evaluations)
            curves.append([float(x) for x in r])
            walls.append(marks)
        log(f"learn: run {g + 1}/{len(groups)} done in {marks[-1]:.1f} s; "
            f"final eval {np.round(returns[:, -1], 1).tolist()}")

    per_seed = []
    for i, (curve, wall) in enumerate(zip(curves, walls, strict=True)):
        st, w = first_solved(steps, curve, wall, s.solved_at)
        per_seed.append({
            "seed_index": i,
            "steps_to_solve": st,
            "wall_to_solve": w,
            "wall_to_solve_with_compile": None if w is None else w + compile_s,
            "final_return": curve[-1],
            "returns": curve,
        })
    final = np.array([p["final_return"] for p in per_seed])
    total_env_steps = train.schedule.total_env_steps * s.seeds
    return {
        "mode": mode,
        "compile_seconds": compile_s,
        "compile_seconds_init": compile_init,
        "compile_seconds_block": compile_block,
        "eval_steps": steps,
        "env_steps_per_seed": train.schedule.total_env_steps,
        "run_seconds": run_seconds,
        "env_steps_per_second": total_env_steps / sum(run_seconds),
        "seeds": per_seed,
        "solved": sum(p["steps_to_solve"] is not None for p in per_seed),
        "median_steps_to_solve": median_or_none([p["steps_to_solve"] for p in per_seed]),
        "median_wall_to_solve": median_or_none([p["wall_to_solve"] for p in per_seed]),
        "median_wall_to_solve_with_compile": median_or_none(
            [p["wall_to_solve_with_compile"] for p in per_seed]
        ),
        "final_return_mean": float(final.mean()),
        "final_return_std": float(final.std()),
    }


# ---------------------------------------------------------------------------------------------
# 4: the raw-update floor: gradient_step alone in a lax.scan, fixed batches, no env, no insert
# ---------------------------------------------------------------------------------------------
def bench_floor(s: Settings, env, env_params) -> dict:
    config = sac_config(s, s.total_steps, s.hidden_sizes)
    action_dim = rlx.envs.action_dim(env.action_space(env_params))
    k_init, k_batch, k_steps = jax.random.split(jax.random.PRNGKey(s.seed), 3)
    # Real transitions: sac.init runs the learning_starts random warm-up steps into the buffer.
    state = jax.jit(lambda k: sac.init(config, env, env_params, k))(k_init)
    n = s.floor_updates
    batches = jax.jit(jax.vmap(lambda k: sample(state.buffer, k, config.batch_size)))(
        jax.random.split(k_batch, n)
    )
    step_keys = jax.random.split(k_steps, n)
    steps = jnp.arange(n, dtype=jnp.int32)  # the gradient-step counter the loop passes

    def updates(learner, batches, keys, steps):
        def body(learner, xs):
            batch, key, step = xs
            learner, _ = sac.gradient_step(config, action_dim, learner, batch, key, step)
            return learner, None

        learner, _ = jax.lax.scan(body, learner, (batches, keys, steps))
        return learner

    log(f"floor: compiling {n} bare updates in a lax.scan")
    args = (state.learner, batches, step_keys, steps)
    compiled, compile_s = aot_compile(jax.jit(updates), *args)
    log(f"floor: compiled in {compile_s:.1f} s; running {s.floor_repeats} timed + 1 warm-up")
    times, _ = timed_runs(compiled, args, s.floor_repeats)
    t = statistics.median(times)
    return {
        "updates": n,
        "compile_seconds": compile_s,
        "run_seconds": times,
        "run_seconds_median": t,
        "updates_per_second": n / t,
    }


# ---------------------------------------------------------------------------------------------
# 5: seeds scaling: N vmapped seeds vs N x one seed
# ---------------------------------------------------------------------------------------------
def bench_scaling(s: Settings, env, env_params) -> list[dict]:
    rows = []
    for hidden in s.scaling_hidden:
        # One evaluation, at the end: the run is warm-up + updates + one evaluation.
        config = sac_config(s, s.scaling_steps, hidden, eval_every=s.scaling_steps - s.learning_starts)
        train = make_train(sac, config, env, env_params)
        one_seed_rate = None
        for n in s.scaling_seeds:
            keys = seed_keys(s.seed, n)
            fn, arg = (jax.jit(train), keys[0]) if n == 1 else (jax.jit(jax.vmap(train)), keys)
            label = "x".join(map(str, hidden))
            log(f"scaling: {label}, {n} seed(s): compiling")
            compiled, compile_s = aot_compile(fn, arg)
            times, out = timed_runs(compiled, (arg,), s.repeats)
            t = statistics.median(times)
            rate = int(np.sum(out.state.agent_state.gradient_steps)) / t  # updates of all seeds
            if n == 1:
                one_seed_rate = rate
            rows.append({
                "hidden_sizes": list(hidden),
                "num_seeds": n,
                "compile_seconds": compile_s,
                "run_seconds": times,
                "run_seconds_median": t,
                "updates_per_second": rate,
                "efficiency": None if one_seed_rate is None else rate / (n * one_seed_rate),
            })
            log(f"scaling: {label}, {n} seed(s): {rate:,.0f} updates/s in total")
    return rows


# ---------------------------------------------------------------------------------------------
# 6: peers (optional)
# ---------------------------------------------------------------------------------------------
def bench_peers(s: Settings, names, peer_python: dict[str, str]) -> list[dict]:
    task = {
        "total_steps": s.total_steps,
        "learning_starts": s.learning_starts,
        "batch_size": s.batch_size,
        "hidden_sizes": list(s.hidden_sizes),
        "eval_every": s.eval_every,
        "eval_episodes": s.eval_episodes,
    }
    results = []
    for name in names:
        if name in peer_python:
            log(f"peers: {name} under {peer_python[name]} ({s.peer_seeds} seed(s))")
            script = Path(__file__).resolve().parent / "sac_pendulum_peers.py"
            cmd = [peer_python[name], str(script), name, "--settings", json.dumps(task),
                   "--seeds", str(s.peer_seeds)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = proc.stdout.strip().splitlines()
            try:
                res = json.loads(lines[-1])
            except (IndexError, json.JSONDecodeError):
                res = {"library": name, "seeds": [],
                       "error": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}
            res["python"] = peer_python[name]
        elif peers.available(name):
            log(f"peers: {name} ({s.peer_seeds} seed(s))")
            res = peers.run_peer(name, task, s.peer_seeds)
        else:
            continue
        results.append(summarize_peer(res, s))
    return results


def summarize_peer(res: dict, s: Settings) -> dict:
    seeds = res.get("seeds", [])
    compile_s = res.get("compile_seconds") or 0.0
    per_seed, rates = [], []
    for run in seeds:
        st, w = first_solved(run["steps"], run["returns"], run["wall"], s.solved_at)
        per_seed.append({"steps_to_solve": st, "wall_to_solve": w,
                         "wall_to_solve_with_compile": None if w is None else w + compile_s,
                         "final_return": run["returns"][-1] if run["returns"] else None})
        train_seconds = run["run_seconds"] - run["eval_seconds"]
        rates.append(run["updates"] / max(train_seconds, 1e-9))
    finals = np.array([p["final_return"] for p in per_seed if p["final_return"] is not None])
    return {
        **{k: v for k, v in res.items() if k != "seeds"},
        "runs": seeds,
        "seeds": per_seed,
        "updates_per_second": float(np.median(rates)) if rates else None,
        "solved": sum(p["steps_to_solve"] is not None for p in per_seed),
        "median_steps_to_solve": median_or_none([p["steps_to_solve"] for p in per_seed]),
        "median_wall_to_solve_with_compile": median_or_none(
            [p["wall_to_solve_with_compile"] for p in per_seed]
        ),
        "final_return_mean": float(finals.mean()) if finals.size else None,
        "final_return_std": float(finals.std()) if finals.size else None,
        "wall_estimated": any(r.get("wall_estimated") for r in seeds),
    }


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def fmt(x, spec=",.0f", none="—"):
    return none if x is None else format(x, spec)


def fmt_s(x):
    return fmt(x, ".1f") + " s" if x is not None else "never"


def check(value, target, higher_is_better=True):
    if value is None:
        return "no"
    return "yes" if (value >= target if higher_is_better else value <= target) else "no"


def render_markdown(r: dict) -> str:
    s = r["settings"]
    m = r["machine"]
    lines = [
        f"# SAC on {s['env']}{' (QUICK smoke run: tiny settings, not a result)' if r['quick'] else ''}",
        "",
        f"- date: {r['date']}",
        f"- machine: {m.get('cpu_model', m.get('processor'))}, {m['cpu_count']} CPU cores, "
        f"device {m['platform']} / {m['device_kind']}; load average at start {m.get('load_average_at_start')}, "
        f"at end {m.get('load_average_at_end')}",
        f"- versions: rlx {r['versions'].get('rlx')}, jax {r['versions'].get('jax')}, "
        f"jaxlib {r['versions'].get('jaxlib')}, flax {r['versions'].get('flax')}, "
        f"gymnax {r['versions'].get('gymnax')}, python {r['versions'].get('python')}",
        f"- settings: {s['total_steps']:,} env steps (config), 1 update per env step, batch {s['batch_size']}, "
        f"hidden {'x'.join(map(str, s['hidden_sizes']))}, learning_starts {s['learning_starts']:,}, 1 env, "
        f"{s['eval_episodes']} deterministic eval episodes every {s['eval_every']:,} steps; "
        f"solved = eval mean >= {s['solved_at']:g}; timings: median of {s['repeats']} warm runs "
        f"(floor: {s['floor_repeats']})",
        "",
    ]
    loop, floor, learn = r.get("loop"), r.get("floor"), r.get("learn")
    if loop or floor:
        lines += ["## Speed (one seed)", "", "| figure | value | target | met |", "|---|---|---|---|"]
        if loop:
            lines += [
                f"| compile, one-shot training program (AOT) | {loop['compile_seconds']:.1f} s | "
                f"<= {TARGETS['compile_seconds']:g} s | {check(loop['compile_seconds'], TARGETS['compile_seconds'], False)} |",
                f"| full compiled loop: run time ({loop['env_steps']:,} env steps, {loop['updates']:,} updates) | "
                f"{loop['run_seconds_median']:.2f} s | | |",
                f"| full compiled loop: env steps/s | {loop['env_steps_per_second']:,.1f} | | |",
                f"| full compiled loop: gradient updates/s | {loop['updates_per_second']:,.1f} | | |",
            ]
        if floor:
            lines.append(
                f"| floor: bare `gradient_step` in `lax.scan` ({floor['updates']:,} updates), updates/s | "
                f"{floor['updates_per_second']:,.1f} | | |"
            )
        if loop and floor:
            ratio = r["loop_to_floor"]
            lines.append(
                f"| loop updates/s / floor | {ratio:.3f} | >= {TARGETS['loop_to_floor']:g} | "
                f"{check(ratio, TARGETS['loop_to_floor'])} |"
            )
        lines.append("")
    if learn:
        n = len(learn["seeds"])
        together = " (all seeds in one vmapped program: a shared clock)" if learn["mode"] == "vmapped" else ""
        lines += [
            f"## Learning: {n} seeds, {learn['mode']}{together}",
            "",
            f"Evaluations at env steps {', '.join(f'{x:,}' for x in learn['eval_steps'])}; "
            f"compile (init + one evaluation block) {learn['compile_seconds']:.1f} s; "
            f"{learn['env_steps_per_second']:,.0f} env steps/s over all seeds.",
            "",
            "| seed | env steps to eval >= -250 | wall to it | wall to it, compile included | final return |",
            "|---|---|---|---|---|",
        ]
        for p in learn["seeds"]:
            lines.append(
                f"| {p['seed_index']} | {fmt(p['steps_to_solve'], ',.0f', 'never')} | {fmt_s(p['wall_to_solve'])} | "
                f"{fmt_s(p['wall_to_solve_with_compile'])} | {p['final_return']:.1f} |"
            )
        solved_frac = learn["solved"] / max(n, 1)
        lines += [
            "",
            "| summary | value | target | met |",
            "|---|---|---|---|",
            f"| seeds solved | {learn['solved']} of {n} | all | {check(solved_frac, TARGETS['seeds_solved_fraction'])} |",
            f"| median env steps to -250 | {fmt(learn['median_steps_to_solve'], ',.0f', 'never')} | "
            f"<= {TARGETS['median_steps_to_solve']:,} | "
            f"{check(learn['median_steps_to_solve'], TARGETS['median_steps_to_solve'], False)} |",
            f"| median wall to -250 (compile excluded) | {fmt_s(learn['median_wall_to_solve'])} | | |",
            f"| median wall to -250 (compile included) | {fmt_s(learn['median_wall_to_solve_with_compile'])} | "
            "<= 0.5 x sbx | see peers |",
            f"| final return (mean +- std over seeds) | {learn['final_return_mean']:.1f} +- "
            f"{learn['final_return_std']:.1f} | | |",
            "",
        ]
    if r.get("scaling"):
        lines += [
            f"## Seeds scaling ({s['scaling_steps']:,}-step runs, whole program; "
            f"target: N seeds >= {TARGETS['scaling_efficiency']:g} x N x one seed)",
            "",
            "| network | seeds | updates/s in total | N x one seed | efficiency |",
            "|---|---|---|---|---|",
        ]
        one = {}
        for row in r["scaling"]:
            label = "x".join(map(str, row["hidden_sizes"]))
            if row["num_seeds"] == 1:
                one[label] = row["updates_per_second"]
            ideal = one.get(label, 0.0) * row["num_seeds"]
            lines.append(
                f"| {label} | {row['num_seeds']} | {row['updates_per_second']:,.0f} | {ideal:,.0f} | "
                f"{fmt(row['efficiency'], '.2f')} |"
            )
        lines.append("")
    if "peers" in r:
        lines += ["## Peers (same task and settings, same machine, this run)", ""]
        if not r["peers"]:
            lines += ["None installed (rejax, sbx, stable_baselines3 are optional).", ""]
        else:
            floor_rate = floor["updates_per_second"] if floor else None
            lines += [
                "| library | updates/s | / rlx floor | env steps to -250 per seed | median wall to -250 "
                "(compile incl.) | / rlx wall | seeds solved | final return |",
                "|---|---|---|---|---|---|---|---|",
            ]
            rows = list(r["peers"])
            # rlx's wall is per seed (comparable) only when its seeds ran one after another.
            rlx_wall = None
            if learn and learn["mode"] == "sequential":
                rlx_wall = learn["median_wall_to_solve_with_compile"]
            if learn and loop:
                rows.insert(0, {
                    "library": "rlx" + ("" if learn["mode"] == "sequential" else
                                        f" (learning: {len(learn['seeds'])} seeds vmapped, one clock)"),
                    "version": r["versions"].get("rlx"),
                    "updates_per_second": loop["updates_per_second"], "seeds": learn["seeds"],
                    "median_wall_to_solve_with_compile": learn["median_wall_to_solve_with_compile"],
                    "solved": learn["solved"], "final_return_mean": learn["final_return_mean"],
                    "final_return_std": learn["final_return_std"],
                })
            for p in rows:
                if p.get("error"):
                    lines.append(f"| {p['library']} {p.get('version', '')} | error: {p['error']} | | | | | | |")
                    continue
                rate = p.get("updates_per_second")
                ratio = fmt(rate / floor_rate, ".2f") if rate and floor_rate else "—"
                steps = " / ".join(fmt(x["steps_to_solve"], ",.0f", "never") for x in p["seeds"])
                wall = p["median_wall_to_solve_with_compile"]
                wall_ratio = fmt(wall / rlx_wall, ".2f") if wall and rlx_wall else "—"
                est = " (est.)" if p.get("wall_estimated") else ""
                lines.append(
                    f"| {p['library']} {p.get('version', '')} | {fmt(rate, ',.1f')} | {ratio} | {steps} | "
                    f"{fmt_s(wall)}{est} | {wall_ratio} | {p['solved']} of {len(p['seeds'])} | "
                    f"{fmt(p['final_return_mean'], '.1f')} +- {fmt(p['final_return_std'], '.1f')} |"
                )
            lines += [
                "",
                "updates/s: rlx, the whole compiled program (evaluations included); peers, training time "
                "(their host-side evaluations excluded). Peers evaluate at multiples of the evaluation "
                "period; rlx after warm-up + multiples of it. (est.): the wall at each evaluation is "
                "estimated as linear in env steps (one compiled program, no per-evaluation clock). "
                "/ rlx wall needs `--sequential-seeds` (rlx's per-seed wall).",
                "",
            ]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="SAC on gymnax/Pendulum-v1: speed, floor, learning, scaling, peers.")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke run (< 1 minute)")
    p.add_argument("--seeds", type=int, default=None, help="seeds for the learning part (default 8; quick 2)")
    p.add_argument("--sequential-seeds", action="store_true",
                   help="train the learning seeds one after another (one compile) instead of vmapped")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (default 3)")
    p.add_argument("--peer-seeds", type=int, default=None, help="seeds per peer library (default 2)")
    p.add_argument("--parts", default=",".join(PARTS),
                   help=f"comma-separated subset of {','.join(PARTS)} (default: all)")
    p.add_argument("--peer-python", action="append", default=[], metavar="LIB=PYTHON",
                   help="run peer LIB (rejax, sbx, stable_baselines3) under another interpreter; repeatable")
    p.add_argument("--out", default="benchmarks/results/", help="folder for the .md and .json results")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    peer_python = {}
    for item in args.peer_python:
        lib, _, exe = item.partition("=")
        if lib not in peers.PEERS or not exe:
            raise SystemExit(f"--peer-python wants LIB=PYTHON with LIB in {', '.join(peers.PEERS)}; got {item!r}")
        peer_python[lib] = exe
    changes = dict(QUICK) if args.quick else {}
    for name in ("seeds", "repeats", "peer_seeds"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    changes["sequential_seeds"] = args.sequential_seeds
    s = dataclasses.replace(Settings(), **changes)
    if s.seeds < 1 or s.repeats < 1 or s.peer_seeds < 1:
        raise SystemExit("--seeds, --repeats and --peer-seeds must be >= 1")

    # Compile times must be real compiles: no persistent compilation cache.
    jax.config.update("jax_enable_compilation_cache", False)
    env, env_params = rlx.envs.make(s.env)
    result = {
        **runlog.benchmark_header("sac_pendulum", args.quick, argv, dataclasses.asdict(s)),
        "targets": TARGETS,
    }
    if "loop" in parts:
        result["loop"] = bench_loop(s, env, env_params)
    if "floor" in parts:
        result["floor"] = bench_floor(s, env, env_params)
    if "loop" in parts and "floor" in parts:
        result["loop_to_floor"] = result["loop"]["updates_per_second"] / result["floor"]["updates_per_second"]
    if "learn" in parts:
        result["learn"] = bench_learning(s, env, env_params)
    if "scaling" in parts:
        result["scaling"] = bench_scaling(s, env, env_params)
    if "peers" in parts:
        names = [n for n in peers.PEERS if n in peer_python or peers.available(n)]
        result["peers"] = bench_peers(s, names, peer_python)
    if hasattr(os, "getloadavg"):
        result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["total_seconds"] = time.perf_counter() - _T0

    md = render_markdown(result)
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"sac_pendulum-{result['machine']['platform']}{'-quick' if args.quick else ''}"
    (out / f"{stem}.md").write_text(md + "\n")
    runlog.write_json(out / f"{stem}.json", result)
    log(f"wrote {out / stem}.md and .json ({result['total_seconds']:.0f} s in all)")
    return result


if __name__ == "__main__":
    main()
