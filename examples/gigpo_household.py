"""GiGPO on rlx/Household-v0, then one episode of the trained policy, as text.

    python examples/gigpo_household.py             # 614,400 env steps (a few minutes on a CPU)
    python examples/gigpo_household.py --tiny      # a smoke run of seconds

Household is a symbolic task in pure JAX, like ALFWorld ("put a clean mug in cabinet 2": find
the object, open what is closed, clean it at the sink, put it there). The reward is 1 on success,
so the evaluation return is the success rate. GiGPO rolls out a group of trajectories per task
instance; an action's advantage is its trajectory's success against the group's, plus its return
against the other steps of the group that saw the same observation (anchor states).
The same run from the command line: ``rlx train gigpo --env rlx/Household-v0 --out runs/hh``.
"""

from __future__ import annotations

import argparse

import jax

import rlx.envs
from rlx.agents import gigpo
from rlx.run import run

ENV = "rlx/Household-v0"


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total-steps", type=int, default=614_400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run folder (metrics, config, learning_curve.png)")
    parser.add_argument("--tiny", action="store_true", help="a smoke run: a few hundred steps, a small network")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    if args.tiny:  # the notebook's test settings
        config = gigpo.GiGPOConfig(total_steps=640, eval_every=320, num_envs=2, group_size=4, max_episode_steps=10,
                                   num_minibatches=2, hidden_sizes=(16,), eval_episodes=4)
    else:
        # One iteration is 8 tasks x 8 trajectories x 30 steps = 1,920 env steps; evaluate every 20.
        config = gigpo.GiGPOConfig(total_steps=args.total_steps, eval_every=38_400)
    result = run(gigpo, config, ENV, seed=args.seed, out_dir=args.out, progress=not args.no_progress)
    for step, success in zip(result.steps, result.metrics["eval/return_mean"][0], strict=True):
        print(f"  {step:>9,d} env steps: success rate {success:.2f}")

    # One episode of the trained policy on a new task instance, sampling actions as in evaluation.
    env, env_params = rlx.envs.make(ENV)
    policy = jax.jit(gigpo.make_policy(config, result.state.agent_state))
    step = jax.jit(lambda key, state, action: env.step(key, state, action, env_params))
    key, k_reset = jax.random.split(jax.random.PRNGKey(args.seed + 2026))
    obs, state = env.reset(k_reset, env_params)
    for t in range(env_params.max_steps_in_episode):
        key, k_act, k_env = jax.random.split(key, 3)
        action = int(policy(obs, k_act))
        print(f"[{t:2d}] {env.render_text(state)}\n     > {env.action_text(state, action)}")
        obs, state, reward, terminated, truncated, info = step(k_env, state, action)
        if bool(info["invalid_action"]):
            print("     (not admissible: nothing happens)")
        if bool(terminated) or bool(truncated):
            break
    print("episode:", "success" if bool(terminated) else "time limit, no success", f"after {t + 1} steps")
    success = float(result.final_return[0])
    print(f"GiGPO on {ENV}: final success rate {success:.2f} after {result.schedule.total_env_steps:,} env steps "
          f"(uniformly random actions: 0.02)")
    return success


if __name__ == "__main__":
    main()
