"""Fast restarts: compile time of a second identical ``rlx train`` run against the first.

    python benchmarks/compile_cache.py            # SAC (Pendulum), PPO (CartPole), GiGPO (KeyDoor)
    python benchmarks/compile_cache.py --quick    # tiny networks: a smoke run, not a result
    python benchmarks/compile_cache.py --cases sac

Each case runs the same ``rlx train`` command twice, each time as a fresh process (what a rerun
or a resume is), with a new, empty persistent compilation cache folder for the case
(``--compile-cache``): the first run compiles and writes the cache, the second finds its
programs there. Reported per run: the driver's ``compile_seconds`` from ``summary.json`` (from
the start of ``init`` until the training chunk is compiled: init's compile and its warm-up
steps, then the chunk's compile) and the process's whole wall time (imports and training
included). Results: ``<out>/compile_cache-<platform>.md`` / ``.json`` (``-quick`` for a smoke
run), with the machine, its load and the versions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlx.run import logging as runlog

CASES = {
    # Paper-size SAC (256x256, batch 256) on Pendulum; a short run: compile does not depend on it.
    "sac": ["sac", "--env", "gymnax/Pendulum-v1", "--total-steps", "3000", "--eval-every", "1000"],
    "ppo": ["ppo", "--env", "gymnax/CartPole-v1", "--total-steps", "8192", "--eval-every", "4096"],
    "gigpo": ["gigpo", "--env", "rlx/KeyDoor-v0", "--total-steps", "51200", "--eval-every", "25600"],
}
QUICK = {
    "sac": ["--hidden-sizes", "16", "--batch-size", "16", "--learning-starts", "100", "--total-steps", "300",
            "--eval-every", "100", "--eval-episodes", "2"],
    "ppo": ["--hidden-sizes", "8", "--total-steps", "1024", "--eval-every", "512", "--eval-episodes", "2"],
    "gigpo": ["--hidden-sizes", "8", "--total-steps", "12800", "--eval-every", "6400", "--eval-episodes", "2"],
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def one_run(argv: list[str], cache: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "rlx", "train", *argv, "--compile-cache", str(cache), "--out", str(out),
           "--no-progress", "--checkpoint-every", "0"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    return {"compile_seconds": summary["compile_seconds"], "process_seconds": round(wall, 2),
            "run_seconds": summary["run_seconds"], "final_return": summary["final_return_mean"]}


def measure(name: str, argv: list[str], work: Path) -> dict:
    cache = work / f"cache-{name}"
    first = one_run(argv, cache, work / f"{name}-first")
    entries = sorted(p.name for p in cache.iterdir() if p.name.endswith("-cache"))
    size = sum(p.stat().st_size for p in cache.iterdir())
    second = one_run(argv, cache, work / f"{name}-second")
    return {
        "case": name, "command": "rlx train " + " ".join(argv), "first": first, "second": second,
        "compile_speedup": round(first["compile_seconds"] / max(second["compile_seconds"], 1e-9), 2),
        "compile_seconds_saved": round(first["compile_seconds"] - second["compile_seconds"], 2),
        "cache_entries": len(entries), "cache_bytes": size,
        "same_final_return": first["final_return"] == second["final_return"],
    }


def render_markdown(result: dict) -> str:
    m, v = result["machine"], result["versions"]
    quick = " (QUICK smoke run: tiny settings, not a result)" if result["quick"] else ""
    lines = [
        f"# Persistent compilation cache: second identical run vs first{quick}",
        "",
        f"- date: {result['date']}",
        f"- machine: {m.get('cpu_model', m.get('processor'))}, {m['cpu_count']} CPU cores, "
        f"{m['device_count']} x {m['platform']} / {m['device_kind']}; load average at start "
        f"{m.get('load_average_at_start')}, at end {m.get('load_average_at_end')}",
        f"- versions: rlx {v.get('rlx')}, jax {v.get('jax')}, jaxlib {v.get('jaxlib')}, python {v.get('python')}",
        "- each run is a fresh `rlx train` process; the first one starts with an empty cache folder",
        "- compile = the driver's `compile_seconds` (init compiled and run with its warm-up, then the "
        "training chunk compiled); process = the whole command, imports and training included",
        "",
        "| case | compile, first run | compile, second run | speed-up | process, first | process, second "
        "| cache entries | same result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['command']} | {r['first']['compile_seconds']:.2f} s | {r['second']['compile_seconds']:.2f} s | "
            f"{r['compile_speedup']:.1f}x | {r['first']['process_seconds']:.1f} s | {r['second']['process_seconds']:.1f} s "
            f"| {r['cache_entries']} ({r['cache_bytes'] / 2**20:.1f} MiB) | {'yes' if r['same_final_return'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny networks for a smoke run")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    p.add_argument("--out", default="benchmarks/results/", help="folder for the .md and .json results")
    args = p.parse_args(argv)
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    result = {**runlog.benchmark_header("compile_cache", args.quick, argv, {"cases": names}), "rows": []}
    with tempfile.TemporaryDirectory(prefix="rlx-compile-cache-") as tmp:
        for name in names:
            argv_case = CASES[name] + (QUICK[name] if args.quick else [])
            log(f"{name}: first run (empty cache), then the same command again")
            row = measure(name, argv_case, Path(tmp))
            log(f"{name}: compile {row['first']['compile_seconds']:.2f} s -> {row['second']['compile_seconds']:.2f} s")
            result["rows"].append(row)
    if hasattr(os, "getloadavg"):
        result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = render_markdown(result)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"compile_cache-{result['machine']['platform']}{'-quick' if args.quick else ''}"
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out / stem}.md and .json")
    return result


if __name__ == "__main__":
    main()
