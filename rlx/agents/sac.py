"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications",
arXiv 1812.05905): tanh-Gaussian actor, twin Q critics with Polyak-averaged targets, and a
temperature tuned toward a target entropy.

The module reads like the paper: configuration, networks, the critic target (the soft Bellman
backup, Eq. 2-3) and the three losses (Eq. 5 critic, Eq. 7 actor, Eq. 18 temperature), one
gradient step, one training iteration, and the agent's ``init`` / ``update`` / ``make_policy``,
which :func:`rlx.run.make_train` turns into ``train(key)``.

Conventions (``../shared/algorithms.md`` sections 0-1):
* the critic target bootstraps through time-limit truncation and not through termination, from
  the true last observation of a truncated episode (``info["final_observation"]``);
* the temperature is learned as ``log_alpha`` with loss ``-log_alpha * sg(log pi + H_target)``
  (softlearning's form; it drives E[-log pi] toward H_target = -scale * |A|);
* within one gradient step: critics, then the actor against the *updated* critics, then the
  temperature from the actor's sample, then the Polyak target update;
* warm-up (``learning_starts`` env steps) uses uniform random actions and is run in ``init``,
  so every later iteration has the same program: act, store, learn (the loop itself is
  shared with the other replay-based agents: :mod:`rlx.agents.off_policy`).
"""

from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from rlx import envs as rlx_envs
from rlx.agents import off_policy
from rlx.agents.off_policy import observation_stats  # noqa: F401  (part of the agent contract)
from rlx.core import parallel
from rlx.core.config import Config, ConfigError, TrainConfig, config_dataclass, static, tunable
from rlx.core.distributions import sample_tanh_gaussian
from rlx.core.networks import MLP, Ensemble, QNetwork
from rlx.core.types import Transition

NAME = "sac"
DATA_PARALLEL = True  # rlx.run.mesh.make_data_parallel_train: gradients averaged over devices


# ---------------------------------------------------------------------------------------------
# Configuration (defaults: the paper's appendix table, SAC v2)
# ---------------------------------------------------------------------------------------------
@config_dataclass
class SACFields(Config):
    """SAC's learner: the networks, the optimisers and the constants of the losses.
    :class:`SACConfig` adds the fields of the online replay loop; the offline model-based agents'
    :class:`rlx.agents.model_based.ModelBasedConfig` those of their rollouts and dynamics model."""

    hidden_sizes: tuple[int, ...] = static(
        (256, 256), "hidden layer widths of actor and critics",
        check=lambda v: None if len(v) > 0 and all(int(w) >= 1 for w in v) else "need >= 1 positive width",
    )
    activation: str = static("relu", "hidden activation", choices=("relu", "tanh", "gelu", "silu", "elu"))
    log_std_min: float = static(-20.0, "lower clip of the policy's log standard deviation")
    log_std_max: float = static(2.0, "upper clip of the policy's log standard deviation")
    learn_alpha: bool = static(True, "tune the temperature toward the target entropy", choices=(False, True))

    actor_lr: float = tunable(3e-4, "actor learning rate (Adam)", low=0.0, low_inclusive=False)
    critic_lr: float = tunable(3e-4, "critic learning rate (Adam)", low=0.0, low_inclusive=False)
    alpha_lr: float = tunable(3e-4, "temperature learning rate (Adam)", low=0.0, low_inclusive=False)
    gamma: float = tunable(0.99, "discount factor", low=0.0, high=1.0)
    tau: float = tunable(0.005, "Polyak coefficient for the target critics", low=0.0, high=1.0)
    init_alpha: float = tunable(1.0, "initial temperature", low=0.0, low_inclusive=False)
    target_entropy_scale: float = tunable(1.0, "target entropy = -scale * action dimension")

    def _check_consistency(self) -> list[str]:
        problems = super()._check_consistency()
        if self.log_std_min >= self.log_std_max:
            problems.append(f"log_std_min={self.log_std_min} must be < log_std_max={self.log_std_max}")
        return problems


@config_dataclass
class SACConfig(SACFields, TrainConfig):
    """The learner's fields (:class:`SACFields`) and the online replay loop's."""

    # Evaluations every 1,000 env steps: the default 20,000 steps, warm-up (1,000) included, then
    # run exactly (19 blocks of 1,000 after the warm-up) and evaluate at 2,000, 3,000, ..., 20,000.
    eval_every: int = static(1_000, "environment steps between deterministic evaluations", low=1)
    learning_starts: int = static(1_000, "warm-up env steps with uniform random actions before learning", low=0)
    buffer_size: int = static(1_000_000, "replay capacity in transitions (capped at total_steps)", low=1)
    batch_size: int = static(256, "minibatch size per gradient step", low=1)
    gradient_steps: int = static(1, "gradient steps per iteration (one iteration = num_envs env steps)", low=1)
    warmup_actions: str = static(
        "uniform", "warm-up actions: uniform in [-1, 1] or sampled from the initial policy",
        choices=("uniform", "policy"),
    )
    reward_scale: float = tunable(1.0, "multiplies rewards in the critic target", low=0.0, low_inclusive=False)

    def _check_consistency(self) -> list[str]:
        problems = super()._check_consistency()
        if self.learning_starts >= self.total_steps:
            problems.append(
                f"learning_starts={self.learning_starts} must be < total_steps={self.total_steps}"
            )
        if self.batch_size > self.buffer_capacity:
            problems.append(
                f"batch_size={self.batch_size} is larger than the replay capacity "
                f"{self.buffer_capacity} (min(buffer_size, total_steps))"
            )
        return problems

    @property
    def buffer_capacity(self) -> int:
        return min(self.buffer_size, self.total_steps)

    @property
    def env_steps_per_iteration(self) -> int:
        return self.num_envs

    @property
    def warmup_iterations(self) -> int:
        return -(-self.learning_starts // self.num_envs)  # ceil

    @property
    def warmup_env_steps(self) -> int:
        return self.warmup_iterations * self.num_envs


Config = SACConfig

# Many environments, large batches, several gradient steps per iteration: off-policy learning
# shaped for an accelerator, after FastTD3 / FastSAC (Seo et al. 2025; their MuJoCo Playground
# settings: 1024 envs, 10,240 stored steps per env, batch 32,768, 2 updates per iteration,
# tau 0.1, gamma 0.97, lr 3e-4, normalized observations, a 1024-512-256 critic; one set of widths
# here serves actor and critics). Not taken over: their distributional C51 critic (DSAC-T has
# its own), AdamW with weight decay 0.1, bf16 mixed precision and n-step returns. 10 warm-up
# iterations, then 50,000 (51.2 M env steps) with an evaluation every 5,000 (10 in all).
_PARALLEL_ENVS = 1024
PRESETS = {
    "parallel": {
        "_doc": "massively parallel (FastTD3/FastSAC settings, meant for an accelerator): 1024 envs, batch 32768, "
        "2 gradient steps per iteration, tau 0.1, gamma 0.97, 1024-512-256 networks, normalized observations, "
        "51.2M env steps",
        "num_envs": _PARALLEL_ENVS,
        "total_steps": _PARALLEL_ENVS * (10 + 50_000),  # warm-up, then 10 blocks of 5,000 iterations
        "eval_every": _PARALLEL_ENVS * 5_000,
        "learning_starts": _PARALLEL_ENVS * 10,
        "buffer_size": _PARALLEL_ENVS * 10_240,
        "batch_size": 32_768,
        "gradient_steps": 2,
        "tau": 0.1,
        "gamma": 0.97,
        "actor_lr": 3e-4,
        "critic_lr": 3e-4,
        "hidden_sizes": (1024, 512, 256),
        "normalize_observations": True,
    },
}


def continuous_action_check(agent_name: str):
    """The ``check_env`` of an agent that needs a continuous (Box) action space; its refusal
    names the agent that was asked for (SAC's check serves DSAC-T too)."""

    def check_env(config, env, env_params) -> None:
        space = env.action_space(env_params)
        if not rlx_envs.is_continuous(space):
            raise ConfigError(
                f"{agent_name} acts in continuous action spaces; {getattr(env, 'name', env)} has a "
                f"{type(space).__name__} action space. Use a discrete-action agent (ppo, gigpo, grpo), "
                "or an env with a Box action space."
            )

    return check_env


check_env = continuous_action_check(NAME)


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------
class Actor(nn.Module):
    """Outputs the mean and clipped log-std of the pre-tanh Gaussian."""

    action_dim: int
    hidden_sizes: tuple[int, ...]
    activation: str
    log_std_min: float
    log_std_max: float

    @nn.compact
    def __call__(self, obs):
        obs = obs.reshape(obs.shape[:-1] + (-1,))
        out = MLP(self.hidden_sizes, 2 * self.action_dim, self.activation)(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


def twin_critic(config: SACConfig) -> nn.Module:
    """Two independent Q networks evaluated as one batched ensemble: output (2, batch)."""
    return Ensemble(QNetwork, 2, {"hidden_sizes": config.hidden_sizes, "activation": config.activation})


def build_actor(config: SACConfig, action_dim: int) -> nn.Module:
    return Actor(action_dim, tuple(config.hidden_sizes), config.activation, config.log_std_min, config.log_std_max)


def build_networks(config: SACConfig, action_dim: int) -> tuple[nn.Module, nn.Module]:
    return build_actor(config, action_dim), twin_critic(config)


# ---------------------------------------------------------------------------------------------
# Learner state (the rest of the train state is rlx.agents.off_policy.OffPolicyState)
# ---------------------------------------------------------------------------------------------
@struct.dataclass
class SACLearner:
    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    log_alpha: jax.Array
    actor_opt_state: Any
    critic_opt_state: Any
    alpha_opt_state: Any
    action_dim: int = struct.field(pytree_node=False)  # |A|, static: it shapes the actor


def optimizers(config: SACConfig):
    # inject_hyperparams keeps the learning rate a traced value, so a sweep over it compiles once;
    # in data-parallel training the gradients are averaged over the devices first.
    def make(learning_rate):
        return parallel.averaged_gradients(optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate))

    return make(config.actor_lr), make(config.critic_lr), make(config.alpha_lr)


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------
def temperature(log_alpha):
    """alpha = exp(log_alpha): the temperature the losses use (learned as its log: :func:`alpha_loss`)."""
    return jnp.exp(log_alpha)


def critic_target(reward, terminated, next_q_min, next_log_prob, alpha, gamma):
    """Soft TD target y = r + gamma (1 - term) (min_j Qbar_j(s', a') - alpha log pi(a'|s')): the
    soft Bellman backup (paper Eq. 2) of the soft value V(s') (Eq. 3), one sample a' ~ pi(.|s').

    Only termination stops bootstrapping; a truncated transition bootstraps from its true s'.
    Every input is (B,) (checked when traced: a (B, 1) column would broadcast to (B, B)).
    """
    chex.assert_rank(reward, 1)
    chex.assert_equal_shape([reward, terminated, next_q_min, next_log_prob])
    return reward + gamma * (1.0 - terminated) * (next_q_min - alpha * next_log_prob)


def critic_loss(critic_params, critic, batch: Transition, target):
    """J_Q = sum_j E_B[ 0.5 (Q_j(s, a) - sg(y))^2 ]  (paper Eq. 5, twin critics)."""
    q = critic.apply(critic_params, batch.obs, batch.action)  # (2, B)
    chex.assert_rank(q, 2)
    chex.assert_shape(target, q.shape[1:])
    loss = 0.5 * jnp.mean(jnp.sum((q - jax.lax.stop_gradient(target)) ** 2, axis=0))
    return loss, q


def actor_loss(actor_params, actor, q_fn, obs, alpha, key):
    """J_pi = E_B[ alpha log pi(a~|s) - min_j Q_j(s, a~) ], a~ reparameterised (paper Eq. 7).

    ``q_fn(obs, action) -> (num_critics, B)`` values; the critics' parameters are not updated
    by this loss.
    """
    mean, log_std = actor.apply(actor_params, obs)
    action, log_prob = sample_tanh_gaussian(key, mean, log_std)
    q_min = jnp.min(q_fn(obs, action), axis=0)
    chex.assert_equal_shape([q_min, log_prob])
    return jnp.mean(alpha * log_prob - q_min), log_prob


def alpha_loss(log_alpha, log_prob, target_entropy):
    """J_alpha = E_B[ -log_alpha * sg(log pi + H_target) ]  (paper Eq. 18, log-alpha form)."""
    return -log_alpha * jnp.mean(jax.lax.stop_gradient(log_prob + target_entropy))


def polyak(target, online, tau):
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


# ---------------------------------------------------------------------------------------------
# One gradient step (critics -> actor -> temperature -> targets)
# ---------------------------------------------------------------------------------------------
def gradient_step(
    config: SACConfig, action_dim: int, state: SACLearner, batch: Transition, key, step=None,
    *, target_fn=critic_target, temperature_fn=temperature,
):
    """One SAC update of ``state`` (a :class:`SACLearner`) on ``batch``: critics (Eq. 5), actor
    (Eq. 7), temperature (Eq. 18), Polyak targets.

    ``target_fn(reward, terminated, next_q_min, next_log_prob, alpha, gamma) -> y`` is the critic
    target (default :func:`critic_target`) and ``temperature_fn(log_alpha) -> alpha`` the
    temperature every loss uses (default :func:`temperature`). An algorithm built on SAC passes
    its own, e.g. MOBILE's target without the entropy term and its bounded alpha
    (:mod:`rlx.agents.mobile`).
    """
    actor, critic = build_networks(config, action_dim)
    actor_opt, critic_opt, alpha_opt = optimizers(config)
    key_next, key_pi = jax.random.split(key)
    alpha = temperature_fn(state.log_alpha)
    target_entropy = -config.target_entropy_scale * action_dim

    # Critic target y (Eq. 2-3) with a' ~ pi(.|s') from the current actor, then the critics (Eq. 5).
    next_mean, next_log_std = actor.apply(state.actor_params, batch.next_obs)
    next_action, next_log_prob = sample_tanh_gaussian(key_next, next_mean, next_log_std)
    next_q = critic.apply(state.target_critic_params, batch.next_obs, next_action)
    target = target_fn(
        config.reward_scale * batch.reward,
        batch.terminated.astype(jnp.float32),
        jnp.min(next_q, axis=0),
        next_log_prob,
        alpha,
        config.gamma,
    )
    (c_loss, q), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(
        state.critic_params, critic, batch, target
    )
    c_updates, critic_opt_state = critic_opt.update(c_grads, state.critic_opt_state, state.critic_params)
    critic_params = optax.apply_updates(state.critic_params, c_updates)

    # Actor (Eq. 7) against the updated critics.
    (a_loss, log_prob), a_grads = jax.value_and_grad(actor_loss, has_aux=True)(
        state.actor_params, actor, lambda o, a: critic.apply(critic_params, o, a), batch.obs, alpha, key_pi
    )
    a_updates, actor_opt_state = actor_opt.update(a_grads, state.actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, a_updates)

    # Temperature (Eq. 18) from the actor's sample.
    t_loss, t_grad = jax.value_and_grad(alpha_loss)(state.log_alpha, log_prob, target_entropy)
    if config.learn_alpha:
        t_update, alpha_opt_state = alpha_opt.update(t_grad, state.alpha_opt_state, state.log_alpha)
        log_alpha = optax.apply_updates(state.log_alpha, t_update)
    else:
        alpha_opt_state, log_alpha = state.alpha_opt_state, state.log_alpha

    state = state.replace(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=polyak(state.target_critic_params, critic_params, config.tau),
        log_alpha=log_alpha,
        actor_opt_state=actor_opt_state,
        critic_opt_state=critic_opt_state,
        alpha_opt_state=alpha_opt_state,
    )
    metrics = {
        "loss/critic": c_loss,
        "loss/actor": a_loss,
        "loss/alpha": t_loss,
        "alpha": alpha,
        "entropy": -jnp.mean(log_prob),
        "q_mean": jnp.mean(q),
    }
    return state, metrics


# ---------------------------------------------------------------------------------------------
# Acting
# ---------------------------------------------------------------------------------------------
def _actor_for(config: SACConfig, learner: SACLearner) -> nn.Module:
    return build_actor(config, learner.action_dim)


def act(config: SACConfig, learner: SACLearner, obs, key):
    """Exploration: a ~ pi(.|s), squashed to [-1, 1]."""
    mean, log_std = _actor_for(config, learner).apply(learner.actor_params, obs)
    return sample_tanh_gaussian(key, mean, log_std)[0]


def make_policy(config: SACConfig, state: off_policy.OffPolicyState, deterministic: bool = True):
    """(obs, key) -> action in [-1, 1]^|A|; deterministic evaluation uses tanh(mean)."""
    learner = state.learner
    actor = _actor_for(config, learner)

    def policy(obs, key):
        if deterministic:
            return jnp.tanh(actor.apply(learner.actor_params, obs)[0])
        return act(config, learner, obs, key)

    return policy


# ---------------------------------------------------------------------------------------------
# The agent contract: init / update / make_policy
# ---------------------------------------------------------------------------------------------
def init_learner(config: SACConfig, obs, action_dim: int, key) -> SACLearner:
    k_actor, k_critic = jax.random.split(key)
    actor, critic = build_networks(config, action_dim)
    actor_params = actor.init(k_actor, obs[:1])
    critic_params = critic.init(k_critic, obs[:1], jnp.zeros((1, action_dim), jnp.float32))
    log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
    actor_opt, critic_opt, alpha_opt = optimizers(config)
    return SACLearner(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=critic_params,
        log_alpha=log_alpha,
        actor_opt_state=actor_opt.init(actor_params),
        critic_opt_state=critic_opt.init(critic_params),
        alpha_opt_state=alpha_opt.init(log_alpha),
        action_dim=int(action_dim),
    )


def init(config: SACConfig, env, env_params, key) -> off_policy.OffPolicyState:
    """Networks, optimisers, an empty buffer, reset envs, then ``learning_starts`` warm-up steps."""
    return off_policy.init(config, env, env_params, key, init_learner, act)


def update(config: SACConfig, env, env_params, state: off_policy.OffPolicyState):
    """One iteration: every env takes one step with a ~ pi(.|s), then ``gradient_steps`` updates."""
    return off_policy.update(config, env, env_params, state, act, gradient_step)


def q_estimate(config: SACConfig, state: off_policy.OffPolicyState, obs, action):
    """The twin critics' Q(s, a), shape (2, B): the value the agent believes in."""
    return twin_critic(config).apply(state.learner.critic_params, obs, action)
