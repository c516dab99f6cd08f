"""Reward-free exploration of a maze, then a plan for a reward given only afterwards.

    python examples/reward_free_plan.py                      # 10,000 exploration steps (minutes on a CPU)
    python examples/reward_free_plan.py --goal 8.5,3.5       # plan for a goal of your choice (maze units)
    python examples/reward_free_plan.py --tiny               # a smoke run of seconds

Phase 1: a point mass explores the four-room ``rlx/PointMaze-v0`` with no reward at all: SAC
learns from APT's intrinsic bonus (particle-based entropy of the visited states) and everything it
collects becomes an offline dataset. Phase 2: a goal is chosen (by default a visited point
farther from the start than 65 % of the visits), its reward r(s, a, s') = 1 within 0.5 of the
goal relabels the dataset, and SAC learns a policy from the dataset alone, with no further
interaction. The return counts the steps of a 100-step episode spent at the goal.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import rlx.envs
from rlx.agents import sac
from rlx.envs import maze
from rlx.explore import intrinsic, phases


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--explore-steps", type=int, default=10_000)
    parser.add_argument("--plan-updates", type=int, default=5_000)
    parser.add_argument("--goal", default=None, help="x,y in maze units (default: a visited point picked after exploring)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="a smoke run: 1,000 steps, small networks")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    hidden = (128, 128)
    if args.tiny:
        args.explore_steps, args.plan_updates, hidden = 1_000, 200, (16, 16)
    k_explore, k_random, k_plan, k_eval = jax.random.split(jax.random.PRNGKey(args.seed), 4)

    env, params = rlx.envs.make("rlx/PointMaze-v0", layout="four_rooms")
    config = phases.exploration_config(total_steps=args.explore_steps, learning_starts=500,
                                       eval_every=500, eval_episodes=1, hidden_sizes=hidden, batch_size=128)
    module = intrinsic.APT(representation="obs")
    data = phases.explore(k_explore, sac, config, env, params, module, progress=not args.no_progress).dataset
    random_data = phases.random_dataset(k_random, env, params, data.size)
    for name, d in (("APT exploration", data), ("uniform random actions", random_data)):
        print(f"{name:>22s}: coverage {maze.coverage(env, d.next_observations, 2):.3f} of the maze's floor "
              f"({d.size:,} transitions, no reward read)")

    if args.goal:  # the reward, chosen only now
        goal = tuple(float(v) for v in args.goal.split(","))
    else:
        positions = np.asarray(env.positions(data.next_observations))
        distance = np.linalg.norm(positions - np.asarray(env.start), axis=1)
        goal = tuple(float(v) for v in positions[np.argsort(distance)[int(0.65 * len(distance))]])
    reward_fn = env.goal_reward(goal)
    plan_config = phases.planning_config(hidden_sizes=hidden[:1] * 2 if args.tiny else (64, 64), batch_size=128)
    planned = phases.plan(data, reward_fn, k_plan, config=plan_config, num_updates=args.plan_updates, num_logs=10,
                          progress=not args.no_progress)
    returns = phases.evaluate_reward(planned.policy, env, params, reward_fn, k_eval, 8)
    uniform = lambda obs, key: jax.random.uniform(key, obs.shape[:1] + (2,), minval=-1.0, maxval=1.0)  # noqa: E731
    random_returns = phases.evaluate_reward(uniform, env, params, reward_fn, k_eval, 8)
    rewarded = float(np.mean(np.asarray(phases.relabel(data, reward_fn).rewards) > 0))
    print(f"goal ({goal[0]:.2f}, {goal[1]:.2f}): {100 * rewarded:.1f} % of the dataset's transitions rewarded")
    print(f"planned return for goal ({goal[0]:.2f}, {goal[1]:.2f}): {returns.mean():.1f} of 100 steps at the goal "
          f"(uniform random actions: {random_returns.mean():.1f}), from the dataset alone")
    return float(returns.mean())


if __name__ == "__main__":
    main()
