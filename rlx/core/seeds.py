"""The seeds rlx accepts: the signed 64-bit integers ``jax.random.PRNGKey`` takes.

Checked here without importing JAX, so the command line refuses a bad ``--seed`` at once."""

from __future__ import annotations

SEED_RANGE = (-(2**63), 2**63 - 1)


def seed_problem(seed, name: str = "seed") -> str | None:
    """Why ``seed`` is not a usable seed, or None."""
    if isinstance(seed, bool) or not hasattr(seed, "__index__"):
        return f"{name}={seed!r} must be an integer"
    low, high = SEED_RANGE
    if not low <= int(seed) <= high:
        return f"{name}={seed} is out of range; allowed: {low} <= {name} <= {high} (a 64-bit integer)"
    return None
