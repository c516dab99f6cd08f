"""The chunked driver: ``run`` trains one config's seeds, a few evaluation blocks at a time, with
host I/O (progress bar, metrics files, checkpoints, plot) in between.

The training program is a :class:`rlx.run.compiled.CompiledRun`: ``train.run_blocks`` compiled
once for the chunk length and called repeatedly; the iteration itself never leaves the device.
With one seed it runs the same program as ``jax.jit(train)(key)``; with several it runs
``jax.vmap`` over seeds. The host work between chunks is a :class:`rlx.run.observer.RunObserver`'s:
metrics files, sinks, NaN guard and checkpoints of the whole runner state
(:mod:`rlx.run.checkpoint`), so a stopped run continues from its latest one (``resume=True`` /
:func:`resume_run`) with the same metrics as if it had never stopped; Ctrl-C finishes the current
chunk and saves one first. :func:`rlx.run.run_sweep` trains points x seeds the same way.
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
from rlx.run.compiled import CompiledRun
from rlx.run.mesh import make_data_parallel_train, runs_layout
from rlx.run.observer import RunObserver, progress_bar, start_folder
from rlx.run.plot import plot_learning_curve
from rlx.run.train import RunnerState, Schedule, make_train


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """The keys of seeds 0..num_seeds-1 of a run started with ``seed``: shape (num_seeds, 2)."""
    return jax.random.split(jax.random.PRNGKey(check_seed(seed)), num_seeds)


def _is_key_batch(key) -> bool:
    """A stack of keys (typed: shape (n,); raw uint32: shape (n, 2)) rather than one key."""
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    return key.ndim == (1 if typed else 2)


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
    ``jax.jit(train)(key)`` would; several: its split), for a run without a run folder. With
    ``num_seeds > 1`` it may also be the seeds' own keys, stacked on a leading axis of length
    ``num_seeds``: ``key=seed_keys(0, 5)[2:]`` with ``num_seeds=3`` trains seeds 2, 3 and 4 of
    ``seed=0, num_seeds=5`` (``seed_keys`` of more seeds starts with those of fewer), so a
    comparison can gain seeds later without training the first ones again.
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
    per_seed_keys = key is not None and num_seeds > 1 and _is_key_batch(key)
    if per_seed_keys and key.shape[0] != num_seeds:
        raise ValueError(
            f"key holds {key.shape[0]} per-seed keys but num_seeds={num_seeds}: pass one key "
            "(its split seeds the runs) or exactly num_seeds stacked keys"
        )
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
    compiled = CompiledRun.of_train(train, layout, num_seeds, data_parallel=data_parallel)
    agent_name = contract.name_of(agent)
    identity = ckpt.run_identity(agent_name, env_name, env_kwargs, seed, num_seeds, config)
    if key is None:
        keys = seed_keys(seed, num_seeds)
    else:
        keys = key[None] if num_seeds == 1 else key if per_seed_keys else jax.random.split(key, num_seeds)
    inputs = keys if num_seeds > 1 else keys[0]
    restored = None
    if resume:
        if out_dir is None:
            raise ValueError("resume=True needs out_dir, the folder of the run to continue")
        if jax.process_count() > 1:
            raise ValueError("resuming a run is supported on one host only")
        restored = ckpt.open_for_resume(out_dir, identity, lambda: compiled.abstract_state(inputs))
        out = Path(out_dir)
    elif out_dir is not None and jax.process_index() == 0:  # with several hosts the first one writes
        out = start_folder(out_dir, overwrite, {"config.json": {
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
        }})
    else:
        out = None
    complete = restored is not None and restored.evaluation >= schedule.num_evals
    if not complete and (note := schedule.rounding_note(config)) is not None:
        print(f"{env_name}: {note}", flush=True)  # even without a progress bar: never a quiet change
    observer = RunObserver(
        out, schedule, num_runs=num_seeds, identity=identity, resume_command=f"rlx train {agent_name} --resume {out}",
        restored=restored, checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints,
        save_buffer=save_buffer, sinks=sinks, debug_nans=debug_nans,
        bar=progress_bar(
            progress and not complete, schedule.total_env_steps * num_seeds, f"{env_name}",
            "grad step" if schedule.step_unit == "gradient steps" else "step",
        ),
        description=env_name, postfix=lambda m: f"eval {float(np.mean(m['eval/return_mean'][:, -1])):8.1f}",
    )
    t0 = time.perf_counter()
    state = compiled.init(inputs) if restored is None else compiled.restore(restored.state)
    done = observer.train(compiled, state, blocks_per_chunk, t0)
    result = RunResult(
        done.metrics, compiled.unpad(done.state), schedule, config, out, done.compile_seconds, done.run_seconds,
        start_evaluation=done.start, checkpoint=done.checkpoint, wall_time=done.wall_time,
    )
    if out is not None and not (complete and (out / "summary.json").exists()):
        with observer.finishing(out / "learning_curve.png"):
            plot_learning_curve(
                result.steps, done.metrics["eval/return_mean"], out / "learning_curve.png",
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
