"""Learning-curve plots (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_learning_curve(
    steps: np.ndarray,
    returns: np.ndarray,
    path: str | Path,
    title: str = "",
    ylabel: str = "evaluation return",
) -> Path:
    """Evaluation return against env steps: one thin line per seed, the mean over seeds in bold
    and, with several seeds, a band of +- one standard deviation over seeds.

    ``steps`` has shape (num_evals,); ``returns`` (num_seeds, num_evals).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    returns = np.atleast_2d(np.asarray(returns, dtype=np.float64))
    steps = np.asarray(steps)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    mean = returns.mean(axis=0)
    if returns.shape[0] > 1:
        for seed_curve in returns:
            ax.plot(steps, seed_curve, color="tab:blue", alpha=0.25, linewidth=0.8)
        std = returns.std(axis=0)
        ax.fill_between(steps, mean - std, mean + std, color="tab:blue", alpha=0.15, linewidth=0)
    label = f"mean of {returns.shape[0]} seeds" if returns.shape[0] > 1 else "return"
    ax.plot(steps, mean, color="tab:blue", linewidth=2.0, label=label)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
