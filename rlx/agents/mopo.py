"""MOPO: Model-based Offline Policy Optimization (Yu et al. 2020, arXiv 2005.13239).

SAC on a mix of real transitions and short rollouts of a learned dynamics ensemble whose reward
is penalized by the model's uncertainty (paper Eq. 3 / Alg. 2, the code's "learned variance"
estimator, ``../shared/algorithms.md`` Sec. 3.3):

    rtilde(s, a) = rhat(s, a) - lambda * max_{e = 1..E} || sigma_e(s, a) ||_2

where sigma_e is member e's predicted std over all outputs (next-state difference and reward)
and the max runs over ALL E = 7 members (not only the elites), as the code does. The penalized
reward is what the model buffer stores; SAC (:mod:`rlx.agents.sac`) then trains on minibatches
of 5 % real and 95 % model rows (:mod:`rlx.agents.model_based`).

Defaults: the ensemble of Sec. 3.1 (7 members, 5 elites, 4 x 200 Swish), 50,000 rollouts of
h = 5 every 1000 gradient steps, model buffer of 5 rollouts, real_ratio 0.05, SAC 2 x 256 with
Adam 3e-4, gamma 0.99, tau 0.005, learned temperature with target entropy -|A|, 1M gradient
steps (1000 epochs of 1000). One default departs from the code: model next states are clipped to
the dataset's observation range (``clip_to_data``; ``--preset paper`` turns it off), which kept
the critic from diverging on a small Pendulum task (:func:`rlx.models.rollout.clip_next_obs`).
The paper tunes (h, lambda) per task; h = 5, lambda = 1 is the most
frequent pair of its table, and each task's pair is a preset (``--preset hopper-medium``).

Usage::

    agent = mopo.agent(dataset)                 # trains the dynamics ensemble first
    train = rlx.run.make_train(agent, mopo.MOPOConfig(), env, env_params)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx.agents import model_based, sac
from rlx.core.config import config_dataclass, static, tunable
from rlx.models.ensemble import Prediction

NAME = "mopo"


@config_dataclass
class MOPOConfig(model_based.ModelBasedConfig):
    rollout_length: int = static(5, "model rollout horizon h", low=1)
    penalty_coef: float = tunable(1.0, "lambda: weight of the uncertainty penalty", low=0.0)
    uncertainty: str = static(
        "aleatoric", "u(s, a): largest predicted std norm (the paper's) or largest distance of a member's "
        "mean next state from the ensemble mean (OfflineRL-Kit's 'pairwise-diff')",
        choices=("aleatoric", "pairwise-diff"),
    )


Config = MOPOConfig

# Per-task (h, lambda) of the official code's D4RL configs (tianheyu927/mopo, D4RL v0;
# "mixed" there is medium-replay). Our brax datasets take the same names.
_TABLE = {
    "halfcheetah-random": (5, 0.5), "hopper-random": (5, 1.0), "walker2d-random": (1, 1.0),
    "halfcheetah-medium": (1, 1.0), "hopper-medium": (5, 5.0), "walker2d-medium": (5, 5.0),
    "halfcheetah-medium-replay": (5, 1.0), "hopper-medium-replay": (5, 1.0), "walker2d-medium-replay": (1, 1.0),
    "halfcheetah-medium-expert": (5, 5.0), "hopper-medium-expert": (5, 1.0), "walker2d-medium-expert": (1, 2.0),
}
PRESETS = {
    name: {
        "_doc": f"MOPO paper code, {name}: h={h}, lambda={lam}, rollouts not clipped to the data",
        "rollout_length": h, "penalty_coef": lam, "clip_to_data": False,
    }
    for name, (h, lam) in _TABLE.items()
}
PRESETS["paper"] = {"_doc": "MOPO paper code's defaults: rollouts not clipped to the data's range", "clip_to_data": False}


def uncertainty_penalty(prediction: Prediction) -> jax.Array:
    """u(s, a) = max_e || sigma_e(s, a) ||_2 over all members and all output dims: (B,)."""
    return jnp.max(jnp.linalg.norm(prediction.std, axis=-1), axis=0)


def disagreement_penalty(prediction: Prediction) -> jax.Array:
    """u(s, a) = max_e || mu_e(s, a) - mean_e' mu_e'(s, a) ||_2 over the next-state means: (B,)."""
    mean = prediction.next_obs_mean
    return jnp.max(jnp.linalg.norm(mean - jnp.mean(mean, axis=0), axis=-1), axis=0)


def penalized_reward(reward, prediction: Prediction, penalty_coef) -> jax.Array:
    """rtilde = r - lambda u(s, a)  (paper Eq. 3)."""
    return reward - penalty_coef * uncertainty_penalty(prediction)


def rollout_penalty(config: MOPOConfig):
    """The rollout's penalty slot: lambda u(s, a), subtracted from the stored reward."""
    u = uncertainty_penalty if config.uncertainty == "aleatoric" else disagreement_penalty
    return lambda prediction, transition: config.penalty_coef * u(prediction)


def learn(config: MOPOConfig, agent, action_dim, learner, real, model, key, step):
    """One SAC step on the concatenated real and (already penalized) model rows."""
    return sac.gradient_step(config.sac_config(), action_dim, learner, model_based.concat(real, model), key, step)


def agent(dataset, dynamics=None, **kwargs) -> model_based.OfflineAgent:
    """MOPO bound to ``dataset``; see :func:`rlx.agents.model_based.build_agent`."""
    import sys

    return model_based.build_agent(sys.modules[__name__], dataset, dynamics, **kwargs)


# The module is registered by name for the command line; training needs the dataset, so the
# module-level contract refuses with instructions (`rlx train mopo --dataset PATH`).
check_env = init = update = make_policy = model_based.no_dataset(NAME)
INPUTS = model_based.INPUTS  # from_inputs(config, dataset=PATH, dynamics=PATH | None, ...)


def from_inputs(config, **inputs):
    """The agent built from files, as ``rlx train mopo --dataset PATH`` builds it; the inputs
    are those of :func:`rlx.agents.model_based.from_inputs`."""
    import sys

    return model_based.from_inputs(sys.modules[__name__], config, **inputs)


def observation_stats(state):
    return None
