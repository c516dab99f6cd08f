"""MOBILE: Model-Bellman Inconsistency penalized offLinE policy optimization (Sun et al.,
ICML 2023, PMLR v202 sun23q).

The penalty of a model transition is the disagreement of the ensemble's Bellman backups under
the current Q (paper Eq. 5-7; ``../shared/algorithms.md`` Sec. 3.4, in the form of the official
code's ``compute_lcb``):

    for each elite k and N = 10 samples j:  s'_kj ~ N(s + mu_k(s, a), sigma_k(s, a)^2)  (obs part)
                                            a'_kj ~ pi(.|s'_kj)
                                            q_kj  = min_i Qbar_i(s'_kj, a'_kj)
    u(s, a) = std_k( mean_j q_kj )          (unbiased std over the K elites)

and the critic target of a model row is y = r - beta u(s, a) + gamma (1 - term) Q_next, with
Q_next = min_i Qbar_i(s', a') and no entropy term ("deterministic backup"); real rows get no
penalty. The actor and temperature are SAC's on the mixed batch (:mod:`rlx.agents.sac`), and
the actor's learning rate follows a cosine decay over training. As in the official code, the
temperature is learned as log_alpha from 0 (alpha = 1) with the loss -log_alpha sg(log pi +
H_target), H_target = -|A|, and the losses use alpha = min(exp(log_alpha), 1): the alpha is
clamped, not log_alpha, so a log_alpha that has risen above 0 has to come back below 0 before
the alpha in use drops under 1 again. The target and the clamped alpha are :func:`critic_target`
and :func:`temperature`, which :func:`learn` passes to SAC's gradient step
(:func:`rlx.agents.sac.gradient_step`), whose own defaults stay SAC's.

Defaults (yihaosun1124/mobile ``configs/gym/default.py`` and ``train.py``): actor lr 1e-4
(cosine), critic lr 3e-4, temperature lr 1e-4 from 1 (log_alpha = 0), target entropy -|A|,
2 x 256, gamma 0.99, tau 0.005, N = 10, h = 1, beta = 1.0, rollouts and mixing as MOPO's (50,000
starts every 1000 steps, 5 % real), actor log-std in [-5, 2], 3M gradient steps; per-task (h,
beta, ...) as presets.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rlx.agents import model_based, sac
from rlx.core.config import config_dataclass, static, tunable
from rlx.models.ensemble import Dynamics, predict

NAME = "mobile"


@config_dataclass
class MOBILEConfig(model_based.ModelBasedConfig):
    total_steps: int = static(3_000_000, "gradient steps in total (offline: no env steps are taken)", low=1)
    rollout_length: int = static(1, "model rollout horizon h", low=1)
    log_std_min: float = static(-5.0, "lower clip of the policy's log-std")
    actor_lr: float = tunable(1e-4, "actor learning rate (Adam; cosine-decayed when actor_lr_cosine)", low=0.0, low_inclusive=False)
    alpha_lr: float = tunable(1e-4, "temperature learning rate (Adam)", low=0.0, low_inclusive=False)
    init_alpha: float = tunable(1.0, "initial temperature (the official code: log_alpha = 0)", low=0.0, low_inclusive=False)
    penalty_coef: float = tunable(1.0, "beta: weight of the Bellman-inconsistency penalty", low=0.0)
    max_alpha: float = tunable(1.0, "upper bound of the temperature the losses use (log_alpha itself is not bounded)", low=0.0, low_inclusive=False)
    num_next_samples: int = static(10, "N: next states sampled per elite for the penalty", low=1)
    deterministic_backup: bool = static(True, "critic target without the -alpha log pi term", choices=(False, True))
    clip_target_at_zero: bool = static(False, "clip critic targets at 0 (only for non-negative rewards)", choices=(False, True))
    actor_lr_cosine: bool = static(True, "cosine decay of the actor learning rate to 0 over training", choices=(False, True))

    def _check_consistency(self) -> list[str]:
        problems = super()._check_consistency()
        if self.num_elites < 2:
            problems.append(f"num_elites={self.num_elites}: the penalty is a std across elites, needs >= 2")
        return problems


Config = MOBILEConfig

# Per-task settings of the official configs (yihaosun1124/mobile configs/gym/*.py, D4RL v2).
_TASKS = {
    "halfcheetah-random": {"rollout_length": 5, "penalty_coef": 0.5},
    "hopper-random": {"rollout_length": 5, "penalty_coef": 5.0},
    "walker2d-random": {"rollout_length": 5, "penalty_coef": 2.0},
    "halfcheetah-medium": {"rollout_length": 5, "penalty_coef": 0.5},
    "hopper-medium": {"rollout_length": 5, "penalty_coef": 1.5, "learn_alpha": False, "init_alpha": 0.2},
    "walker2d-medium": {"rollout_length": 5, "penalty_coef": 0.5, "model_max_epochs": 30},
    "halfcheetah-medium-replay": {"rollout_length": 5, "penalty_coef": 0.1},
    "hopper-medium-replay": {"rollout_length": 5, "penalty_coef": 0.1, "learn_alpha": False, "init_alpha": 0.2},
    "walker2d-medium-replay": {"rollout_length": 1, "penalty_coef": 0.5},
    "halfcheetah-medium-expert": {"rollout_length": 5, "penalty_coef": 1.0, "real_ratio": 0.5},
    "hopper-medium-expert": {"rollout_length": 5, "penalty_coef": 1.5},
    "walker2d-medium-expert": {"rollout_length": 1, "penalty_coef": 1.5},
}
PRESETS = {
    name: {
        "_doc": "MOBILE paper code, " + name + ": " + ", ".join(f"{k}={v}" for k, v in values.items())
        + ", rollouts not clipped to the data",
        **values, "clip_to_data": False,
    }
    for name, values in _TASKS.items()
}
PRESETS["paper"] = {"_doc": "MOBILE paper code's defaults: rollouts not clipped to the data's range", "clip_to_data": False}


def bellman_inconsistency(config: MOBILEConfig, dynamics: Dynamics, learner: sac.SACLearner, obs, action, key, action_dim):
    """u(s, a) = std_k( mean_j min_i Qbar_i(s'_kj, a'_kj) ), unbiased over the K elites: (B,)."""
    sac_config = config.sac_config()
    k_next, k_act = jax.random.split(key)
    prediction = predict(dynamics, obs, action)
    mean = prediction.next_obs_mean[dynamics.elites]  # (K, B, obs)
    std = prediction.next_obs_std[dynamics.elites]
    n = config.num_next_samples
    noise = jax.random.normal(k_next, (mean.shape[0], n) + mean.shape[1:], mean.dtype)
    next_obs = mean[:, None] + std[:, None] * noise  # (K, N, B, obs)
    flat = next_obs.reshape((-1, obs.shape[-1]))
    next_action = sac.act(sac_config, learner, flat, k_act)
    q = jnp.min(sac.twin_critic(sac_config).apply(learner.target_critic_params, flat, next_action), axis=0)
    per_elite = jnp.mean(q.reshape(next_obs.shape[:3]), axis=1)  # (K, B)
    return penalty_from_elite_values(per_elite)


def penalty_from_elite_values(per_elite_values) -> jax.Array:
    """Unbiased (K - 1) std over the leading elite axis."""
    return jnp.std(per_elite_values, axis=0, ddof=1)


def actor_learning_rate(config: MOBILEConfig, step):
    """Cosine decay per epoch (``rollout_freq`` steps) from actor_lr to 0 over the run."""
    if not config.actor_lr_cosine:
        return config.actor_lr
    epochs = max(1, config.total_steps // config.rollout_freq)
    epoch = jnp.minimum(step // config.rollout_freq, epochs)
    return config.actor_lr * 0.5 * (1.0 + jnp.cos(math.pi * epoch / epochs))


def rollout_penalty(config: MOBILEConfig):
    return None  # MOBILE penalizes the critic target at learning time, with the current Q


def critic_target(config: MOBILEConfig):
    """MOBILE's critic target, SAC's ``target_fn`` (:func:`rlx.agents.sac.gradient_step`):
    y = r + gamma (1 - term) min_i Qbar_i(s', a'), without SAC's -alpha log pi(a'|s') term
    ("deterministic backup", the official code) unless ``deterministic_backup`` is off, and
    clipped at 0 when ``clip_target_at_zero``. The penalty is already in r (:func:`learn`)."""

    def target(reward, terminated, next_q_min, next_log_prob, alpha, gamma):
        y = sac.critic_target(reward, terminated, next_q_min, next_log_prob, 0.0 if config.deterministic_backup else alpha, gamma)
        return jnp.maximum(y, 0.0) if config.clip_target_at_zero else y

    return target


def temperature(config: MOBILEConfig):
    """MOBILE's ``temperature_fn``: alpha = min(exp(log_alpha), max_alpha) in every loss, while
    log_alpha itself stays unbounded (the official code)."""
    return lambda log_alpha: jnp.minimum(sac.temperature(log_alpha), config.max_alpha)


def learn(config: MOBILEConfig, agent, action_dim, learner, real, model, key, step):
    """Penalize the model rows' rewards by beta u(s, a), then one SAC step with MOBILE's
    :func:`critic_target` and :func:`temperature`."""
    k_penalty, k_step = jax.random.split(key)
    u = bellman_inconsistency(config, agent.dynamics, learner, model.obs, model.action, k_penalty, action_dim)
    u = jax.lax.stop_gradient(u)
    # y = (r - beta u) + gamma (1 - term) Q_next: the penalty enters through the reward.
    model = model._replace(reward=model.reward - config.penalty_coef * u)
    opt_state = learner.actor_opt_state
    if hasattr(opt_state, "hyperparams"):  # optax.inject_hyperparams: the lr is a state entry
        lr = jnp.asarray(actor_learning_rate(config, step), jnp.float32)
        learner = learner.replace(actor_opt_state=opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": lr}))
    learner, metrics = sac.gradient_step(
        config.sac_config(), action_dim, learner, model_based.concat(real, model), k_step, step,
        target_fn=critic_target(config), temperature_fn=temperature(config),
    )
    return learner, {**metrics, "mobile/penalty": jnp.mean(u)}


def agent(dataset, dynamics=None, **kwargs) -> model_based.OfflineAgent:
    """MOBILE bound to ``dataset``; see :func:`rlx.agents.model_based.build_agent`."""
    import sys

    return model_based.build_agent(sys.modules[__name__], dataset, dynamics, **kwargs)


check_env = init = update = make_policy = model_based.no_dataset(NAME)
INPUTS = model_based.INPUTS  # from_inputs(config, dataset=PATH, dynamics=PATH | None, ...)


def from_inputs(config, **inputs):
    """The agent built from files, as ``rlx train mobile --dataset PATH`` builds it; the inputs
    are those of :func:`rlx.agents.model_based.from_inputs`."""
    import sys

    return model_based.from_inputs(sys.modules[__name__], config, **inputs)


def observation_stats(state):
    return None
