"""MOREC-MOPO vs MOPO and MOREC-MOBILE vs MOBILE on the refrigerator with known dynamics.

The task whose true simulator we have (:mod:`rlx.envs.synthetic_dynamics`): a dataset of one noisy
controller holding 8 C, evaluation in the real env with the reward -|x - 4 C|. One dynamics
ensemble and one dynamics reward (400 adversarial iterations; MOREC-MOPO averages every 10th of
them, MOREC-MOBILE every 40th) are shared by all runs; each algorithm trains ``--seeds`` seeds
vmapped in one program with the same keys as its MOREC counterpart. Reported: normalized score
100 (R - random) / (reference - random) of the final evaluation (reference = the noiseless 4 C
controller), mean +- std over seeds; one-step error |x' - E_true[x' | x, a]| of model rollouts of
each trained MOREC policy with and without the filter; wall time of every stage.

    python benchmarks/morec.py                 # 3 seeds, 20,000 gradient steps (CPU: tens of minutes)
    python benchmarks/morec.py --quick         # smoke run: 2 seeds, 2,000 steps

Writes ``benchmarks/results/morec-fridge-<platform>[-quick].{md,json}``. Small CPU scale: the
settings (network widths, rollouts per iteration, steps) are listed in the report.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rlx.agents import mobile, mopo, morec, sac
from rlx.envs.synthetic_dynamics import behaviour_dataset, controller, make_fridge, true_next_mean
from rlx.models import dynamics_reward as drw
from rlx.models import ensemble as ens
from rlx.models.filter import FilterConfig
from rlx.models.rollout import rollout, sample_elite
from rlx.run import logging as runlog
from rlx.run import make_train
from rlx.run.train import evaluate


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--policy-steps", type=int, default=20_000)
    p.add_argument("--reward-iterations", type=int, default=400)
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run, not a result")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.policy_steps, args.reward_iterations = 2, 2_000, 80
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    env, env_params = make_fridge()
    times, t0 = {}, time.perf_counter()
    dataset = behaviour_dataset(jax.random.PRNGKey(0), episodes=40, action_noise=0.3)
    jax.block_until_ready(dataset.observations)
    times["dataset"] = time.perf_counter() - t0
    # reference returns of the normalized score: uniform random actions, noiseless 4 C controller
    k_r, k_e = jax.random.split(jax.random.PRNGKey(99))
    rand = float(jnp.mean(evaluate(lambda o, k: jax.random.uniform(k, o.shape, minval=-1, maxval=1), env, env_params, k_r, 50)))
    ref = float(jnp.mean(evaluate(lambda o, k: controller(o, k, set_point=0.4, action_noise=0.0), env, env_params, k_e, 50)))
    info = types.SimpleNamespace(env="rlx/Fridge-v0", random_return=rand, expert_return=ref)

    t0 = time.perf_counter()
    ens_cfg = ens.EnsembleConfig(ensemble_size=7, num_elites=5, hidden_sizes=(64, 64), weight_decays=(2.5e-5, 5e-5, 1e-4),
                                 min_steps_per_epoch=200, max_epochs=50)
    dynamics, _ = ens.train_dynamics(dataset, ens_cfg, jax.random.PRNGKey(2), termination="never", progress=False)
    times["dynamics ensemble"] = time.perf_counter() - t0
    n = args.reward_iterations
    rcfg = drw.DynamicsRewardConfig(iterations=n, keep_last=n, keep_every=n // 40, hidden_sizes=(128, 128),
                                    generator_hidden_sizes=(128, 128))
    dr_mopo, report = drw.train_dynamics_reward(dataset, rcfg, jax.random.PRNGKey(1))
    times["dynamics reward"] = report.seconds
    # MOREC-MOBILE's history: every 40th of the same iterations = every 4th of MOREC-MOPO's 40
    dr_mobile = dr_mopo.every(4)

    small = dict(total_steps=args.policy_steps, eval_every=args.policy_steps // 4, rollout_freq=250, rollout_batch_size=500,
                 hidden_sizes=(64, 64), eval_episodes=10, ensemble_size=7, num_elites=5, model_hidden_sizes=(64, 64))
    runs = {
        "mopo": (mopo.MOPOConfig(rollout_length=5, **small), lambda: mopo.agent(dataset, dynamics, info=info)),
        "morec_mopo": (morec.mopo_config(rollout_length=20, **small),
                       lambda: morec.agent("mopo", dataset, dynamics, dynamics_reward=dr_mopo, info=info)),
        "mobile": (mobile.MOBILEConfig(rollout_length=5, **small), lambda: mobile.agent(dataset, dynamics, info=info)),
        "morec_mobile": (morec.mobile_config(rollout_length=20, **small),
                         lambda: morec.agent("mobile", dataset, dynamics, dynamics_reward=dr_mobile, info=info,
                                             filter_config=FilterConfig(selection="softmax"))),
    }
    keys = jax.random.split(jax.random.PRNGKey(7), args.seeds)
    rows, errors = {}, {}
    for name, (config, build) in runs.items():
        agent = build()
        t0 = time.perf_counter()
        out = jax.jit(jax.vmap(make_train(agent, config, env, env_params)))(keys)
        score = np.asarray(out.metrics["eval/normalized_score"])[:, -1]
        times[f"policy: {name}"] = time.perf_counter() - t0
        rows[name] = {"score_mean": float(score.mean()), "score_std": float(score.std()), "per_seed": score.tolist()}
        print(f"{name:>13s}: normalized score {score.mean():6.1f} +- {score.std():5.1f}", flush=True)
        if name.startswith("morec"):
            learner = jax.tree.map(lambda x: x[0], out.state.agent_state.learner)
            policy = lambda o, k: sac.act(config.sac_config(), learner, o, k)  # noqa: E731, B023
            start = dataset.observations[::10][:200]
            for label, fn in (("filtered", agent.transition_fn), ("unfiltered", sample_elite)):
                r = jax.jit(lambda k: rollout(k, dynamics, policy, start, 20, fn))(jax.random.PRNGKey(3))  # noqa: B023
                t = r.transitions
                errors[f"{name} policy, {label}"] = float(jnp.mean(jnp.abs(t.next_obs - true_next_mean(t.obs, t.action))))
    header = runlog.benchmark_header("morec", args.quick, argv, {**vars(args), **{k: str(v) for k, v in small.items()}})
    result = {**header, "reference_returns": {"random": rand, "controller_4C": ref}, "scores": rows,
              "rollout_one_step_error": errors, "seconds": times}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"morec-fridge-{jax.devices()[0].platform}" + ("-quick" if args.quick else "")
    runlog.write_json(out_dir / f"{stem}.json", result)
    (out_dir / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result) -> str:
    lines = [f"# MOREC vs its bases on the refrigerator ({result['date']})", "",
             f"command: `{result['command']}`  ", f"machine: {result['machine']}  ",
             "scale: small CPU settings (see `settings` in the json); not comparable to D4RL / NeoRL numbers", "",
             "| algorithm | normalized score (mean +- std over seeds) | per seed |", "|---|---|---|"]
    for name, r in result["scores"].items():
        lines.append(f"| {name} | {r['score_mean']:.1f} +- {r['score_std']:.1f} | {', '.join(f'{s:.1f}' for s in r['per_seed'])} |")
    lines += ["", "| model rollouts (200 x 20 steps) | mean one-step error vs the true dynamics (x units = 10 C) |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in result["rollout_one_step_error"].items()]
    lines += ["", "| stage | wall time (s, compile included) |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in result["seconds"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
