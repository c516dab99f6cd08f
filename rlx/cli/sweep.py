"""``rlx sweep ALGO ... --set FIELD=V1,V2,...``: a grid of tunable values x seeds as one compiled
program (:mod:`rlx.run.sweep`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rlx.cli import _add_train_parser, _config_from_args, _default_out, env_module_refs
from rlx.cli.inputs import builds_from_inputs, inputs_from_args
from rlx.core.config import ConfigError
from rlx.core.contract import optional
from rlx.core.parse import parse_env_kwargs
from rlx.run.sweep import __doc__ as _SWEEP_DOC
from rlx.run.sweep import parse_set, run_sweep


def add_parser(subparsers) -> None:
    """Add ``rlx sweep ALGO``: every flag of ``rlx train ALGO``, plus ``--set``."""
    from rlx.agents import agent_names
    sweep = subparsers.add_parser(
        "sweep", help="train a grid of tunable hyperparameters x seeds as one compiled program",
        description=_SWEEP_DOC.split("\n\n")[0],
    )
    algos = sweep.add_subparsers(dest="algo", required=True, metavar="ALGO")
    for algo in agent_names():
        parser = _add_train_parser(algos, algo)
        parser.add_argument(
            "--set", dest="sweep_set", action="append", default=[], metavar="FIELD=V1,V2,...",
            help="values of one tunable field (repeatable; the grid is every combination), "
            "e.g. --set critic_lr=1e-4,3e-4 --set tau=0.005,0.01",
        )


def sweep_command(args: argparse.Namespace) -> int:
    from rlx.agents import get_agent

    agent = get_agent(args.algo)
    values = parse_set(args.sweep_set)
    if not values:
        raise ConfigError("rlx sweep needs at least one --set FIELD=V1,V2,...")
    both = [name for name in values if getattr(args, f"cfg_{name}", None) is not None]
    if both:
        raise ConfigError(f"{', '.join(both)} given both as a flag and in --set; keep one")
    if args.num_seeds < 1:
        raise ConfigError(f"--num-seeds must be >= 1, got {args.num_seeds}")
    base = _config_from_args(agent, args)
    inputs = {}
    if builds_from_inputs(agent):  # an offline agent, bound to its --dataset (refused without one)
        given = inputs_from_args(agent, args)
        files = {name: given[name] for name in optional(agent, "INPUTS") if given.get(name)}
        agent = agent.from_inputs(base, **given)
        inputs = {"agent_inputs": {name: str(Path(path).resolve()) for name, path in files.items()}}
    out = Path(args.out) if args.out else _default_out(f"sweep-{args.algo}", args.env)
    result = run_sweep(
        agent, base, values, args.env,
        env_kwargs=parse_env_kwargs(args.env_kwarg), seed=args.seed, num_seeds=args.num_seeds,
        out_dir=out, overwrite=args.overwrite, progress=not args.no_progress,
        blocks_per_chunk=args.blocks_per_chunk, devices=args.devices,
        extra_info={
            "preset": getattr(args, "preset", None), **({"env_modules": env_module_refs(args)} if args.env_module else {}), **inputs,
        },
    )
    print(result.summary_markdown(), end="")
    print(
        f"{len(result.points)} points x {result.final_return.shape[1]} seeds in one program "
        f"(compile {result.compile_seconds:.1f} s, run {result.run_seconds:.1f} s)"
    )
    if result.out_dir is not None:
        print(f"wrote {out}/: sweep.json, points/*/metrics.jsonl, summary.md, summary.csv, curves.png")
    return 0
