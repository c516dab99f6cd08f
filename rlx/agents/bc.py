"""Behaviour cloning: supervised regression of the dataset's actions on its states.

The baseline of the offline RL papers (Fujimoto & Gu 2021, "A Minimalist Approach to Offline
Reinforcement Learning", arXiv 2106.06860, Table 1's BC; CORL's ``any_percent_bc`` with the
whole dataset). Two policies, chosen by ``policy``:

* ``"deterministic"`` (default, the TD3+BC paper's and CORL's BC): a = pi(s) = tanh(f(s)),
  trained by the mean squared error over the batch and the action dimensions

      L_MSE(phi) = E_{(s, a) ~ D} [ mean_i (pi_phi(s)_i - a_i)^2 ]          (TD3+BC Eq. 3's BC term)

* ``"gaussian"``: maximum likelihood of a diagonal Gaussian N(mu(s), diag(sigma^2)) with
  mu(s) = tanh(f(s)) and a state-independent log sigma clipped to [-5, 2] (IQL's policy, see
  :mod:`rlx.agents.iql`; it is IQL's actor loss with every weight 1)

      L_NLL(phi) = -E_{(s, a) ~ D} [ log N(a; mu_phi(s), sigma_phi^2) ]

  evaluated by its mean mu(s).

The deterministic MSE policy is the default because it is what the TD3+BC paper compares
against and what CORL reports; both learn the conditional mean of the data's actions. Defaults
(CORL ``any_percent_bc``): 2 x 256 ReLU, Adam 3e-4, batch 256, states normalized with the
dataset's mean and std (+1e-3); ``--preset paper`` runs its 1M gradient steps with an
evaluation every 5,000. The training loop, evaluation and command line are the shared offline
ones (:mod:`rlx.agents.offline`).

Usage::

    agent = bc.agent(dataset, info=info)
    train = rlx.run.make_train(agent, bc.BCConfig(), env, env_params)
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from rlx.agents import model_based, offline
from rlx.core.config import config_dataclass, static, tunable
from rlx.core.distributions import gaussian_log_prob
from rlx.core.networks import MLP

NAME = "bc"
INPUTS = offline.INPUTS


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
@config_dataclass
class BCConfig(offline.OfflineConfig):
    policy: str = static(
        "deterministic", "deterministic: tanh policy fit by mean squared error (TD3+BC's and CORL's BC); "
        "gaussian: Gaussian policy fit by maximum likelihood, evaluated by its mean",
        choices=("deterministic", "gaussian"),
    )
    log_std_min: float = static(-5.0, "lower clip of the gaussian policy's log-std")
    log_std_max: float = static(2.0, "upper clip of the gaussian policy's log-std")
    learning_rate: float = tunable(3e-4, "policy learning rate (Adam)", low=0.0, low_inclusive=False)

    def _check_consistency(self) -> list[str]:
        problems = super()._check_consistency()
        if self.log_std_min >= self.log_std_max:
            problems.append(f"log_std_min={self.log_std_min} must be < log_std_max={self.log_std_max}")
        return problems


Config = BCConfig

PRESETS = {
    "paper": {"_doc": "the TD3+BC paper's / CORL's BC: 1M gradient steps, evaluated every 5,000",
              "total_steps": 1_000_000, "eval_every": 5_000},
}


# ---------------------------------------------------------------------------------------------
# Networks (TD3+BC's actor; IQL's Gaussian actor)
# ---------------------------------------------------------------------------------------------
class DeterministicActor(nn.Module):
    """a = tanh(f(s)) in [-1, 1]^|A|."""

    action_dim: int
    hidden_sizes: tuple[int, ...]
    activation: str

    @nn.compact
    def __call__(self, obs):
        return jnp.tanh(MLP(self.hidden_sizes, self.action_dim, self.activation)(obs))


class GaussianActor(nn.Module):
    """N(mu(s), diag(sigma^2)): mu(s) = tanh(f(s)), log sigma a free vector (zeros at the start)
    clipped to [log_std_min, log_std_max]. Returns (mu, log sigma broadcast to mu's shape)."""

    action_dim: int
    hidden_sizes: tuple[int, ...]
    activation: str
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, obs):
        mean = jnp.tanh(MLP(self.hidden_sizes, self.action_dim, self.activation)(obs))
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,), jnp.float32)
        log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        return mean, jnp.broadcast_to(log_std, mean.shape)


def deterministic_actor(config, action_dim: int) -> DeterministicActor:
    return DeterministicActor(action_dim, tuple(config.hidden_sizes), config.activation)


def gaussian_actor(config, action_dim: int) -> GaussianActor:
    return GaussianActor(action_dim, tuple(config.hidden_sizes), config.activation, config.log_std_min, config.log_std_max)


def build_actor(config: BCConfig, action_dim: int) -> nn.Module:
    return deterministic_actor(config, action_dim) if config.policy == "deterministic" else gaussian_actor(config, action_dim)


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------
def mse_loss(predicted, actions) -> jax.Array:
    """L_MSE = mean over the batch and the action dimensions of (pi(s) - a)^2."""
    return jnp.mean((predicted - actions) ** 2)


def gaussian_log_likelihood(mean, log_std, actions) -> jax.Array:
    """log N(a; mu, diag(sigma^2)), summed over the action dimensions: (B,)."""
    return jnp.sum(gaussian_log_prob(actions, mean, log_std), axis=-1)


def nll_loss(mean, log_std, actions) -> jax.Array:
    """L_NLL = -E_B[ log N(a; mu(s), sigma^2) ]."""
    return -jnp.mean(gaussian_log_likelihood(mean, log_std, actions))


# ---------------------------------------------------------------------------------------------
# Learner and one gradient step
# ---------------------------------------------------------------------------------------------
@struct.dataclass
class BCLearner:
    actor_params: Any
    actor_opt_state: Any


def init_learner(config: BCConfig, obs, action_dim: int, key) -> BCLearner:
    params = build_actor(config, action_dim).init(key, obs[:1])
    return BCLearner(actor_params=params, actor_opt_state=offline.adam_init(params))


def learn(config: BCConfig, action_dim: int, learner: BCLearner, batch, key, step):
    """One Adam step on L_MSE or L_NLL of the minibatch."""
    actor = build_actor(config, action_dim)

    def loss_fn(params):
        if config.policy == "deterministic":
            return mse_loss(actor.apply(params, batch.obs), batch.action)
        mean, log_std = actor.apply(params, batch.obs)
        return nll_loss(mean, log_std, batch.action)

    loss, grads = jax.value_and_grad(loss_fn)(learner.actor_params)
    params, opt_state = offline.adam_step(grads, learner.actor_opt_state, learner.actor_params, config.learning_rate)
    return BCLearner(params, opt_state), {"loss/actor": loss}


def act(config: BCConfig, action_dim: int, learner: BCLearner, obs):
    """The deterministic action: pi(s), or the Gaussian's mean mu(s)."""
    out = build_actor(config, action_dim).apply(learner.actor_params, obs)
    return out if config.policy == "deterministic" else out[0]


# ---------------------------------------------------------------------------------------------
# The agent: bound to a dataset (Python) or built from --dataset (command line)
# ---------------------------------------------------------------------------------------------
def agent(dataset, **kwargs) -> offline.DatasetAgent:
    """BC bound to ``dataset``; see :func:`rlx.agents.offline.build_agent`."""
    import sys

    return offline.build_agent(sys.modules[__name__], dataset, **kwargs)


# Registered by name for the command line; training needs the dataset, so the module-level
# contract refuses with instructions (`rlx train bc --dataset PATH`).
check_env = init = update = make_policy = model_based.no_dataset(NAME)


def from_inputs(config, **inputs):
    """The agent built from files, as ``rlx train bc --dataset PATH`` builds it; the inputs
    are those of :func:`rlx.agents.offline.from_inputs`."""
    import sys

    return offline.from_inputs(sys.modules[__name__], config, **inputs)


def observation_stats(state):
    return None
