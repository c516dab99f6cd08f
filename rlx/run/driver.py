"""The chunked driver: one compiled step, run a few evaluation blocks at a time, with host I/O
(progress bar, metrics files, plot) in between.

The driver compiles ``train.run_blocks`` once for its chunk length and calls it repeatedly; the
iteration itself never leaves the device. With one seed it runs the same program as
``jax.jit(train)(key)``; with several it runs ``jax.vmap`` over seeds.

Between chunks it also writes checkpoints of the whole runner state (:mod:`rlx.run.checkpoint`),
so a stopped run continues from its latest one (``resume=True`` / :func:`resume_run`) with the
same metrics as if it had never stopped; Ctrl-C finishes the current chunk and saves one first.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rlx import envs as rlx_envs
from rlx.core import contract, memory
from rlx.core.config import check_seed
from rlx.run import checkpoint as ckpt
from rlx.run import logging as runlog
from rlx.run import nan_guard
from rlx.run.mesh import make_data_parallel_train, runs_layout
from rlx.run.plot import plot_learning_curve
from rlx.run.train import RunnerState, Schedule, make_train


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """The keys of seeds 0..num_seeds-1 of a run started with ``seed``: shape (num_seeds, 2)."""
    return jax.random.split(jax.random.PRNGKey(check_seed(seed)), num_seeds)


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
    start_evaluation: int = 0  # evaluations restored from a checkpoint (resume); 0 for a fresh run
    checkpoint: Path | None = None  # the latest checkpoint written or restored
    # Seconds from the start of the run (compile included) to each evaluation, as ``wall_time``
    # in metrics.jsonl: the x axis of return against wall-clock time.
    wall_time: np.ndarray | None = None

    @property
    def steps(self) -> np.ndarray:
        return self.metrics["step"][0]

    @property
    def final_return(self) -> np.ndarray:
        """Last evaluation's mean return, per seed."""
        return self.metrics["eval/return_mean"][:, -1]

    @property
    def steps_per_second(self) -> float:
        """Steps per second over all seeds, in ``step_unit`` (gradient steps for an offline agent)."""
        return self.schedule.total_env_steps * self.metrics["step"].shape[0] / max(self.run_seconds, 1e-9)

    @property
    def env_steps_per_second(self) -> float:
        """:attr:`steps_per_second` (kept under this name; see :attr:`step_unit`)."""
        return self.steps_per_second

    @property
    def step_unit(self) -> str:
        """What the steps count: "env steps", or "gradient steps" for an offline agent."""
        return self.schedule.step_unit


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
    devices: int | None = None,
    data_parallel: bool = False,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 3,
    save_buffer: bool = True,
    resume: bool = False,
    sinks: tuple = (),
    debug_nans: bool = False,
    check_memory: bool = True,
    key: jax.Array | None = None,
) -> RunResult:
    """Train ``agent`` with ``config`` on ``env`` (a registered name or an env object).

    Seeds are ``seed_keys(seed, num_seeds)``, trained together with ``jax.vmap``. With
    ``out_dir``: ``config.json`` first, ``metrics.jsonl`` / ``metrics.csv`` appended after every
    chunk, ``learning_curve.png`` and ``summary.json`` at the end. Everything that can be
    wrong with the inputs is checked before compiling. With several devices visible, the seeds
    are spread over up to ``devices`` of them (runs mode, :mod:`rlx.run.mesh`).
    ``data_parallel=True`` instead trains one agent (``num_seeds=1``) on ``devices`` devices
    (default: all visible): its environments, replay buffer and minibatches are split over them
    and the gradients averaged (:func:`rlx.run.mesh.make_data_parallel_train`).

    Checkpoints (with ``out_dir``, in ``<out_dir>/checkpoints/``): every ``checkpoint_every``
    evaluation blocks (default: about ten per run; 0: none), after the last block, and on
    Ctrl-C, which then raises :class:`rlx.run.checkpoint.TrainingInterrupted` (a
    KeyboardInterrupt); the last ``keep_checkpoints`` are kept; ``save_buffer=False`` leaves the
    replay buffer out (such a checkpoint can be evaluated, not resumed). ``resume=True``
    continues the run in ``out_dir`` from its latest checkpoint: the arguments must describe the
    run its ``config.json`` and checkpoint describe, else nothing is touched and a
    :class:`rlx.run.checkpoint.CheckpointError` says what differs; metrics rows written after
    that checkpoint are dropped and written again.

    ``sinks`` (:mod:`rlx.run.sinks`: TensorBoard, Weights & Biases) receive the metrics rows of
    every chunk as well; on several hosts only the first one feeds them.

    Every chunk's reward and return metrics are checked on the host (between chunks, never
    inside the compiled loop): the first non-finite one stops the run with a
    :class:`NonFiniteMetricError` naming it, its step and seed; no checkpoint is written after
    it, so the latest checkpoint is the last good state. ``debug_nans=True`` checks every
    metric the same way (losses, Q values, temperature). ``check_memory`` (default on) refuses,
    before ``init`` allocates anything, a training state larger than the device's free memory
    (:mod:`rlx.core.memory`).

    ``key``: a PRNG key to train from instead of ``seed`` (one seed: the key itself, as
    ``jax.jit(train)(key)`` would; several: its split), for a run without a run folder.
    """
    if num_seeds < 1:
        raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
    if blocks_per_chunk < 1:
        raise ValueError(f"blocks_per_chunk must be >= 1, got {blocks_per_chunk}")
    if checkpoint_every is not None and checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 (0: no checkpoints), got {checkpoint_every}")
    if keep_checkpoints < 1:
        raise ValueError(f"keep_checkpoints must be >= 1, got {keep_checkpoints}")
    if key is not None and (out_dir is not None or resume):
        raise ValueError("key= trains without a run folder (a run folder records its seed): pass seed= with out_dir")
    env_name, env, env_params = _resolve_env(env, env_params, env_kwargs)
    if data_parallel:
        if num_seeds != 1:
            raise ValueError(
                f"data_parallel trains one agent on all its devices, so num_seeds must be 1 (got {num_seeds}); "
                "without data_parallel the seeds are spread over the devices instead"
            )
        train = make_data_parallel_train(agent, config, env, env_params, devices)  # validates
        layout = train.layout
    else:
        train = make_train(agent, config, env, env_params)  # validates config and env
        layout = runs_layout(num_seeds, devices)
    schedule: Schedule = train.schedule
    if check_memory and not resume:  # before anything is allocated or written
        memory.check_run_fits(getattr(train, "device_train", train), num_seeds, layout.runs_per_device, config)
    # With several hosts (jax.distributed) every host has all metrics; the first one writes them.
    writes = out_dir is not None and jax.process_index() == 0
    agent_name = contract.name_of(agent)
    identity = ckpt.run_identity(agent_name, env_name, env_kwargs, seed, num_seeds, config)
    if key is None:
        keys = seed_keys(seed, num_seeds)
    else:
        keys = key[None] if num_seeds == 1 else jax.random.split(key, num_seeds)
    restored = None
    if resume:
        if out_dir is None:
            raise ValueError("resume=True needs out_dir, the folder of the run to continue")
        if jax.process_count() > 1:
            raise ValueError("resuming a run is supported on one host only")
        restored = ckpt.open_for_resume(out_dir, identity, lambda: ckpt.abstract_runner_state(train, num_seeds, keys))
        out = Path(out_dir)
    else:
        out = runlog.prepare_run_dir(out_dir, overwrite) if writes else None
    if out is not None and not resume:
        runlog.write_json(
            out / "config.json",
            {
                "agent": agent_name,
                "env": env_name,
                "env_kwargs": env_kwargs or {},
                "seed": seed,
                "num_seeds": num_seeds,
                "config": config.to_dict(),
                "schedule": dataclasses.asdict(schedule),
                "versions": runlog.versions(),
                "device": runlog.device_info(),
                "runs_layout": layout.describe(),
                "command": runlog.command_line(),
                **(extra_info or {}),
            },
        )
    start = 0 if restored is None else restored.evaluation
    complete = start >= schedule.num_evals
    wall_times: list[float] = [] if restored is None else [float(w) for w in restored.meta["wall_time"]]
    resume_command = f"rlx train {agent_name} --resume {out}"
    if out is not None and not complete:
        # The files start over with the rows the checkpoint holds; rows written after it are
        # dropped and written again by this run.
        start_rows = runlog.eval_records(restored.metrics, 0, start, wall_times) if start else None
        with ckpt.writing(out / "metrics.jsonl", restored and restored.path, resume_command):
            writer = runlog.MetricsWriter(out, start_rows)
    checkpoints = None
    if out is not None and checkpoint_every != 0 and jax.process_count() == 1 and not complete:
        checkpoints = ckpt.RunCheckpoints(out, keep=keep_checkpoints, save_buffer=save_buffer)
    every = checkpoint_every or ckpt.default_checkpoint_every(schedule.num_evals)
    batched = num_seeds > 1

    def lift(fn):
        return jax.vmap(fn) if batched else fn

    if not complete and (note := schedule.rounding_note(config)) is not None:
        print(f"{env_name}: {note}", flush=True)  # even without a progress bar: never a quiet change
    bar = _progress_bar(
        progress and not complete, schedule.total_env_steps * num_seeds, f"{env_name}",
        "grad step" if schedule.step_unit == "gradient steps" else "step",
    )
    t0 = time.perf_counter()
    if restored is None:
        init_fn = layout.jit(lift(train.init))
        runner_state = init_fn(layout.place(keys) if batched else keys[0])
    else:
        runner_state = layout.place(restored.state) if batched or data_parallel else restored.state
    chunk_fns: dict[int, Any] = {}

    def chunk_fn(n):
        if n not in chunk_fns:
            fn = layout.jit(lift(lambda rs: train.run_blocks(rs, n)), donate_argnums=0)
            chunk_fns[n] = fn.lower(runner_state).compile()
        return chunk_fns[n]

    if bar is not None:
        bar.set_description(f"{env_name} (compiling)")
    if not complete:
        chunk_fn(min(blocks_per_chunk, schedule.num_evals - start))
    jax.block_until_ready(runner_state)
    compile_seconds = time.perf_counter() - t0
    if bar is not None:
        bar.set_description(env_name)
        bar.update((schedule.warmup_env_steps + start * schedule.env_steps_per_eval) * num_seeds)

    chunks: list[dict[str, np.ndarray]] = [] if restored is None else [restored.metrics]
    done = saved = start
    wall_offset = wall_times[-1] if wall_times else 0.0
    earlier = restored.meta if restored is not None else {}
    checkpoint_path = None if restored is None else restored.path
    t_run = time.perf_counter()

    def save_checkpoint(merged):
        meta = {
            **identity,
            "schedule": dataclasses.asdict(schedule),
            "num_evals": schedule.num_evals,
            "env_steps": schedule.warmup_env_steps + done * schedule.env_steps_per_eval,
            "wall_time": wall_times,
            "compile_seconds": earlier.get("compile_seconds", 0.0) + compile_seconds,
            "run_seconds": earlier.get("run_seconds", 0.0) + time.perf_counter() - t_run,
        }
        try:
            return checkpoints.save(done, layout.fetch(runner_state), merged, meta)
        except ckpt.CheckpointSaveError:  # a full disk: the earlier checkpoints are as they were
            checkpoints.close()
            raise

    non_finite = None
    with ckpt.InterruptRequest(enabled=checkpoints is not None) as stop:
        while done < schedule.num_evals and not stop.requested:
            n = min(blocks_per_chunk, schedule.num_evals - done)
            runner_state, metrics = chunk_fn(n)(runner_state)
            metrics = layout.fetch(metrics)
            if not batched:
                metrics = {k: np.asarray(v)[None] for k, v in metrics.items()}
            chunks.append(metrics)
            now = time.perf_counter()
            wall_times += [wall_offset + now - t0] * n
            merged = {k: np.concatenate([c[k] for c in chunks], axis=1) for k in metrics}
            rows = runlog.eval_records(merged, done, done + n, wall_times[done:])
            if out is not None:
                with ckpt.writing(out / "metrics.jsonl", checkpoint_path, resume_command):
                    writer.write(rows)
            for sink in sinks if jax.process_index() == 0 else ():
                sink.write(rows)
            only = None if debug_nans else nan_guard.is_reward_metric
            if (non_finite := nan_guard.first_non_finite(metrics, done, only)) is not None:
                break  # no checkpoint of a non-finite state: the latest one stays the last good one
            done += n
            due = done // every > saved // every or done == schedule.num_evals or stop.requested
            if checkpoints is not None and due:
                checkpoint_path, saved = save_checkpoint(merged), done
            if bar is not None:
                bar.update(n * schedule.env_steps_per_eval * num_seeds)
                last = float(np.mean(metrics["eval/return_mean"][:, -1]))
                sps = ((done - start) * schedule.env_steps_per_eval * num_seeds) / max(now - t_run, 1e-9)
                bar.set_postfix_str(f"eval {last:8.1f} | {sps:,.0f} steps/s")
    run_seconds = time.perf_counter() - t_run
    if bar is not None:
        bar.close()
    if checkpoints is not None:
        checkpoints.close()
    for sink in sinks:
        sink.close()
    if non_finite is not None:
        raise nan_guard.NonFiniteMetricError(non_finite, schedule.num_evals, checkpoint_path, out, every_metric=debug_nans)
    if done < schedule.num_evals:  # Ctrl-C, after a checkpoint of where it stopped
        raise ckpt.TrainingInterrupted(
            out, done, schedule.num_evals, checkpoint_path, f"rlx train {agent_name} --resume {out}"
        )

    all_metrics = {k: np.concatenate([c[k] for c in chunks], axis=1) for k in chunks[0]}
    compile_seconds += earlier.get("compile_seconds", 0.0)
    run_seconds += earlier.get("run_seconds", 0.0)
    result = RunResult(
        all_metrics, layout.unpad(runner_state), schedule, config, out, compile_seconds, run_seconds,
        start_evaluation=start, checkpoint=checkpoint_path, wall_time=np.asarray(wall_times, np.float64),
    )
    if out is not None and not (complete and (out / "summary.json").exists()):
        with ckpt.writing(out / "learning_curve.png", checkpoint_path, resume_command):
            plot_learning_curve(
                result.steps, all_metrics["eval/return_mean"], out / "learning_curve.png",
                title=f"{agent_name} on {env_name}", xlabel=schedule.step_unit,
            )
            runlog.write_json(out / "summary.json", summarize(result))
    return result


def resume_run(run_dir, agent=None, **options) -> RunResult:
    """Continue the run in ``run_dir`` from its latest checkpoint (:func:`run` with ``resume=True``).

    Agent, config, env and seeds come from the run's ``config.json``; ``options`` are
    :func:`run`'s other keyword arguments (``progress``, ``blocks_per_chunk``,
    ``checkpoint_every``, ``keep_checkpoints``, ``save_buffer``, ``devices``). A complete run
    returns its saved result without training (``result.start_evaluation == num_evals``).
    An offline agent is built again from the dataset and dynamics model the run names
    (:func:`rlx.run.checkpoint.bind_inputs`); ``agent`` replaces it.
    """
    spec = ckpt.load_run_spec(run_dir)
    layout = spec.info.get("runs_layout") or {}
    if layout.get("mode") == "data_parallel":  # the saved state has one slice per device
        options.setdefault("data_parallel", True)
        if options.get("devices") is None:
            options["devices"] = layout.get("devices")
    return run(
        ckpt.bind_inputs(spec).agent if agent is None else agent, spec.config, spec.env, env_kwargs=spec.env_kwargs, seed=spec.seed,
        num_seeds=spec.num_seeds, out_dir=spec.run_dir, resume=True, **options,
    )


def summarize(result: RunResult) -> dict[str, Any]:
    final = result.final_return
    return {
        "final_return_mean": float(np.mean(final)),
        "final_return_std_over_seeds": float(np.std(final)),
        "final_return_per_seed": [float(x) for x in final],
        # "env_steps_..." for an online agent, "gradient_steps_..." for an offline one
        f"{result.schedule.unit_key}_per_seed": int(result.schedule.total_env_steps),
        "step_unit": result.schedule.step_unit,
        "num_seeds": int(final.shape[0]),
        "compile_seconds": round(result.compile_seconds, 3),
        "run_seconds": round(result.run_seconds, 3),
        f"{result.schedule.unit_key}_per_second": round(result.steps_per_second, 1),
    }


def _progress_bar(enabled: bool, total: int, desc: str, unit: str = "step"):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True, smoothing=0.1)
