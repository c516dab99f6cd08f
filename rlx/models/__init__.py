"""Learned dynamics for model-based RL: Gaussian ensembles, branched rollouts, termination rules."""

from rlx.models.ensemble import (
    Dynamics,
    EnsembleConfig,
    Prediction,
    TrainingReport,
    is_terminal,
    load_dynamics,
    predict,
    save_dynamics,
    train_dynamics,
)

# (the rollout function is rlx.models.rollout.rollout; the module keeps the name)
from rlx.models.rollout import ModelTransition, Rollout, rollout_stats, sample_elite
from rlx.models.termination import rule_for_env

__all__ = [
    "Dynamics",
    "EnsembleConfig",
    "ModelTransition",
    "Prediction",
    "Rollout",
    "TrainingReport",
    "is_terminal",
    "load_dynamics",
    "predict",
    "rollout_stats",
    "rule_for_env",
    "sample_elite",
    "save_dynamics",
    "train_dynamics",
]
