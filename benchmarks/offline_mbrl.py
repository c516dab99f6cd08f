"""MOPO and MOBILE on rlx's own offline datasets: normalized scores and the wall time of each stage.

For every env: one expert SAC run produces the datasets of every kind (:mod:`rlx.run.collect`,
D4RL's recipe: medium = the policy a third of the way from random to expert, medium-replay =
the replay buffer up to it, medium-expert = half each), regenerated from ``--seed`` and kept
out of git (``--data-dir``, default ``data/offline/``, ignored). For every (env, kind): one
dynamics ensemble (shared by both algorithms and all seeds), then each algorithm with the
per-task preset of its paper (``hopper-medium``, ...) for ``--seeds`` seeds, vmapped in one
program. Reported: D4RL normalized score 100 (R - random) / (expert - random) of the final
evaluation, mean +- std over seeds, and the wall time of the stages (dataset, dynamics, policy).

    python benchmarks/offline_mbrl.py                                   # paper scale (GPU: hours)
    python benchmarks/offline_mbrl.py --quick                           # smoke run (minutes)
    python benchmarks/offline_mbrl.py --envs brax/hopper --kinds medium --dataset-size 100000 \
        --expert-steps 200000 --policy-steps 50000 --seeds 3

Writes ``benchmarks/results/offline_mbrl-<platform>[-quick].{md,json}``. Anything smaller than
the paper's scale (1M transitions, 1M / 3M gradient steps, 50,000 rollouts per 1000 steps) is
listed in the settings of the report and is not comparable to published scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from rlx import envs as rlx_envs
from rlx.agents import mobile, mopo
from rlx.models import ensemble as ens
from rlx.models import termination as term_rules
from rlx.run import logging as runlog
from rlx.run import make_train, seed_keys

ALGOS = {"mopo": mopo, "mobile": mobile}
QUICK = dict(
    envs="brax/hopper", kinds="medium", dataset_size=10_000, expert_steps=10_000, policy_steps=4_000,
    seeds=2, expert_hidden="64,64", hidden="64,64", model_hidden="64,64", rollout_batch_size=2_000, rollout_freq=500,
    eval_every=2_000, eval_episodes=5, model_max_epochs=20,
)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", default="brax/hopper,brax/halfcheetah,brax/walker2d")
    p.add_argument("--kinds", default="medium,medium-replay,medium-expert")
    p.add_argument("--algos", default="mopo,mobile")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0, help="dataset / expert seed")
    p.add_argument("--dataset-size", type=int, default=1_000_000)
    p.add_argument("--expert-steps", type=int, default=None, help="expert SAC env steps (default: rlx.run.collect's per env)")
    p.add_argument("--expert-hidden", default=None, help="expert SAC widths, e.g. 64,64 (default: SAC's)")
    p.add_argument("--policy-steps", type=int, default=None, help="gradient steps (default: each paper's)")
    p.add_argument("--hidden", default=None, help="actor / critic widths (default: 256,256)")
    p.add_argument("--model-hidden", default=None, help="ensemble member widths (default: 200,200,200,200)")
    p.add_argument("--rollout-batch-size", type=int, default=None)
    p.add_argument("--rollout-freq", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--eval-episodes", type=int, default=None)
    p.add_argument("--model-max-epochs", type=int, default=None)
    p.add_argument("--num-envs", type=int, default=100, help="parallel envs of the dataset collection")
    p.add_argument("--data-dir", default="data/offline")
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run, not a result")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            if getattr(args, k) == p.get_default(k):
                setattr(args, k, v)
    return args


def widths(text):
    return None if text is None else tuple(int(w) for w in text.split(","))


def overrides(args) -> dict:
    out = {}
    for field, value in (
        ("total_steps", args.policy_steps), ("hidden_sizes", widths(args.hidden)),
        ("model_hidden_sizes", widths(args.model_hidden)), ("rollout_batch_size", args.rollout_batch_size),
        ("rollout_freq", args.rollout_freq), ("eval_every", args.eval_every), ("eval_episodes", args.eval_episodes),
        ("model_max_epochs", args.model_max_epochs),
    ):
        if value is not None:
            out[field] = value
    return out


def task_name(env_name: str, kind: str) -> str:
    return f"{env_name.split('/')[-1]}-{kind}"


def load_or_collect(args, env_name: str, kinds: list[str]):
    """Datasets from ``--data-dir`` when they were made with the same settings, else collected."""
    from rlx.buffers.dataset import load
    from rlx.run.collect import collect

    root = Path(args.data_dir) / f"{env_name.replace('/', '_')}-seed{args.seed}-n{args.dataset_size}-e{args.expert_steps}"
    have = {k: root / k for k in kinds if (root / k / "metadata.json").exists()}
    t0 = time.perf_counter()
    if len(have) < len(kinds):
        config = {"hidden_sizes": widths(args.expert_hidden)} if args.expert_hidden else None
        collect(
            env_name, kinds, args.dataset_size, out=root if len(kinds) > 1 else root / kinds[0], seed=args.seed,
            expert_steps=args.expert_steps, config=config, num_envs=args.num_envs, overwrite=True,
        )
    seconds = time.perf_counter() - t0
    return {k: load(root / k) for k in kinds}, seconds, len(have) == len(kinds)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    env_names, kinds, algos = args.envs.split(","), args.kinds.split(","), args.algos.split(",")
    rows, details = [], []
    for env_name in env_names:
        env, env_params = rlx_envs.make(env_name)
        data, collect_seconds, cached = load_or_collect(args, env_name, kinds)
        for kind in kinds:
            dataset, info = data[kind]
            task = task_name(env_name, kind)
            base = mopo.MOPOConfig().override(**overrides(args))
            t0 = time.perf_counter()
            dynamics, report = ens.train_dynamics(
                dataset, base.dynamics_config(), jax.random.PRNGKey(args.seed),
                termination=term_rules.rule_for_env(env_name),
            )
            dyn_seconds = time.perf_counter() - t0
            for algo_name in algos:
                algo = ALGOS[algo_name]
                preset = {k: v for k, v in algo.PRESETS.get(task, {}).items() if not k.startswith("_")}
                config = algo.Config().override(**{**preset, **overrides(args)})
                agent = algo.agent(dataset, dynamics, config=config, info=info)
                train = make_train(agent, config, env, env_params)
                t0 = time.perf_counter()
                out = jax.jit(jax.vmap(train))(seed_keys(args.seed, args.seeds))
                metrics = jax.device_get(out.metrics)
                policy_seconds = time.perf_counter() - t0
                final = metrics["eval/normalized_score"][:, -1]
                row = {
                    "task": task, "algo": algo_name, "score_mean": float(np.mean(final)),
                    "score_std": float(np.std(final)), "per_seed": [float(x) for x in final],
                    "return_mean": float(np.mean(metrics["eval/return_mean"][:, -1])),
                    "data_policy_score": float(100 * (info.policy_return - info.random_return) / (info.expert_return - info.random_return)),
                    "dataset_size": int(dataset.size), "dataset_seconds": round(collect_seconds, 1),
                    "dataset_cached": cached, "dynamics_seconds": round(dyn_seconds, 1),
                    "dynamics_epochs": report.epochs, "policy_seconds": round(policy_seconds, 1),
                    "preset": preset, "gradient_steps": int(config.total_steps),
                }
                rows.append(row)
                details.append({**row, "curve": metrics["eval/normalized_score"].tolist(), "steps": metrics["step"][0].tolist()})
                print(f"{task:28s} {algo_name:7s} {row['score_mean']:6.1f} +- {row['score_std']:5.1f} "
                      f"(data {row['data_policy_score']:.1f}; dataset {collect_seconds:.0f}s, dynamics {dyn_seconds:.0f}s, "
                      f"policy {policy_seconds:.0f}s)", flush=True)
    header = runlog.benchmark_header("offline_mbrl", args.quick, argv, {k: v for k, v in vars(args).items()})
    result = {**header, "rows": details}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"offline_mbrl-{header['machine']['platform']}{'-quick' if args.quick else ''}"
    runlog.write_json(out / f"{stem}.json", result)
    (out / f"{stem}.md").write_text(markdown(result, rows))
    print(f"wrote {out / stem}.{{md,json}}")


def markdown(result, rows) -> str:
    m, s = result["machine"], result["settings"]
    quick = " (QUICK smoke run: tiny settings, not a result)" if result["quick"] else ""
    lines = [
        f"# MOPO and MOBILE on rlx datasets{quick}",
        "",
        f"{result['date']}, `{result['command']}`",
        f"machine: {json.dumps(m)}",
        f"versions: {json.dumps(result['versions'])}",
        "",
        f"dataset size {s['dataset_size']}, expert steps {s['expert_steps']}, seeds {s['seeds']}; "
        f"policy / model settings other than the paper's: {json.dumps(overrides(argparse.Namespace(**s)))}",
        "",
        "| task | algo | normalized score (final) | data policy | dataset s | dynamics s (epochs) | policy s (all seeds) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cached = " (cached)" if r["dataset_cached"] else ""
        lines.append(
            f"| {r['task']} | {r['algo']} | {r['score_mean']:.1f} +- {r['score_std']:.1f} | {r['data_policy_score']:.1f} "
            f"| {r['dataset_seconds']:.0f}{cached} | {r['dynamics_seconds']:.0f} ({r['dynamics_epochs']}) | {r['policy_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
