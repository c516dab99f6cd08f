"""DSAC-T vs SAC, side by side: same env, seeds and env steps.

For each agent: compile time, env steps/s, final evaluation return (mean +- std over seeds),
the first evaluation step at which each seed reaches a threshold, learning curves, and the
paper's value-estimation diagnostic: the critic's Q(s_0, a_0) against the Monte-Carlo
discounted return of the same deterministic evaluation episodes (bias = mean Q - mean return;
on a truncated task such as Pendulum the Monte-Carlo return misses the reward after the
time limit, which is near zero once the pendulum is held upright).

    python benchmarks/dsac_t_vs_sac.py                       # Pendulum, 4 seeds, 20k steps
    python benchmarks/dsac_t_vs_sac.py --quick               # smoke run (< 1 minute)
    python benchmarks/dsac_t_vs_sac.py --env brax/inverted_pendulum --total-steps 20000

Networks: each agent's own defaults (SAC 2x256 ReLU, DSAC-T 3x256 GELU) unless
``--hidden-sizes`` sets one size for both (on a 2-core CPU 64,64 keeps the run short).
Writes ``benchmarks/results/dsac_t_vs_sac-<env>-<platform>.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rlx import envs
from rlx.agents import dsac_t, sac
from rlx.run import logging as runlog
from rlx.run import make_train, seed_keys
from rlx.run.train import evaluate_episodes

AGENTS = {"sac": sac, "dsac_t": dsac_t}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="gymnax/Pendulum-v1")
    p.add_argument("--env-kwarg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--total-steps", type=int, default=20_000)
    p.add_argument("--eval-every", type=int, default=1_000)
    p.add_argument("--hidden-sizes", default=None, help="one size for both agents, e.g. 64,64")
    p.add_argument("--threshold", type=float, default=-250.0, help="'solved' evaluation return")
    p.add_argument("--q-episodes", type=int, default=20, help="episodes for the Q-bias diagnostic")
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    return p.parse_args()


def env_kwargs(items):
    out = {}
    for item in items:
        k, v = item.split("=", 1)
        for conv in (int, float):
            try:
                v = conv(v)
                break
            except ValueError:
                pass
        out[k] = v
    return out


def q_bias(agent, config, env, params, agent_state, key, episodes):
    """Mean over seeds of (critic's min-twin Q(s_0, a_0), Monte-Carlo discounted return)."""

    def one_seed(state, key):
        policy = agent.make_policy(config, state, deterministic=True)
        stats = evaluate_episodes(policy, env, params, key, episodes, agent.observation_stats(state), config.gamma)
        q = jnp.min(agent.q_estimate(config, state, stats.first_obs, stats.first_action), axis=0)
        return jnp.mean(q), jnp.mean(stats.discounted_returns)

    keys = jax.random.split(key, jax.tree.leaves(agent_state)[0].shape[0])
    q, mc = jax.jit(jax.vmap(one_seed))(agent_state, keys)
    return np.asarray(q), np.asarray(mc)


def run_agent(name, args, env, params, num_seeds):
    agent = AGENTS[name]
    overrides = {"total_steps": args.total_steps, "eval_every": args.eval_every}
    if args.hidden_sizes:
        overrides["hidden_sizes"] = args.hidden_sizes
    if args.quick:
        overrides.update(total_steps=600, learning_starts=100, eval_every=250, batch_size=32,
                         hidden_sizes=(32, 32), eval_episodes=2)
    config = agent.Config().override(**overrides)
    train = make_train(agent, config, env, params)
    keys = seed_keys(args.seed, num_seeds)
    t0 = time.perf_counter()
    compiled = jax.jit(jax.vmap(train)).lower(keys).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(keys))
    run_s = time.perf_counter() - t0
    metrics = jax.device_get(out.metrics)
    returns = np.asarray(metrics["eval/return_mean"])  # (seeds, evals)
    steps = np.asarray(metrics["step"][0])
    solved_at = []
    for curve in returns:
        hit = np.nonzero(curve >= args.threshold)[0]
        solved_at.append(int(steps[hit[0]]) if hit.size else None)
    q, mc = q_bias(agent, config, env, params, out.state.agent_state, jax.random.PRNGKey(123), args.q_episodes)
    total_steps = int(train.schedule.total_env_steps) * num_seeds
    return {
        "agent": name,
        "config": config.to_dict(),
        "compile_s": round(compile_s, 2),
        "run_s": round(run_s, 2),
        "env_steps_per_s": round(total_steps / run_s, 1),
        "final_return_mean": float(returns[:, -1].mean()),
        "final_return_std": float(returns[:, -1].std()),
        "final_return_per_seed": returns[:, -1].round(1).tolist(),
        "solved_at_per_seed": solved_at,
        "q_s0_mean": float(q.mean()),
        "mc_return_mean": float(mc.mean()),
        "q_bias_mean": float((q - mc).mean()),
        "q_bias_per_seed": (q - mc).round(2).tolist(),
        "steps": steps.tolist(),
        "curve_mean": returns.mean(0).round(1).tolist(),
        "curve_std": returns.std(0).round(1).tolist(),
    }


def plot(results, env_name, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for r in results:
        steps, mean, std = np.asarray(r["steps"]), np.asarray(r["curve_mean"]), np.asarray(r["curve_std"])
        ax.plot(steps, mean, lw=2, label=r["agent"])
        ax.fill_between(steps, mean - std, mean + std, alpha=0.15)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.set_title(f"DSAC-T vs SAC on {env_name}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    args = parse_args()
    if args.hidden_sizes:
        args.hidden_sizes = tuple(int(x) for x in args.hidden_sizes.split(","))
    num_seeds = 2 if args.quick else args.seeds
    env, params = envs.make(args.env, **env_kwargs(args.env_kwarg))
    results = [run_agent(name, args, env, params, num_seeds) for name in AGENTS]
    machine = {
        **runlog.machine_info(),
        "jax": jax.__version__,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    header = (
        f"# DSAC-T vs SAC on {args.env}{' (QUICK smoke run, not a result)' if args.quick else ''}\n\n"
        f"{machine['device_kind']} ({machine['platform']}, {machine['cpu_count']} CPUs), jax {machine['jax']}, "
        f"{machine['date']}, load average at start {machine.get('load_average_at_start')}. {num_seeds} seeds vmapped per agent, seeds {args.seed}..; "
        f"{results[0]['steps'][-1]:,} env steps each; threshold {args.threshold}.\n\n"
    )
    rows = [
        "| agent | networks | final return | seeds >= threshold | first eval >= threshold (per seed) "
        "| Q(s0,a0) | MC return | Q bias | env steps/s | compile |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        solved = [s for s in r["solved_at_per_seed"] if s is not None]
        rows.append(
            f"| {r['agent']} | {'x'.join(map(str, r['config']['hidden_sizes']))} {r['config']['activation']} "
            f"| {r['final_return_mean']:.1f} +- {r['final_return_std']:.1f} | {len(solved)} of {num_seeds} "
            f"| {', '.join('-' if s is None else f'{s:,}' for s in r['solved_at_per_seed'])} "
            f"| {r['q_s0_mean']:.1f} | {r['mc_return_mean']:.1f} | {r['q_bias_mean']:+.1f} "
            f"| {r['env_steps_per_s']:,.0f} | {r['compile_s']:.1f} s |"
        )
    table = header + "\n".join(rows) + "\n"
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"dsac_t_vs_sac-{re.sub(r'[^A-Za-z0-9]+', '_', args.env)}-{machine['platform']}{'-quick' if args.quick else ''}"
    (out / f"{stem}.md").write_text(table + f"\n![curves]({stem}.png)\n")
    (out / f"{stem}.json").write_text(json.dumps({"machine": machine, "args": vars(args), "results": results}, indent=2, default=str))
    plot(results, args.env, out / f"{stem}.png")
    print(f"wrote {out / stem}.md/.json/.png")


if __name__ == "__main__":
    main()
