"""SAC, DSAC-T and PPO on brax and MuJoCo Playground tasks: one command, two scales.

    python benchmarks/continuous_suite.py                    # --scale cpu: under an hour on 2 CPU cores
    python benchmarks/continuous_suite.py --scale gpu        # what a user with an H100 / TPU runs
    python benchmarks/continuous_suite.py --scale paper      # the papers' MuJoCo protocol, on brax
    python benchmarks/continuous_suite.py --tasks playground/CartpoleBalance --agents sac,ppo
    python benchmarks/continuous_suite.py --scale gpu --tiny # compiles and starts the gpu programs at toy size

Every (task, agent) pair is trained by ``rlx.run.run``, the path ``rlx train`` uses: all seeds
vmapped into one compiled program, evaluated every 1/``evals`` of the run. Each agent gets the
same number of env steps on a task (rounded up to its own iteration size), so the table compares
returns at equal env steps; the wall clock (compile included) of every evaluation is kept too, so
the plot shows return against env steps and against seconds.

Scales (``--scale``):

* ``cpu``: the agents' defaults (SAC 2x256 ReLU, one env, one update per env step; DSAC-T 3x256
  GELU; PPO 4 envs x 128 steps), 30,000 env steps per agent and task, 2 seeds, on
  ``playground/CartpoleBalance`` and ``brax/inverted_pendulum``: 84 minutes on 2 cores shared with
  other jobs (load 3-5); SAC and DSAC-T take all but a few of them.
* ``gpu``: the accelerator presets (SAC/DSAC-T ``--preset parallel``: 1,024 envs, batch 32,768,
  two updates per iteration; PPO ``--preset brax``: 2,048 envs x 80 steps), 20M env steps per
  agent and task, 4 seeds, on Playground's CartpoleBalance, CheetahRun and WalkerWalk and brax's
  halfcheetah and ant.

* ``paper``: the papers' protocol, at equal env steps: every agent with its defaults (which are
  its paper's: SAC 2x256, learning rates 3e-4; DSAC-T 3x256 GELU, 1e-4; one update per env step
  for both; PPO 4 envs x 128 steps), 1.5M env steps per agent and task (DSAC-T's 1.5M
  iterations), 5 seeds, 30 evaluations, on brax's hopper, walker2d, halfcheetah, ant and
  humanoid with brax's ``generalized`` backend (the closest to MuJoCo). DSAC-T's official
  code collects 20 env steps per update (``--preset paper``); at equal env steps that would
  give it 1/20 of SAC's updates, so the scale keeps one update per env step for both.

``--tiny`` shrinks any scale to a few hundred env steps with tiny networks and batches (the
structure of the scale's configs stays: its presets, then the shrinking overrides): a smoke test
that the programs compile and start, not a result; it writes ``-tiny`` files.

Writes ``benchmarks/results/continuous_suite-<scale>-<platform>.{md,json,png}`` with the machine,
the versions, the exact configs and every curve. The table gives each agent's final return as
the IQM over seeds with a 95 % bootstrap interval (:mod:`rlx.run.report`) beside mean +- std.

Adding seeds later: ``--first-seed K --seeds N --merge`` trains seeds K..K+N-1 of ``--seed``'s
sequence (``rlx.run.seed_keys``: the keys of more seeds start with those of fewer, so seed 2 is
the same run whether trained with 2 others or alone) and adds them to the results already in the
output file. The pairs must have the same config and budget as the stored ones and new seed
indices, else nothing is trained and the error says what differs::

    python benchmarks/continuous_suite.py --agents sac,dsac_t                           # seeds 0, 1
    python benchmarks/continuous_suite.py --agents sac,dsac_t --first-seed 2 --seeds 3 --merge
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from rlx.agents import dsac_t, ppo, sac
from rlx.run import logging as runlog
from rlx.run import report, run, seed_keys

AGENTS = {"sac": sac, "dsac_t": dsac_t, "ppo": ppo}


@dataclasses.dataclass(frozen=True)
class Scale:
    tasks: tuple[str, ...]
    env_steps: int  # per agent, task and seed
    seeds: int
    evals: int  # evaluations per run
    presets: dict[str, str]  # agent -> preset name
    env_kwargs: dict[str, dict]  # task -> env kwargs
    eval_episodes: int = 10


PAPER_TASKS = ("brax/hopper", "brax/walker2d", "brax/halfcheetah", "brax/ant", "brax/humanoid")

SCALES = {
    "cpu": Scale(
        tasks=("playground/CartpoleBalance", "brax/inverted_pendulum"),
        env_steps=30_000, seeds=2, evals=10, presets={}, env_kwargs={},
    ),
    "gpu": Scale(
        tasks=("playground/CartpoleBalance", "playground/CheetahRun", "playground/WalkerWalk",
               "brax/halfcheetah", "brax/ant"),
        env_steps=20_000_000, seeds=4, evals=20,
        presets={"sac": "parallel", "dsac_t": "parallel", "ppo": "brax"}, env_kwargs={},
    ),
    "paper": Scale(
        tasks=PAPER_TASKS, env_steps=1_500_000, seeds=5, evals=30, presets={},
        env_kwargs={task: {"backend": "generalized"} for task in PAPER_TASKS},
    ),
}

# --tiny: a few iterations of small programs, same structure.
TINY_ENV = {"episode_length": 20}
TINY_OFF_POLICY = {"num_envs": 4, "learning_starts": 64, "batch_size": 32, "buffer_size": 1_024,
                   "hidden_sizes": (16, 16), "gradient_steps": 1}
TINY_PPO = {"num_envs": 4, "num_steps": 16, "num_minibatches": 2, "update_epochs": 1,
            "hidden_sizes": (16, 16), "critic_hidden_sizes": (16, 16)}
TINY_STEPS, TINY_EVALS = 256, 2


def agent_config(name: str, scale: Scale, env_steps: int, evals: int, tiny: bool):
    """The agent's config at this scale: its preset, then the step budget cut into ``evals``
    evaluation blocks of whole iterations (off-policy agents: after their warm-up)."""
    agent = AGENTS[name]
    overrides = {}
    if (preset := scale.presets.get(name)) is not None:
        overrides.update({k: v for k, v in agent.PRESETS[preset].items() if not k.startswith("_")})
    if tiny:
        overrides.update(TINY_PPO if name == "ppo" else TINY_OFF_POLICY)
    overrides["eval_episodes"] = 1 if tiny else scale.eval_episodes
    config = agent.Config().override(**overrides)
    per_iter = int(config.env_steps_per_iteration)
    warmup = int(config.warmup_env_steps)
    block = max(per_iter, -(-(env_steps - warmup) // evals // per_iter) * per_iter)
    fields = {"total_steps": warmup + block * evals, "eval_every": block}
    if name != "ppo":
        fields["buffer_size"] = min(int(config.buffer_size), warmup + block * evals)
    return config.override(**fields)


def summary_of(config, name: str, preset: str | None) -> str:
    nets = "x".join(map(str, config.hidden_sizes))
    if name == "ppo":
        return (f"{preset or 'defaults'}: {config.num_envs} envs x {config.num_steps} steps, "
                f"{config.update_epochs} epochs x {config.num_minibatches} minibatches, policy {nets}")
    return (f"{preset or 'defaults'}: {config.num_envs} env(s), batch {config.batch_size:,}, "
            f"{config.gradient_steps} update(s) per iteration, {nets}")


def run_pair(task: str, name: str, scale: Scale, args) -> dict:
    env_steps = TINY_STEPS if args.tiny else args.env_steps or scale.env_steps
    evals = TINY_EVALS if args.tiny else scale.evals
    config = agent_config(name, scale, env_steps, evals, args.tiny)
    env_kwargs = {**scale.env_kwargs.get(task, {}), **(TINY_ENV if args.tiny else {})}
    seeds = 2 if args.tiny else args.seeds or scale.seeds
    first = args.first_seed
    # seeds first..first+seeds-1 of --seed's sequence (from 0: exactly `rlx train --seed S`)
    keys = {}
    if first > 0:
        own = seed_keys(args.seed, first + seeds)[first:]
        keys["key"] = own[0] if seeds == 1 else own
    result = run(AGENTS[name], config, task, env_kwargs=env_kwargs, seed=args.seed, num_seeds=seeds,
                 progress=not args.no_progress, **keys)
    returns = np.asarray(result.metrics["eval/return_mean"], np.float64)  # (seeds, evals)
    steps = np.asarray(result.steps, np.int64)
    total = int(result.schedule.total_env_steps)
    return {
        "task": task,
        "agent": name,
        "preset": scale.presets.get(name),
        "summary": summary_of(config, name, scale.presets.get(name)),
        "config": config.to_dict(),
        "env_kwargs": env_kwargs,
        "seeds": seeds,
        "seed_indices": list(range(first, first + seeds)),
        "env_steps_per_seed": total,
        "compile_seconds": result.compile_seconds,
        "run_seconds": result.run_seconds,
        "env_steps_per_second": total * seeds / max(result.run_seconds, 1e-9),
        "steps": steps.tolist(),
        "wall_seconds": np.asarray(result.wall_time, np.float64).tolist(),
        "returns": returns.tolist(),
        "final_mean": float(returns[:, -1].mean()),
        "final_std": float(returns[:, -1].std()),
    }


def seed_indices(result: dict) -> list[int]:
    return result.get("seed_indices", list(range(result["seeds"])))


def merge_check(stored: list[dict], task: str, name: str, config, env_kwargs: dict, new: list[int]) -> str | None:
    """Why seeds ``new`` of (task, agent) cannot join the stored results (None: they can)."""
    old = [r for r in stored if r["task"] == task and r["agent"] == name]
    if not old:
        return None  # a new pair: stored as it is
    (old,) = old
    wanted = config.to_dict()
    if old["config"] != wanted:
        diff = sorted(k for k in set(old["config"]) | set(wanted) if old["config"].get(k) != wanted.get(k))
        return f"{task} {name}: the stored config differs in {', '.join(diff)}"
    if old.get("env_kwargs", {}) != env_kwargs:
        return f"{task} {name}: stored env_kwargs {old.get('env_kwargs')} differ from {env_kwargs}"
    if overlap := sorted(set(seed_indices(old)) & set(new)):
        return (f"{task} {name}: seeds {overlap} are already stored (it has {seed_indices(old)}); "
                f"pass --first-seed {max(seed_indices(old)) + 1}")
    return None


def merge(stored: list[dict], fresh: dict) -> list[dict]:
    """``stored`` with ``fresh``'s seeds added to its (task, agent) pair (seeds sorted)."""
    out, placed = [], False
    for r in stored:
        if r["task"] == fresh["task"] and r["agent"] == fresh["agent"]:
            assert r["steps"] == fresh["steps"], "merge_check passed, so the schedules agree"
            rows = sorted(zip(seed_indices(r) + fresh["seed_indices"], r["returns"] + fresh["returns"],
                              strict=True))
            returns = np.asarray([ret for _, ret in rows])
            batches = r.get("batches") or [{k: r[k] for k in BATCH_FIELDS} | {"seed_indices": seed_indices(r)}]
            batches = [*batches, {k: fresh[k] for k in BATCH_FIELDS} | {"seed_indices": fresh["seed_indices"]}]
            r = {**r, "seeds": len(rows), "seed_indices": [i for i, _ in rows], "returns": returns.tolist(),
                 "final_mean": float(returns[:, -1].mean()), "final_std": float(returns[:, -1].std()),
                 "batches": batches}
            placed = True
        out.append(r)
    return out if placed else [*out, fresh]


# The timing of one run (one batch of vmapped seeds); the table's timing columns are the first's.
BATCH_FIELDS = ("seeds", "compile_seconds", "run_seconds", "env_steps_per_second", "wall_seconds")


def final_iqm(result: dict) -> tuple[float, float, float]:
    finals = np.asarray(result["returns"])[:, -1]
    return (report.iqm(finals), *report.bootstrap_ci(finals))


def at(xs, curve, x) -> float | None:
    """The curve's value at the last evaluation at or before ``x`` (None before the first)."""
    idx = np.searchsorted(np.asarray(xs), x, side="right") - 1
    return None if idx < 0 else float(curve[idx])


def fmt(v, spec="8.1f"):
    return "—" if v is None else format(v, spec).strip()


def render(results: list[dict], header: dict, scale_name: str, tiny: bool) -> str:
    m = header["machine"]
    lines = [
        f"# SAC, DSAC-T and PPO: continuous-control suite, `--scale {scale_name}`"
        + (" (TINY smoke run, not a result)" if tiny else ""),
        "",
        f"- date: {header['date']}",
        f"- machine: {m.get('cpu_model', '?')}, {m.get('cpu_count')} CPU cores, device {m.get('device_kind')} "
        f"({m.get('platform')}); load average at start {m.get('load_average_at_start')}, "
        f"at end {m.get('load_average_at_end')}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in header['versions'].items())}",
        f"- command: `{header['command']}`",
        *(f"- earlier run merged in: `{e.get('command')}` ({e.get('date')}, load average "
          f"{e.get('machine', {}).get('load_average_at_start')} at start)" for e in header.get("earlier_runs", [])),
        "",
        "Return: the deterministic evaluation (each agent's own evaluation episodes); final: its IQM "
        "over seeds with a 95 % bootstrap interval, and mean +- std. Env steps/s, compile and run: "
        "the first batch of vmapped seeds, compile excluded from steps/s. \"At half\": the last "
        "evaluation at or before half the run's env steps. \"At the fastest's time\": the last "
        "evaluation finished within the wall time (compile included) of the agent that finished first.",
    ]
    for task in dict.fromkeys(r["task"] for r in results):
        rows = [r for r in results if r["task"] == task]
        fastest = min(r["wall_seconds"][-1] for r in rows)
        lines += ["", f"## {task}", "",
                  "| agent | config | env steps per seed | seeds | final return IQM [95 % CI] | "
                  "final mean +- std | return at half | return at the fastest's time | env steps/s | "
                  "compile | run |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            mean = np.asarray(r["returns"]).mean(0)
            half = at(r["steps"], mean, r["env_steps_per_seed"] / 2)
            timed = at(r["wall_seconds"], mean, fastest + 1e-6)
            mid, lo, hi = final_iqm(r)
            lines.append(
                f"| {r['agent']} | {r['summary']} | {r['env_steps_per_seed']:,} | {r['seeds']} | "
                f"{mid:.1f} [{lo:.1f}, {hi:.1f}] | "
                f"{r['final_mean']:.1f} +- {r['final_std']:.1f} | {fmt(half)} | {fmt(timed)} | "
                f"{r['env_steps_per_second']:,.0f} | {r['compile_seconds']:.0f} s | {r['run_seconds']:.0f} s |"
            )
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in results))
    fig, axes = plt.subplots(len(tasks), 2, figsize=(10, 3.2 * len(tasks)), dpi=110, squeeze=False)
    for row, task in zip(axes, tasks, strict=True):
        for r in (r for r in results if r["task"] == task):
            ret = np.asarray(r["returns"])
            mean, std = ret.mean(0), ret.std(0)
            for ax, x in ((row[0], np.asarray(r["steps"])), (row[1], np.asarray(r["wall_seconds"]))):
                ax.plot(x, mean, marker="o", ms=3, lw=1.8, label=r["agent"])
                ax.fill_between(x, mean - std, mean + std, alpha=0.15)
        row[0].set_xlabel("env steps per seed")
        row[1].set_xlabel("wall seconds (compile included)")
        for ax in row:
            ax.set_ylabel("evaluation return")
            ax.set_title(task, fontsize=10)
            ax.grid(alpha=0.3)
        row[0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    p.add_argument("--tasks", default=None, help="comma-separated env names (default: the scale's)")
    p.add_argument("--agents", default=",".join(AGENTS), help=f"comma-separated, from {', '.join(AGENTS)}")
    p.add_argument("--env-steps", type=int, default=None, help="env steps per agent, task and seed")
    p.add_argument("--seeds", type=int, default=None, help="vmapped seeds per run (default: the scale's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--first-seed", type=int, default=0,
                   help="train seeds FIRST_SEED.. of --seed's sequence (with --merge: add them to stored results)")
    p.add_argument("--merge", action="store_true",
                   help="add this run's seeds to the results already in the output file (same configs, new seeds)")
    p.add_argument("--tiny", action="store_true", help="toy sizes: checks that the programs compile and start")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    if unknown := [a for a in agents if a not in AGENTS]:
        p.error(f"unknown agent(s) {', '.join(unknown)}; choose from {', '.join(AGENTS)}")
    args.agents = agents
    args.tasks = (tuple(t.strip() for t in args.tasks.split(",") if t.strip()) if args.tasks
                  else SCALES[args.scale].tasks)
    from rlx import envs  # the names only: listing them imports no simulator

    known = set(envs.registered_names())
    if unknown := [t for t in args.tasks if t not in known]:
        p.error(f"unknown task(s) {', '.join(unknown)}; see `rlx envs` for the registered names")
    for name, value in (("--env-steps", args.env_steps), ("--seeds", args.seeds)):
        if value is not None and value < 1:
            p.error(f"{name} must be >= 1, got {value}")
    if args.first_seed < 0:
        p.error(f"--first-seed must be >= 0, got {args.first_seed}")
    if args.first_seed > 0 and not args.merge:
        p.error("--first-seed adds seeds to stored results: pass --merge as well")
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    scale = SCALES[args.scale]
    header = runlog.benchmark_header("continuous_suite", args.tiny, argv, {
        "scale": args.scale, "tasks": list(args.tasks), "agents": args.agents,
        "env_steps": TINY_STEPS if args.tiny else args.env_steps or scale.env_steps,
        "seeds": 2 if args.tiny else args.seeds or scale.seeds, "seed": args.seed,
    })
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"continuous_suite-{args.scale}-{header['machine'].get('platform', 'cpu')}" + ("-tiny" if args.tiny else "")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
    results = []
    if args.merge:  # refused before anything compiles: a missing file, other configs, seeds stored
        results, header = stored_results(out / f"{stem}.json", args, scale, header)
    for task in args.tasks:
        for name in args.agents:
            print(f"[continuous_suite] {task}: {name}", file=sys.stderr, flush=True)
            fresh = run_pair(task, name, scale, args)
            results = merge(results, fresh) if args.merge else [*results, fresh]
            write(results, header, args, out, stem)  # after every run: a long suite that stops loses nothing
    print(render(results, header, args.scale, args.tiny))
    print(f"wrote {out / stem}.md/.json/.png", file=sys.stderr)
    return results


def stored_results(path: Path, args, scale: Scale, header: dict) -> tuple[list[dict], dict]:
    """The results ``--merge`` adds to, after checking every pair this run would add."""
    if not path.is_file():
        raise SystemExit(f"--merge: no stored results at {path}; run without --merge first")
    stored = json.loads(path.read_text())
    seeds = 2 if args.tiny else args.seeds or scale.seeds
    new = list(range(args.first_seed, args.first_seed + seeds))
    problems = []
    if (was := stored.get("settings", {}).get("seed", 0)) != args.seed:
        problems.append(f"the stored runs are seeds of --seed {was}, not {args.seed}")
    for task in args.tasks:
        env_kwargs = {**scale.env_kwargs.get(task, {}), **(TINY_ENV if args.tiny else {})}
        for name in args.agents:
            env_steps = TINY_STEPS if args.tiny else args.env_steps or scale.env_steps
            config = agent_config(name, scale, env_steps, TINY_EVALS if args.tiny else scale.evals, args.tiny)
            if why := merge_check(stored["results"], task, name, config, env_kwargs, new):
                problems.append(why)
    if problems:
        raise SystemExit("--merge refused, nothing trained:\n  " + "\n  ".join(problems))
    earlier = stored.get("earlier_runs", []) + [{k: stored[k] for k in ("date", "command", "machine") if k in stored}]
    return stored["results"], {**header, "earlier_runs": earlier}


def write(results: list[dict], header: dict, args, out: Path, stem: str) -> None:
    if hasattr(os, "getloadavg"):
        header["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    table = render(results, header, args.scale, args.tiny)
    (out / f"{stem}.md").write_text(table + f"\n![return against env steps and seconds]({stem}.png)\n")
    runlog.write_json(out / f"{stem}.json", {**header, "results": results})
    plot(results, out / f"{stem}.png")


if __name__ == "__main__":
    main()
