"""GRPO (Shao et al. 2024, arXiv 2402.03300) for multi-step tasks: GiGPO with the step level
off, so every step of a trajectory gets its episode's group-relative advantage
(``algorithms.md`` 5.1). Everything but the config defaults is :mod:`rlx.agents.gigpo`."""

from __future__ import annotations

from rlx.agents.gigpo import (  # noqa: F401  (the agent contract)
    PRESETS,
    GiGPOConfig,
    GroupPGState,
    categorical_action_check,
    init,
    make_policy,
    observation_stats,
    update,
)
from rlx.core.config import config_dataclass, static, tunable

NAME = "grpo"
check_env = categorical_action_check(NAME)


@config_dataclass
class GRPOConfig(GiGPOConfig):
    """GiGPO's config with ``step_level=False`` and omega = 0."""

    step_level: bool = static(False, "step-level (anchor-state) advantages; False is GRPO", choices=(False, True))
    step_weight: float = tunable(0.0, "omega: weight of the step-level advantage (unused when step_level=False)", low=0.0)


Config = GRPOConfig
