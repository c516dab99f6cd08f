"""The ``rlx`` command line.

    rlx train sac --env gymnax/Pendulum-v1 --total-steps 20000 --num-seeds 4 --out runs/x
    rlx train sac --help          # every config field, its default, range and meaning
    rlx envs                      # registered environment names
    python -m rlx ...             # the same
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from rlx.agents import agent_names, get_agent


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default_text(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _add_train_parser(sub, algo: str) -> None:
    agent = get_agent(algo)
    cfg_cls = agent.Config
    p = sub.add_parser(
        algo,
        help=f"train {algo.upper()}",
        description=(agent.__doc__ or "").strip().split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = p.add_argument_group("run")
    run.add_argument("--env", default="gymnax/Pendulum-v1", help="registered env name (see `rlx envs`; default: %(default)s)")
    run.add_argument(
        "--env-kwarg", action="append", default=[], metavar="KEY=VALUE",
        help="environment option, e.g. max_steps_in_episode=100 or backend=generalized (repeatable)",
    )
    run.add_argument("--seed", type=int, default=0, help="base seed (default: %(default)s)")
    run.add_argument("--num-seeds", type=int, default=1, help="seeds trained at once with jax.vmap (default: %(default)s)")
    run.add_argument("--out", default=None, help="run folder (default: runs/<algo>-<env>-<time>)")
    run.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--blocks-per-chunk", type=int, default=1,
        help="evaluation blocks per compiled call between host I/O (default: %(default)s)",
    )
    presets = getattr(agent, "PRESETS", {})
    if presets:
        run.add_argument(
            "--preset", choices=sorted(presets), default=None,
            help="named set of config values applied before individual flags: "
            + "; ".join(f"{k}: {v.get('_doc', '')}" for k, v in sorted(presets.items())),
        )
    fields = p.add_argument_group(f"{cfg_cls.__name__} fields (static: fixes the compiled program; tunable: sweepable)")
    for name, default, text, allowed, is_tunable in cfg_cls.field_help():
        kind = "tunable" if is_tunable else "static"
        extra = f"; {allowed}" if allowed else ""
        fields.add_argument(
            _flag(name), dest=f"cfg_{name}", default=None, metavar="V",
            help=f"{text} (default: {_default_text(default)}{extra}; {kind})",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlx", description="JAX-native reinforcement learning.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train an agent")
    algos = train.add_subparsers(dest="algo", required=True, metavar="ALGO")
    for algo in agent_names():
        _add_train_parser(algos, algo)
    sub.add_parser("envs", help="list registered environments")
    sub.add_parser("agents", help="list agents")
    return parser


def _parse_env_kwargs(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--env-kwarg expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = _literal(value.strip())
    return out


def _literal(text: str):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _default_out(algo: str, env: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{algo}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', env)}-{stamp}"


def train_command(args) -> int:
    from rlx.core.config import ConfigError
    from rlx.run import run

    agent = get_agent(args.algo)
    overrides = {}
    preset = getattr(args, "preset", None)
    if preset:
        overrides.update({k: v for k, v in agent.PRESETS[preset].items() if not k.startswith("_")})
    overrides.update({k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None})
    config = agent.Config().override(**overrides)  # raises ConfigError naming the field
    if args.num_seeds < 1:
        raise ConfigError(f"--num-seeds must be >= 1, got {args.num_seeds}")
    env_kwargs = _parse_env_kwargs(args.env_kwarg)
    out = Path(args.out) if args.out else _default_out(args.algo, args.env)
    result = run(
        agent, config, args.env,
        env_kwargs=env_kwargs, seed=args.seed, num_seeds=args.num_seeds, out_dir=out,
        overwrite=args.overwrite, progress=not args.no_progress,
        blocks_per_chunk=args.blocks_per_chunk, extra_info={"preset": preset},
    )
    final = result.final_return
    spread = f" +- {final.std():.1f} over {final.size} seeds" if final.size > 1 else ""
    print(
        f"final evaluation return {final.mean():.1f}{spread} after {result.schedule.total_env_steps:,} env steps "
        f"(compile {result.compile_seconds:.1f} s, run {result.run_seconds:.1f} s, "
        f"{result.env_steps_per_second:,.0f} env steps/s)"
    )
    print(f"wrote {out}/: metrics.jsonl, metrics.csv, config.json, summary.json, learning_curve.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from rlx.core.config import ConfigError
    from rlx.envs import UnknownEnvironmentError
    from rlx.run.logging import OutputDirError

    try:
        if args.command == "train":
            return train_command(args)
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
    except KeyboardInterrupt:
        print("rlx: interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
