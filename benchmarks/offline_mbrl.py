"""MOPO, MOBILE, MOREC-MOPO and MOREC-MOBILE on rlx's own offline datasets: normalized scores and
the wall time of each stage.

For every env: one expert SAC run produces the datasets of every kind (:mod:`rlx.run.collect`,
D4RL's recipe: medium = the policy a third of the way from random to expert, medium-replay =
the replay buffer up to it, medium-expert = half each), regenerated from ``--seed`` and kept
out of git (``--data-dir``, default ``data/offline/``, ignored). For every (env, kind): one
dynamics ensemble (shared by both algorithms and all seeds), then each algorithm with the
per-task preset of its paper (``hopper-medium``, ...) for ``--seeds`` seeds, vmapped in one
program; the MOREC variants use the same ensemble and one dynamics reward per dataset
(``--reward-iterations``). Reported: D4RL normalized score 100 (R - random) / (expert - random) of the final
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
from rlx.agents import mobile, mopo, morec
from rlx.models import ensemble as ens
from rlx.models import termination as term_rules
from rlx.run import logging as runlog
from rlx.run import make_train, seed_keys

ALGOS = {"mopo": mopo, "mobile": mobile, "morec_mopo": morec.MOREC_MOPO, "morec_mobile": morec.MOREC_MOBILE}
QUICK = dict(
    envs="brax/hopper", kinds="medium", dataset_size=10_000, expert_steps=10_000, policy_steps=4_000,
    seeds=2, expert_hidden="64,64", hidden="64,64", model_hidden="64,64", rollout_batch_size=2_000, rollout_freq=500,
    eval_every=2_000, eval_episodes=5, model_max_epochs=20, reward_iterations=200, morec_rollout_length=20,
)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", default="brax/hopper,brax/halfcheetah,brax/walker2d")
    p.add_argument("--kinds", default="medium,medium-replay,medium-expert")
    p.add_argument("--algos", default=",".join(ALGOS), help=f"any of {', '.join(ALGOS)}")
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
    p.add_argument("--error-horizon", type=int, default=20, help="steps of the open-loop model-rollout error against the data's true trajectories")
    p.add_argument("--morec-rollout-length", type=int, default=None, help="MOREC's rollout horizon (default: its 100)")
    p.add_argument("--reward-iterations", type=int, default=400, help="MOREC: adversarial iterations of the dynamics reward (a multiple of 40)")
    p.add_argument("--num-envs", type=int, default=100, help="parallel envs of the dataset collection")
    p.add_argument("--data-dir", default="data/offline")
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run, not a result")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            if getattr(args, k) == p.get_default(k):
                setattr(args, k, v)
    unknown = sorted(set(args.algos.split(",")) - set(ALGOS))
    if unknown:
        p.error(f"--algos: unknown {', '.join(unknown)}; allowed: {', '.join(ALGOS)}")
    if args.error_horizon < 1:
        p.error(f"--error-horizon {args.error_horizon}: must be >= 1")
    if args.reward_iterations < 40 or args.reward_iterations % 40:
        p.error(f"--reward-iterations {args.reward_iterations}: must be a positive multiple of 40 (MOREC-MOBILE keeps every 40th)")
    return args


def dynamics_rewards(args, dataset, algos):
    """MOREC's dynamics reward, trained once per dataset: MOREC-MOPO averages every 10th
    discriminator of the run, MOREC-MOBILE every 40th (every 4th of those), as in the paper's code."""
    if not any(a.startswith("morec_") for a in algos):
        return {}, 0.0
    from rlx.models import dynamics_reward as drw

    n = args.reward_iterations
    t0 = time.perf_counter()
    dr, _ = drw.train_dynamics_reward(dataset, morec.reward_config("mopo", iterations=n, keep_last=n), jax.random.PRNGKey(args.seed + 1))
    jax.block_until_ready(dr.params)
    seconds = time.perf_counter() - t0
    every_40th = dr.every(4)
    return {"morec_mopo": dr, "morec_mobile": every_40th}, seconds


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


def trajectory_windows(dataset, horizon: int, count: int, seed: int):
    """(observations (h+1, n, d), actions (h, n, A)) of up to ``count`` windows of ``horizon``
    consecutive dataset steps of the true simulator (no episode end inside, each step's next
    state the following step's state)."""
    obs, nxt = np.asarray(dataset.observations), np.asarray(dataset.next_observations)
    ends = np.asarray(dataset.terminals) | np.asarray(dataset.timeouts)
    linked = np.zeros(len(obs), bool)  # row i continues into row i + 1
    linked[:-1] = np.all(np.isclose(nxt[:-1], obs[1:], atol=1e-6), axis=-1) & ~ends[:-1]
    run = np.convolve(linked.astype(int), np.ones(horizon - 1, int), "valid") == horizon - 1 if horizon > 1 else np.ones(len(obs), bool)
    starts = np.flatnonzero(run)[: len(obs) - horizon + 1]
    starts = np.random.default_rng(seed).permutation(starts)[:count]
    idx = starts[None, :] + np.arange(horizon)[:, None]  # (h, n)
    observations = np.concatenate([obs[idx[:1]], nxt[idx]], axis=0)
    return observations, np.asarray(dataset.actions)[idx]


def open_loop_error(key, dynamics, observations, actions, transition_fn) -> np.ndarray:
    """Mean |s_hat_k - s_k| at k = 1..h of the model replaying the data's actions from s_0
    (``transition_fn`` picks each next state; a filter's cut flag is ignored here)."""
    from rlx.models.ensemble import predict

    def step(obs, inputs):
        k, action = inputs
        chosen = transition_fn(k, predict(dynamics, obs, action))
        return chosen.next_obs, chosen.next_obs

    _, predicted = jax.lax.scan(step, observations[0], (jax.random.split(key, actions.shape[0]), actions))
    return np.asarray(jax.numpy.mean(jax.numpy.abs(predicted - observations[1:]), axis=(1, 2)))


def rollout_errors(args, dataset, dynamics, rewards) -> dict:
    """Model-rollout error against the true simulator's trajectories in the data, without the
    filter (a random elite's sample, MOPO / MOBILE) and with each MOREC variant's filter."""
    from rlx.models.filter import make_filter
    from rlx.models.rollout import sample_elite

    observations, actions = trajectory_windows(dataset, args.error_horizon, 500, args.seed)
    if observations.shape[1] == 0:
        return {}
    fns = {"no filter": sample_elite}
    for name, dr in rewards.items():
        fns[f"{name} filter"] = make_filter(dr, ALGOS[name].Config().filter_config())
    key = jax.random.PRNGKey(args.seed + 2)
    return {
        name: open_loop_error(key, dynamics, observations, actions, fn).tolist() for name, fn in fns.items()
    } | {"windows": int(observations.shape[1])}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    env_names, kinds, algos = args.envs.split(","), args.kinds.split(","), args.algos.split(",")
    rows, details, errors_rows = [], [], []
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
            rewards, reward_seconds = dynamics_rewards(args, dataset, algos)
            errors = rollout_errors(args, dataset, dynamics, rewards)
            if errors:
                errors_rows.append({"task": task, **errors})
                print(f"{task}: open-loop model error along {errors['windows']} data windows at step 1 / {args.error_horizon}: "
                      + ", ".join(f"{n} {e[0]:.4f} / {e[-1]:.4f}" for n, e in errors.items() if n != "windows"), flush=True)
            for algo_name in algos:
                algo = ALGOS[algo_name]
                preset = {k: v for k, v in algo.PRESETS.get(task, {}).items() if not k.startswith("_")}
                morec_h = {"rollout_length": args.morec_rollout_length} if algo_name.startswith("morec_") and args.morec_rollout_length else {}
                config = algo.Config().override(**{**preset, **overrides(args), **morec_h})
                if algo_name in rewards:  # the base with MOREC's filter
                    agent = morec.agent(algo, dataset, dynamics, config=config, info=info, dynamics_reward=rewards[algo_name])
                else:
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
                    "dynamics_reward_seconds": round(reward_seconds, 1) if algo_name in rewards else None,
                    "preset": preset, "gradient_steps": int(config.total_steps),
                }
                rows.append(row)
                details.append({**row, "curve": metrics["eval/normalized_score"].tolist(), "steps": metrics["step"][0].tolist()})
                print(f"{task:28s} {algo_name:7s} {row['score_mean']:6.1f} +- {row['score_std']:5.1f} "
                      f"(data {row['data_policy_score']:.1f}; dataset {collect_seconds:.0f}s, dynamics {dyn_seconds:.0f}s, "
                      f"policy {policy_seconds:.0f}s)", flush=True)
    header = runlog.benchmark_header("offline_mbrl", args.quick, argv, {k: v for k, v in vars(args).items()})
    result = {**header, "rows": details, "rollout_error": errors_rows}
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
        f"# MOPO, MOBILE and their MOREC variants on rlx datasets{quick}",
        "",
        f"{result['date']}, `{result['command']}`",
        f"machine: {json.dumps(m)}",
        f"versions: {json.dumps(result['versions'])}",
        "",
        f"dataset size {s['dataset_size']}, expert steps {s['expert_steps']}, seeds {s['seeds']}; "
        f"policy / model settings other than the paper's: {json.dumps(overrides(argparse.Namespace(**s)))}; "
        f"MOREC: rollout length {s.get('morec_rollout_length') or 100}, dynamics reward of {s.get('reward_iterations', 400)} "
        "adversarial iterations; every algorithm with its paper's per-task preset where one exists",
        "",
        "| task | algo | normalized score (final) | data policy | dataset s | dynamics s (epochs) | dynamics reward s | policy s (all seeds) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cached = " (cached)" if r["dataset_cached"] else ""
        reward_s = "-" if r.get("dynamics_reward_seconds") is None else f"{r['dynamics_reward_seconds']:.0f}"
        lines.append(
            f"| {r['task']} | {r['algo']} | {r['score_mean']:.1f} +- {r['score_std']:.1f} | {r['data_policy_score']:.1f} "
            f"| {r['dataset_seconds']:.0f}{cached} | {r['dynamics_seconds']:.0f} ({r['dynamics_epochs']}) "
            f"| {reward_s} | {r['policy_seconds']:.0f} |"
        )
    if result.get("rollout_error"):
        h = s["error_horizon"]
        lines += [
            "",
            f"Open-loop model-rollout error against the true simulator: mean |s_hat_k - s_k| of the ensemble replaying the "
            f"actions of windows of {h} consecutive dataset steps from their first state (a random elite's sample = MOPO / "
            "MOBILE; each MOREC variant's default filter (MOREC-MOPO argmax, MOREC-MOBILE softmax), its branch cut not applied):",
            "",
            "| task | transition | windows | error at step 1 | step 5 | step " + str(h) + " |",
            "|---|---|---|---|---|---|",
        ]
        for e in result["rollout_error"]:
            for name, curve in e.items():
                if name in ("task", "windows"):
                    continue
                lines.append(f"| {e['task']} | {name} | {e['windows']} | {curve[0]:.4f} | {curve[min(4, h - 1)]:.4f} | {curve[-1]:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
