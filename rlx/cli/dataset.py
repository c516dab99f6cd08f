"""``rlx dataset``: collect offline datasets with rlx's own SAC, and describe dataset files.

    rlx dataset collect --env brax/hopper --kind medium --size 1000000 --out data/hopper-medium
    rlx dataset collect --env gymnax/Pendulum-v1 --kind random,medium,medium-replay,expert,medium-expert \\
        --size 100000 --out data/pendulum          # one expert run; each kind in data/pendulum/<kind>/
    rlx dataset info data/hopper-medium            # also a D4RL .hdf5 file or a Minari folder
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

_SKIPPED_FIELDS = ("total_steps",)  # set with --expert-steps


def add_parser(subparsers) -> None:
    """Add ``rlx dataset collect`` and ``rlx dataset info``."""
    from rlx.agents import sac
    from rlx.buffers.dataset import KINDS
    from rlx.cli import _default_text, _flag, seed_type

    dataset = subparsers.add_parser(
        "dataset", help="collect offline datasets (D4RL recipe) and describe dataset files",
        description=__doc__.split("\n\n")[0],
    )
    sub = dataset.add_subparsers(dest="dataset_command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "collect", help="train SAC, then collect random/medium/medium-replay/expert/medium-expert data",
        description="Train the expert SAC once (reproducible from --seed), measure the random and "
        "expert reference returns, and collect each --kind (see rlx.run.collect).",
    )
    p.add_argument("--env", default="gymnax/Pendulum-v1", help="registered env name (default: %(default)s)")
    p.add_argument(
        "--env-kwarg", action="append", default=[], metavar="KEY=VALUE",
        help="environment option, e.g. backend=spring (repeatable)",
    )
    p.add_argument(
        "--kind", required=True, metavar="KIND[,KIND...]",
        help=f"one or several of {', '.join(KINDS)} (several: one expert run, each kind in OUT/<kind>/)",
    )
    p.add_argument("--size", type=float, default=1_000_000, help="transitions per dataset (default: %(default)d; medium-replay: its whole history)")
    p.add_argument("--out", required=True, help="dataset folder (several kinds: their parent folder)")
    p.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out")
    p.add_argument("--seed", type=seed_type, default=0, help="seed of the expert run and of the collection (default: %(default)s)")
    p.add_argument(
        "--expert-steps", type=float, default=None,
        help="env steps of the expert's training (default: per env, e.g. Pendulum 20000, brax 1000000)",
    )
    p.add_argument(
        "--collect-envs", type=int, default=100,
        help="parallel envs of the collection rollouts (default: %(default)s; --num-envs: the expert's training envs)",
    )
    p.add_argument("--reference-episodes", type=int, default=100, help="episodes behind each reference return (default: %(default)s)")
    p.add_argument("--deterministic", action="store_true", help="collect with the deterministic policy tanh(mean) instead of sampling")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    fields = p.add_argument_group("SAC fields of the expert run (see `rlx train sac --help`)")
    for name, default, text, allowed, _ in sac.SACConfig.field_help():
        if name in _SKIPPED_FIELDS:
            continue
        extra = f"; {allowed}" if allowed else ""
        default_text = "about 40 evaluations" if name == "eval_every" else _default_text(default)
        fields.add_argument(_flag(name), dest=f"cfg_{name}", default=None, metavar="V", help=f"{text} (default: {default_text}{extra})")

    info = sub.add_parser("info", help="describe a dataset: rlx folder, D4RL .hdf5 file or Minari folder")
    info.add_argument("path", metavar="PATH")
    info.add_argument("--json", action="store_true", help="print the description as JSON")


def _whole(value: float, flag: str) -> int:
    if value != int(value) or value < 1:
        raise ValueError(f"{flag} must be a positive whole number, got {value:g}")
    return int(value)


def collect_command(args: argparse.Namespace) -> int:
    from rlx.core.parse import parse_env_kwargs
    from rlx.run.collect import collect

    kinds = [k.strip() for k in args.kind.split(",") if k.strip()]
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    results = collect(
        args.env, kinds, _whole(args.size, "--size"), args.out, env_kwargs=parse_env_kwargs(args.env_kwarg),
        seed=args.seed, expert_steps=None if args.expert_steps is None else _whole(args.expert_steps, "--expert-steps"),
        config=overrides, num_envs=args.collect_envs, reference_episodes=args.reference_episodes,
        deterministic=args.deterministic, overwrite=args.overwrite, progress=not args.no_progress,
    )
    first = next(iter(results.values()))[1]
    print(
        f"{first.env}: expert trained {first.expert_steps:,} env steps (seed {first.seed}); reference returns "
        f"random {first.random_return:.1f}, expert {first.expert_return:.1f}; medium at step {first.medium_step:,}"
    )
    out = Path(args.out)
    for kind, (dataset, info) in results.items():
        where = out if len(results) == 1 else out / kind
        print(f"  {kind:<14} {dataset.size:>10,} transitions  policy return {info.policy_return:9.1f}  -> {where}")
    return 0


def _episode_limit(info) -> int | None:
    """The env's episode limit (its time-limit truncation), when the dataset's env is registered."""
    try:
        from rlx import envs as rlx_envs

        env, params = rlx_envs.make(info.env, **(info.env_kwargs or {}))
        return int(rlx_envs.episode_limit(env, params))
    except Exception:  # a D4RL / Minari name, or an env this install lacks: judged from the data
        return None


def describe(path) -> dict:
    """What ``rlx dataset info`` prints: keys, sizes, episodes, returns, metadata.

    Returns and the normalized score are over complete episodes only (:func:`rlx.buffers.dataset.complete_episodes`);
    ``incomplete_episodes`` counts the fragments left out.
    """
    from rlx.buffers.dataset import complete_episodes, episode_returns, normalized_score
    from rlx.buffers.loaders import open_dataset

    dataset, info = open_dataset(path, device=False)
    all_returns = episode_returns(dataset)
    complete, _ = complete_episodes(dataset, _episode_limit(info))
    returns = all_returns[complete]
    out = {
        "path": str(path),
        "size": dataset.size,
        "keys": {k: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v[:1]).dtype)} for k, v in dataset._asdict().items()},
        "terminals": int(np.sum(dataset.terminals)),
        "timeouts": int(np.sum(dataset.timeouts)),
        "episodes": int(all_returns.size),
        "complete_episodes": int(returns.size),
        "incomplete_episodes": int(all_returns.size - returns.size),  # cut by the end of the data
        "episode_return_mean": float(returns.mean()) if returns.size else None,
        "episode_return_std": float(returns.std()) if returns.size else None,
        "info": info.to_dict(),
    }
    if returns.size and info.random_return is not None and info.expert_return is not None:
        out["normalized_score_of_episodes"] = float(normalized_score(returns.mean(), info))
    return out


def info_command(args: argparse.Namespace) -> int:
    report = describe(args.path)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    info = report["info"]
    print(f"{report['path']}: {info['kind']} dataset of {info['env']} ({info['source']}), {report['size']:,} transitions")
    for key, spec in report["keys"].items():
        print(f"  {key:<18} {str(tuple(spec['shape'])):<16} {spec['dtype']}")
    mean = report["episode_return_mean"]
    left_out = report["incomplete_episodes"]
    print(
        f"  episodes {report['episodes']:,} (terminals {report['terminals']:,}, timeouts {report['timeouts']:,})"
        + (f", return {mean:.1f} +- {report['episode_return_std']:.1f}" if mean is not None else "")
        + (f" over {report['complete_episodes']:,} complete episode(s)" if left_out else "")
    )
    if left_out:
        print(
            f"  {left_out:,} episode(s) cut by the end of the data (shorter than the time limit, no "
            "termination) are left out of the return and the score"
        )
    refs = f"random {info['random_return']}, expert {info['expert_return']}"
    score = report.get("normalized_score_of_episodes")
    if score is not None:
        refs += f"; normalized score of its {report['complete_episodes']:,} complete episode(s) {score:.1f}"
    elif mean is None and report["episodes"]:
        refs += "; no complete episode, so no normalized score"
    print(f"  reference returns: {refs}")
    for name in ("seed", "policy_return", "policy_mode", "expert_steps", "medium_step", "rlx_version", "created"):
        if info.get(name) is not None:
            print(f"  {name}: {info[name]}")
    return 0


def dataset_command(args: argparse.Namespace) -> int:
    if args.dataset_command == "collect":
        return collect_command(args)
    return info_command(args)
