"""Reward-free exploration on the four-room PointMaze: coverage vs env steps for each intrinsic
module and for a uniform random policy; then, from one exploration dataset, offline planning
for goals chosen after exploration (downstream return); optionally URLB's protocol (pretrain
reward-free, fine-tune on a goal) against SAC from scratch with the same fine-tuning budget.

    python benchmarks/exploration_maze.py                 # 20,000 steps per module, 1 seed
    python benchmarks/exploration_maze.py --quick         # 4,000 steps, small networks
    python benchmarks/exploration_maze.py --finetune      # also the URLB protocol

Writes ``benchmarks/results/exploration_maze-<device>[-quick].{json,md,png}`` with the machine
it ran on (``rlx.run.logging.benchmark_header``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

import rlx.envs as rlx_envs
from rlx.agents import sac
from rlx.envs import maze
from rlx.explore import intrinsic as I
from rlx.explore import phases as P
from rlx.run.logging import benchmark_header, write_json


def modules(hidden):
    # APT's k-NN distances are taken in the state itself on the maze (2-D positions): URLB's ICM
    # representation tanh(LayerNorm(W s + b)) of a 2-D s is blind to |s| while b ~ 0 (at
    # initialisation every ray from the maze centre is one particle), see docs/algorithms/exploration.md.
    # "apt_icm" is URLB's icm_apt, kept for the comparison.
    return {
        "rnd": I.RND(hidden_sizes=hidden),
        "disagreement": I.Disagreement(hidden_sizes=hidden),
        "apt": I.APT(representation="obs"),
        "apt_icm": I.APT(representation="icm", hidden=hidden[0]),
    }


# Logged per block of env steps for every explorer (means over the block's updates).
DIAGNOSTICS = ("intrinsic/bonus_mean", "intrinsic/bonus_max", "intrinsic/knn_dist_mean", "intrinsic/knn_dist_max",
               "alpha", "entropy", "q_mean")


def curve(env, obs, checkpoints, resolution):
    return [
        {"env_steps": int(n), "coverage": maze.coverage(env, obs[:n], resolution),
         "entropy": maze.visitation_entropy(env, obs[:n], resolution)}
        for n in checkpoints
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4,000 steps, 32x32 networks")
    ap.add_argument("--steps", type=int, default=None, help="exploration env steps per module")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modules", default="rnd,disagreement,apt,apt_icm",
                    help="comma-separated explorers (a uniform random policy always runs)")
    ap.add_argument("--plan-module", default="apt", help="whose dataset the planner uses")
    ap.add_argument("--plan-updates", type=int, default=None)
    ap.add_argument("--finetune", action="store_true", help="also pretrain + fine-tune vs from scratch")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)

    steps = args.steps or (4_000 if args.quick else 20_000)
    hidden = (32, 32) if args.quick else (128, 128)
    plan_updates = args.plan_updates or (3_000 if args.quick else 20_000)
    resolution = 2
    env, params = rlx_envs.make("rlx/PointMaze-v0", layout="four_rooms")
    learning_starts, block = 1_000, 1_000
    steps = learning_starts + max(1, (steps - learning_starts) // block) * block
    config = P.exploration_config(total_steps=steps, learning_starts=learning_starts, eval_every=block,
                                  eval_episodes=1, hidden_sizes=hidden, batch_size=128)
    checkpoints = list(range(block, steps + 1, block))
    settings = {"env": "rlx/PointMaze-v0 (four_rooms)", "steps": steps, "seed": args.seed, "hidden": hidden,
                "sac": {k: v for k, v in config.to_dict().items()}, "coverage_resolution": resolution,
                "plan_updates": plan_updates, "plan_module": args.plan_module}
    report = {**benchmark_header("exploration_maze", args.quick, argv, settings), "coverage": {}, "plan": {},
              "diagnostics": {}}
    key = jax.random.PRNGKey(args.seed)
    k_random, k_explore, k_plan, k_fine = jax.random.split(key, 4)

    random_data = P.random_dataset(k_random, env, params, steps)
    report["coverage"]["random"] = curve(env, np.asarray(random_data.next_observations), checkpoints, resolution)
    print(f"random       coverage {report['coverage']['random'][-1]['coverage']:.3f}", flush=True)

    datasets = {}
    for name in args.modules.split(","):
        module = modules(hidden)[name]
        t0 = time.time()
        result = P.explore(k_explore, sac, config, env, params, module)
        datasets[name] = result.dataset
        obs = np.asarray(result.dataset.next_observations)
        report["coverage"][name] = curve(env, obs, checkpoints, resolution)
        report["coverage"][name + "_wall_s"] = round(time.time() - t0, 1)
        last = report["coverage"][name][-1]
        print(f"{name:12s} coverage {last['coverage']:.3f} entropy {last['entropy']:.3f} "
              f"({time.time() - t0:.0f} s)", flush=True)
        report["coverage"][name + "_visits"] = maze.visitation_counts(env, obs, resolution).tolist()
        report["diagnostics"][name] = {k: np.round(np.asarray(result.metrics[k], np.float64), 5).tolist()
                                       for k in DIAGNOSTICS if k in result.metrics}
        report["diagnostics"][name]["env_steps"] = np.asarray(result.metrics["step"]).tolist()

    # Planning for goals chosen after exploration, from one dataset, no env interaction.
    data = datasets[args.plan_module]
    plan_config = P.planning_config(hidden_sizes=(128, 128) if not args.quick else (64, 64), batch_size=256)
    pos = np.asarray(env.positions(data.next_observations))
    dist = np.linalg.norm(pos - np.asarray(env.start), axis=1)
    goals = {f"layout goal {i}": tuple(map(float, g)) for i, g in enumerate(np.asarray(env.goals))}
    for q in (0.5, 0.9):
        goals[f"visited, {int(q * 100)}th pct distance"] = tuple(map(float, pos[np.argsort(dist)[int(q * len(dist))]]))
    for label, goal in goals.items():
        reward_fn = env.goal_reward(goal, params.goal_radius)
        t0 = time.time()
        res = P.plan(data, reward_fn, k_plan, config=plan_config, num_updates=plan_updates, num_logs=5)
        returns = P.evaluate_reward(res.policy, env, params, reward_fn, jax.random.PRNGKey(1), 16)
        rand = P.evaluate_reward(lambda o, k: jax.random.uniform(k, o.shape[:-1] + (2,), minval=-1, maxval=1),
                                 env, params, reward_fn, jax.random.PRNGKey(1), 16)
        in_data = float(np.mean(np.asarray(labelled_rewards(data, reward_fn)) > 0))
        report["plan"][label] = {"goal_xy": goal, "return_mean": float(returns.mean()), "return_std": float(returns.std()),
                                 "success": float(np.mean(returns > 0)), "random_return": float(rand.mean()),
                                 "dataset_reward_fraction": in_data, "wall_s": round(time.time() - t0, 1)}
        print(f"plan {label:32s} return {returns.mean():6.1f} +- {returns.std():5.1f}  random {rand.mean():5.1f} "
              f" rewarded transitions in data {in_data:.4f}", flush=True)

    if args.finetune:
        goal_index = 0
        task_params = params.replace(goal_index=goal_index)
        fine_steps = 2 * block + learning_starts
        fine_config = sac.SACConfig(total_steps=fine_steps, learning_starts=learning_starts, eval_every=block,
                                    eval_episodes=8, hidden_sizes=hidden, batch_size=128, init_alpha=P.EXPLORE_INIT_ALPHA)
        ft = P.pretrain_finetune(k_fine, sac, config, fine_config, env, task_params, modules(hidden)[args.plan_module])
        from rlx.run import make_train
        scratch = jax.jit(make_train(sac, fine_config, env, task_params))(k_fine)
        report["finetune"] = {
            "goal_index": goal_index, "pretrain_steps": steps, "finetune_steps": fine_steps,
            "pretrained": np.asarray(ft.metrics["eval/return_mean"]).tolist(),
            "scratch": np.asarray(scratch.metrics["eval/return_mean"]).tolist(),
            "eval_steps": np.asarray(ft.metrics["step"]).tolist(),
        }
        print("fine-tune eval returns: pretrained", report["finetune"]["pretrained"], "scratch",
              report["finetune"]["scratch"], flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0].platform
    stem = out / f"exploration_maze-{device}{'-quick' if args.quick else ''}"
    write_json(stem.with_suffix(".json"), report)
    stem.with_suffix(".md").write_text(markdown(report))
    plot(report, stem.with_suffix(".png"))
    print(f"wrote {stem}.json/.md/.png")


def labelled_rewards(data, reward_fn):
    return P.relabel(data, reward_fn).rewards


def markdown(report) -> str:
    m = report["machine"]
    lines = [f"# Reward-free exploration on rlx/PointMaze-v0 (four rooms){' (quick)' if report['quick'] else ''}", "",
             f"{report['date']}, `{report['command']}`, {m.get('cpu_model', m['processor'])} "
             f"({m['cpu_count']} cores, load at start {m.get('load_average_at_start')}), jax {report['versions'].get('jax')}",
             "", "## Coverage (fraction of 2x2 sub-cells of the floor visited) and visitation entropy (normalised)", "",
             "| explorer | " + " | ".join(f"{c['env_steps']:,}" for c in report["coverage"]["random"]) + " | entropy (end) |",
             "|---|" + "---|" * (len(report["coverage"]["random"]) + 1)]
    for name, rows in report["coverage"].items():
        if name.endswith(("_wall_s", "_visits")):
            continue
        lines.append(f"| {name} | " + " | ".join(f"{r['coverage']:.3f}" for r in rows) + f" | {rows[-1]['entropy']:.3f} |")
    diag = report.get("diagnostics", {})
    if diag:
        lines += ["", "## Training diagnostics (means over each block of updates: first block, middle, last)", "",
                  "| explorer | bonus mean | bonus max | k-NN distance mean (APT) | SAC alpha | policy entropy |",
                  "|---|---|---|---|---|---|"]
        for name, d in diag.items():
            picks = sorted({0, len(d["alpha"]) // 2, len(d["alpha"]) - 1}) if d.get("alpha") else []

            def fmt(key, d=d, picks=picks):
                return " / ".join(f"{d[key][i]:.3g}" for i in picks) if key in d else "-"

            lines.append(f"| {name} | {fmt('intrinsic/bonus_mean')} | {fmt('intrinsic/bonus_max')} | "
                         f"{fmt('intrinsic/knn_dist_mean')} | {fmt('alpha')} | {fmt('entropy')} |")
    lines += ["", f"## Planning from the {report['settings'].get('plan_module', 'apt')} dataset (offline SAC, "
              f"{report['settings']['plan_updates']:,} updates, no env steps), 16 episodes of 100 steps", "",
              "| goal | (x, y) | return | success | random policy | rewarded transitions in data |", "|---|---|---|---|---|---|"]
    for label, r in report["plan"].items():
        lines.append(f"| {label} | ({r['goal_xy'][0]:.2f}, {r['goal_xy'][1]:.2f}) | {r['return_mean']:.1f} +- "
                     f"{r['return_std']:.1f} | {r['success']:.2f} | {r['random_return']:.1f} | {r['dataset_reward_fraction']:.4f} |")
    if "finetune" in report:
        f = report["finetune"]
        lines += ["", f"## URLB protocol: pretrain {f['pretrain_steps']:,} steps reward-free, fine-tune on goal "
                  f"{f['goal_index']} for {f['finetune_steps']:,} steps", "",
                  "| eval at env steps | " + " | ".join(f"{s:,}" for s in f["eval_steps"]) + " |",
                  "|---|" + "---|" * len(f["eval_steps"]),
                  "| pretrained, fine-tuned | " + " | ".join(f"{v:.1f}" for v in f["pretrained"]) + " |",
                  "| SAC from scratch | " + " | ".join(f"{v:.1f}" for v in f["scratch"]) + " |"]
    lines.append("")
    return "\n".join(lines)


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in report["coverage"].items():
        if name.endswith(("_wall_s", "_visits")):
            continue
        ax.plot([r["env_steps"] for r in rows], [r["coverage"] for r in rows], label=name,
                linestyle="--" if name == "random" else "-")
    ax.set_xlabel("env steps")
    ax.set_ylabel("maze coverage")
    ax.set_title("PointMaze four rooms: coverage vs env steps")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
