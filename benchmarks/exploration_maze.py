"""Reward-free explorers against a uniform random policy on the four-room PointMaze, several seeds.

Coverage vs env steps for each intrinsic module against a uniform random policy; then, from every dataset (the random policy's
and each explorer's), offline planning for the layout's goals, given after exploration
(downstream return); optionally URLB's protocol (pretrain reward-free, fine-tune on a goal)
against SAC from scratch with the same fine-tuning budget (one seed).

    python benchmarks/exploration_maze.py                 # 20,000 steps per module, 5 seeds
    python benchmarks/exploration_maze.py --seeds 10      # 10 seeds
    python benchmarks/exploration_maze.py --quick         # 4,000 steps, small networks, 3,000 updates
    python benchmarks/exploration_maze.py --finetune      # also the URLB protocol (one seed)
    python benchmarks/exploration_maze.py --scale paper   # URLB's pretraining scale (an accelerator)

Scales (``--scale``; ``--quick``, ``--steps``, ``--seeds`` and ``--plan-updates`` override them):

* ``cpu`` (default): 20,000 env steps per explorer and seed, 128x128 networks, batch 128,
  5 seeds; planners 128x128, 20,000 offline updates.
* ``paper``: URLB's pretraining budget and sizes (Laskin et al. 2021, its official code's
  defaults): 2,000,000 env steps per explorer and seed, 1024x1024 networks, batch 1,024,
  learning rate 1e-4, 4,000 seed steps, 10 seeds; planners 256x256 (SAC's defaults), 100,000
  offline updates. URLB pretrains on DeepMind Control, not on this maze: the scale is its
  budget and network sizes applied here, and is what a user with an accelerator runs unchanged.

Every explorer and the random policy run ``--seeds`` seeds, trained together in one compiled
program (``explore(..., num_seeds=N)``); the keys all come from one split of ``--seed``'s key.
Reported, with the interquartile mean (IQM) over seeds and its 95 % percentile-bootstrap
interval (:func:`rlx.run.report.iqm`, :func:`rlx.run.report.bootstrap_ci`; with fewer than 4
seeds the IQM is the mean):

* coverage (fraction of the floor's 2x2 sub-cells visited) at a few env-step checkpoints, the
  interval and the per-seed values at the end, and the visitation entropy;
* planning: for every dataset and layout goal, SAC learns offline from each seed's dataset (the
  seeds batched), each seed's policy plays 16 episodes; per (dataset, goal) the IQM of the
  seeds' mean returns with its interval and the success rate (episodes with return > 0), and
  over all goals the IQM of each seed's mean over goals; next to a uniform random policy's return.

Writes ``benchmarks/results/exploration_maze-<device>[-quick].{json,md,png}`` with the machine
it ran on (``rlx.run.logging.benchmark_header``); the JSON keeps every seed's coverage curve.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from rlx.run.report import bootstrap_ci, iqm

EXPLORERS = ("rnd", "disagreement", "apt", "apt_icm")
EVAL_EPISODES = 16


@dataclasses.dataclass(frozen=True)
class Scale:
    steps: int  # exploration env steps per explorer and seed
    hidden: tuple[int, ...]  # explorer (SAC and intrinsic module) networks
    batch_size: int
    seeds: int
    learning_starts: int  # uniform random steps before the first update
    block: int  # env steps between coverage checkpoints
    plan_updates: int  # offline updates per planner
    plan_hidden: tuple[int, ...]
    plan_batch_size: int
    learning_rate: float | None = None  # None: SAC's own (3e-4)


SCALES = {
    "cpu": Scale(steps=20_000, hidden=(128, 128), batch_size=128, seeds=5, learning_starts=1_000, block=1_000,
                 plan_updates=20_000, plan_hidden=(128, 128), plan_batch_size=256),
    "quick": Scale(steps=4_000, hidden=(32, 32), batch_size=128, seeds=5, learning_starts=1_000, block=1_000,
                   plan_updates=3_000, plan_hidden=(64, 64), plan_batch_size=256),
    # URLB: num_pretrain_frames 2M, hidden_dim 1024, batch_size 1024, lr 1e-4, num_seed_frames
    # 4000, 10 seeds.
    "paper": Scale(steps=2_000_000, hidden=(1024, 1024), batch_size=1_024, seeds=10, learning_starts=4_000,
                   block=100_000, plan_updates=100_000, plan_hidden=(256, 256), plan_batch_size=256,
                   learning_rate=1e-4),
}


def scale_of(args) -> Scale:
    """The run's sizes: ``--scale`` (``quick`` with ``--quick``), then the explicit overrides."""
    sc = SCALES["quick" if args.quick else args.scale]
    steps = args.steps or sc.steps
    plan_updates = args.plan_updates or sc.plan_updates
    blocks = max(1, -(-(steps - sc.learning_starts) // sc.block))  # at least the budget, in whole blocks
    steps = sc.learning_starts + blocks * sc.block
    return dataclasses.replace(sc, steps=steps, seeds=args.seeds or sc.seeds,
                               plan_updates=plan_updates - plan_updates % 5)  # whole logged stretches


def explorer_config(sc: Scale):
    """SAC for exploration at this scale; its replay buffer keeps every step (the dataset)."""
    extra = {} if sc.learning_rate is None else {"actor_lr": sc.learning_rate, "critic_lr": sc.learning_rate}
    if sc.steps > P.exploration_config().buffer_size:
        extra["buffer_size"] = sc.steps
    return P.exploration_config(total_steps=sc.steps, learning_starts=sc.learning_starts, eval_every=sc.block,
                                eval_episodes=1, hidden_sizes=sc.hidden, batch_size=sc.batch_size, **extra)


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


def summary(values) -> dict:
    """IQM over seeds, its 95 % bootstrap interval and the values themselves."""
    values = [float(v) for v in np.asarray(values, np.float64).ravel()]
    lo, hi = bootstrap_ci(values)
    return {"iqm": iqm(values), "ci95": [lo, hi], "per_seed": values}


def coverage_curves(env, obs, checkpoints, resolution) -> dict:
    """Coverage and visitation entropy of every seed's data (obs: seeds x steps x obs_dim)."""
    cov = [[maze.coverage(env, o[:n], resolution) for n in checkpoints] for o in obs]
    ent = [[maze.visitation_entropy(env, o[:n], resolution) for n in checkpoints] for o in obs]
    cov, ent = np.asarray(cov), np.asarray(ent)
    return {"env_steps": [int(n) for n in checkpoints], "coverage": cov.tolist(), "entropy": ent.tolist(),
            "coverage_iqm": [iqm(cov[:, j]) for j in range(len(checkpoints))],
            "final_coverage": summary(cov[:, -1]), "final_entropy": summary(ent[:, -1])}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=["cpu", "paper"], default="cpu",
                    help="cpu: 20,000 steps, 5 seeds; paper: URLB's 2M steps, 1024x1024 networks, 10 seeds")
    ap.add_argument("--quick", action="store_true", help="4,000 steps, 32x32 networks, 3,000 planning updates")
    ap.add_argument("--steps", type=int, default=None, help="exploration env steps per module and seed")
    ap.add_argument("--seed", type=int, default=0, help="the key every seed's key is split from")
    ap.add_argument("--seeds", type=int, default=None,
                    help="seeds per explorer, random policy and planner (default: the scale's)")
    ap.add_argument("--modules", default=",".join(EXPLORERS),
                    help="comma-separated explorers (a uniform random policy always runs)")
    ap.add_argument("--plan-updates", type=int, default=None,
                    help="offline updates per planner (default: the scale's; 3,000 with --quick)")
    ap.add_argument("--finetune", action="store_true", help="also pretrain + fine-tune vs from scratch (one seed)")
    ap.add_argument("--finetune-module", default="apt", choices=EXPLORERS, help="the explorer --finetune pretrains")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    names = [n for n in args.modules.split(",") if n]
    unknown = sorted(set(names) - set(EXPLORERS))
    if unknown or not names:
        ap.error(f"--modules {args.modules!r}: unknown {unknown}; choose from {', '.join(EXPLORERS)}")
    if args.seeds is not None and args.seeds < 1:
        ap.error(f"--seeds {args.seeds}: at least 1")
    if args.plan_updates is not None and args.plan_updates < 5:
        ap.error(f"--plan-updates {args.plan_updates}: at least 5 (5 logged stretches)")
    if args.steps is not None and args.steps < 1:
        ap.error(f"--steps {args.steps}: at least 1")
    if args.quick and args.scale != "cpu":
        ap.error(f"--quick shrinks the cpu scale; it does not go with --scale {args.scale}")
    args.modules = names
    return args


def main(argv=None):
    args = parse_args(argv)
    names = args.modules
    sc = scale_of(args)
    steps, hidden, plan_updates, num_seeds = sc.steps, sc.hidden, sc.plan_updates, sc.seeds
    learning_starts, block = sc.learning_starts, sc.block
    resolution = 2
    env, params = rlx_envs.make("rlx/PointMaze-v0", layout="four_rooms")
    config = explorer_config(sc)
    checkpoints = list(range(block, steps + 1, block))
    stride = 5 * block if steps >= 10 * block else block
    table_steps = sorted({n for n in checkpoints if n % stride == 0} | {steps})
    plan_config = P.planning_config(hidden_sizes=sc.plan_hidden, batch_size=sc.plan_batch_size)
    settings = {"env": "rlx/PointMaze-v0 (four_rooms)", "scale": "quick" if args.quick else args.scale,
                "steps": steps, "seed": args.seed, "num_seeds": num_seeds,
                "hidden": hidden, "sac": {k: v for k, v in config.to_dict().items()},
                "coverage_resolution": resolution, "coverage_table_steps": table_steps,
                "plan_updates": plan_updates, "plan_sac": plan_config.to_dict(), "eval_episodes": EVAL_EPISODES,
                "finetune_module": args.finetune_module if args.finetune else None}
    report = {**benchmark_header("exploration_maze", args.quick, argv, settings), "coverage": {}, "visits": {},
              "diagnostics": {}, "plan": {}, "plan_all_goals": {}, "random_policy": {}}
    # One split of --seed's key; each dataset's explorer or planner derives its own keys from its
    # part (fold_in by a fixed index, so --modules does not change any other dataset's keys). All
    # policies are evaluated on the same episodes (k_eval): the comparison is of the data.
    k_random, k_explore, k_plan, k_eval, k_fine = jax.random.split(jax.random.PRNGKey(args.seed), 5)
    dataset_index = {"random": 0, **{n: i + 1 for i, n in enumerate(EXPLORERS)}}
    t_start = time.time()

    datasets = {}
    t0 = time.time()
    datasets["random"] = P.random_dataset(k_random, env, params, steps, num_seeds=num_seeds)
    for name in ["random", *names]:
        if name != "random":
            t0 = time.time()
            result = P.explore(jax.random.fold_in(k_explore, dataset_index[name]), sac, config, env, params,
                               modules(hidden)[name], num_seeds=num_seeds)
            datasets[name] = result.dataset
            report["diagnostics"][name] = {k: np.round(np.asarray(result.metrics[k], np.float64), 5).tolist()
                                           for k in DIAGNOSTICS if k in result.metrics}
            report["diagnostics"][name]["env_steps"] = np.asarray(result.metrics["step"])[0].tolist()
        obs = np.asarray(datasets[name].next_observations)
        curves = coverage_curves(env, obs, checkpoints, resolution)
        curves["wall_s"] = round(time.time() - t0, 1)
        report["coverage"][name] = curves
        report["visits"][name] = [maze.visitation_counts(env, o, resolution).tolist() for o in obs]
        final = curves["final_coverage"]
        print(f"{name:12s} coverage IQM {final['iqm']:.3f} [{final['ci95'][0]:.3f}, {final['ci95'][1]:.3f}] "
              f"per seed {' '.join(f'{c:.3f}' for c in final['per_seed'])}  entropy IQM "
              f"{curves['final_entropy']['iqm']:.3f}  ({time.time() - t0:.0f} s)", flush=True)

    # Planning for the layout's goals, chosen after exploration, from every dataset (no env steps):
    # each dataset's seeds are planned together and every seed's policy plays the same episodes.
    goals = {f"goal {i}": tuple(map(float, g)) for i, g in enumerate(np.asarray(env.goals))}
    for label, goal in goals.items():
        reward_fn = env.goal_reward(goal, params.goal_radius)
        rand = P.evaluate_reward(lambda o, k: jax.random.uniform(k, o.shape[:-1] + (2,), minval=-1, maxval=1),
                                 env, params, reward_fn, k_eval, EVAL_EPISODES)
        report["random_policy"][label] = {"goal_xy": goal, "return_mean": float(rand.mean())}
    for name, data in datasets.items():
        report["plan"][name] = {}
        per_goal = []
        for g, (label, goal) in enumerate(goals.items()):
            reward_fn = env.goal_reward(goal, params.goal_radius)
            t0 = time.time()
            keys = P.run_keys(jax.random.fold_in(jax.random.fold_in(k_plan, dataset_index[name]), g), num_seeds)
            res = P.plan(data, reward_fn, keys, config=plan_config, num_updates=plan_updates, num_logs=5, batched=True)
            returns = P.evaluate_plan(res, env, params, reward_fn, k_eval, EVAL_EPISODES)  # seeds x episodes
            seed_returns = returns.mean(axis=1)
            per_goal.append(seed_returns)
            in_data = np.mean(np.asarray(jax.vmap(lambda d, f=reward_fn: P.relabel(d, f).rewards)(data)) > 0, axis=1)
            row = {"goal_xy": goal, "return": summary(seed_returns), "success": float(np.mean(returns > 0)),
                   "success_per_seed": np.mean(returns > 0, axis=1).tolist(),
                   "dataset_reward_fraction_per_seed": in_data.tolist(),
                   "critic_loss_per_seed": np.asarray(res.metrics["loss/critic"])[:, -1].tolist(),
                   "wall_s": round(time.time() - t0, 1)}
            report["plan"][name][label] = row
            r = row["return"]
            print(f"plan {name:12s} {label} return IQM {r['iqm']:6.1f} [{r['ci95'][0]:5.1f}, {r['ci95'][1]:5.1f}] "
                  f"success {row['success']:.2f}  random policy {report['random_policy'][label]['return_mean']:5.1f}  "
                  f"rewarded transitions in data {in_data.mean():.4f}  ({time.time() - t0:.0f} s)", flush=True)
        report["plan_all_goals"][name] = {"return": summary(np.mean(per_goal, axis=0)),
                                          "success": float(np.mean([report["plan"][name][lb]["success"] for lb in goals]))}

    if args.finetune:
        goal_index = 0
        task_params = params.replace(goal_index=goal_index)
        fine_steps = 2 * block + learning_starts
        fine_config = sac.SACConfig(total_steps=fine_steps, learning_starts=learning_starts, eval_every=block,
                                    eval_episodes=8, hidden_sizes=hidden, batch_size=128, init_alpha=P.EXPLORE_INIT_ALPHA)
        t0 = time.time()
        ft = P.pretrain_finetune(k_fine, sac, config, fine_config, env, task_params, modules(hidden)[args.finetune_module])
        from rlx.run import make_train
        scratch = jax.jit(make_train(sac, fine_config, env, task_params))(k_fine)
        report["finetune"] = {
            "module": args.finetune_module, "goal_index": goal_index, "pretrain_steps": steps,
            "finetune_steps": fine_steps, "pretrained": np.asarray(ft.metrics["eval/return_mean"]).tolist(),
            "scratch": np.asarray(scratch.metrics["eval/return_mean"]).tolist(),
            "eval_steps": np.asarray(ft.metrics["step"]).tolist(),
        }
        print("fine-tune eval returns: pretrained", report["finetune"]["pretrained"], "scratch",
              report["finetune"]["scratch"], f"({time.time() - t0:.0f} s)", flush=True)

    report["wall_s"] = round(time.time() - t_start, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0].platform
    suffix = "-quick" if args.quick else "" if args.scale == "cpu" else f"-{args.scale}"
    stem = out / f"exploration_maze-{device}{suffix}"
    write_json(stem.with_suffix(".json"), report)
    stem.with_suffix(".md").write_text(markdown(report))
    plot(report, stem.with_suffix(".png"))
    print(f"wrote {stem}.json/.md/.png ({report['wall_s']:.0f} s)")


def _ci(s, fmt="{:.3f}") -> str:
    return f"{fmt.format(s['iqm'])} [{fmt.format(s['ci95'][0])}, {fmt.format(s['ci95'][1])}]"


def markdown(report) -> str:
    m, st = report["machine"], report["settings"]
    n = st["num_seeds"]
    iqm_note = (f"IQM over {n} seeds" if n >= 4 else f"IQM over {n} seeds (with fewer than 4 seeds the IQM is the mean)"
                if n > 1 else "one seed (its value; the interval is that value too)")
    lines = [f"# Reward-free exploration on rlx/PointMaze-v0 (four rooms){' (quick)' if report['quick'] else ''}", "",
             f"{report['date']}, `{report['command']}`, {m.get('cpu_model', m['processor'])} "
             f"({m['cpu_count']} cores, load at start {m.get('load_average_at_start')}), jax {report['versions'].get('jax')}, "
             f"{report.get('wall_s', 0):.0f} s", "",
             f"## Coverage (fraction of {st['coverage_resolution']}x{st['coverage_resolution']} sub-cells of the floor "
             f"visited) and visitation entropy (normalised), {st['steps']:,} env steps", "",
             f"{iqm_note}; 95 % percentile-bootstrap interval of the final coverage's IQM.", "",
             "| explorer | " + " | ".join(f"{s:,}" for s in st["coverage_table_steps"])
             + " | 95 % CI (end) | per seed (end) | entropy (end) |",
             "|---|" + "---|" * (len(st["coverage_table_steps"]) + 3)]
    for name, c in report["coverage"].items():
        at = [c["coverage_iqm"][c["env_steps"].index(s)] for s in st["coverage_table_steps"]]
        f = c["final_coverage"]
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in at)
                     + f" | [{f['ci95'][0]:.3f}, {f['ci95'][1]:.3f}] | {', '.join(f'{v:.3f}' for v in f['per_seed'])} "
                     f"| {c['final_entropy']['iqm']:.3f} |")
    diag = report.get("diagnostics", {})
    if diag:
        lines += ["", "## Training diagnostics (means over each block of updates and over seeds: first block, middle, last)",
                  "", "| explorer | bonus mean | bonus max | k-NN distance mean (APT) | SAC alpha | policy entropy |",
                  "|---|---|---|---|---|---|"]
        for name, d in diag.items():
            blocks = len(d["alpha"][0]) if d.get("alpha") else 0
            picks = sorted({0, blocks // 2, blocks - 1}) if blocks else []

            def fmt(key, d=d, picks=picks):
                return " / ".join(f"{np.mean(np.asarray(d[key])[:, i]):.3g}" for i in picks) if key in d else "-"

            lines.append(f"| {name} | {fmt('intrinsic/bonus_mean')} | {fmt('intrinsic/bonus_max')} | "
                         f"{fmt('intrinsic/knn_dist_mean')} | {fmt('alpha')} | {fmt('entropy')} |")
    goals = list(report["random_policy"])
    lines += ["", f"## Planning for goals given after exploration, from every dataset (offline SAC, "
              f"{st['plan_updates']:,} updates, no env steps)", "",
              f"Return of {st['eval_episodes']} episodes of 100 steps (one reward per step inside the goal), "
              f"mean per seed: {iqm_note} [95 % bootstrap CI], success = fraction of episodes with return > 0 "
              "(all seeds). \"all goals\": each seed's mean over the goals, then the IQM over seeds.", "",
              "| dataset | " + " | ".join(f"{g} ({report['random_policy'][g]['goal_xy'][0]:.1f}, "
                                          f"{report['random_policy'][g]['goal_xy'][1]:.1f})" for g in goals)
              + " | all goals |", "|---|" + "---|" * (len(goals) + 1)]
    for name, per_goal in report["plan"].items():
        cells = [f"{_ci(per_goal[g]['return'], '{:.1f}')}, success {per_goal[g]['success']:.2f}" for g in goals]
        a = report["plan_all_goals"][name]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_ci(a['return'], '{:.1f}')}, success {a['success']:.2f} |")
    lines.append("| uniform random policy (no planning) | "
                 + " | ".join(f"{report['random_policy'][g]['return_mean']:.1f}" for g in goals)
                 + f" | {np.mean([report['random_policy'][g]['return_mean'] for g in goals]):.1f} |")
    lines += ["", "Per seed:", "", "| dataset | goal | return per seed | success per seed | random policy | "
              "rewarded transitions in data (mean over seeds) |", "|---|---|---|---|---|---|"]
    for name, per_goal in report["plan"].items():
        for g in goals:
            r = per_goal[g]
            lines.append(f"| {name} | {g} | {', '.join(f'{v:.1f}' for v in r['return']['per_seed'])} | "
                         f"{', '.join(f'{v:.2f}' for v in r['success_per_seed'])} | "
                         f"{report['random_policy'][g]['return_mean']:.1f} | "
                         f"{np.mean(r['dataset_reward_fraction_per_seed']):.4f} |")
    if "finetune" in report:
        f = report["finetune"]
        lines += ["", f"## URLB protocol: pretrain {f['pretrain_steps']:,} steps reward-free ({f['module']}), fine-tune "
                  f"on goal {f['goal_index']} for {f['finetune_steps']:,} steps (one seed)", "",
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
    for name, c in report["coverage"].items():
        steps, cov = np.asarray(c["env_steps"]), np.asarray(c["coverage"])
        line, = ax.plot(steps, cov.mean(axis=0), label=name, linestyle="--" if name == "random" else "-")
        ax.fill_between(steps, cov.min(axis=0), cov.max(axis=0), color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("env steps")
    ax.set_ylabel("maze coverage")
    n = report["settings"]["num_seeds"]
    ax.set_title(f"PointMaze four rooms: coverage vs env steps (mean, min-max of {n} seed{'s' if n > 1 else ''})",
                 fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
