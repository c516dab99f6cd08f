"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications",
arXiv 1812.05905): tanh-Gaussian actor, twin Q critics with Polyak-averaged targets, and a
temperature tuned toward a target entropy.

The module reads like the paper: configuration, networks, the three losses (Eq. 5/7 critic,
Eq. 17 actor, Eq. 18 temperature), one training iteration, and the agent's ``init`` /
``update`` / ``make_policy``, which :func:`rlx.run.make_train` turns into ``train(key)``.

Conventions (``../shared/algorithms.md`` sections 0-1):
* the critic target bootstraps through time-limit truncation and not through termination, from
  the true last observation of a truncated episode (``info["final_observation"]``);
* the temperature is learned as ``log_alpha`` with loss ``-log_alpha * sg(log pi + H_target)``
  (softlearning's form; it drives E[-log pi] toward H_target = -scale * |A|);
* within one gradient step: critics, then the actor against the *updated* critics, then the
  temperature from the actor's sample, then the Polyak target update;
* warm-up (``learning_starts`` env steps) uses uniform random actions and is run in ``init``,
  so every later iteration has the same program: act, store, learn.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from rlx import envs as rlx_envs
from rlx.buffers import ReplayBuffer, add_batch, init_buffer, sample
from rlx.core.config import ConfigError, TrainConfig, config_dataclass, static, tunable
from rlx.core.distributions import sample_tanh_gaussian
from rlx.core.networks import MLP, Ensemble, QNetwork
from rlx.core.types import Transition

NAME = "sac"


# ---------------------------------------------------------------------------------------------
# Configuration (defaults: the paper's appendix table, SAC v2)
# ---------------------------------------------------------------------------------------------
@config_dataclass
class SACConfig(TrainConfig):
    learning_starts: int = static(1_000, "warm-up env steps with uniform random actions before learning", low=0)
    buffer_size: int = static(1_000_000, "replay capacity in transitions (capped at total_steps)", low=1)
    batch_size: int = static(256, "minibatch size per gradient step", low=1)
    gradient_steps: int = static(1, "gradient steps per iteration (one iteration = num_envs env steps)", low=1)
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
    reward_scale: float = tunable(1.0, "multiplies rewards in the critic target", low=0.0, low_inclusive=False)

    def _check_consistency(self) -> list[str]:
        problems = []
        if self.log_std_min >= self.log_std_max:
            problems.append(f"log_std_min={self.log_std_min} must be < log_std_max={self.log_std_max}")
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


def check_env(config: SACConfig, env, env_params) -> None:
    """SAC needs a continuous (Box) action space."""
    space = env.action_space(env_params)
    if not rlx_envs.is_continuous(space):
        raise ConfigError(
            f"SAC acts in continuous action spaces; {getattr(env, 'name', env)} has a "
            f"{type(space).__name__} action space. Use a discrete-action agent, or an env with a Box action space."
        )


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


def build_networks(config: SACConfig, action_dim: int) -> tuple[nn.Module, nn.Module]:
    actor = Actor(action_dim, tuple(config.hidden_sizes), config.activation, config.log_std_min, config.log_std_max)
    return actor, twin_critic(config)


# ---------------------------------------------------------------------------------------------
# Train state
# ---------------------------------------------------------------------------------------------
@struct.dataclass
class SACState:
    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    log_alpha: jax.Array
    actor_opt_state: Any
    critic_opt_state: Any
    alpha_opt_state: Any
    buffer: ReplayBuffer
    env_state: Any
    obs: jax.Array
    key: jax.Array
    env_steps: jax.Array  # int32, all parallel envs, warm-up included
    gradient_steps: jax.Array  # int32


def _optimizers(config: SACConfig):
    # inject_hyperparams keeps the learning rate a traced value, so a sweep over it compiles once.
    make = optax.inject_hyperparams(optax.adam)
    return make(learning_rate=config.actor_lr), make(learning_rate=config.critic_lr), make(learning_rate=config.alpha_lr)


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------
def critic_target(reward, terminated, next_q_min, next_log_prob, alpha, gamma):
    """Soft TD target y = r + gamma (1 - term) (min_j Qbar_j(s', a') - alpha log pi(a'|s')).

    Only termination stops bootstrapping; a truncated transition bootstraps from its true s'.
    """
    return reward + gamma * (1.0 - terminated) * (next_q_min - alpha * next_log_prob)


def critic_loss(critic_params, critic, batch: Transition, target):
    """J_Q = sum_j E_B[ 0.5 (Q_j(s, a) - sg(y))^2 ]  (paper Eq. 5, twin critics)."""
    q = critic.apply(critic_params, batch.obs, batch.action)  # (2, B)
    loss = 0.5 * jnp.mean(jnp.sum((q - jax.lax.stop_gradient(target)) ** 2, axis=0))
    return loss, q


def actor_loss(actor_params, actor, critic, critic_params, obs, alpha, key):
    """J_pi = E_B[ alpha log pi(a~|s) - min_j Q_j(s, a~) ], a~ reparameterised (paper Eq. 7)."""
    mean, log_std = actor.apply(actor_params, obs)
    action, log_prob = sample_tanh_gaussian(key, mean, log_std)
    q_min = jnp.min(critic.apply(critic_params, obs, action), axis=0)
    return jnp.mean(alpha * log_prob - q_min), log_prob


def alpha_loss(log_alpha, log_prob, target_entropy):
    """J_alpha = E_B[ -log_alpha * sg(log pi + H_target) ]  (paper Eq. 18, log-alpha form)."""
    return -log_alpha * jnp.mean(jax.lax.stop_gradient(log_prob + target_entropy))


def polyak(target, online, tau):
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


# ---------------------------------------------------------------------------------------------
# One gradient step (critics -> actor -> temperature -> targets)
# ---------------------------------------------------------------------------------------------
def gradient_step(config: SACConfig, action_dim: int, state: SACState, batch: Transition, key):
    actor, critic = build_networks(config, action_dim)
    actor_opt, critic_opt, alpha_opt = _optimizers(config)
    key_next, key_pi = jax.random.split(key)
    alpha = jnp.exp(state.log_alpha)
    target_entropy = -config.target_entropy_scale * action_dim

    # Critic target with a' ~ pi(.|s') from the current actor.
    next_mean, next_log_std = actor.apply(state.actor_params, batch.next_obs)
    next_action, next_log_prob = sample_tanh_gaussian(key_next, next_mean, next_log_std)
    next_q = critic.apply(state.target_critic_params, batch.next_obs, next_action)
    target = critic_target(
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

    # Actor against the updated critics.
    (a_loss, log_prob), a_grads = jax.value_and_grad(actor_loss, has_aux=True)(
        state.actor_params, actor, critic, critic_params, batch.obs, alpha, key_pi
    )
    a_updates, actor_opt_state = actor_opt.update(a_grads, state.actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, a_updates)

    # Temperature from the actor's sample.
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
        gradient_steps=state.gradient_steps + 1,
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
def make_policy(config: SACConfig, state: SACState, deterministic: bool = True):
    """(obs, key) -> action in [-1, 1]^|A|; deterministic evaluation uses tanh(mean)."""
    action_dim = _action_dim_from_params(state.actor_params)
    actor, _ = build_networks(config, action_dim)

    def policy(obs, key):
        mean, log_std = actor.apply(state.actor_params, obs)
        if deterministic:
            return jnp.tanh(mean)
        return sample_tanh_gaussian(key, mean, log_std)[0]

    return policy


def _action_dim_from_params(actor_params) -> int:
    leaves = jax.tree.leaves(actor_params)
    return leaves[-1].shape[-1] // 2  # last Dense bias: 2 * |A|


def training_env(config: SACConfig, env, env_params):
    """The vectorised training environment: actions in [-1, 1], episode statistics."""
    return rlx_envs.make_vec_env(
        env, env_params, config.num_envs, normalize_obs=config.normalize_observations
    )


def _env_step(config, venv, env_params, state: SACState, action, key):
    obs, env_state, reward, terminated, truncated, info = venv.step(key, state.env_state, action, env_params)
    transition = Transition(
        obs=state.obs,
        action=action,
        reward=reward.astype(jnp.float32),
        next_obs=info["final_observation"],
        terminated=terminated.astype(jnp.float32),
        truncated=truncated.astype(jnp.float32),
    )
    done = info["episode_done"].astype(jnp.float32)
    episode_stats = {
        "train/episode_return_sum": jnp.sum(info["episode_return"] * done),
        "train/episodes": jnp.sum(done),
    }
    state = state.replace(
        buffer=add_batch(state.buffer, transition),
        env_state=env_state,
        obs=obs,
        env_steps=state.env_steps + config.num_envs,
    )
    return state, episode_stats


# ---------------------------------------------------------------------------------------------
# The agent contract: init / update / make_policy
# ---------------------------------------------------------------------------------------------
def init(config: SACConfig, env, env_params, key) -> SACState:
    """Networks, optimisers, an empty buffer, reset envs, then ``learning_starts`` random steps."""
    venv = training_env(config, env, env_params)
    action_dim = rlx_envs.action_dim(env.action_space(env_params))
    key, k_actor, k_critic, k_reset, k_warm = jax.random.split(key, 5)
    obs, env_state = venv.reset(k_reset, env_params)
    obs = obs.astype(jnp.float32)
    actor, critic = build_networks(config, action_dim)
    dummy_action = jnp.zeros((1, action_dim), jnp.float32)
    actor_params = actor.init(k_actor, obs[:1])
    critic_params = critic.init(k_critic, obs[:1], dummy_action)
    log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
    actor_opt, critic_opt, alpha_opt = _optimizers(config)
    example = Transition(
        obs=obs[0],
        action=dummy_action[0],
        reward=jnp.float32(0.0),
        next_obs=obs[0],
        terminated=jnp.float32(0.0),
        truncated=jnp.float32(0.0),
    )
    state = SACState(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=critic_params,
        log_alpha=log_alpha,
        actor_opt_state=actor_opt.init(actor_params),
        critic_opt_state=critic_opt.init(critic_params),
        alpha_opt_state=alpha_opt.init(log_alpha),
        buffer=init_buffer(example, config.buffer_capacity),
        env_state=env_state,
        obs=obs,
        key=key,
        env_steps=jnp.int32(0),
        gradient_steps=jnp.int32(0),
    )

    def warmup_step(state, key):
        k_act, k_env = jax.random.split(key)
        action = jax.random.uniform(k_act, (config.num_envs, action_dim), jnp.float32, -1.0, 1.0)
        state, _ = _env_step(config, venv, env_params, state, action, k_env)
        return state, None

    if config.warmup_iterations > 0:
        state, _ = jax.lax.scan(warmup_step, state, jax.random.split(k_warm, config.warmup_iterations))
    return state


def update(config: SACConfig, env, env_params, state: SACState):
    """One iteration: every env takes one step with a ~ pi(.|s), then ``gradient_steps`` updates."""
    venv = training_env(config, env, env_params)
    action_dim = rlx_envs.action_dim(env.action_space(env_params))
    key, k_act, k_env, k_learn = jax.random.split(state.key, 4)
    state = state.replace(key=key)
    action = make_policy(config, state, deterministic=False)(state.obs, k_act)
    state, episode_stats = _env_step(config, venv, env_params, state, action, k_env)

    def learn(state, key):
        k_sample, k_step = jax.random.split(key)
        batch = sample(state.buffer, k_sample, config.batch_size)
        return gradient_step(config, action_dim, state, batch, k_step)

    state, metrics = jax.lax.scan(learn, state, jax.random.split(k_learn, config.gradient_steps))
    metrics = jax.tree.map(jnp.mean, metrics)
    return state, {**metrics, **episode_stats}


def observation_stats(state: SACState):
    """Running observation statistics of the training envs (None when not normalizing)."""
    return getattr(state.env_state, "obs_stats", None)
