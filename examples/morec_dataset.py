"""MOREC-MOPO from an offline dataset: dynamics ensemble, dynamics reward, then the policy.

    python examples/morec_dataset.py                  # the refrigerator task (a few minutes on a CPU)
    python examples/morec_dataset.py --tiny           # a smoke run of seconds
    rlx dataset collect --env gymnax/Pendulum-v1 --kind medium --size 100000 --out data/pendulum-medium
    python examples/morec_dataset.py --dataset data/pendulum-medium --env gymnax/Pendulum-v1

By default the data come from ``rlx.envs.synthetic_dynamics``: a refrigerator with known dynamics
and one noisy controller holding 8 C, while the task asks for 4 C (reward -|x - 4 C|). From the data
alone MOREC learns a dynamics ensemble and a *dynamics reward* r_D(s, a, s'), keeps at every
model step the candidate next state with the highest r_D, and trains SAC on the filtered model
rollouts (MOPO's penalty on top). The score is D4RL's normalized one, 100 (R - random) /
(reference - random), with uniform random actions and the noiseless 4 C controller as references.
``--dataset`` takes a dataset folder of ``rlx dataset collect`` instead; its reference returns
come with it.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import rlx.envs
from rlx.agents import morec
from rlx.buffers import DatasetInfo, normalized_score, open_dataset
from rlx.envs.synthetic_dynamics import behaviour_dataset, controller, make_fridge
from rlx.run import evaluate, run


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=None, help="a folder of `rlx dataset collect` (default: the refrigerator's data)")
    parser.add_argument("--env", default=None, help="the env to evaluate in, with --dataset (default: the dataset's own)")
    parser.add_argument("--gradient-steps", type=int, default=3_000)
    parser.add_argument("--num-seeds", type=int, default=2)
    parser.add_argument("--out", default=None, help="run folder (metrics, config, learning_curve.png)")
    parser.add_argument("--tiny", action="store_true", help="a smoke run: tiny networks, a few hundred steps")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    progress = not args.no_progress
    # Laptop scale: 64x64 networks, rollouts of h = 20 from 200 starts every 250 gradient steps,
    # 10 averaged discriminators (MOREC-MOPO's default averages 40: every 10th of 400).
    settings = dict(
        total_steps=args.gradient_steps, eval_every=250, rollout_freq=250, rollout_length=20, rollout_batch_size=200,
        eval_episodes=10, hidden_sizes=(64, 64), model_hidden_sizes=(64, 64), model_max_epochs=50,
        model_min_steps_per_epoch=200, reward_iterations=400, reward_keep_last=400, reward_keep_every=40,
    )
    if args.tiny:
        settings.update(total_steps=200, eval_every=100, rollout_freq=50, rollout_batch_size=50, hidden_sizes=(16,),
                        batch_size=32, ensemble_size=3, num_elites=2, model_hidden_sizes=(16,), model_max_epochs=2,
                        model_min_steps_per_epoch=20, reward_iterations=20, reward_keep_last=20, reward_keep_every=10)
    config = morec.mopo_config(**settings)

    if args.dataset:  # a dataset of rlx dataset collect: its info holds the reference returns
        dataset, info = open_dataset(args.dataset)
        env, env_params = rlx.envs.make(args.env or info.env, **info.env_kwargs)
    else:  # the refrigerator: 40 episodes of 50 steps of the 8 C controller
        dataset = behaviour_dataset(jax.random.PRNGKey(0), episodes=40, action_noise=0.3)
        env, env_params = make_fridge()

        def mean_return(policy, seed):
            return float(np.mean(evaluate(policy, env, env_params, jax.random.PRNGKey(seed), 50)))

        info = DatasetInfo(
            env="rlx/Fridge-v0", kind="controller at 8 C", size=dataset.size,
            random_return=mean_return(lambda obs, key: jax.random.uniform(key, obs.shape, minval=-1.0, maxval=1.0), 98),
            expert_return=mean_return(lambda obs, key: controller(obs, key, set_point=0.4, action_noise=0.0), 99),
            policy_return=mean_return(lambda obs, key: controller(obs, key, action_noise=0.3), 100),
        )
    print(f"dataset: {dataset.size:,} transitions of {info.env} ({info.kind}); returns: random "
          f"{info.random_return:.1f}, expert {info.expert_return:.1f}, the data's policy {info.policy_return:.1f} "
          f"(normalized {normalized_score(info.policy_return, info):.1f})")

    # The ensemble, then the dynamics reward (both compiled, with progress bars), then the policy.
    agent = morec.agent("mopo", dataset, config=config, info=info, env=env, env_params=env_params,
                        key=jax.random.PRNGKey(1), progress=progress)
    result = run(agent, config, env, env_params, num_seeds=args.num_seeds, out_dir=args.out, progress=progress)
    scores = result.metrics["eval/normalized_score"]  # (seeds, evaluations)
    for step, score in zip(result.steps, scores.mean(axis=0), strict=True):
        print(f"  {step:>6,d} gradient steps: normalized score {score:6.1f} (mean of {args.num_seeds} seeds)")
    final = scores[:, -1]
    print(f"MOREC-MOPO on {info.env}: final normalized score {final.mean():.1f} +- {final.std():.1f} "
          f"(return {result.final_return.mean():.1f}; the data's policy: {normalized_score(info.policy_return, info):.1f})")
    return float(final.mean())


if __name__ == "__main__":
    main()
