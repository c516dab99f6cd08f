"""The runner: ``make_train`` (one pure compiled program) and the chunked ``run`` driver.

Every way of training goes one path: a :class:`rlx.run.compiled.CompiledRun` (layout, init,
chunks compiled once) driven by a :class:`rlx.run.observer.RunObserver` (run folder, metrics,
checkpoints, sinks, NaN guard, Ctrl-C): ``run`` / ``resume_run`` (seeds), ``run_sweep`` /
``resume_sweep`` (points x seeds), and ``rlx.run.memory.dry_run`` (compile only)."""

from rlx.run.checkpoint import CheckpointError, EvalReport, TrainingInterrupted, evaluate_run
from rlx.run.driver import RunResult, resume_run, run, seed_keys, summarize
from rlx.run.mesh import RunsLayout, make_data_parallel_train, runs_layout
from rlx.run.sweep import SweepResult, grid, resume_sweep, run_sweep
from rlx.run.train import RunnerState, Schedule, TrainOutput, evaluate, make_train

__all__ = [
    "CheckpointError",
    "EvalReport",
    "RunResult",
    "RunnerState",
    "RunsLayout",
    "Schedule",
    "SweepResult",
    "TrainOutput",
    "TrainingInterrupted",
    "evaluate",
    "evaluate_run",
    "grid",
    "make_data_parallel_train",
    "make_train",
    "resume_run",
    "resume_sweep",
    "run",
    "run_sweep",
    "runs_layout",
    "seed_keys",
    "summarize",
]
