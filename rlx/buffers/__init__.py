"""Replay buffers and offline datasets (with loaders for D4RL and Minari files)."""

from rlx.buffers.dataset import (
    Dataset,
    DatasetError,
    DatasetInfo,
    episode_returns,
    from_arrays,
    normalized_score,
)
from rlx.buffers.dataset import load as load_dataset
from rlx.buffers.dataset import sample as sample_dataset
from rlx.buffers.dataset import save as save_dataset
from rlx.buffers.dataset import validate as validate_dataset
from rlx.buffers.loaders import load_d4rl, load_minari, open_dataset
from rlx.buffers.replay import ReplayBuffer, add_batch, add_masked, init_buffer, sample

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "ReplayBuffer",
    "add_batch",
    "add_masked",
    "episode_returns",
    "from_arrays",
    "init_buffer",
    "load_d4rl",
    "load_dataset",
    "load_minari",
    "normalized_score",
    "open_dataset",
    "sample",
    "sample_dataset",
    "save_dataset",
    "validate_dataset",
]
