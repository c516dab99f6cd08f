"""IQL: Implicit Q-Learning (Kostrikov, Nair & Levine 2021, "Offline Reinforcement Learning with
Implicit Q-Learning", arXiv 2110.06169).

IQL never evaluates Q at an action outside the dataset. A state value V fits an upper expectile
of the target critics' Q over the dataset's actions, the critics regress onto r + gamma V(s'),
and the policy is extracted by advantage-weighted regression:

    L_V(psi)   = E_{(s,a)~D}[ L_2^tau( min_j Qbar_j(s, a) - V_psi(s) ) ],
                 L_2^tau(u) = |tau - 1(u < 0)| u^2                                (paper Eq. 5)
    L_Q(theta) = sum_j E_{(s,a,s')~D}[ ( r + gamma (1 - term) V_psi(s') - Q_j(s, a) )^2 ]  (Eq. 6)
    L_pi(phi)  = -E_{(s,a)~D}[ min(exp(beta (min_j Qbar_j(s, a) - V_psi(s))), 100) log pi_phi(a|s) ]
                                                                                   (Eq. 7)
followed by the Polyak update Qbar <- tau Q + (1 - tau) Qbar. tau = 0.7 (``expectile``) and
beta = 3.0 (``temperature``, an inverse temperature) are the paper's MuJoCo values.

Where the paper and the authors' code (ikostrikov/implicit_q_learning) differ, rlx follows the
code:

* the value target is the minimum of the two *target* critics ("double Q min"); the paper's
  Eq. 5 writes one target network Q_theta-hat;
* the weights exp(beta A) are clipped at 100 (``max_weight``) — Eq. 7 has no clip;
* the three networks learn together, one step each per minibatch, in the code's order: V (Eq. 5),
  then the policy (Eq. 7) with the updated V, then the critics (Eq. 6) with the updated V, then
  the Polyak update; the paper presents policy extraction as a step after Q and V have been
  learned (the policy's loss feeds nothing back into Q and V, so both schedules learn the same
  Q and V);
* the actor's learning rate decays from 3e-4 to 0 along a cosine over training (the code's
  ``opt_decay_schedule="cosine"``, over its 1M steps: here over ``total_steps``; ``constant``
  turns it off); V and Q keep 3e-4;
* the policy is a Gaussian N(tanh(f(s)), sigma^2) whose log sigma is a free vector clipped to
  [-5, 2], not tanh-squashed (the code's MuJoCo setting; :class:`rlx.agents.bc.GaussianActor`),
  evaluated by its mean;
* rewards are multiplied by 1000 / (max episode return - min episode return) of the dataset
  (the code's MuJoCo normalisation, ``normalize_rewards``; 1 where every episode has the same
  return, which the code would divide by); ``q_estimate`` undoes the scale;
* the bootstrap mask is (1 - term): a time-limit truncation bootstraps (both codes read D4RL's
  terminals for it).

Observations are standardized with the dataset's mean and std by default, as in CORL's IQL and
the other agents here; the authors' code does not (``--preset paper`` turns it off). Other
defaults: 2 x 256 ReLU for V, the twin Q and the actor, Adam 3e-4, batch 256, gamma 0.99,
tau 0.005. The paper trains 1M gradient steps and evaluates every 5,000 (``--preset paper``).

Usage::

    agent = iql.agent(dataset, info=info)
    train = rlx.run.make_train(agent, iql.IQLConfig(), env, env_params)
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlx.agents import bc, model_based, offline, sac
from rlx.core.config import ConfigError, config_dataclass, static, tunable
from rlx.core.networks import MLP

NAME = "iql"
INPUTS = offline.INPUTS


# ---------------------------------------------------------------------------------------------
# Configuration (paper Table 3, MuJoCo; the authors' configs/mujoco_config.py)
# ---------------------------------------------------------------------------------------------
@config_dataclass
class IQLConfig(offline.OfflineConfig):
    actor_lr_schedule: str = static(
        "cosine", "the actor's learning rate: cosine decay to 0 over total_steps (the authors' code) or constant",
        choices=("cosine", "constant"),
    )
    normalize_rewards: bool = static(
        True, "multiply rewards by 1000 / (max - min episode return of the dataset), the authors' MuJoCo rule",
        choices=(False, True),
    )
    log_std_min: float = static(-5.0, "lower clip of the policy's log-std")
    log_std_max: float = static(2.0, "upper clip of the policy's log-std")
    expectile: float = tunable(0.7, "tau: the expectile V fits (0.5: the mean; toward 1: the max)", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    temperature: float = tunable(3.0, "beta: inverse temperature of the advantage weights exp(beta A)", low=0.0)
    max_weight: float = tunable(100.0, "upper clip of the advantage weights", low=0.0, low_inclusive=False)
    actor_lr: float = tunable(3e-4, "actor learning rate (Adam; its start value under the cosine schedule)", low=0.0, low_inclusive=False)
    critic_lr: float = tunable(3e-4, "critic learning rate (Adam)", low=0.0, low_inclusive=False)
    value_lr: float = tunable(3e-4, "value learning rate (Adam)", low=0.0, low_inclusive=False)
    gamma: float = tunable(0.99, "discount factor", low=0.0, high=1.0)
    tau: float = tunable(0.005, "Polyak coefficient of the target critics", low=0.0, high=1.0)

    def _check_consistency(self) -> list[str]:
        problems = super()._check_consistency()
        if self.log_std_min >= self.log_std_max:
            problems.append(f"log_std_min={self.log_std_min} must be < log_std_max={self.log_std_max}")
        return problems


Config = IQLConfig

PRESETS = {
    "paper": {"_doc": "the IQL paper's code (MuJoCo): 1M gradient steps, evaluated every 5,000, states not normalized",
              "total_steps": 1_000_000, "eval_every": 5_000, "normalize_states": False},
    "antmaze": {"_doc": "the IQL paper's AntMaze values: expectile 0.9, temperature 10, 1M gradient steps "
                "(its reward r - 1 is not applied: give the dataset's rewards shifted)",
                "total_steps": 1_000_000, "eval_every": 5_000, "normalize_states": False, "normalize_rewards": False,
                "expectile": 0.9, "temperature": 10.0},
}


# ---------------------------------------------------------------------------------------------
# Networks: V(s), SAC's twin Q(s, a), BC's Gaussian actor
# ---------------------------------------------------------------------------------------------
class ValueNetwork(nn.Module):
    hidden_sizes: tuple[int, ...]
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs):
        return MLP(self.hidden_sizes, 1, self.activation)(obs)[..., 0]


def build_networks(config: IQLConfig, action_dim: int):
    """(actor, twin critic, value)."""
    return bc.gaussian_actor(config, action_dim), sac.twin_critic(config), ValueNetwork(tuple(config.hidden_sizes), config.activation)


@struct.dataclass
class IQLLearner:
    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    value_params: Any
    actor_opt_state: Any
    critic_opt_state: Any
    value_opt_state: Any


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------
def expectile_loss(diff, expectile):
    """L_2^tau(u) = |tau - 1(u < 0)| u^2, elementwise (paper Eq. 5)."""
    weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff**2


def value_loss(value_params, value, obs, target_q, expectile):
    """L_V = E_B[ L_2^tau( sg(min_j Qbar_j(s, a)) - V(s) ) ]."""
    v = value.apply(value_params, obs)
    return jnp.mean(expectile_loss(jax.lax.stop_gradient(target_q) - v, expectile)), v


def critic_target(reward, terminated, next_v, gamma):
    """y = r + gamma (1 - term) V(s'): a truncated transition bootstraps."""
    return reward + gamma * (1.0 - terminated) * next_v


def critic_loss(critic_params, critic, batch, target):
    """L_Q = sum_j E_B[(Q_j(s, a) - sg(y))^2] (paper Eq. 6, both critics)."""
    q = critic.apply(critic_params, batch.obs, batch.action)  # (2, B)
    return jnp.sum(jnp.mean((q - jax.lax.stop_gradient(target)) ** 2, axis=-1)), q


def advantage_weights(target_q, v, temperature, max_weight):
    """w = min(exp(beta (Qbar(s, a) - V(s))), max_weight), constants for the actor's gradient."""
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(temperature * (target_q - v)), max_weight))


def actor_loss(actor_params, actor, obs, action, weights):
    """L_pi = -E_B[ w log pi(a|s) ] (paper Eq. 7)."""
    mean, log_std = actor.apply(actor_params, obs)
    return -jnp.mean(weights * bc.gaussian_log_likelihood(mean, log_std, action))


def actor_learning_rate(config: IQLConfig, step):
    """lr_t = lr 0.5 (1 + cos(pi min(t, T) / T)), T = total_steps (t counts earlier steps)."""
    if config.actor_lr_schedule == "constant":
        return config.actor_lr
    progress = jnp.minimum(step, config.total_steps) / config.total_steps
    return config.actor_lr * 0.5 * (1.0 + jnp.cos(math.pi * progress))


# ---------------------------------------------------------------------------------------------
# One gradient step: V -> actor -> Q -> targets (the authors' order)
# ---------------------------------------------------------------------------------------------
def init_learner(config: IQLConfig, obs, action_dim: int, key) -> IQLLearner:
    k_actor, k_critic, k_value = jax.random.split(key, 3)
    actor, critic, value = build_networks(config, action_dim)
    actor_params = actor.init(k_actor, obs[:1])
    critic_params = critic.init(k_critic, obs[:1], jnp.zeros((1, action_dim), jnp.float32))
    value_params = value.init(k_value, obs[:1])
    return IQLLearner(
        actor_params=actor_params, critic_params=critic_params, target_critic_params=critic_params,
        value_params=value_params, actor_opt_state=offline.adam_init(actor_params),
        critic_opt_state=offline.adam_init(critic_params), value_opt_state=offline.adam_init(value_params),
    )


def learn(config: IQLConfig, action_dim: int, learner: IQLLearner, batch, key, step):
    """One step of V, the actor and the critics on the minibatch, then the target update (IQL
    draws no random numbers: ``key`` is unused)."""
    actor, critic, value = build_networks(config, action_dim)
    target_q = jnp.min(critic.apply(learner.target_critic_params, batch.obs, batch.action), axis=0)

    (v_loss, v_old), v_grads = jax.value_and_grad(value_loss, has_aux=True)(
        learner.value_params, value, batch.obs, target_q, config.expectile
    )
    value_params, value_opt_state = offline.adam_step(v_grads, learner.value_opt_state, learner.value_params, config.value_lr)

    v = value.apply(value_params, batch.obs)
    weights = advantage_weights(target_q, v, config.temperature, config.max_weight)
    a_loss, a_grads = jax.value_and_grad(actor_loss)(learner.actor_params, actor, batch.obs, batch.action, weights)
    actor_params, actor_opt_state = offline.adam_step(
        a_grads, learner.actor_opt_state, learner.actor_params, actor_learning_rate(config, step)
    )

    target = critic_target(batch.reward, batch.terminated, value.apply(value_params, batch.next_obs), config.gamma)
    (c_loss, q), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(learner.critic_params, critic, batch, target)
    critic_params, critic_opt_state = offline.adam_step(c_grads, learner.critic_opt_state, learner.critic_params, config.critic_lr)

    learner = IQLLearner(
        actor_params=actor_params, critic_params=critic_params,
        target_critic_params=offline.polyak(learner.target_critic_params, critic_params, config.tau),
        value_params=value_params, actor_opt_state=actor_opt_state, critic_opt_state=critic_opt_state,
        value_opt_state=value_opt_state,
    )
    metrics = {
        "loss/value": v_loss, "loss/critic": c_loss, "loss/actor": a_loss, "q_mean": jnp.mean(q),
        "v_mean": jnp.mean(v_old), "iql/advantage_mean": jnp.mean(target_q - v), "iql/weight_mean": jnp.mean(weights),
        "iql/weight_clipped": jnp.mean((weights >= config.max_weight).astype(jnp.float32)),
    }
    return learner, metrics


def act(config: IQLConfig, action_dim: int, learner: IQLLearner, obs):
    """The policy's mean tanh(f(s)) (the code evaluates at temperature 0)."""
    return bc.gaussian_actor(config, action_dim).apply(learner.actor_params, obs)[0]


def q_estimate(config: IQLConfig, action_dim: int, learner: IQLLearner, obs, action):
    """The twin critics' Q(s, a), shape (2, B), of normalized observations (rewards scaled when
    ``normalize_rewards``)."""
    return sac.twin_critic(config).apply(learner.critic_params, obs, action)


def reward_scale(dataset) -> float:
    """1000 / (max - min) of the dataset's episode returns (the authors' MuJoCo normalisation);
    1 when every episode has the same return (the code would divide by zero)."""
    from rlx.buffers.dataset import episode_returns

    returns = np.asarray(episode_returns(dataset), np.float64)
    if returns.size == 0 or not np.all(np.isfinite(returns)):
        raise ConfigError("normalize_rewards=True needs the dataset's episode returns; pass normalize_rewards=False")
    spread = float(returns.max() - returns.min())
    return 1000.0 / spread if spread > 0.0 else 1.0


# ---------------------------------------------------------------------------------------------
# The agent: bound to a dataset (Python) or built from --dataset (command line)
# ---------------------------------------------------------------------------------------------
def agent(dataset, **kwargs) -> offline.DatasetAgent:
    """IQL bound to ``dataset``; see :func:`rlx.agents.offline.build_agent`."""
    import sys

    return offline.build_agent(sys.modules[__name__], dataset, **kwargs)


check_env = init = update = make_policy = model_based.no_dataset(NAME)


def from_inputs(config, **inputs):
    """The agent built from files, as ``rlx train iql --dataset PATH`` builds it; the inputs
    are those of :func:`rlx.agents.offline.from_inputs`."""
    import sys

    return offline.from_inputs(sys.modules[__name__], config, **inputs)


def observation_stats(state):
    return None
