"""Branched model rollouts: h steps of the learned dynamics from many dataset states at once.

MBPO-style short rollouts (MOPO Alg. 2, MOBILE Alg. 1): B start states drawn from the offline
data, each rolled ``horizon`` steps with the current policy in the ensemble, all branches at once
in one ``lax.scan`` with static shapes. A branch that reaches a terminal state stops: its later
steps are still computed but marked invalid (``valid`` is False) and never stored
(:func:`rlx.buffers.add_masked`). A step cut by the horizon is not a termination: its target
bootstraps from the predicted s'.

Two function-valued slots decide what one model step produces, so a new algorithm plugs in
without copying this loop:

* ``transition_fn(key, prediction) -> ModelTransition`` chooses the next state and reward from
  the ensemble's :class:`rlx.models.ensemble.Prediction` (all members' means and stds), and may
  flag extra terminations. The default, :func:`sample_elite`, is MOPO's / MOBILE's: sample every
  member's Gaussian and keep the sample of one elite drawn uniformly per branch. A transition
  filter such as MOREC's draws several candidates, scores them with a learned dynamics reward and
  returns the best (flagging a low-scoring one terminal) -- the same signature.
* ``penalty_fn(prediction, transition) -> (B,)`` is subtracted from the chosen reward before it
  is stored (MOPO's uncertainty penalty, :func:`rlx.agents.mopo.uncertainty_penalty`); None: no
  penalty (MOBILE penalizes at learning time instead).

The environment's own termination rule (or the learned one) is applied to every chosen
transition, OR-ed with the flags of ``transition_fn``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rlx.core.types import Transition
from rlx.models.ensemble import Dynamics, Prediction, is_terminal, predict


class ModelTransition(NamedTuple):
    """One chosen model step per branch."""

    next_obs: jax.Array  # (B, obs_dim)
    reward: jax.Array  # (B,) before any penalty
    terminated: jax.Array  # (B,) bool: ended by the transition function (OR-ed with the env rule)


TransitionFn = Callable[[jax.Array, Prediction], ModelTransition]
PenaltyFn = Callable[[Prediction, ModelTransition], jax.Array]
PolicyFn = Callable[[jax.Array, jax.Array], jax.Array]  # (obs, key) -> action


def sample_elite(key: jax.Array, prediction: Prediction) -> ModelTransition:
    """y ~ N(mu_e, sigma_e^2) of one elite e drawn uniformly per branch (MOPO / MOBILE code).

    Sampling only the chosen member equals sampling all members and then choosing one.
    """
    k_member, k_noise = jax.random.split(key)
    batch = prediction.obs.shape[0]
    member = prediction.elites[jax.random.randint(k_member, (batch,), 0, prediction.elites.shape[0])]
    rows = jnp.arange(batch)
    mean = jnp.concatenate([prediction.next_obs_mean, prediction.reward_mean[..., None]], axis=-1)[member, rows]
    std = prediction.std[member, rows]
    y = mean + std * jax.random.normal(k_noise, mean.shape, mean.dtype)
    return ModelTransition(next_obs=y[:, :-1], reward=y[:, -1], terminated=jnp.zeros((batch,), bool))


def clip_next_obs(transition_fn: TransitionFn, low: jax.Array, high: jax.Array) -> TransitionFn:
    """``transition_fn`` with its next states clipped to [low, high] per dimension.

    With ``low`` / ``high`` the dataset's observation range this keeps model rollouts where the
    critic was trained. Measured on a 10k medium Pendulum dataset (MOPO, lambda = 1, 40k
    gradient steps): without it, rollouts of a policy spinning at full torque drift past the
    data's largest angular velocity, the critic extrapolates there and diverges (Q > +1000 with
    rewards <= 0) and the policy stays spinning (-1590); with it the same seed swings up (-149).
    """

    def clipped(key: jax.Array, prediction: Prediction) -> ModelTransition:
        chosen = transition_fn(key, prediction)
        return chosen._replace(next_obs=jnp.clip(chosen.next_obs, low, high))

    return clipped


class Rollout(NamedTuple):
    """``horizon * B`` model transitions (step-major) and which of them are real steps."""

    transitions: Transition  # leaves (horizon * B, ...); truncated is 0 (the horizon is no end)
    valid: jax.Array  # (horizon * B,) bool: the branch had not terminated before this step
    raw_reward: jax.Array  # (horizon * B,) the reward before the penalty
    penalty: jax.Array  # (horizon * B,)


def rollout(
    key: jax.Array,
    dynamics: Dynamics,
    policy: PolicyFn,
    start_obs: jax.Array,
    horizon: int,
    transition_fn: TransitionFn = sample_elite,
    penalty_fn: PenaltyFn | None = None,
) -> Rollout:
    """Roll every start state ``horizon`` steps in the model with ``policy`` (stochastic).

    Stored reward = chosen reward - ``penalty_fn`` (zero without one); ``terminated`` = env rule
    (or learned) OR the transition function's flag; ``valid`` marks the steps of live branches.
    """
    if horizon < 1:
        raise ValueError(f"rollout horizon must be >= 1, got {horizon}")
    batch = start_obs.shape[0]

    def step(carry, key):
        obs, alive = carry
        k_act, k_model = jax.random.split(key)
        action = policy(obs, k_act)
        prediction = predict(dynamics, obs, action)
        chosen = transition_fn(k_model, prediction)
        terminated = is_terminal(dynamics, prediction, chosen.next_obs) | chosen.terminated
        penalty = jnp.zeros((batch,), jnp.float32) if penalty_fn is None else penalty_fn(prediction, chosen)
        transition = Transition(
            obs=obs,
            action=action,
            reward=chosen.reward - penalty,
            next_obs=chosen.next_obs,
            terminated=terminated.astype(jnp.float32),
            truncated=jnp.zeros((batch,), jnp.float32),
        )
        return (chosen.next_obs, alive & ~terminated), (transition, alive, chosen.reward, penalty)

    alive = jnp.ones((batch,), bool)
    _, (transitions, valid, raw_reward, penalty) = jax.lax.scan(
        step, (start_obs.astype(jnp.float32), alive), jax.random.split(key, horizon)
    )
    flat = jax.tree.map(lambda x: x.reshape((horizon * batch,) + x.shape[2:]), transitions)
    return Rollout(flat, valid.reshape(-1), raw_reward.reshape(-1), penalty.reshape(-1))


def rollout_stats(out: Rollout) -> dict[str, jax.Array]:
    """Means over the valid steps: stored and raw reward, penalty, terminal rate, count."""
    w = out.valid.astype(jnp.float32)
    n = jnp.maximum(jnp.sum(w), 1.0)
    return {
        "model/reward": jnp.sum(w * out.transitions.reward) / n,
        "model/raw_reward": jnp.sum(w * out.raw_reward) / n,
        "model/penalty": jnp.sum(w * out.penalty) / n,
        "model/terminal_rate": jnp.sum(w * out.transitions.terminated) / n,
        "model/valid_transitions": jnp.sum(w),
    }
