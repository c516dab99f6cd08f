"""Termination rules of the environments whose rule is known, as functions of (s, a, s').

A model rollout asks the environment's own rule whether a predicted transition ends the episode
(MOPO and MOBILE do the same with D4RL's hand-written health checks). The rules below are those
of the environments rlx ships, written from their source on raw (unnormalized) observations:

* ``never``: Pendulum, HalfCheetah (the episode only ends by the time limit);
* ``hopper``: brax hopper is healthy while every entry of the state after the root x and z is
  within +-100, the torso height obs[0] > 0.7 and the torso angle |obs[1]| < 0.2;
* ``walker2d``: brax walker2d is healthy while 0.8 < obs[0] < 2.0 and -1 < obs[1] < 1.

An environment not listed falls back to ``learned``: the ensemble predicts the termination
probability (:mod:`rlx.models.ensemble`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

TerminationFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def never(obs, action, next_obs):
    return jnp.zeros(next_obs.shape[:-1], bool)


def hopper(obs, action, next_obs):
    height, angle = next_obs[..., 0], next_obs[..., 1]
    healthy = (
        jnp.all(jnp.abs(next_obs[..., 1:]) < 100.0, axis=-1) & (height > 0.7) & (jnp.abs(angle) < 0.2)
    )
    return ~healthy


def walker2d(obs, action, next_obs):
    height, angle = next_obs[..., 0], next_obs[..., 1]
    healthy = (height > 0.8) & (height < 2.0) & (angle > -1.0) & (angle < 1.0)
    return ~healthy


RULES: dict[str, TerminationFn] = {"never": never, "hopper": hopper, "walker2d": walker2d}

# Registered env name -> rule. Names not listed use a learned termination.
ENV_RULES: dict[str, str] = {
    "gymnax/Pendulum-v1": "never",
    "gymnax/MountainCarContinuous-v0": "learned",
    "brax/halfcheetah": "never",
    "brax/hopper": "hopper",
    "brax/walker2d": "walker2d",
    "brax/inverted_pendulum": "learned",
}


def rule_for_env(env_name: str | None) -> str:
    """The termination rule of ``env_name`` (``"learned"`` when it is not known)."""
    return ENV_RULES.get(env_name or "", "learned")


def termination_fn(rule: str) -> TerminationFn:
    try:
        return RULES[rule]
    except KeyError:
        raise ValueError(
            f"unknown termination rule {rule!r}; allowed: {', '.join(sorted(RULES))} or 'learned'"
        ) from None
