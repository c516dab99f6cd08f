"""GiGPO vs GRPO vs PPO on our own compiled environments, at equal env steps.

For each env and agent: success rate vs env steps over several seeds (vmapped), the final
success (mean +- std over seeds, and per seed), the mean over the last three evaluations, the
area under the success curve, compile time and env steps/s. The paper's claim to test in kind
(Feng et al. 2025: GiGPO clearly beats GRPO, +12 points on ALFWorld) is answered with the
measured difference, win or lose.

    python benchmarks/gigpo_vs_grpo_ppo.py                    # both envs, 4 seeds, 460,800 steps
    python benchmarks/gigpo_vs_grpo_ppo.py --quick            # smoke run (tiny settings); not a result
    python benchmarks/gigpo_vs_grpo_ppo.py --scale paper      # the paper's GiGPO / GRPO settings, 5 seeds
    python benchmarks/gigpo_vs_grpo_ppo.py --envs rlx/KeyDoor-v0 --total-steps 1000000
    python benchmarks/gigpo_vs_grpo_ppo.py --render benchmarks/results/gigpo_vs_grpo_ppo-cpu.json  # table again, no training

The table gives, per agent, the IQM over seeds of the success averaged over the last three
evaluations with its 95 % bootstrap interval (:mod:`rlx.run.report`), beside mean +- std.

Every agent runs with its own defaults (GRPO = GiGPO's with the step level off; PPO =
PureJaxRL's), except that PPO also evaluates by sampling from its policy, as GiGPO and GRPO do
by default, so the three evaluations measure the same thing. Env steps are simulated steps: for
GiGPO / GRPO they include the padding after an episode ended inside the fixed-length rollout.
The evaluation period is a multiple of every agent's steps per iteration, so all three are
evaluated at the same env steps. Evaluation return = success rate on these envs.

Scales (``--scale``; ``--seeds``, ``--total-steps`` and ``--eval-every`` override them):

* ``cpu`` (default): every agent with rlx's defaults, 4 seeds, 460,800 env steps.
* ``paper``: GiGPO and GRPO with ``PRESETS["paper"]`` (the paper's / verl-agent's ALFWorld
  values: 16 groups x 8 trajectories of 50 steps, mean normalization, invalid-action penalty
  0.1, KL 0.01 to the initial policy), PPO with its defaults, 5 seeds, 960,000 env steps (the
  ALFWorld scripts' 150 iterations of 16 x 8 x 50 steps).

Writes ``benchmarks/results/gigpo_vs_grpo_ppo{-<envs> unless the default pair}-<platform>{-quick}.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from pathlib import Path

import jax
import numpy as np

from rlx import envs
from rlx.agents import gigpo, grpo, ppo
from rlx.run import logging as runlog
from rlx.run import make_train, report, seed_keys

AGENTS = {"gigpo": gigpo, "grpo": grpo, "ppo": ppo}
AGENT_OVERRIDES = {"ppo": {"eval_policy": "sample"}}
DEFAULT_ENVS = "rlx/Household-v0,rlx/KeyDoor-v0"
# scale -> (agent -> preset, seeds, total_steps, eval_every)
SCALES = {
    "cpu": ({}, 4, 460_800, 46_080),
    "paper": ({"gigpo": "paper", "grpo": "paper"}, 5, 960_000, 96_000),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", default=DEFAULT_ENVS, help="comma-separated env names")
    p.add_argument("--agents", default=",".join(AGENTS), help="comma-separated subset of gigpo,grpo,ppo")
    p.add_argument("--scale", choices=sorted(SCALES), default="cpu",
                   help="cpu: rlx's defaults, 4 seeds; paper: the paper's GiGPO/GRPO settings, 5 seeds")
    p.add_argument("--seeds", type=int, default=None, help="default: the scale's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--total-steps", type=int, default=None,
                   help="rounded up to whole evaluation periods (default: the scale's)")
    p.add_argument("--eval-every", type=int, default=None,
                   help="rounded to a multiple of every agent's iteration (default: the scale's)")
    p.add_argument("--eval-episodes", type=int, default=128)
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run, not a result")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--render", metavar="JSON", default=None,
                   help="write the table and plot of a stored result again (next to it), training nothing")
    args = p.parse_args(argv)
    presets, seeds, total_steps, eval_every = SCALES[args.scale]
    args.presets = presets
    args.seeds = seeds if args.seeds is None else args.seeds
    args.total_steps = total_steps if args.total_steps is None else args.total_steps
    args.eval_every = eval_every if args.eval_every is None else args.eval_every
    for name in ("seeds", "total_steps", "eval_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def agent_config(name, args, eval_every, total_steps):
    preset = AGENTS[name].PRESETS[args.presets[name]] if name in args.presets else {}
    overrides = {
        **{k: v for k, v in preset.items() if not k.startswith("_")},
        "total_steps": total_steps, "eval_every": eval_every, "eval_episodes": args.eval_episodes,
        **AGENT_OVERRIDES.get(name, {}),
    }
    if args.quick:
        if name == "ppo":
            overrides.update(num_envs=2, num_steps=32, num_minibatches=2, hidden_sizes=(16,))
        else:
            overrides.update(num_envs=2, group_size=4, max_episode_steps=16, num_minibatches=2, hidden_sizes=(16,))
    return AGENTS[name].Config().override(**overrides)


def schedule(args, names):
    """(eval_every, total_steps): the evaluation period a common multiple of the agents' steps
    per iteration, and the run a whole number of periods."""
    per_iter = [agent_config(n, args, 1, 1).env_steps_per_iteration for n in names]
    common = math.lcm(*per_iter)
    eval_every = max(common, round(args.eval_every / common) * common)
    total = max(eval_every, -(-args.total_steps // eval_every) * eval_every)
    return eval_every, total


def run_agent(name, args, env_name, eval_every, total_steps, num_seeds):
    agent = AGENTS[name]
    env, params = envs.make(env_name)
    config = agent_config(name, args, eval_every, total_steps)
    train = make_train(agent, config, env, params)
    keys = seed_keys(args.seed, num_seeds)
    t0 = time.perf_counter()
    compiled = jax.jit(jax.vmap(train)).lower(keys).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(keys))
    run_s = time.perf_counter() - t0
    metrics = jax.device_get(out.metrics)
    success = np.asarray(metrics["eval/return_mean"], np.float64)  # (seeds, evals)
    # training success: GiGPO / GRPO report it per iteration; for PPO the mean return of the
    # episodes finished in training is the same thing on these envs (reward 1 on success only)
    train_success = np.asarray(metrics.get("train/success_rate", metrics["train/episode_return"]), np.float64)
    steps = np.asarray(metrics["step"][0])
    env_steps = int(train.schedule.total_env_steps) * num_seeds
    last3 = success[:, -3:].mean(axis=1)
    return {
        "env": env_name,
        "agent": name,
        "config": config.to_dict(),
        "compile_s": round(compile_s, 2),
        "run_s": round(run_s, 2),
        "env_steps_per_s": round(env_steps / run_s, 1),
        "final_success_mean": float(success[:, -1].mean()),
        "final_success_std": float(success[:, -1].std()),
        "final_success_per_seed": success[:, -1].round(3).tolist(),
        "last3_success_mean": float(last3.mean()),
        "last3_success_std": float(last3.std()),
        "last3_success_per_seed": last3.round(3).tolist(),
        "success_auc": float(success.mean()),  # mean over evaluations = normalised area under the curve
        "final_train_success_mean": float(train_success[:, -1].mean()),
        "steps": steps.tolist(),
        "curve_mean": success.mean(0).round(4).tolist(),
        "curve_std": success.std(0).round(4).tolist(),
        "curve_per_seed": success.round(4).tolist(),
    }


def plot(results, env_names, path, title_suffix=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(env_names), figsize=(5.2 * len(env_names), 3.8), dpi=120, squeeze=False)
    for ax, env_name in zip(axes[0], env_names, strict=True):
        for r in (r for r in results if r["env"] == env_name):
            steps, mean, std = np.asarray(r["steps"]), np.asarray(r["curve_mean"]), np.asarray(r["curve_std"])
            ax.plot(steps, mean, lw=2, label=r["agent"])
            ax.fill_between(steps, np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1), alpha=0.15)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("evaluation success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(env_name + title_suffix)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def gigpo_vs_grpo(results, env_name):
    by = {r["agent"]: r for r in results if r["env"] == env_name}
    if "gigpo" not in by or "grpo" not in by:
        return None
    a, b = np.asarray(by["gigpo"]["last3_success_per_seed"]), np.asarray(by["grpo"]["last3_success_per_seed"])
    diff = a.mean() - b.mean()
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size) if a.size > 1 else float("nan")
    return {"env": env_name, "difference": float(diff), "standard_error": se,
            "auc_difference": by["gigpo"]["success_auc"] - by["grpo"]["success_auc"]}


def iqm_last3(result) -> tuple[float, float, float]:
    """IQM over seeds of the success over the last three evaluations, with its 95 % interval."""
    values = result["last3_success_per_seed"]
    return (report.iqm(values), *report.bootstrap_ci(values))


def render(header, results, comparisons) -> str:
    """The markdown table of a run (``header``: ``rlx.run.logging.benchmark_header``'s fields)."""
    settings = header["settings"]
    machine = header["machine"]
    load = machine.get("load_average_at_start")
    lines = [
        f"# GiGPO vs GRPO vs PPO{' (QUICK smoke run, not a result)' if header['quick'] else ''}",
        "",
        f"{machine.get('cpu_model', machine['device_kind'])} ({machine['platform']}, {machine['cpu_count']} CPUs), "
        f"jax {header['versions'].get('jax')}, {header['date']}, load average at start {load}. "
        f"{settings['seeds_used']} seeds vmapped per agent (keys `rlx.run.seed_keys({settings['seed']}, "
        f"{settings['seeds_used']})`), {settings['total_steps_used']:,} env steps each, evaluated every "
        f"{settings['eval_every_used']:,} steps on {settings['eval_episodes']} sampled "
        "episodes per seed. " + (
            "Each agent with its defaults" if not settings.get("presets") else
            "Presets: " + ", ".join(f"{a} `{p}`" for a, p in settings["presets"].items()) + "; the others' defaults"
        ) + " (PPO: sampled evaluation).",
        "",
        "| env | agent | last 3 evals: IQM [95 % CI] | last 3 evals: mean +- std | per seed (last 3) | final success "
        "| area under curve | train success | env steps/s | compile |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        mid, lo, hi = iqm_last3(r)
        lines.append(
            f"| {r['env']} | {r['agent']} | {mid:.3f} [{lo:.3f}, {hi:.3f}] "
            f"| {r['last3_success_mean']:.3f} +- {r['last3_success_std']:.3f} "
            f"| {', '.join(f'{x:.2f}' for x in r['last3_success_per_seed'])} "
            f"| {r['final_success_mean']:.3f} +- {r['final_success_std']:.3f} | {r['success_auc']:.3f} "
            f"| {r['final_train_success_mean']:.3f} | {r['env_steps_per_s']:,.0f} | {r['compile_s']:.1f} s |"
        )
    if comparisons:
        lines += ["", "GiGPO - GRPO, success averaged over the last three evaluations (+- standard error over seeds):", ""]
        for c in comparisons:
            lines.append(f"* {c['env']}: {c['difference']:+.3f} +- {c['standard_error']:.3f} "
                         f"(area under curve {c['auc_difference']:+.3f})")
    lines += ["", "env steps/s: all seeds together, compile excluded; on a machine shared with other jobs they "
              "are lower bounds."]
    return "\n".join(lines) + "\n"


def render_stored(path: Path) -> str:
    """Write ``path``'s table (.md) and plot (.png) again from its JSON."""
    payload = json.loads(path.read_text())
    results = payload["results"]
    table = render(payload, results, payload.get("gigpo_minus_grpo", []))
    path.with_suffix(".md").write_text(table + f"\n![success vs env steps]({path.stem}.png)\n")
    plot(results, list(dict.fromkeys(r["env"] for r in results)), path.with_suffix(".png"))
    return table


def main(argv=None):
    args = parse_args(argv)
    if args.render:
        path = Path(args.render)
        if not path.is_file():
            raise SystemExit(f"--render {path}: no such file")
        print(render_stored(path))
        return None
    names = [n for n in args.agents.split(",") if n]
    env_names = [e for e in args.envs.split(",") if e]
    unknown = sorted(set(names) - set(AGENTS))
    if unknown:
        raise SystemExit(f"unknown agent {unknown[0]!r}; choose from {', '.join(AGENTS)}")
    if args.quick:
        args.total_steps, args.eval_every, args.eval_episodes = 2_048, 1_024, 8
    num_seeds = 2 if args.quick else args.seeds
    eval_every, total_steps = schedule(args, names)
    settings = {**vars(args), "eval_every_used": eval_every, "total_steps_used": total_steps, "seeds_used": num_seeds}
    header = runlog.benchmark_header("gigpo_vs_grpo_ppo", args.quick, argv, settings)
    results = []
    for env_name in env_names:
        for name in names:
            print(f"{env_name} {name}: {num_seeds} seeds x {total_steps:,} env steps ...", flush=True)
            results.append(run_agent(name, args, env_name, eval_every, total_steps, num_seeds))
            r = results[-1]
            print(f"  final success {r['final_success_mean']:.3f} +- {r['final_success_std']:.3f}, "
                  f"{r['env_steps_per_s']:,.0f} env steps/s, compile {r['compile_s']:.1f} s", flush=True)
    comparisons = [c for c in (gigpo_vs_grpo(results, e) for e in env_names) if c]

    table = render(header, results, comparisons)
    print(table)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    envs_tag = "" if args.envs == DEFAULT_ENVS else "-" + "_".join(re.sub(r"[^A-Za-z0-9]+", "", e.split("/")[-1]) for e in env_names)
    envs_tag += "" if args.scale == "cpu" else f"-{args.scale}"
    stem = f"gigpo_vs_grpo_ppo{envs_tag}-{re.sub(r'[^A-Za-z0-9]+', '_', header['machine']['platform'])}{'-quick' if args.quick else ''}"
    (out / f"{stem}.md").write_text(table + f"\n![success vs env steps]({stem}.png)\n")
    runlog.write_json(out / f"{stem}.json", {**header, "results": results, "gigpo_minus_grpo": comparisons})
    plot(results, env_names, out / f"{stem}.png")
    print(f"wrote {out / stem}.md/.json/.png")
    return results


if __name__ == "__main__":
    main()
