"""``rlx sweep ALGO ... --set FIELD=V1,V2,...``: a grid of tunable values x seeds as one compiled
program (:mod:`rlx.run.sweep`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rlx.cli import (
    _add_sink_flags,
    _add_train_parser,
    _config_from_args,
    _config_overrides,
    _default_out,
    _sinks,
    env_module_refs,
    resume_conflicts,
)
from rlx.cli.inputs import builds_from_inputs, inputs_from_args
from rlx.core.config import ConfigError
from rlx.core.contract import optional
from rlx.core.parse import parse_env_kwargs
from rlx.run.sweep import __doc__ as _SWEEP_DOC
from rlx.run.sweep import parse_set, resume_sweep, run_sweep


def add_parser(subparsers) -> None:
    """Add ``rlx sweep ALGO``: every flag of ``rlx train ALGO``, plus ``--set`` and ``--resume``."""
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
        group = parser.add_argument_group("checkpoints and resume")
        group.add_argument(
            "--checkpoint-every", type=int, default=None, metavar="N",
            help="save a checkpoint of every run every N evaluation blocks (default: about ten per sweep; "
            "0: none); also after the last block and on Ctrl-C",
        )
        group.add_argument("--keep-checkpoints", type=int, default=3, metavar="K", help="keep the last K checkpoints (default: %(default)s)")
        group.add_argument(
            "--no-save-buffer", action="store_true",
            help="leave the replay buffers out of checkpoints (smaller; the sweep can then not be resumed)",
        )
        group.add_argument(
            "--resume", default=None, metavar="SWEEP_DIR",
            help="continue the stopped sweep in SWEEP_DIR from its latest checkpoint; agent, env, seeds, "
            "base config and points come from its sweep.json, and flags that contradict them are refused",
        )
        _add_sink_flags(parser)
        checks = parser.add_argument_group("checks")
        checks.add_argument(
            "--debug-nans", action="store_true",
            help="stop at the first NaN or infinite metric of any kind (checked between chunks), naming the "
            "point and seed; rewards and returns are always checked",
        )


def _run_options(args) -> dict:
    return {
        "progress": not args.no_progress, "blocks_per_chunk": args.blocks_per_chunk, "devices": args.devices,
        "checkpoint_every": args.checkpoint_every, "keep_checkpoints": args.keep_checkpoints,
        "save_buffer": not args.no_save_buffer, "debug_nans": args.debug_nans,
    }


def sweep_command(args: argparse.Namespace) -> int:
    from rlx.agents import get_agent

    agent = get_agent(args.algo)
    if args.resume:
        return _resume(agent, args)
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
        out_dir=out, overwrite=args.overwrite,
        extra_info={
            "preset": getattr(args, "preset", None), **({"env_modules": env_module_refs(args)} if args.env_module else {}), **inputs,
        },
        sinks=_sinks(args, out, args.algo, base, args.env, args.seed, args.num_seeds), **_run_options(args),
    )
    _print_result(result, out)
    return 0


def _resume(agent, args) -> int:
    """``rlx sweep ALGO --resume SWEEP_DIR``: everything but run options comes from the sweep."""
    from rlx.run.checkpoint import CheckpointError
    from rlx.run.sweep import load_sweep_spec

    spec = load_sweep_spec(args.resume)
    problems = resume_conflicts(args, spec, "sweep", spec.sweep_dir)
    if args.sweep_set:
        problems.append("--set: a resumed sweep trains the points of its sweep.json")
    overrides = _config_overrides(agent, args)
    requested = spec.base_config.override(**overrides)
    for name in overrides:
        if getattr(requested, name) != getattr(spec.base_config, name):
            problems.append(f"--{name.replace('_', '-')} {overrides[name]}: the sweep's {name} is {getattr(spec.base_config, name)!r}")
    if problems:
        raise CheckpointError(
            f"cannot resume {spec.sweep_dir}: a resumed sweep keeps the agent, env, seeds, config and "
            f"points of its sweep.json, and these flags contradict it:\n  " + "\n  ".join(problems)
        )
    result = resume_sweep(
        spec.sweep_dir, sinks=_sinks(args, spec.sweep_dir, args.algo, spec.base_config, spec.env, spec.seed, spec.num_seeds),
        **_run_options(args),
    )
    _print_result(result, spec.sweep_dir)
    return 0


def _print_result(result, out: Path) -> None:
    print(result.summary_markdown(), end="")
    print(
        f"{len(result.points)} points x {result.final_return.shape[1]} seeds in one program "
        f"(compile {result.compile_seconds:.1f} s, run {result.run_seconds:.1f} s)"
    )
    if result.out_dir is not None:
        print(f"wrote {out}/: sweep.json, points/*/metrics.jsonl, summary.md, summary.csv, curves.png")
