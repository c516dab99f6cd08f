"""SAC or DSAC-T on a brax environment, several seeds trained at once in one compiled program.

    python examples/sac_brax.py                          # SAC, 3 seeds (a few minutes on a CPU)
    python examples/sac_brax.py --agent dsac_t --out runs/ip   # DSAC-T; learning_curve.png in runs/ip
    python examples/sac_brax.py --tiny                   # a smoke run (its time is brax's compile)

The task is brax's inverted pendulum: keep a pole upright on a cart (reward 1 per step, the
episode terminates when the pole falls). Episodes are cut at ``--episode-length`` steps, so a
perfect policy scores that many. ``rlx.run.run`` vmaps the seeds, shows a progress bar, and with
``--out`` writes the run folder of ``rlx train`` (metrics, config, learning curve, checkpoints).
Much the same run from the command line:

    rlx train sac --env brax/inverted_pendulum --env-kwarg episode_length=200 --num-seeds 3 \\
        --total-steps 15000 --hidden-sizes 64,64 --out runs/ip
"""

from __future__ import annotations

import argparse

import numpy as np

from rlx.agents import dsac_t, sac
from rlx.run import run

AGENTS = {"sac": sac, "dsac_t": dsac_t}


def main(argv: list[str] | None = None) -> np.ndarray:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", choices=sorted(AGENTS), default="sac")
    parser.add_argument("--env", default="brax/inverted_pendulum")
    parser.add_argument("--episode-length", type=int, default=200)
    parser.add_argument("--total-steps", type=int, default=15_000)
    parser.add_argument("--num-seeds", type=int, default=3)
    parser.add_argument("--hidden-sizes", default="64,64")
    parser.add_argument("--out", default=None, help="run folder (metrics, config, learning_curve.png)")
    parser.add_argument("--tiny", action="store_true", help="a smoke run: a few hundred steps, small networks")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.tiny:
        args.episode_length, args.total_steps, args.num_seeds, args.hidden_sizes = 50, 300, 2, "16"

    agent = AGENTS[args.agent]
    steps = args.total_steps
    config = agent.Config(
        total_steps=steps, eval_every=100 if args.tiny else 1_000, learning_starts=100 if args.tiny else 1_000,
        hidden_sizes=tuple(int(w) for w in args.hidden_sizes.split(",")), eval_episodes=5,
        batch_size=16 if args.tiny else 256,
    )
    result = run(
        agent, config, args.env, env_kwargs={"episode_length": args.episode_length}, num_seeds=args.num_seeds,
        out_dir=args.out, progress=not args.no_progress,
    )
    curve = result.metrics["eval/return_mean"].mean(axis=0)  # (evaluations,), mean over seeds
    for step, ret in zip(result.steps, curve, strict=True):
        print(f"  {step:>7,d} env steps: evaluation return {ret:7.1f} (mean of {args.num_seeds} seeds)")
    final = result.final_return
    print(f"{args.agent} on {args.env}: final return per seed [{', '.join(f'{r:.1f}' for r in final)}] "
          f"(max {args.episode_length}), compile {result.compile_seconds:.0f} s, run {result.run_seconds:.0f} s")
    if args.out:
        print(f"learning curve: {args.out}/learning_curve.png")
    return final


if __name__ == "__main__":
    main()
