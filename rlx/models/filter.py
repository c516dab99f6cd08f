"""MOREC's transition filter: the rollout's ``transition_fn`` that keeps the most data-consistent
of several candidate next states (Luo et al., ICLR 2024, Sec. 4.2 / Alg. 2; the official code's
``EnsembleDynamics.step``; ``../shared/algorithms.md`` Sec. 4.2).

For every branch (s, a) of a model rollout:

1. every elite e draws ``samples_per_elite`` (2) Gaussian samples y = mu_e + sigma_e * N(0, I)
   of [s' - s, r]: M = K * 2 candidates (s'_m, rhat_m), clipped to +-``clip``;
2. each is scored by the learned dynamics reward r_D,m = r_D(s, a, s'_m)
   (:mod:`rlx.models.dynamics_reward`);
3. one candidate is kept: ``"argmax"`` m* = argmax_m r_D,m (the paper), or ``"softmax"``
   m* ~ Categorical(softmax(r_D / temperature)) (the code's 'softmax_elite', temperature 0.1);
4. the branch ends when r_D,m* < ``terminal_reward`` (0.6; 0 switches the rule off): the
   transition is kept, flagged terminal (no bootstrap through it), and the branch stops.

It plugs into :func:`rlx.models.rollout.rollout` unchanged: the MOPO penalty, the env's
termination rule and the model buffer treat the chosen candidate like any other model step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx.core.config import Config, config_dataclass, static
from rlx.models.dynamics_reward import DynamicsReward, dynamics_reward
from rlx.models.ensemble import Prediction
from rlx.models.rollout import ModelTransition, TransitionFn

SELECTIONS = ("argmax", "softmax")


@config_dataclass
class FilterConfig(Config):
    """How candidates are drawn, chosen and cut (defaults: the official code's)."""

    samples_per_elite: int = static(2, "candidates each elite draws per step (resample_num_in_transition)", low=1)
    selection: str = static("argmax", "which candidate is kept: argmax of r_D, or a softmax draw", choices=SELECTIONS)
    temperature: float = static(0.1, "softmax temperature (selection='softmax')", low=0.0, low_inclusive=False)
    terminal_reward: float = static(0.6, "end the branch when the kept candidate's r_D is below this (0: never)", low=0.0)
    clip: float = static(25.0, "candidates' next state and reward are clipped to +-clip", low=0.0, low_inclusive=False)


def candidates(key, prediction: Prediction, samples_per_elite: int, clip: float):
    """(next_obs (M, B, obs_dim), reward (M, B)) with M = K * samples_per_elite, elite-major."""
    elites = prediction.elites
    mean = jnp.concatenate([prediction.next_obs_mean, prediction.reward_mean[..., None]], axis=-1)[elites]
    std = prediction.std[elites]  # (K, B, obs_dim + 1)
    noise = jax.random.normal(key, (mean.shape[0], samples_per_elite) + mean.shape[1:], mean.dtype)
    y = jnp.clip(mean[:, None] + std[:, None] * noise, -clip, clip)
    y = y.reshape((-1,) + mean.shape[1:])
    return y[..., :-1], y[..., -1]


def select(key, scores, selection: str = "argmax", temperature: float = 0.1) -> jax.Array:
    """Index of the kept candidate per branch from scores (M, B): (B,) int32."""
    if selection == "argmax":
        return jnp.argmax(scores, axis=0).astype(jnp.int32)
    if selection == "softmax":
        return jax.random.categorical(key, scores / temperature, axis=0).astype(jnp.int32)
    raise ValueError(f"selection={selection!r}; allowed: {', '.join(SELECTIONS)}")


def filter_step(key, prediction: Prediction, score_fn, config: FilterConfig):
    """The filter's choice and its diagnostics: (ModelTransition, kept score (B,), all scores (M, B)).

    ``score_fn(obs, action, next_obs) -> (M, B)`` scores the candidates (M leading); MOREC's is
    the dynamics reward (:func:`make_filter`).
    """
    k_cand, k_select = jax.random.split(key)
    next_obs, reward = candidates(k_cand, prediction, config.samples_per_elite, config.clip)
    m = next_obs.shape[0]
    obs = jnp.broadcast_to(prediction.obs, (m,) + prediction.obs.shape)
    action = jnp.broadcast_to(prediction.action, (m,) + prediction.action.shape)
    scores = score_fn(obs, action, next_obs)
    idx = select(k_select, scores, config.selection, config.temperature)
    rows = jnp.arange(idx.shape[0])
    kept = scores[idx, rows]
    terminated = kept < config.terminal_reward if config.terminal_reward > 0 else jnp.zeros(kept.shape, bool)
    return ModelTransition(next_obs=next_obs[idx, rows], reward=reward[idx, rows], terminated=terminated), kept, scores


def make_filter(dr: DynamicsReward, config: FilterConfig | None = None) -> TransitionFn:
    """MOREC's ``transition_fn(key, prediction) -> ModelTransition`` for the rollout slot."""
    config = (config or FilterConfig()).validate()

    def score(obs, action, next_obs):
        return dynamics_reward(dr, obs, action, next_obs)

    def transition_fn(key, prediction: Prediction) -> ModelTransition:
        return filter_step(key, prediction, score, config)[0]

    return transition_fn
