"""The ``rlx`` command line.

    rlx train sac --env gymnax/Pendulum-v1 --total-steps 20000 --num-seeds 4 --out runs/x
    rlx train sac --help          # every config field, its default, range and meaning
    rlx train sac --resume runs/x # continue a stopped run from its latest checkpoint
    rlx eval runs/x --episodes 100  # return of a saved run's deterministic policy
    rlx eval runs/x --video x.gif   # ... and one episode of it filmed (.gif, .mp4, .html)
    rlx train sac --env-module my_pkg.envs --env mysuite/MyEnv-v0   # a user's own env
    rlx sweep sac --set critic_lr=1e-4,3e-4 --set tau=0.005,0.01 --num-seeds 4 --out runs/s
    rlx envs                      # registered environment names
    python -m rlx ...             # the same

Commands start in a fraction of a second: the parser is built for the command asked for only,
and that of ``rlx train ALGO`` from rlx/cli/spec.json (see :mod:`rlx.cli.spec`) rather than
from the imported agent, so help and refused flags come before jax is imported.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

from rlx.agents import agent_names, get_agent
from rlx.cli.inputs import builds_from_inputs, inputs_from_args, saved_inputs
from rlx.core.parse import parse_env_kwargs


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default_text(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def seed_type(text: str) -> int:
    """argparse type of ``--seed``: a 64-bit integer, refused at parse time otherwise."""
    from rlx.core.seeds import seed_problem  # no JAX: the refusal comes at once

    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    problem = seed_problem(seed)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return seed


# A negative number in scientific notation ("-1e-3"): argparse reads it as an option.
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def join_negative_values(argv: list[str]) -> list[str]:
    """``--flag -1e-3`` as ``--flag=-1e-3``, so that a negative value reaches its flag (and then
    the range check that names it) instead of argparse's "expected one argument"."""
    out: list[str] = []
    for token in argv:
        prev = out[-1] if out else ""
        if _NEGATIVE_NUMBER.match(token) and prev.startswith("--") and "=" not in prev:
            out[-1] = f"{prev}={token}"
        else:
            out.append(token)
    return out


class _Given(argparse.Action):
    """Stores the value and notes that the flag was on the command line, so that a resumed run
    can refuse a flag that contradicts its config.json even when it equals the default."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given = {*getattr(namespace, "given", ()), self.dest}


def _add_train_parser(sub, algo: str) -> argparse.ArgumentParser:
    """The parser of ``rlx train ALGO``, read from :mod:`rlx.cli.spec` (no agent is imported)."""
    from rlx.cli import spec as cli_spec

    info = cli_spec.agent_info(algo)
    p = sub.add_parser(
        algo,
        help=f"train {algo.upper()}",
        description=info["description"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = p.add_argument_group("run")
    run.add_argument("--env", action=_Given, default="gymnax/Pendulum-v1", help="registered env name (see `rlx envs`; default: %(default)s)")
    run.add_argument(
        "--env-kwarg", action="append", default=[], metavar="KEY=VALUE",
        help="environment option, e.g. max_steps_in_episode=100 or backend=generalized (repeatable)",
    )
    _add_env_module_flag(run)
    run.add_argument("--seed", action=_Given, type=seed_type, default=0, help="base seed (default: %(default)s)")
    run.add_argument("--num-seeds", action=_Given, type=int, default=1, help="seeds trained at once with jax.vmap (default: %(default)s)")
    run.add_argument("--out", default=None, help="run folder (default: runs/<algo>-<env>-<time>)")
    run.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--blocks-per-chunk", type=int, default=1,
        help="evaluation blocks per compiled call between host I/O (default: %(default)s)",
    )
    run.add_argument("--devices", type=int, default=None, help="spread the runs (seeds, sweep points) over at most this many devices; with --data-parallel, the devices that share the one agent (default: all visible)")
    run.add_argument("--distributed", action="store_true", help="one process per host: call jax.distributed.initialize() first (see README)")
    if info["data_parallel"]:
        run.add_argument(
            "--data-parallel", action="store_true",
            help="train one agent on all visible devices (at most --devices): envs, replay and minibatches "
            "split over them, gradients averaged; num_envs and batch_size must be multiples of the device count",
        )
    cli_spec.add_compile_cache_flags(run)
    cli_spec.add_extra_arguments(algo, info, run)  # agent-specific inputs, e.g. an offline dataset
    presets = info["presets"]  # name -> its _doc
    if presets:
        run.add_argument(
            "--preset", choices=sorted(presets), default=None,
            help="named set of config values applied before individual flags: "
            + "; ".join(f"{k}: {doc}" for k, doc in sorted(presets.items())),
        )
    fields = p.add_argument_group(f"{info['config_class']} fields (static: fixes the compiled program; tunable: sweepable)")
    for name, default_text, text, allowed, is_tunable in info["fields"]:
        kind = "tunable" if is_tunable else "static"
        extra = f"; {allowed}" if allowed else ""
        fields.add_argument(
            _flag(name), dest=f"cfg_{name}", default=None, metavar="V",
            help=f"{text} (default: {default_text}{extra}; {kind})",
        )
    return p


def _add_env_module_flag(group) -> None:
    group.add_argument(
        "--env-module", action="append", default=[], metavar="MODULE",
        help="import this module (my_pkg.envs) or Python file (path/to/envs.py) first, so the "
        "environments it registers with rlx.envs.register can be named by --env (repeatable)",
    )


def env_module_refs(args) -> list[str]:
    """The --env-module values as config.json keeps them (files as absolute paths), so that
    `rlx eval` and `--resume` import them again."""
    from rlx.envs.registry import is_env_module_file

    return [str(Path(m).resolve()) if is_env_module_file(m) else m for m in getattr(args, "env_module", None) or []]


# The commands in the order `rlx --help` lists them, with the help of those defined here (the
# others' help is in rlx/cli/spec.json, read without importing their modules).
_COMMANDS = ("train", "sweep", "eval", "report", "dataset", "envs", "agents")
_OWN_COMMAND_HELP = {
    "train": "train an agent", "eval": "evaluate a saved run",
    "envs": "list registered environments", "agents": "list agents",
}


def _positionals(argv: list[str]) -> list[str]:
    """The words of a command line that are not options (``rlx train sac --seed 3``: train, sac,
    3). The first two name the command and its ALGO: those levels have no option but -h, so no
    option takes a value before them."""
    return [token for token in argv if not token.startswith("-")]


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``rlx`` parser. With ``argv``, only the command it names is built in full (the
    others are listed by name and help), so that ``rlx --help`` or a mistyped flag does not
    import every agent and command module; without it, every command in full (documentation,
    tests)."""
    wanted = None if argv is None else _positionals(argv)[:2]
    everything = wanted is None
    parser = argparse.ArgumentParser(prog="rlx", description="JAX-native reinforcement learning.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in _COMMANDS:
        full = everything or (bool(wanted) and wanted[0] == command)
        if command == "train":
            train = sub.add_parser("train", help=_OWN_COMMAND_HELP["train"])
            algos = train.add_subparsers(dest="algo", required=True, metavar="ALGO")
            for algo in agent_names():
                if everything or (full and len(wanted) > 1 and wanted[1] == algo):
                    p = _add_train_parser(algos, algo)
                    _add_checkpoint_flags(p)
                    _add_sink_flags(p)
                    _add_debug_flags(p)
                else:  # named in `rlx train --help`, built when asked for
                    algos.add_parser(algo, help=f"train {algo.upper()}")
        elif command == "eval" and full:
            _add_eval_parser(sub)
        elif command in _OWN_COMMAND_HELP:
            sub.add_parser(command, help=_OWN_COMMAND_HELP[command])
        else:  # sweep, report, dataset: their modules import jax
            from rlx.cli.spec import HEAVY_COMMANDS, command_help

            helped = command_help(command)
            if full or helped is None:
                import importlib

                importlib.import_module(HEAVY_COMMANDS[command]).add_parser(sub)
            else:
                sub.add_parser(command, help=helped)
    return parser


def _add_checkpoint_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("checkpoints and resume")
    group.add_argument(
        "--checkpoint-every", type=int, default=None, metavar="N",
        help="save a checkpoint every N evaluation blocks (default: about ten per run; 0: none); "
        "also after the last block and on Ctrl-C",
    )
    group.add_argument("--keep-checkpoints", type=int, default=3, metavar="K", help="keep the last K checkpoints (default: %(default)s)")
    group.add_argument(
        "--no-save-buffer", action="store_true",
        help="leave the replay buffer out of checkpoints (smaller; the run can then be evaluated, not resumed)",
    )
    group.add_argument(
        "--resume", default=None, metavar="RUN_DIR",
        help="continue the stopped run in RUN_DIR from its latest checkpoint; agent, env, seeds and "
        "config come from its config.json, and flags that contradict them are refused",
    )


def _add_debug_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("checks")
    group.add_argument(
        "--debug-nans", action="store_true",
        help="stop at the first NaN or infinite metric of any kind (checked between chunks), naming it; "
        "the latest checkpoint stays the last good state. Rewards and returns are always checked; "
        "JAX_DEBUG_NANS=True finds the operation that made a NaN",
    )
    group.add_argument(
        "--dry-run", action="store_true",
        help="print the training state's memory estimate and the compiled programs' memory "
        "analysis, then exit without training or writing anything",
    )


def _add_sink_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("logging sinks (metrics.jsonl / metrics.csv are always written)")
    group.add_argument("--tensorboard", action="store_true", help="also log the metrics to RUN_DIR/tensorboard/ (needs tensorboardX)")
    group.add_argument("--wandb", default=None, metavar="PROJECT", help="also log the metrics to this Weights & Biases project (needs wandb)")


def _sinks(args, out: Path, agent_name: str, config, env: str, seed: int, num_seeds: int) -> tuple:
    from rlx.run.sinks import TensorBoardSink, WandbSink

    sinks = []
    if args.tensorboard:
        sinks.append(TensorBoardSink(out / "tensorboard"))
    if args.wandb:
        about = {"agent": agent_name, "env": env, "seed": seed, "num_seeds": num_seeds}
        sinks.append(WandbSink(args.wandb, name=out.name, config={**about, **config.to_dict()}, run_dir=out))
    return tuple(sinks)


def _add_eval_parser(sub) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a saved run",
        description="Load the latest checkpoint of a run folder and report the return of its "
        "deterministic policy (per seed when the run trained several).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `rlx train`")
    p.add_argument("--episodes", type=int, default=100, help="episodes per seed, run in parallel (default: %(default)s)")
    p.add_argument("--seed", type=seed_type, default=0, help="seed of the evaluation episodes (default: %(default)s)")
    p.add_argument("--checkpoint", type=int, default=None, metavar="E", help="the checkpoint written after evaluation E (default: the latest)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--video", default=None, metavar="FILE",
        help="also film one episode of the deterministic policy: .gif, .mp4 (needs imageio-ffmpeg) or "
        ".html (brax: its 3-D viewer)",
    )
    p.add_argument("--video-seed-index", type=int, default=0, metavar="I", help="which of the run's seeds to film (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_env_module_flag(p)


def _default_out(algo: str, env: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{algo}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', env)}-{stamp}"


def _config_overrides(agent, args) -> dict:
    """Config values from the command line: ``--preset`` first, then individual field flags."""
    overrides = {}
    preset = getattr(args, "preset", None)
    if preset:
        overrides.update({k: v for k, v in agent.PRESETS[preset].items() if not k.startswith("_")})
    overrides.update({k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None})
    return overrides


def _config_from_args(agent, args):
    """The agent's config: defaults, then ``--preset``, then individual field flags."""
    return agent.Config().override(**_config_overrides(agent, args))  # raises ConfigError naming the field


def train_command(args) -> int:
    from rlx.core.config import ConfigError
    from rlx.run import run

    agent = get_agent(args.algo)
    if args.resume:
        return resume_command(agent, args)
    preset = getattr(args, "preset", None)
    config = _config_from_args(agent, args)
    if args.num_seeds < 1:
        raise ConfigError(f"--num-seeds must be >= 1, got {args.num_seeds}")
    if getattr(args, "data_parallel", False) and args.num_seeds != 1:
        raise ConfigError(f"--data-parallel trains one agent on all devices; --num-seeds must be 1, got {args.num_seeds}")
    if getattr(args, "dry_run", False) and getattr(args, "data_parallel", False):
        raise ConfigError("--dry-run describes runs mode only; leave out --data-parallel")
    env_kwargs = parse_env_kwargs(args.env_kwarg)
    out = Path(args.out) if args.out else _default_out(args.algo, args.env)
    inputs = {}
    if builds_from_inputs(agent):  # an agent bound to its inputs (offline: dataset, dynamics)
        agent, inputs = _agent_from_inputs(agent, args, config, out)
    if getattr(args, "dry_run", False):
        from rlx.run.memory import dry_run

        print(dry_run(agent, config, args.env, env_kwargs=env_kwargs, seed=args.seed, num_seeds=args.num_seeds,
                      blocks_per_chunk=args.blocks_per_chunk, devices=args.devices).text())
        return 0
    result = run(
        agent, config, args.env,
        env_kwargs=env_kwargs, seed=args.seed, num_seeds=args.num_seeds, out_dir=out,
        overwrite=args.overwrite or bool(inputs), progress=not args.no_progress,
        blocks_per_chunk=args.blocks_per_chunk, devices=args.devices, debug_nans=args.debug_nans,
        data_parallel=getattr(args, "data_parallel", False),
        extra_info={
            "preset": preset, "compile_cache": getattr(args, "compile_cache_dir", None),
            **({"env_modules": env_module_refs(args)} if args.env_module else {}),
            **({"agent_inputs": inputs} if inputs else {}),
        },
        **_checkpoint_options(args), sinks=_sinks(args, out, args.algo, config, args.env, args.seed, args.num_seeds),
    )
    _print_result(result, out)
    return 0


def _agent_from_inputs(agent, args, config, out: Path):
    """An offline agent built from its ``--dataset`` (and ``--dynamics``) by ``agent.from_inputs``,
    and what a resume needs to build it again: the dataset's path and the dynamics model (and
    MOREC's dynamics reward), saved in the run folder (``dynamics/``, ``dynamics_reward/``) when
    trained here. The run folder is claimed first, so an occupied ``--out`` is refused before
    anything is trained."""
    inputs = inputs_from_args(agent, args)
    if getattr(args, "dry_run", False) or not inputs.get("dataset"):
        return agent.from_inputs(config, **inputs), {}  # refuses without --dataset, naming the flag
    from rlx.run.logging import prepare_run_dir

    prepare_run_dir(out, args.overwrite)
    trained = saved_inputs(agent)
    for name in trained:  # what is trained here is kept in the run folder unless saved elsewhere
        if not inputs[name] and not inputs["save_" + name]:
            inputs["save_" + name] = str(out / name)
    built = agent.from_inputs(config, **inputs)
    kept = {"dataset": inputs["dataset"], **{name: inputs[name] or inputs["save_" + name] for name in trained}}
    return built, {name: str(Path(path).resolve()) for name, path in kept.items()}


def _checkpoint_options(args) -> dict:
    return {
        "checkpoint_every": args.checkpoint_every,
        "keep_checkpoints": args.keep_checkpoints,
        "save_buffer": not args.no_save_buffer,
    }


def resume_conflicts(args, spec, what: str, folder: Path) -> list[str]:
    """The flags of ``rlx train|sweep ALGO --resume DIR`` that contradict the saved ``spec``
    (``what``: "run" or "sweep", whose folder is ``folder``), each as a line naming the flag."""
    command = "train" if what == "run" else "sweep"
    given = getattr(args, "given", set())
    problems = []
    if spec.info["agent"] != args.algo:
        problems.append(f"`rlx {command} {args.algo}`: the {what} trained {spec.info['agent']}")
    if "env" in given and args.env != spec.env:
        problems.append(f"--env {args.env}: the {what}'s env is {spec.env}")
    if args.env_kwarg and parse_env_kwargs(args.env_kwarg) != spec.env_kwargs:
        problems.append(f"--env-kwarg {' '.join(args.env_kwarg)}: the {what}'s env options are {spec.env_kwargs}")
    for dest, flag in (("seed", "--seed"), ("num_seeds", "--num-seeds")):
        if dest in given and getattr(args, dest) != getattr(spec, dest):
            problems.append(f"{flag} {getattr(args, dest)}: the {what}'s {dest} is {getattr(spec, dest)}")
    if args.out and Path(args.out).resolve() != folder.resolve():
        problems.append(f"--out {args.out}: a resumed {what} continues in its own folder {folder}")
    if args.overwrite:
        problems.append(f"--overwrite: a resumed {what} continues its folder; it never starts it over")
    return problems


def resume_command(agent, args) -> int:
    """``rlx train ALGO --resume RUN_DIR``: everything but run options comes from the run."""
    from rlx.run import resume_run
    from rlx.run.checkpoint import CheckpointError, load_run_spec

    spec = load_run_spec(args.resume)
    problems = resume_conflicts(args, spec, "run", spec.run_dir)
    overrides = _config_overrides(agent, args)
    requested = spec.config.override(**overrides)  # values read and checked as for a new run
    for name in overrides:
        if getattr(requested, name) != getattr(spec.config, name):
            problems.append(f"{_flag(name)} {overrides[name]}: the run's {name} is {getattr(spec.config, name)!r}")
    if problems:
        raise CheckpointError(
            f"cannot resume {spec.run_dir}: a resumed run keeps the agent, env, seeds and config "
            f"of its config.json, and these flags contradict it:\n  " + "\n  ".join(problems)
        )
    result = resume_run(
        spec.run_dir, progress=not args.no_progress, blocks_per_chunk=args.blocks_per_chunk,
        devices=args.devices, debug_nans=args.debug_nans, **_checkpoint_options(args),
        sinks=_sinks(args, spec.run_dir, args.algo, spec.config, spec.env, spec.seed, spec.num_seeds),
    )
    num_evals = result.schedule.num_evals
    if result.start_evaluation >= num_evals:
        print(
            f"{spec.run_dir} is already complete ({num_evals} evaluations, "
            f"{result.schedule.total_env_steps:,} {result.step_unit} per seed): nothing to resume. "
            f"Evaluate it with: rlx eval {spec.run_dir}"
        )
        return 0
    if result.start_evaluation:
        print(f"resumed {spec.run_dir} after evaluation {result.start_evaluation} of {num_evals}")
    else:
        print(f"{spec.run_dir} had no checkpoint yet: trained it from the beginning")
    _print_result(result, spec.run_dir)
    return 0


def eval_command(args) -> int:
    import json

    from rlx.run import evaluate_run

    video = None
    if args.video:  # every refusal (format, package, an env nothing draws) before any work
        from rlx import envs as rlx_envs
        from rlx.run.checkpoint import load_run_spec
        from rlx.run.video import check_video_path

        check_video_path(args.video)  # the extension and its package, before the run is read
        spec = load_run_spec(args.run_dir)
        if not 0 <= args.video_seed_index < spec.num_seeds:
            raise ValueError(f"--video-seed-index {args.video_seed_index}: the run trained {spec.num_seeds} seed(s)")
        video = check_video_path(args.video, rlx_envs.make(spec.env, **spec.env_kwargs)[0])
    trained = None
    if video is not None:  # restored once, for the evaluation and the video
        from rlx.run.checkpoint import load_trained_run

        trained = load_trained_run(args.run_dir, args.checkpoint)
    report = evaluate_run(args.run_dir, args.episodes, seed=args.seed, evaluation=args.checkpoint, trained=trained)
    if video is not None:
        from rlx.run.video import record_run

        filmed = record_run(
            args.run_dir, video, seed_index=args.video_seed_index, seed=args.seed,
            progress=not args.no_progress, trained=trained,
        )
    if args.json:
        print(json.dumps({**report.to_dict(), **({"video": str(filmed.path)} if video else {})}, indent=2))
        return 0
    print(
        f"{report.checkpoint}: after evaluation {report.evaluation}, {report.env_steps:,} {report.step_unit} per seed; "
        f"deterministic policy, {report.returns.shape[1]} episodes per seed"
    )
    if report.returns.shape[0] > 1:
        for i, (m, sd) in enumerate(zip(report.per_seed_mean, report.per_seed_std, strict=True)):
            print(f"  seed {i}: return {m:.1f} +- {sd:.1f}")
        print(
            f"  all seeds: return {report.return_mean:.1f} +- {report.return_std:.1f} "
            f"(std over seeds of the seed means: {report.std_over_seeds:.1f})"
        )
    else:
        print(f"  return {report.return_mean:.1f} +- {report.return_std:.1f}")
    if video is not None:
        print(filmed.describe())
    return 0


def _print_result(result, out) -> None:
    final = result.final_return
    spread = f" +- {final.std():.1f} over {final.size} seeds" if final.size > 1 else ""
    print(
        f"final evaluation return {final.mean():.1f}{spread} after {result.schedule.total_env_steps:,} {result.step_unit} "
        f"(compile {result.compile_seconds:.1f} s, run {result.run_seconds:.1f} s, "
        f"{result.steps_per_second:,.0f} {result.step_unit}/s)"
    )
    saved = ", checkpoints/" if result.checkpoint is not None else ""
    print(f"wrote {out}/: metrics.jsonl, metrics.csv, config.json, summary.json, learning_curve.png{saved}")


def _start_distributed(argv: list[str]) -> None:
    """``--distributed``: ``jax.distributed.initialize()`` before anything touches the devices
    (importing gymnax does, and so does building the parser of a command whose module imports
    the agents, such as ``rlx sweep``). Auto-detected on TPU
    pod slices, SLURM and Open MPI; elsewhere from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES
    and JAX_PROCESS_ID."""
    if "--distributed" not in argv:
        return
    import os

    import jax

    count, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
    jax.distributed.initialize(
        num_processes=None if count is None else int(count), process_id=None if index is None else int(index)
    )


def quit_on_ctrl_c() -> None:
    """Make Ctrl-C end an ``rlx`` command at once, with exit status 130.

    Python's default, a KeyboardInterrupt, is lost while XLA compiles (the compile runs on to
    its end and training starts anyway), and raised inside one of JAX's callbacks it could crash
    the interpreter on its way out. Nothing is half-written when this handler runs: the training
    loop hands Ctrl-C to :class:`rlx.run.checkpoint.InterruptRequest`, which saves a checkpoint
    first (and falls back to this handler on a second Ctrl-C, as a kill would: a checkpoint save
    that is cut short leaves the previous checkpoint as the latest); metrics files are appended
    and closed row block by row block."""

    def quit_now(signum, frame):
        print("\nrlx: interrupted", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, quit_now)


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the command line itself (tests call main with a list and keep Python's default)
        quit_on_ctrl_c()
    argv = sys.argv[1:] if argv is None else argv
    _start_distributed(argv)
    argv = join_negative_values(argv)
    args = build_parser(argv).parse_args(argv)
    if args.command == "agents":
        print("\n".join(agent_names()))
        return 0
    if args.command == "envs":
        from rlx.cli.spec import fast_env_names

        names = fast_env_names()  # None: only importing rlx.envs (and the suites) can tell
        if names is not None:
            print("\n".join(names))
            return 0
    from rlx.core.config import ConfigError
    from rlx.envs import UnknownEnvironmentError
    from rlx.run.checkpoint import TrainingInterrupted
    from rlx.run.logging import OutputDirError, RunFileError

    try:
        for module in getattr(args, "env_module", None) or []:  # a user's own environments
            from rlx.envs import import_env_module

            import_env_module(module)
        if hasattr(args, "no_compile_cache"):  # before anything is compiled
            from rlx.run.compile_cache import configure_from_args

            folder = configure_from_args(args)
            args.compile_cache_dir = None if folder is None else str(folder)
        if args.command == "report":
            from rlx.cli.report import report_command

            return report_command(args)
        if args.command == "train":
            return train_command(args)
        if args.command == "eval":
            return eval_command(args)
        if args.command == "sweep":
            from rlx.cli.sweep import sweep_command

            return sweep_command(args)
        if args.command == "dataset":
            from rlx.cli.dataset import dataset_command

            return dataset_command(args)
        if args.command == "envs":
            from rlx.envs import registered_names

            print("\n".join(registered_names()))
            return 0
        if args.command == "agents":
            print("\n".join(agent_names()))
            return 0
    except (ConfigError, UnknownEnvironmentError, OutputDirError, ValueError) as err:
        print(f"rlx: error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:  # a non-finite metric: rlx.run.nan_guard.NonFiniteMetricError
        print(f"rlx: error: {err}", file=sys.stderr)
        return 3
    except RunFileError as err:  # a full disk or a read-only --out (rlx.run.checkpoint.CheckpointSaveError)
        print(f"rlx: error: {err}", file=sys.stderr)
        return 74  # EX_IOERR of sysexits.h
    except TrainingInterrupted as stop:
        print(f"rlx: {stop}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("rlx: interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
