"""Replay buffers (and, later, offline datasets)."""

from rlx.buffers.replay import ReplayBuffer, add_batch, init_buffer, sample

__all__ = ["ReplayBuffer", "add_batch", "init_buffer", "sample"]
