"""Exploration with reward on a sparse task: SAC against SAC with an intrinsic bonus on gymnax's
MountainCarContinuous-v0 (+100 at the flag, -0.1 a^2 per step, 999-step episodes).

Plain SAC rarely reaches the flag by dithering and settles on standing still (return near 0);
a bonus (``rlx.explore.with_intrinsic(sac, module, task_coef=1, bonus_coef=c)``) drives it to
states it has not seen, which on this task means swinging up the hill. Every agent trains
``--seeds`` vmapped seeds in one program with the same SAC settings; the table reports the final
deterministic evaluation return and the fraction of seeds whose final evaluation reaches the
flag (return > 0).

    python benchmarks/exploration_mountaincar.py                 # 50,000 env steps, 4 seeds
    python benchmarks/exploration_mountaincar.py --quick         # 10,000 steps, 2 seeds

Writes ``benchmarks/results/exploration_mountaincar-<device>[-quick].{json,md,png}`` with the
machine it ran on.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from rlx.agents import sac
from rlx.explore import intrinsic as I
from rlx.explore import phases as P
from rlx.run import run
from rlx.run.logging import benchmark_header, write_json

ENV = "gymnax/MountainCarContinuous-v0"


def agents(bonus_coef: float, hidden):
    return {
        "sac": sac,
        "sac+rnd": P.with_intrinsic(sac, I.RND(hidden_sizes=hidden), task_coef=1.0, bonus_coef=bonus_coef),
        "sac+disagreement": P.with_intrinsic(sac, I.Disagreement(hidden_sizes=hidden), task_coef=1.0, bonus_coef=bonus_coef),
    }


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10,000 steps, 2 seeds")
    ap.add_argument("--steps", type=int, default=None, help="env steps per seed (default 50,000)")
    ap.add_argument("--seeds", type=int, default=None, help="vmapped seeds per agent (default 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bonus-coef", type=float, default=1.0, help="c in r + c * bonus")
    ap.add_argument("--agents", default="sac,sac+rnd,sac+disagreement")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    steps = args.steps or (10_000 if args.quick else 50_000)
    seeds = args.seeds or (2 if args.quick else 4)
    hidden = (64, 64)
    eval_every = max(1_000, steps // 10)
    config = sac.SACConfig(
        total_steps=steps + 1_000, learning_starts=1_000, eval_every=eval_every, eval_episodes=2,
        hidden_sizes=hidden, batch_size=256,
    )
    table = agents(args.bonus_coef, hidden)
    unknown = sorted(set(args.agents.split(",")) - set(table))
    if unknown:
        ap.error(f"--agents: unknown {', '.join(unknown)}; allowed: {', '.join(table)}")
    settings = {"env": ENV, "steps": steps, "seeds": seeds, "bonus_coef": args.bonus_coef, "config": config.to_dict()}
    report = {**benchmark_header("exploration_mountaincar", args.quick, argv, settings), "agents": {}}
    for name in args.agents.split(","):
        t0 = time.perf_counter()
        result = run(table[name], config, ENV, num_seeds=seeds, seed=args.seed, progress=True)
        curve = np.asarray(result.metrics["eval/return_mean"])  # (seeds, evaluations)
        final = curve[:, -1]
        report["agents"][name] = {
            "final_return_mean": float(final.mean()), "final_return_std": float(final.std()),
            "per_seed": final.tolist(), "reached_flag": float(np.mean(final > 0)),
            "curve": curve.tolist(), "steps": np.asarray(result.metrics["step"])[0].tolist(),
            "seconds": round(time.perf_counter() - t0, 1), "compile_seconds": round(result.compile_seconds, 1),
        }
        print(f"{name:18s} final return {final.mean():7.1f} +- {final.std():5.1f}, flag reached by "
              f"{np.mean(final > 0):.0%} of seeds ({time.perf_counter() - t0:.0f} s)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"exploration_mountaincar-{report['machine']['platform']}{'-quick' if args.quick else ''}"
    write_json(stem.with_suffix(".json"), report)
    stem.with_suffix(".md").write_text(markdown(report))
    plot(report, stem.with_suffix(".png"))
    print(f"wrote {stem}.{{json,md,png}}")


def markdown(report) -> str:
    s, m = report["settings"], report["machine"]
    quick = " (QUICK smoke run, not a result)" if report["quick"] else ""
    lines = [
        f"# SAC with and without an exploration bonus on MountainCarContinuous{quick}", "",
        f"{report['date']}, `{report['command']}`", f"machine: {m}", "",
        f"{s['steps']:,} env steps after 1,000 warm-up steps, {s['seeds']} seeds, reward r + {s['bonus_coef']} x bonus, "
        "SAC 64x64 otherwise at its defaults; final deterministic evaluation (2 episodes per seed).", "",
        "| agent | final return | flag reached (seeds) | wall s (all seeds, compile included) |", "|---|---|---|---|",
    ]
    for name, a in report["agents"].items():
        lines.append(f"| {name} | {a['final_return_mean']:.1f} +- {a['final_return_std']:.1f} | {a['reached_flag']:.0%} | {a['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, a in report["agents"].items():
        curve = np.asarray(a["curve"])
        mean, sd = curve.mean(0), curve.std(0)
        ax.plot(a["steps"], mean, label=name)
        ax.fill_between(a["steps"], mean - sd, mean + sd, alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("evaluation return")
    ax.set_title("MountainCarContinuous: SAC with / without a bonus")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
