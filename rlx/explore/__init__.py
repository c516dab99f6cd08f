"""Reward-free exploration: explore without a reward, then plan for any reward given afterwards."""

from . import linear_mixture  # noqa: F401  (theory-faithful, small MDPs with a known feature map)
from .linear_mixture import RewardFreeConfig  # noqa: F401
from .linear_mixture import explore as explore_linear_mixture  # noqa: F401
from .linear_mixture import plan as plan_linear_mixture  # noqa: F401
