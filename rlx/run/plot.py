"""Learning-curve plots (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["curve_marker", "mean_confidence_interval", "plot_learning_curve"]

# Up to this many evaluations a curve's points get markers: a line through one point draws
# nothing, and with a handful of points the reader should see where the evaluations are.
MARKER_MAX_POINTS = 30


def curve_marker(num_points: int) -> str | None:
    """The marker of a curve of ``num_points`` evaluations: dots for few points, none for many."""
    return "o" if num_points <= MARKER_MAX_POINTS else None


def mean_confidence_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds (axis 0) and its two-sided Student-t confidence interval.

    ``mean +- t_{(1 + confidence) / 2, n - 1} * s / sqrt(n)`` with ``s`` the sample standard
    deviation (ddof 1) of the ``n`` seeds: the interval for the expected return of a run of this
    config, under the usual assumption that per-seed returns are roughly normal. With one seed
    there is no interval and both bounds are the mean. NaN entries (a seed without a value at that
    evaluation) are left out of that evaluation's count.

    Returns ``(mean, low, high)``, each of shape ``values.shape[1:]``.
    """
    from scipy import stats

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    values = np.asarray(values, dtype=np.float64)
    count = np.sum(np.isfinite(values), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(values, axis=0) if values.size else np.zeros(values.shape[1:])
        if values.shape[0] < 2:
            return mean, mean.copy(), mean.copy()
        std = np.nanstd(values, axis=0, ddof=1)
        quantile = stats.t.ppf(0.5 + confidence / 2.0, np.maximum(count - 1, 1))
        half = np.where(count > 1, quantile * std / np.sqrt(np.maximum(count, 1)), 0.0)
    return mean, mean - half, mean + half


def plot_learning_curve(
    steps: np.ndarray,
    returns: np.ndarray,
    path: str | Path,
    title: str = "",
    ylabel: str = "evaluation return",
    confidence: float = 0.95,
    xlabel: str = "env steps",
) -> Path:
    """Evaluation return against steps (``xlabel``: "env steps", or "gradient steps" for an
    offline agent): one thin line per seed, the mean over seeds in bold
    and, with several seeds, the shaded ``confidence`` interval of that mean (Student t over
    seeds, :func:`mean_confidence_interval`).

    ``steps`` has shape (num_evals,); ``returns`` (num_seeds, num_evals). With few evaluations
    the points carry markers, so a curve of one evaluation is a dot rather than nothing.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    returns = np.atleast_2d(np.asarray(returns, dtype=np.float64))
    steps = np.asarray(steps)
    num_seeds = returns.shape[0]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    marker = curve_marker(steps.size)
    mean, low, high = mean_confidence_interval(returns, confidence)
    if num_seeds > 1:
        for seed_curve in returns:
            ax.plot(steps, seed_curve, color="tab:blue", alpha=0.25, linewidth=0.8, marker=marker, markersize=2.5)
        ax.fill_between(
            steps, low, high, color="tab:blue", alpha=0.2, linewidth=0,
            label=f"{confidence:.0%} interval of the mean (t, {num_seeds} seeds)",
        )
        # With few seeds the interval is wide (t_{0.975, 1} = 12.7 for two): keep the axes on
        # the curves themselves and let the band run off the plot.
        finite = returns[np.isfinite(returns)]
        if finite.size:
            pad = 0.08 * max(float(finite.max() - finite.min()), 1e-6)
            ax.set_ylim(float(finite.min()) - pad, float(finite.max()) + pad)
    label = f"mean of {num_seeds} seeds" if num_seeds > 1 else "return"
    ax.plot(steps, mean, color="tab:blue", linewidth=2.0, label=label, marker=marker, markersize=4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
