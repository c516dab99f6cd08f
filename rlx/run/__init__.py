"""The runner: ``make_train`` (one pure compiled program) and the chunked ``run`` driver."""

from rlx.run.driver import RunResult, run, seed_keys, summarize
from rlx.run.train import RunnerState, Schedule, TrainOutput, evaluate, make_train

__all__ = [
    "RunResult",
    "RunnerState",
    "Schedule",
    "TrainOutput",
    "evaluate",
    "make_train",
    "run",
    "seed_keys",
    "summarize",
]
