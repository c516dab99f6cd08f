"""DSAC-T: Distributional Soft Actor-Critic with Three Refinements (Duan et al., IEEE TPAMI
2025, arXiv 2310.05858; also called DSAC-v2).

DSAC-T is SAC with a Gaussian return distribution Z(s, a) ~ N(mu(s, a), sigma(s, a)^2) per
critic. This module adds only what DSAC-T changes; the actor, temperature loss, Polyak update
and the off-policy loop are SAC's (:mod:`rlx.agents.sac`, :mod:`rlx.agents.off_policy`).

The three refinements (``../shared/algorithms.md`` section 2, equations as the official code
implements them):

1. expected value substitution: the mean mu is regressed on the *expected* target
   y_q = r + gamma (1 - term) (mu'_k - alpha log pi'), the std sigma on the *sampled* target
   y_z = r + gamma (1 - term) (z' - alpha log pi'), z' ~ N(mu'_k, sigma'_k^2);
2. twin value distribution learning: two critics; per sample the twin with the smaller target
   mean, k = argmin_j mu'_j, supplies both targets, and the actor maximises min_j mu_j - alpha
   log pi;
3. variance-based critic gradient adjustment: b_j, a moving average of critic j's batch-mean
   sigma, weights critic j's gradient by (b_j^2 + eps) and clips the sampled target to
   mu_j +- xi b_j.

Update order (official code): every gradient step computes all gradients from the pre-update
networks; the critics step every time; the actor, the temperature and the Polyak update of the
target critics *and the target policy* happen every ``delay_update``-th step. The next action a'
is sampled from the target policy (``target_policy=True``, as the code does; ``False`` uses the
online policy, as in SAC).

Termination stops bootstrapping; time-limit truncation does not (the code's sampler does the
same by forcing ``done = False`` on truncation).
"""

from __future__ import annotations

import math
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from rlx.agents import off_policy, sac
from rlx.agents.off_policy import observation_stats  # noqa: F401  (agent contract)
from rlx.agents.sac import continuous_action_check, make_policy  # noqa: F401  (agent contract, as SAC's)
from rlx.core import parallel
from rlx.core.config import config_dataclass, static, tunable
from rlx.core.distributions import sample_tanh_gaussian
from rlx.core.networks import MLP, Ensemble
from rlx.core.types import Transition

NAME = "dsac_t"
check_env = continuous_action_check(NAME)
DATA_PARALLEL = True  # rlx.run.mesh.make_data_parallel_train: gradients averaged over devices


# ---------------------------------------------------------------------------------------------
# Configuration: the official code's defaults, except the env-steps-per-update ratio
# ---------------------------------------------------------------------------------------------
@config_dataclass
class DSACTConfig(sac.SACConfig):
    hidden_sizes: tuple[int, ...] = static(
        (256, 256, 256), "hidden layer widths of actor and critics",
        check=lambda v: None if len(v) > 0 and all(int(w) >= 1 for w in v) else "need >= 1 positive width",
    )
    activation: str = static("gelu", "hidden activation", choices=("relu", "tanh", "gelu", "silu", "elu"))
    log_std_max: float = static(0.5, "upper clip of the policy's log standard deviation")
    warmup_actions: str = static(
        "policy", "warm-up actions: uniform in [-1, 1] or sampled from the initial policy",
        choices=("uniform", "policy"),
    )
    delay_update: int = static(2, "actor, temperature and target updates every this many gradient steps", low=1)
    target_policy: bool = static(
        True, "sample a' from a Polyak-averaged target policy (official code) instead of the online one",
        choices=(False, True),
    )
    actor_lr: float = tunable(1e-4, "actor learning rate (Adam)", low=0.0, low_inclusive=False)
    critic_lr: float = tunable(1e-4, "critic learning rate (Adam)", low=0.0, low_inclusive=False)
    init_alpha: float = tunable(math.e, "initial temperature (log alpha = 1)", low=0.0, low_inclusive=False)
    xi: float = tunable(3.0, "clipping boundary of the sampled target, in units of b", low=0.0, low_inclusive=False)
    critic_eps: float = tunable(0.1, "epsilon in the gradient weights b^2 + eps and the denominators", low=0.0, low_inclusive=False)
    tau_b: float = tunable(0.005, "moving-average rate of b, the critics' mean std", low=0.0, high=1.0, low_inclusive=False)
    noise_clip: float = tunable(3.0, "clip of the standard normal draw of the sampled return", low=0.0, low_inclusive=False)


Config = DSACTConfig

PRESETS = {
    "paper": {
        "_doc": "the official code's sampling: 20 env steps (20 envs) per gradient step, 10,000 warm-up steps",
        "num_envs": 20,
        "learning_starts": 10_000,
    },
    "parallel": sac.PRESETS["parallel"],  # SAC's: many envs, large batches (rlx.agents.sac)
}


# ---------------------------------------------------------------------------------------------
# Networks: the actor is SAC's; each critic outputs (mu, sigma) with sigma = softplus(.)
# ---------------------------------------------------------------------------------------------
class GaussianQNetwork(nn.Module):
    """Z(s, a) ~ N(mu, sigma^2): an MLP on (s, a) with a mean head and a softplus std head."""

    hidden_sizes: tuple[int, ...]
    activation: str = "gelu"

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs.reshape(obs.shape[:-1] + (-1,)), action], axis=-1)
        out = MLP(self.hidden_sizes, 2, self.activation)(x)
        return out[..., 0], jax.nn.softplus(out[..., 1])


def twin_distributional_critic(config: DSACTConfig) -> nn.Module:
    """Two critics as one ensemble: (mu, sigma), each of shape (2, batch)."""
    return Ensemble(GaussianQNetwork, 2, {"hidden_sizes": tuple(config.hidden_sizes), "activation": config.activation})


@struct.dataclass
class DSACTLearner:
    actor_params: Any
    target_actor_params: Any
    critic_params: Any
    target_critic_params: Any
    log_alpha: jax.Array
    critic_std_avg: jax.Array  # b_j, shape (2,)
    actor_opt_state: Any
    critic_opt_state: Any
    alpha_opt_state: Any
    action_dim: int = struct.field(pytree_node=False)  # |A|, static: it shapes the actor (sac.act)


# ---------------------------------------------------------------------------------------------
# Targets (refinements 1 and 2)
# ---------------------------------------------------------------------------------------------
def twin_targets(reward, terminated, next_mu, next_sigma, next_log_prob, noise, alpha, gamma):
    """Expected and sampled targets from the twin with the smaller mean (per sample).

    ``next_mu``, ``next_sigma``, ``noise``: (2, B), target critics at (s', a') and one clipped
    standard-normal draw per twin. Returns (y_q, y_z), each (B,):

        k   = argmin_j mu'_j,   z' = mu'_k + noise_k sigma'_k
        y_q = r + gamma (1 - term) (mu'_k - alpha log pi(a'|s'))
        y_z = r + gamma (1 - term) (z'    - alpha log pi(a'|s'))
    """
    chex.assert_rank([reward, next_mu], [1, 2])
    chex.assert_equal_shape([reward, terminated, next_log_prob, next_mu[0]])
    chex.assert_equal_shape([next_mu, next_sigma, noise])
    k = jnp.argmin(next_mu, axis=0)
    pick = lambda x: jnp.take_along_axis(x, k[None], axis=0)[0]  # noqa: E731
    mu_k = pick(next_mu)
    z_k = mu_k + pick(noise) * pick(next_sigma)
    bootstrap = gamma * (1.0 - terminated)
    return reward + bootstrap * (mu_k - alpha * next_log_prob), reward + bootstrap * (z_k - alpha * next_log_prob)


# ---------------------------------------------------------------------------------------------
# Critic loss with variance-based gradient adjustment (refinement 3)
# ---------------------------------------------------------------------------------------------
def update_std_average(b, sigma, first, tau_b):
    """b_j <- E_B[sg(sigma_j)] on the first update, else (1 - tau_b) b_j + tau_b E_B[sg(sigma_j)]."""
    batch_mean = parallel.mean(jnp.mean(jax.lax.stop_gradient(sigma), axis=-1))  # over the global batch
    return jnp.where(first, batch_mean, (1.0 - tau_b) * b + tau_b * batch_mean)


def clipped_sampled_target(mu, y_z, b, xi):
    """yhat_z,j = sg(mu_j) + clip(y_z - sg(mu_j), -xi b_j, xi b_j)."""
    mu_sg = jax.lax.stop_gradient(mu)
    bound = xi * b[:, None]
    return mu_sg + jnp.clip(y_z[None] - mu_sg, -bound, bound)


def adjusted_critic_loss(mu, sigma, y_q, yhat_z, b, eps):
    """Surrogate whose gradient is DSAC-T's adjusted critic gradient (summed over the twins):

        dL_j/dmu_j    = -(b_j^2 + eps) (y_q - mu_j) / (sigma_j^2 + eps) / |B|
        dL_j/dsigma_j = -(b_j^2 + eps) ((mu_j - yhat_z,j)^2 - sigma_j^2) / (sigma_j^3 + eps) / |B|

    The mean follows the expected target, the std the clipped spread of sampled returns; the
    (b^2 + eps) / (sigma^2 + eps) ratio keeps the step size independent of the reward scale.
    ``mu``, ``sigma``, ``yhat_z``: (2, B); ``y_q``: (B,); ``b``: (2,).
    """
    chex.assert_equal_shape([mu, sigma, yhat_z])
    chex.assert_shape([y_q, b], [mu.shape[1:], mu.shape[:1]])
    sg = jax.lax.stop_gradient
    mu_sg, sigma_sg = sg(mu), sg(sigma)
    mean_grad = sg((y_q[None] - mu) / (sigma_sg**2 + eps))
    std_grad = sg(((mu_sg - yhat_z) ** 2 - sigma_sg**2) / (sigma_sg**3 + eps))
    per_twin = jnp.mean(-mean_grad * mu - std_grad * sigma, axis=-1)
    return jnp.sum(sg(b**2 + eps) * per_twin)


# ---------------------------------------------------------------------------------------------
# One gradient step (all gradients from the pre-update networks, then delayed steps)
# ---------------------------------------------------------------------------------------------
def gradient_step(config: DSACTConfig, action_dim: int, state: DSACTLearner, batch: Transition, key, step):
    actor = sac.build_actor(config, action_dim)
    critic = twin_distributional_critic(config)
    actor_opt, critic_opt, alpha_opt = sac.optimizers(config)
    k_next, k_noise, k_pi = jax.random.split(key, 3)
    alpha = jnp.exp(jax.lax.stop_gradient(state.log_alpha))
    sg = jax.lax.stop_gradient

    # Targets: a' from the target (or online) policy, twin with the smaller mean.
    next_actor_params = state.target_actor_params if config.target_policy else state.actor_params
    next_mean, next_log_std = actor.apply(next_actor_params, batch.next_obs)
    next_action, next_log_prob = sample_tanh_gaussian(k_next, next_mean, next_log_std)
    next_mu, next_sigma = critic.apply(state.target_critic_params, batch.next_obs, next_action)
    noise = jnp.clip(jax.random.normal(k_noise, next_mu.shape), -config.noise_clip, config.noise_clip)
    y_q, y_z = twin_targets(
        config.reward_scale * batch.reward, batch.terminated, next_mu, next_sigma,
        next_log_prob, noise, alpha, config.gamma,
    )
    y_q, y_z = sg(y_q), sg(y_z)

    # Refinement 3: the std average first, then the clipped target and the weighted loss.
    mu0, sigma0 = critic.apply(state.critic_params, batch.obs, batch.action)
    b = update_std_average(state.critic_std_avg, sigma0, step == 0, config.tau_b)

    def critic_loss(params):
        mu, sigma = critic.apply(params, batch.obs, batch.action)
        yhat_z = clipped_sampled_target(mu, y_z, b, config.xi)
        return adjusted_critic_loss(mu, sigma, y_q, yhat_z, b, config.critic_eps), (mu, sigma)

    (c_loss, (mu, sigma)), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(state.critic_params)

    # Actor and temperature from the pre-update critics' means.
    def mean_q(obs, action):
        return critic.apply(state.critic_params, obs, action)[0]

    (a_loss, log_prob), a_grads = jax.value_and_grad(sac.actor_loss, has_aux=True)(
        state.actor_params, actor, mean_q, batch.obs, alpha, k_pi
    )
    t_loss, t_grad = jax.value_and_grad(sac.alpha_loss)(
        state.log_alpha, log_prob, -config.target_entropy_scale * action_dim
    )

    # Critics step every time.
    c_updates, critic_opt_state = critic_opt.update(c_grads, state.critic_opt_state, state.critic_params)
    critic_params = optax.apply_updates(state.critic_params, c_updates)

    # Actor, temperature and targets every delay_update-th step (others are discarded).
    a_updates, actor_opt_state = actor_opt.update(a_grads, state.actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, a_updates)
    if config.learn_alpha:
        t_update, alpha_opt_state = alpha_opt.update(t_grad, state.alpha_opt_state, state.log_alpha)
        log_alpha = optax.apply_updates(state.log_alpha, t_update)
    else:
        alpha_opt_state, log_alpha = state.alpha_opt_state, state.log_alpha
    delayed = (step % config.delay_update) == 0

    def on_delay(new, old):
        return jax.tree.map(lambda n, o: jnp.where(delayed, n, o), new, old)

    new_state = DSACTLearner(
        actor_params=on_delay(actor_params, state.actor_params),
        target_actor_params=on_delay(
            sac.polyak(state.target_actor_params, actor_params, config.tau), state.target_actor_params
        ),
        critic_params=critic_params,
        target_critic_params=on_delay(
            sac.polyak(state.target_critic_params, critic_params, config.tau), state.target_critic_params
        ),
        log_alpha=on_delay(log_alpha, state.log_alpha),
        critic_std_avg=b,
        actor_opt_state=on_delay(actor_opt_state, state.actor_opt_state),
        critic_opt_state=critic_opt_state,
        alpha_opt_state=on_delay(alpha_opt_state, state.alpha_opt_state),
        action_dim=state.action_dim,
    )
    metrics = {
        "loss/critic": c_loss,
        "loss/actor": a_loss,
        "loss/alpha": t_loss,
        "alpha": alpha,
        "entropy": -jnp.mean(log_prob),
        "q_mean": jnp.mean(mu),
        "q_std": jnp.mean(sigma),
        "critic/mean_abs_td": jnp.mean(jnp.abs(y_q[None] - mu)),
        "critic/std_average": jnp.mean(b),
    }
    return new_state, metrics


# ---------------------------------------------------------------------------------------------
# The agent contract
# ---------------------------------------------------------------------------------------------
def init_learner(config: DSACTConfig, obs, action_dim: int, key) -> DSACTLearner:
    k_actor, k_critic = jax.random.split(key)
    actor = sac.build_actor(config, action_dim)
    critic = twin_distributional_critic(config)
    actor_params = actor.init(k_actor, obs[:1])
    critic_params = critic.init(k_critic, obs[:1], jnp.zeros((1, action_dim), jnp.float32))
    log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
    actor_opt, critic_opt, alpha_opt = sac.optimizers(config)
    return DSACTLearner(
        actor_params=actor_params,
        target_actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=critic_params,
        log_alpha=log_alpha,
        critic_std_avg=jnp.zeros(2, jnp.float32),
        actor_opt_state=actor_opt.init(actor_params),
        critic_opt_state=critic_opt.init(critic_params),
        alpha_opt_state=alpha_opt.init(log_alpha),
        action_dim=int(action_dim),
    )


def init(config: DSACTConfig, env, env_params, key) -> off_policy.OffPolicyState:
    """Networks, optimisers, an empty buffer, reset envs, then ``learning_starts`` warm-up steps."""
    return off_policy.init(config, env, env_params, key, init_learner, sac.act)


def update(config: DSACTConfig, env, env_params, state: off_policy.OffPolicyState):
    """One iteration: every env takes one step with a ~ pi(.|s), then ``gradient_steps`` updates."""
    return off_policy.update(config, env, env_params, state, sac.act, gradient_step)


def q_estimate(config: DSACTConfig, state: off_policy.OffPolicyState, obs, action):
    """The twin critics' means mu(s, a), shape (2, B): the value the agent believes in."""
    return twin_distributional_critic(config).apply(state.learner.critic_params, obs, action)[0]
