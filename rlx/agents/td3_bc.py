"""TD3+BC (Fujimoto & Gu 2021, "A Minimalist Approach to Offline Reinforcement Learning",
arXiv 2106.06860): TD3 with a behaviour-cloning term in the actor loss and normalized states.

The critic is TD3's (Fujimoto et al. 2018): twin Q networks and target policy smoothing,

    a~' = clip( pi_bar(s') + clip(eps, -c, c), -1, 1 ),   eps ~ N(0, sigma^2)
    y   = r + gamma (1 - term) min_{j=1,2} Qbar_j(s', a~')
    L_Q = sum_j E_B[ (Q_j(s, a) - sg(y))^2 ]

with sigma = 0.2 (``policy_noise``) and c = 0.5 (``noise_clip``) in units of the action range
[-1, 1]; the target bootstraps through a time-limit truncation and not through a termination.
The actor maximizes Q with a behaviour-cloning regularizer (paper Eq. 3 and 4):

    pi = argmax_pi E_{(s, a) ~ D}[ lambda Q_1(s, pi(s)) - (pi(s) - a)^2 ],
    lambda = alpha / ( (1/N) sum_{(s_i, a_i)} |Q_1(s_i, a_i)| )

where, as in the authors' code, the mean |Q| is taken over the minibatch at the actor's own
actions, |Q_1(s_i, pi(s_i))|, and is a constant for the gradient (sg), and (pi(s) - a)^2 is the
mean over the batch and the action dimensions. The actor and both targets (Polyak, tau) are
updated every ``policy_delay`` = 2 critic steps, on steps 2, 4, 6, ... (TD3's delayed update).
States are normalized with the dataset's mean and std + 1e-3 (paper Sec. 5; the shared loop of
:mod:`rlx.agents.offline`).

Defaults (the paper's Table 5 / the authors' code): alpha = 2.5, sigma = 0.2, c = 0.5, delay 2,
tau 0.005, gamma 0.99, Adam 3e-4 for actor and critics, batch 256, 2 x 256 ReLU networks with a
tanh actor output. The paper trains 1M gradient steps and evaluates every 5,000 (``--preset
paper``); the default is a 20,000-step run that learns on a small dataset on a CPU.

Usage::

    agent = td3_bc.agent(dataset, info=info)
    train = rlx.run.make_train(agent, td3_bc.TD3BCConfig(), env, env_params)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from rlx.agents import bc, model_based, offline, sac
from rlx.core.config import config_dataclass, static, tunable

NAME = "td3_bc"
INPUTS = offline.INPUTS


# ---------------------------------------------------------------------------------------------
# Configuration (paper Table 5)
# ---------------------------------------------------------------------------------------------
@config_dataclass
class TD3BCConfig(offline.OfflineConfig):
    policy_delay: int = static(2, "critic steps per actor and target update (TD3's delay d)", low=1)
    alpha: float = tunable(2.5, "alpha: lambda = alpha / mean|Q| weighs Q against behaviour cloning", low=0.0)
    policy_noise: float = tunable(0.2, "std of the target policy smoothing noise (action range [-1, 1])", low=0.0)
    noise_clip: float = tunable(0.5, "clip of the target policy smoothing noise", low=0.0)
    actor_lr: float = tunable(3e-4, "actor learning rate (Adam)", low=0.0, low_inclusive=False)
    critic_lr: float = tunable(3e-4, "critic learning rate (Adam)", low=0.0, low_inclusive=False)
    gamma: float = tunable(0.99, "discount factor", low=0.0, high=1.0)
    tau: float = tunable(0.005, "Polyak coefficient of the target actor and critics", low=0.0, high=1.0)


Config = TD3BCConfig

PRESETS = {
    "paper": {"_doc": "the TD3+BC paper: 1M gradient steps, evaluated every 5,000",
              "total_steps": 1_000_000, "eval_every": 5_000},
}


# ---------------------------------------------------------------------------------------------
# Networks: the deterministic tanh actor (BC's) and SAC's twin critics
# ---------------------------------------------------------------------------------------------
def build_networks(config: TD3BCConfig, action_dim: int):
    return bc.deterministic_actor(config, action_dim), sac.twin_critic(config)


@struct.dataclass
class TD3BCLearner:
    actor_params: Any
    critic_params: Any
    target_actor_params: Any
    target_critic_params: Any
    actor_opt_state: Any
    critic_opt_state: Any


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------
def smoothed_target_action(target_action, key, policy_noise, noise_clip):
    """a~' = clip(pi_bar(s') + clip(eps, -c, c), -1, 1), eps ~ N(0, sigma^2)."""
    noise = jnp.clip(policy_noise * jax.random.normal(key, target_action.shape, target_action.dtype), -noise_clip, noise_clip)
    return jnp.clip(target_action + noise, -1.0, 1.0)


def critic_target(reward, terminated, next_q_min, gamma):
    """y = r + gamma (1 - term) min_j Qbar_j(s', a~'): a truncated transition bootstraps."""
    return reward + gamma * (1.0 - terminated) * next_q_min


def critic_loss(critic_params, critic, batch, target):
    """L_Q = sum_j E_B[(Q_j(s, a) - sg(y))^2] (TD3's sum of the two mean squared errors)."""
    q = critic.apply(critic_params, batch.obs, batch.action)  # (2, B)
    return jnp.sum(jnp.mean((q - jax.lax.stop_gradient(target)) ** 2, axis=-1)), q


def bc_lambda(q, alpha):
    """lambda = alpha / mean|Q|, a constant for the gradient (paper Eq. 4)."""
    return jax.lax.stop_gradient(alpha / jnp.mean(jnp.abs(q)))


def actor_objective(q, policy_action, data_action, alpha):
    """-(lambda E_B[Q_1(s, pi(s))] - E_B[(pi(s) - a)^2]), the loss of paper Eq. 3. Returns
    (loss, lambda)."""
    lam = bc_lambda(q, alpha)
    return -lam * jnp.mean(q) + bc.mse_loss(policy_action, data_action), lam


def actor_loss(actor_params, actor, critic, critic_params, batch, alpha):
    action = actor.apply(actor_params, batch.obs)
    q1 = critic.apply(critic_params, batch.obs, action)[0]  # Q_1 only, as TD3
    loss, lam = actor_objective(q1, action, batch.action, alpha)
    return loss, (lam, bc.mse_loss(action, batch.action))


# ---------------------------------------------------------------------------------------------
# One gradient step: critics every step; actor and targets every policy_delay steps
# ---------------------------------------------------------------------------------------------
def init_learner(config: TD3BCConfig, obs, action_dim: int, key) -> TD3BCLearner:
    k_actor, k_critic = jax.random.split(key)
    actor, critic = build_networks(config, action_dim)
    actor_params = actor.init(k_actor, obs[:1])
    critic_params = critic.init(k_critic, obs[:1], jnp.zeros((1, action_dim), jnp.float32))
    return TD3BCLearner(
        actor_params=actor_params, critic_params=critic_params,
        target_actor_params=actor_params, target_critic_params=critic_params,
        actor_opt_state=offline.adam_init(actor_params), critic_opt_state=offline.adam_init(critic_params),
    )


def learn(config: TD3BCConfig, action_dim: int, learner: TD3BCLearner, batch, key, step):
    """One critic step; on every ``policy_delay``-th step (step + 1 = d, 2d, ...) also one actor
    step against the updated critics, then the Polyak update of both targets."""
    actor, critic = build_networks(config, action_dim)
    next_action = smoothed_target_action(
        actor.apply(learner.target_actor_params, batch.next_obs), key, config.policy_noise, config.noise_clip
    )
    next_q = critic.apply(learner.target_critic_params, batch.next_obs, next_action)
    target = critic_target(batch.reward, batch.terminated, jnp.min(next_q, axis=0), config.gamma)
    (c_loss, q), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(learner.critic_params, critic, batch, target)
    critic_params, critic_opt_state = offline.adam_step(c_grads, learner.critic_opt_state, learner.critic_params, config.critic_lr)
    learner = learner.replace(critic_params=critic_params, critic_opt_state=critic_opt_state)

    def actor_and_targets(learner):
        (a_loss, (lam, bc_term)), a_grads = jax.value_and_grad(actor_loss, has_aux=True)(
            learner.actor_params, actor, critic, learner.critic_params, batch, config.alpha
        )
        actor_params, actor_opt_state = offline.adam_step(a_grads, learner.actor_opt_state, learner.actor_params, config.actor_lr)
        learner = learner.replace(
            actor_params=actor_params, actor_opt_state=actor_opt_state,
            target_actor_params=offline.polyak(learner.target_actor_params, actor_params, config.tau),
            target_critic_params=offline.polyak(learner.target_critic_params, learner.critic_params, config.tau),
        )
        return learner, (a_loss, lam, bc_term)

    def critics_only(learner):  # the actor's loss is still reported (forward pass only)
        a_loss, (lam, bc_term) = actor_loss(learner.actor_params, actor, critic, learner.critic_params, batch, config.alpha)
        return learner, (a_loss, lam, bc_term)

    learner, (a_loss, lam, bc_term) = jax.lax.cond(
        (step + 1) % config.policy_delay == 0, actor_and_targets, critics_only, learner
    )
    metrics = {"loss/critic": c_loss, "loss/actor": a_loss, "loss/bc": bc_term, "td3_bc/lambda": lam, "q_mean": jnp.mean(q)}
    return learner, metrics


def act(config: TD3BCConfig, action_dim: int, learner: TD3BCLearner, obs):
    """a = pi(s), deterministic (evaluation without exploration noise)."""
    return bc.deterministic_actor(config, action_dim).apply(learner.actor_params, obs)


def q_estimate(config: TD3BCConfig, action_dim: int, learner: TD3BCLearner, obs, action):
    """The twin critics' Q(s, a), shape (2, B), of normalized observations."""
    return sac.twin_critic(config).apply(learner.critic_params, obs, action)


# ---------------------------------------------------------------------------------------------
# The agent: bound to a dataset (Python) or built from --dataset (command line)
# ---------------------------------------------------------------------------------------------
def agent(dataset, **kwargs) -> offline.DatasetAgent:
    """TD3+BC bound to ``dataset``; see :func:`rlx.agents.offline.build_agent`."""
    import sys

    return offline.build_agent(sys.modules[__name__], dataset, **kwargs)


check_env = init = update = make_policy = model_based.no_dataset(NAME)


def from_inputs(config, **inputs):
    """The agent built from files, as ``rlx train td3_bc --dataset PATH`` builds it; the inputs
    are those of :func:`rlx.agents.offline.from_inputs`."""
    import sys

    return offline.from_inputs(sys.modules[__name__], config, **inputs)


def observation_stats(state):
    return None
