"""Agents by name. Each agent module exports ``Config``, ``check_env``, ``init``, ``update``,
``make_policy`` and ``observation_stats`` (see :mod:`rlx.run.train`)."""

from __future__ import annotations

import importlib
from types import ModuleType

AGENTS: dict[str, str] = {
    "sac": "rlx.agents.sac",
    "dsac_t": "rlx.agents.dsac_t",
    "ppo": "rlx.agents.ppo",
    "grpo": "rlx.agents.grpo",
    "gigpo": "rlx.agents.gigpo",
    # offline model-based (train from a dataset: `rlx train mopo --dataset PATH`)
    "mopo": "rlx.agents.mopo",
    "mobile": "rlx.agents.mobile",
}


class UnknownAgentError(ValueError):
    pass


def get_agent(name: str) -> ModuleType:
    """The agent module registered as ``name`` (case-insensitive)."""
    key = name.lower()
    if key not in AGENTS:
        raise UnknownAgentError(f"unknown agent {name!r}; available: {', '.join(sorted(AGENTS))}")
    return importlib.import_module(AGENTS[key])


def agent_names() -> list[str]:
    return sorted(AGENTS)
