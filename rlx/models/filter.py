"""MOREC's transition filter: the rollout's ``transition_fn`` that keeps the most data-consistent
of several candidate next states (Luo et al., ICLR 2024, Sec. 4.2 / Alg. 2; the official code's
``EnsembleDynamics.step``; ``../shared/algorithms.md`` Sec. 4.2).

For every branch (s, a) of a model rollout:

1. every elite e draws ``samples_per_elite`` (2) Gaussian samples y = mu_e + sigma_e * N(0, I)
   of [s' - s, r]: M = K * 2 candidates (s'_m, rhat_m), clipped to +-``clip``;
2. each is scored by the learned dynamics reward r_D,m = r_D(s, a, s'_m)
   (:mod:`rlx.models.dynamics_reward`): all M candidates of all branches with all H
   discriminators in one batched evaluation (:func:`rlx.models.dynamics_reward.candidate_rewards`),
   the discriminators' first-layer features of (s, a) computed once per branch, not per candidate;
3. one candidate is kept: ``"argmax"`` m* = argmax_m r_D,m (the paper), or ``"softmax"``
   m* ~ Categorical(softmax(r_D / temperature)) (the code's 'softmax_elite', temperature 0.1);
4. the branch ends when r_D,m* < ``terminal_reward`` (0.6; 0 switches the rule off): the
   transition is kept, flagged terminal (no bootstrap through it), and the branch stops.

It plugs into :func:`rlx.models.rollout.rollout` unchanged: the MOPO penalty, the env's
termination rule and the model buffer treat the chosen candidate like any other model step.

The filter's cost is H x M discriminator evaluations per model step and branch against one
ensemble evaluation without it (MOREC-MOPO's 40 x 10: about 20 times the unfiltered step on a CPU;
``benchmarks/morec_filter_cost.py``, ``docs/algorithms/offline-model-based.md``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx.core.config import Config, config_dataclass, static
from rlx.models.dynamics_reward import CHUNK_BYTES, DynamicsReward, candidate_rewards
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
    y = _candidate_outputs(key, prediction, samples_per_elite, clip)
    return y[..., :-1], y[..., -1]


def _candidate_outputs(key, prediction: Prediction, samples_per_elite: int, clip: float):
    """The candidates as one array [s', r]: (M, B, obs_dim + 1); only the elites' rows are read."""
    elites = prediction.elites
    mean = jnp.concatenate([prediction.next_obs_mean[elites], prediction.reward_mean[elites][..., None]], axis=-1)
    std = jnp.concatenate([prediction.next_obs_std[elites], prediction.reward_std[elites][..., None]], axis=-1)
    noise = jax.random.normal(key, (mean.shape[0], samples_per_elite) + mean.shape[1:], mean.dtype)
    y = jnp.clip(mean[:, None] + std[:, None] * noise, -clip, clip)  # (K, samples, B, obs_dim + 1)
    return y.reshape((-1,) + mean.shape[1:])


def select(key, scores, selection: str = "argmax", temperature: float = 0.1) -> jax.Array:
    """Index of the kept candidate per branch from scores (M, B): (B,) int32."""
    if selection == "argmax":
        return jnp.argmax(scores, axis=0).astype(jnp.int32)
    if selection == "softmax":
        return jax.random.categorical(key, scores / temperature, axis=0).astype(jnp.int32)
    raise ValueError(f"selection={selection!r}; allowed: {', '.join(SELECTIONS)}")


def filter_step(key, prediction: Prediction, score_fn, config: FilterConfig):
    """The filter's choice and its diagnostics: (ModelTransition, kept score (B,), all scores (M, B)).

    ``score_fn(obs (B, obs_dim), action (B, act_dim), next_obs (M, B, obs_dim)) -> (M, B)`` scores
    all M candidates of every branch in one call; (s, a) is passed once per branch, not broadcast
    to the candidates, so a scorer computes what depends on it once. MOREC's is the dynamics
    reward (:func:`make_filter`).
    """
    k_cand, k_select = jax.random.split(key)
    y = _candidate_outputs(k_cand, prediction, config.samples_per_elite, config.clip)  # (M, B, obs_dim + 1)
    scores = score_fn(prediction.obs, prediction.action, y[..., :-1])
    idx = select(k_select, scores, config.selection, config.temperature)
    rows = jnp.arange(idx.shape[0])
    kept = scores[idx, rows]
    chosen = y[idx, rows]  # one gather for next state and reward
    terminated = kept < config.terminal_reward if config.terminal_reward > 0 else jnp.zeros(kept.shape, bool)
    return ModelTransition(next_obs=chosen[:, :-1], reward=chosen[:, -1], terminated=terminated), kept, scores


def make_filter(dr: DynamicsReward, config: FilterConfig | None = None, *, chunk_bytes: int = CHUNK_BYTES) -> TransitionFn:
    """MOREC's ``transition_fn(key, prediction) -> ModelTransition`` for the rollout slot.

    The candidates are scored by :func:`rlx.models.dynamics_reward.candidate_rewards`: every
    candidate and every discriminator in one batched evaluation, the discriminators' (s, a)
    features once per branch (branches in chunks when the activations exceed ``chunk_bytes``).
    """
    config = (config or FilterConfig()).validate()

    def score(obs, action, next_obs):
        return candidate_rewards(dr, obs, action, next_obs, chunk_bytes=chunk_bytes)

    def transition_fn(key, prediction: Prediction) -> ModelTransition:
        return filter_step(key, prediction, score, config)[0]

    return transition_fn
