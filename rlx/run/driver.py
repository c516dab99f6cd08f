"""The chunked driver: one compiled step, run a few evaluation blocks at a time, with host I/O
(progress bar, metrics files, plot) in between.

The driver compiles ``train.run_blocks`` once for its chunk length and calls it repeatedly; the
iteration itself never leaves the device. With one seed it runs the same program as
``jax.jit(train)(key)``; with several it runs ``jax.vmap`` over seeds.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rlx import envs as rlx_envs
from rlx.run import logging as runlog
from rlx.run.plot import plot_learning_curve
from rlx.run.train import RunnerState, Schedule, make_train


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """The keys of seeds 0..num_seeds-1 of a run started with ``seed``: shape (num_seeds, 2)."""
    return jax.random.split(jax.random.PRNGKey(seed), num_seeds)


@dataclasses.dataclass
class RunResult:
    """What :func:`run` returns. ``metrics`` leaves have shape (num_seeds, num_evals)."""

    metrics: dict[str, np.ndarray]
    state: RunnerState  # leading seed axis when num_seeds > 1
    schedule: Schedule
    config: Any
    out_dir: Path | None
    compile_seconds: float
    run_seconds: float

    @property
    def steps(self) -> np.ndarray:
        return self.metrics["step"][0]

    @property
    def final_return(self) -> np.ndarray:
        """Last evaluation's mean return, per seed."""
        return self.metrics["eval/return_mean"][:, -1]

    @property
    def env_steps_per_second(self) -> float:
        return self.schedule.total_env_steps * self.metrics["step"].shape[0] / max(self.run_seconds, 1e-9)


def _resolve_env(env, env_params, env_kwargs):
    if isinstance(env, str):
        name = env
        env, default_params = rlx_envs.make(name, **(env_kwargs or {}))
        return name, env, env_params if env_params is not None else default_params
    if env_params is None:
        env_params = env.default_params
    return getattr(env, "name", type(env).__name__), env, env_params


def run(
    agent,
    config,
    env,
    env_params=None,
    *,
    env_kwargs: dict | None = None,
    seed: int = 0,
    num_seeds: int = 1,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    blocks_per_chunk: int = 1,
    extra_info: dict | None = None,
) -> RunResult:
    """Train ``agent`` with ``config`` on ``env`` (a registered name or an env object).

    Seeds are ``seed_keys(seed, num_seeds)``, trained together with ``jax.vmap``. With
    ``out_dir``: ``config.json`` first, ``metrics.jsonl`` / ``metrics.csv`` appended after every
    chunk, ``learning_curve.png`` and ``summary.json`` at the end. Everything that can be
    wrong with the inputs is checked before compiling.
    """
    if num_seeds < 1:
        raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
    if blocks_per_chunk < 1:
        raise ValueError(f"blocks_per_chunk must be >= 1, got {blocks_per_chunk}")
    env_name, env, env_params = _resolve_env(env, env_params, env_kwargs)
    train = make_train(agent, config, env, env_params)  # validates config and env
    schedule: Schedule = train.schedule
    out = runlog.prepare_out_dir(out_dir, overwrite) if out_dir is not None else None
    if out is not None:
        runlog.write_json(
            out / "config.json",
            {
                "agent": getattr(agent, "NAME", getattr(agent, "__name__", str(agent))),
                "env": env_name,
                "env_kwargs": env_kwargs or {},
                "seed": seed,
                "num_seeds": num_seeds,
                "config": config.to_dict(),
                "schedule": dataclasses.asdict(schedule),
                "versions": runlog.versions(),
                "device": runlog.device_info(),
                "command": runlog.command_line(),
                **(extra_info or {}),
            },
        )
        writer = runlog.MetricsWriter(out)

    keys = seed_keys(seed, num_seeds)
    batched = num_seeds > 1

    def lift(fn):
        return jax.vmap(fn) if batched else fn

    bar = _progress_bar(progress, schedule.total_env_steps * num_seeds, f"{env_name}")
    t0 = time.perf_counter()
    init_fn = jax.jit(lift(train.init))
    runner_state = init_fn(keys if batched else keys[0])
    chunk_fns: dict[int, Any] = {}

    def chunk_fn(n):
        if n not in chunk_fns:
            fn = jax.jit(lift(lambda rs: train.run_blocks(rs, n)), donate_argnums=0)
            chunk_fns[n] = fn.lower(runner_state).compile()
        return chunk_fns[n]

    if bar is not None:
        bar.set_description(f"{env_name} (compiling)")
    chunk_fn(min(blocks_per_chunk, schedule.num_evals))
    jax.block_until_ready(runner_state)
    compile_seconds = time.perf_counter() - t0
    if bar is not None:
        bar.set_description(env_name)
        bar.update(schedule.warmup_env_steps * num_seeds)

    chunks: list[dict[str, np.ndarray]] = []
    done = 0
    t_run = time.perf_counter()
    while done < schedule.num_evals:
        n = min(blocks_per_chunk, schedule.num_evals - done)
        runner_state, metrics = chunk_fn(n)(runner_state)
        metrics = jax.device_get(metrics)
        if not batched:
            metrics = {k: np.asarray(v)[None] for k, v in metrics.items()}
        chunks.append(metrics)
        now = time.perf_counter()
        if out is not None:
            merged = {k: np.concatenate([c[k] for c in chunks], axis=1) for k in metrics}
            writer.write(runlog.eval_records(merged, done, done + n, [now - t0] * n))
        done += n
        if bar is not None:
            bar.update(n * schedule.env_steps_per_eval * num_seeds)
            last = float(np.mean(metrics["eval/return_mean"][:, -1]))
            sps = (done * schedule.env_steps_per_eval * num_seeds) / max(now - t_run, 1e-9)
            bar.set_postfix_str(f"eval {last:8.1f} | {sps:,.0f} steps/s")
    run_seconds = time.perf_counter() - t_run
    if bar is not None:
        bar.close()

    all_metrics = {k: np.concatenate([c[k] for c in chunks], axis=1) for k in chunks[0]}
    result = RunResult(all_metrics, runner_state, schedule, config, out, compile_seconds, run_seconds)
    if out is not None:
        plot_learning_curve(
            result.steps, all_metrics["eval/return_mean"], out / "learning_curve.png",
            title=f"{getattr(agent, 'NAME', '')} on {env_name}".strip(),
        )
        runlog.write_json(out / "summary.json", summarize(result))
    return result


def summarize(result: RunResult) -> dict[str, Any]:
    final = result.final_return
    return {
        "final_return_mean": float(np.mean(final)),
        "final_return_std_over_seeds": float(np.std(final)),
        "final_return_per_seed": [float(x) for x in final],
        "env_steps_per_seed": int(result.schedule.total_env_steps),
        "num_seeds": int(final.shape[0]),
        "compile_seconds": round(result.compile_seconds, 3),
        "run_seconds": round(result.run_seconds, 3),
        "env_steps_per_second": round(result.env_steps_per_second, 1),
    }


def _progress_bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", unit_scale=True, dynamic_ncols=True, smoothing=0.1)


def stack_seeds(outputs) -> dict[str, jnp.ndarray]:
    """Stack the metrics of separate single-seed outputs along a new leading seed axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *[o.metrics for o in outputs])
