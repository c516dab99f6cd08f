"""``rlx report RUN_DIR ...``: aggregate runs and seeds (:mod:`rlx.run.report`)."""

from __future__ import annotations

import argparse

from rlx.run.report import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    aggregate,
    default_out,
    write_report,
)
from rlx.run.report import __doc__ as _REPORT_DOC


def _parse_normalize(items: list[str]) -> dict[str, tuple[float, float]]:
    out = {}
    for item in items:
        env, sep, text = item.rpartition("=")
        parts = text.split(",")
        try:
            lo, hi = (float(v) for v in parts)
        except ValueError:
            raise ValueError(f"--normalize expects ENV=LOW,HIGH (e.g. gymnax/Pendulum-v1=-1500,-150), got {item!r}") from None
        if not sep or not env:
            raise ValueError(f"--normalize expects ENV=LOW,HIGH, got {item!r}")
        if not hi > lo:
            raise ValueError(f"--normalize {item}: LOW must be < HIGH")
        out[env] = (lo, hi)
    return out


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="aggregate runs and seeds: interquartile mean and bootstrap confidence intervals",
        description=_REPORT_DOC.split("\n\n")[0].replace("``", ""),
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders, or folders containing them (sweeps)")
    p.add_argument(
        "--out", default=None,
        help="folder for report.md, report.csv, report.png (default: report/ inside the first RUN_DIR)",
    )
    p.add_argument("--last", type=int, default=1, metavar="K", help="score = mean of the last K evaluations (default: %(default)s)")
    p.add_argument(
        "--normalize", action="append", default=[], metavar="ENV=LOW,HIGH",
        help="normalized score (x - LOW) / (HIGH - LOW) for ENV in the aggregate across tasks (repeatable)",
    )
    p.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE, help="interval level (default: %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="bootstrap seed (default: %(default)s)")


def report_command(args: argparse.Namespace) -> int:
    report = aggregate(
        args.run_dirs, last=args.last, normalization=_parse_normalize(args.normalize),
        resamples=args.resamples, confidence=args.confidence, seed=args.seed,
    )
    paths = write_report(report, args.out if args.out is not None else default_out(args.run_dirs))
    print(report.markdown(), end="")
    print(f"wrote {paths['md']}, {paths['csv']}, {paths['png']}")
    return 0
