"""The non-finite guard: stop a run at the first NaN or infinite metric, naming it.

By default every run checks its reward and return metrics (an env that returns a NaN reward,
a return that overflows); ``rlx train ... --debug-nans`` (``run(debug_nans=True)``) checks every
metric, losses, Q values and temperature included. For the per-operation search of where a NaN
is born, JAX's own ``JAX_DEBUG_NANS=True`` re-runs the offending computation op by op.

The check runs on the host, on the metrics the chunked driver fetches after every chunk anyway,
so it adds no work to the compiled loop and changes no result. It reports the earliest
evaluation block with a NaN or an infinity, the seed, the metric and its value; metrics that
are computed inside the update (losses, Q values, temperature) are named before the evaluation
return, since the evaluation comes after the updates of its block and inherits their NaNs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Metrics that are NaN by design where a count is zero: a block in which no training episode
# ended has no training episode return.
NAN_WHEN_ZERO = {"train/episode_return": "train/episodes"}


@dataclasses.dataclass(frozen=True)
class NonFinite:
    metric: str
    value: float
    evaluation: int  # index of the evaluation block (0-based) in the whole run
    step: int  # env steps per seed at that evaluation
    seed: int  # index of the seed among the run's seeds
    others: tuple[str, ...]  # other metrics non-finite in the same block and seed


def _order(names) -> list[str]:
    update = [n for n in names if n != "step" and not n.startswith("eval/")]
    evaluation = [n for n in names if n.startswith("eval/")]
    return update + evaluation


def is_reward_metric(name: str) -> bool:
    """The metrics every run guards by default: rewards and returns."""
    return name != "step" and ("return" in name or "reward" in name)


def first_non_finite(
    metrics: dict[str, np.ndarray], first_evaluation: int = 0, only: Callable[[str], bool] | None = None
) -> NonFinite | None:
    """The earliest non-finite metric in ``metrics`` (leaves shaped (num_seeds, num_evals));
    ``only`` limits the check to the metrics whose names it accepts."""
    names = _order([n for n in metrics if only is None or only(n)])
    bad = {}
    for name in names:
        values = np.asarray(metrics[name], dtype=np.float64)
        mask = ~np.isfinite(values)
        if name in NAN_WHEN_ZERO and NAN_WHEN_ZERO[name] in metrics:
            mask &= ~(np.isnan(values) & (np.asarray(metrics[NAN_WHEN_ZERO[name]]) == 0))
        if mask.any():
            bad[name] = mask
    if not bad:
        return None
    num_evals = next(iter(bad.values())).shape[1]
    for e in range(num_evals):
        for seed in range(next(iter(bad.values())).shape[0]):
            hits = [name for name in names if name in bad and bad[name][seed, e]]
            if hits:
                first = hits[0]
                return NonFinite(
                    metric=first,
                    value=float(np.asarray(metrics[first])[seed, e]),
                    evaluation=first_evaluation + e,
                    step=int(np.asarray(metrics["step"])[seed, e]) if "step" in metrics else -1,
                    seed=seed,
                    others=tuple(hits[1:]),
                )
    return None  # pragma: no cover  (bad is non-empty)


class NonFiniteMetricError(FloatingPointError):
    """A training metric became NaN or infinite; the run stopped before checkpointing it."""

    def __init__(
        self, found: NonFinite, num_evals: int, checkpoint: Path | None, out_dir: Path | None, every_metric: bool = True,
        *, run_name: str | None = None, rows_file: str = "metrics.jsonl", last_good_use: str | None = None,
    ):
        """``run_name``: which run it was (default ``seed <i>``); ``rows_file``: where its metrics
        rows are, relative to ``out_dir``; ``last_good_use``: what can be done with the last good
        state (default: ``rlx eval <out_dir>`` evaluates it)."""
        self.found = found
        self.checkpoint = checkpoint
        others = f"; also non-finite there: {', '.join(found.others)}" if found.others else ""
        where = (
            f"the latest checkpoint, {checkpoint}, holds the last good state "
            f"({last_good_use or f'rlx eval {out_dir} evaluates it'})"
            if checkpoint is not None
            else "no checkpoint had been written before it"
        )
        rows = f"; its metrics rows are in {out_dir}/{rows_file}" if out_dir is not None else ""
        guard = "--debug-nans" if every_metric else "rewards and returns are always checked; --debug-nans checks every metric"
        super().__init__(
            f"non-finite metric {found.metric} = {found.value} at step {found.step:,} "
            f"(evaluation {found.evaluation + 1} of {num_evals}, {run_name or f'seed {found.seed}'}){others}. "
            f"Training stopped ({guard}) without checkpointing this state: {where}{rows}. "
            "Common causes: a learning rate too high for the reward scale, an exploding temperature, "
            "or a NaN reward or observation from the environment."
        )
