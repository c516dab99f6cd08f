"""Reward-free exploration: explore without a reward, then plan for any reward given afterwards."""

from . import linear_mixture  # noqa: F401  (theory-faithful, small MDPs with a known feature map)
from .linear_mixture import RewardFreeConfig  # noqa: F401
from .linear_mixture import explore as explore_linear_mixture  # noqa: F401
from .linear_mixture import plan as plan_linear_mixture  # noqa: F401

# isort: split
# Deep exploration for real tasks: bonuses that plug into any agent, explore -> dataset -> plan.
from . import intrinsic, phases  # noqa: F401
from .intrinsic import APT, RND, Disagreement, IntrinsicReward  # noqa: F401
from .phases import explore, plan, pretrain_finetune, relabel, with_intrinsic  # noqa: F401
