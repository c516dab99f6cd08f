"""Agents by name. Each registered agent meets the agent contract of :mod:`rlx.core.contract`
(``NAME``, ``Config``, ``check_env``, ``init``, ``update``, ``make_policy``,
``observation_stats``; optionally ``PRESETS``, ``INPUTS`` and ``from_inputs`` ...), which
:func:`get_agent` checks."""

from __future__ import annotations

import importlib
from types import ModuleType

from rlx.core.contract import Agent, check_agent

AGENTS: dict[str, str] = {
    "sac": "rlx.agents.sac",
    "dsac_t": "rlx.agents.dsac_t",
    "ppo": "rlx.agents.ppo",
    "grpo": "rlx.agents.grpo",
    "gigpo": "rlx.agents.gigpo",
    # offline model-based (train from a dataset: `rlx train mopo --dataset PATH`)
    "mopo": "rlx.agents.mopo",
    "mobile": "rlx.agents.mobile",
    # MOREC's transition filter on MOPO / MOBILE (`rlx train morec_mopo --dataset PATH`)
    "morec_mopo": "rlx.agents.morec:MOREC_MOPO",
    "morec_mobile": "rlx.agents.morec:MOREC_MOBILE",
    # offline model-free baselines (`rlx train td3_bc --dataset PATH`)
    "bc": "rlx.agents.bc",
    "td3_bc": "rlx.agents.td3_bc",
    "iql": "rlx.agents.iql",
}


class UnknownAgentError(ValueError):
    pass


def get_agent(name: str) -> Agent | ModuleType:
    """The agent module registered as ``name`` (case-insensitive); for a variant of another
    agent (MOREC-MOPO is MOPO with a filter), an object with the module's contract. Raises a
    TypeError naming what is missing when it does not meet :class:`rlx.core.contract.Agent`."""
    key = name.lower()
    if key not in AGENTS:
        raise UnknownAgentError(f"unknown agent {name!r}; available: {', '.join(sorted(AGENTS))}")
    module, _, attribute = AGENTS[key].partition(":")  # "pkg.module" or "pkg.module:object"
    loaded = importlib.import_module(module)
    agent = getattr(loaded, attribute) if attribute else loaded
    check_agent(agent)
    return agent


def agent_names() -> list[str]:
    return sorted(AGENTS)
