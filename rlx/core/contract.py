"""The agent contract: what the runner, the command line and checkpoints use of an agent.

An agent is any object with the members of :class:`Agent`, usually its module
(:mod:`rlx.agents.sac`), sometimes an object (MOREC's variants, an offline agent bound to its
dataset). :func:`rlx.run.make_train` calls the required members; the optional ones
(:class:`OptionalMembers`) are looked up with :func:`optional`, which gives the documented default
of a member the agent does not have, so no caller probes with ``hasattr``.

Agents trained from files (an offline dataset, a dynamics model) have ``from_inputs(config,
**inputs)``, a plain function whose keyword inputs are named as the command line's flags
(``dataset=PATH`` for ``--dataset PATH``), and ``INPUTS``, the names of those inputs. The command
line turns ``INPUTS`` into flags and calls ``from_inputs``; a resumed run calls it with the paths
its ``config.json`` recorded.

:func:`check_agent` refuses an object that misses a required member or has one of the wrong kind,
naming the agent and every problem; :func:`rlx.agents.get_agent` applies it to every agent it
returns.

This module imports nothing but the standard library at module level: the command line reads it
before jax is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Agent(Protocol):
    """The members every agent has (a module satisfies this Protocol as well as an object)."""

    NAME: str
    """The name the agent is registered under and that ``config.json`` records."""

    Config: type
    """Its config class: a :class:`rlx.core.config.TrainConfig` with the properties ``env_steps_per_iteration`` and ``warmup_env_steps``."""

    def check_env(self, config, env, env_params) -> None:
        """Raise a clear error, before any tracing, for a config or env the agent cannot train on."""

    def init(self, config, env, env_params, key) -> Any:
        """The whole train state (a typed pytree with an ``env_steps`` counter), warm-up included."""

    def update(self, config, env, env_params, state) -> tuple[Any, dict]:
        """One collect-and-learn iteration: ``(state, metrics)``."""

    def make_policy(self, config, state, deterministic: bool = True) -> Callable:
        """``policy(obs, key) -> action`` of the state's parameters."""

    def observation_stats(self, state) -> Any:
        """The running observation statistics the policy's inputs are normalized with, or None."""


class OptionalMembers(Protocol):
    """Members an agent may have; :func:`optional` returns :data:`OPTIONAL`'s default for a missing one."""

    PRESETS: Mapping[str, Mapping[str, Any]]
    """Named sets of config values (``--preset NAME``), each with an optional ``_doc`` line; default: none."""

    DATA_PARALLEL: bool
    """Whether the agent can train one copy on several devices (:func:`rlx.run.mesh.make_data_parallel_train`); default: False."""

    INPUTS: tuple[str, ...]
    """The names of the keyword inputs of ``from_inputs`` that are files (``("dataset", "dynamics")``); default: none."""

    def from_inputs(self, config, **inputs) -> Agent:
        """The agent bound to its inputs (``dataset=PATH`` ...); absent for an agent that trains from an env alone."""

    def eval_metrics(self, returns) -> dict:
        """Metrics of the evaluation returns beyond their mean and std (D4RL's normalized score); default: none."""

    def q_estimate(self, config, state, obs, action) -> Any:
        """The critics' Q(s, a) of raw observations; absent for an agent without a Q function."""

    def value_estimate(self, config, state, obs) -> Any:
        """The critic's V(s) of raw observations; absent for an agent without a state-value function."""

    def training_env(self, config, env, env_params) -> Any:
        """The vectorized, wrapped env the agent trains in, as ``init`` and ``update`` build it; absent when the agent takes no env step."""


def _no_eval_metrics(returns) -> dict:
    return {}


REQUIRED: tuple[str, ...] = ("NAME", "Config", "check_env", "init", "update", "make_policy", "observation_stats")
"""The members of :class:`Agent`, in the order :func:`check_agent` names them."""

OPTIONAL: Mapping[str, Any] = MappingProxyType({
    "PRESETS": MappingProxyType({}),
    "DATA_PARALLEL": False,
    "INPUTS": (),
    "from_inputs": None,
    "eval_metrics": _no_eval_metrics,
    "q_estimate": None,
    "value_estimate": None,
    "training_env": None,
})
"""The members of :class:`OptionalMembers` and the value :func:`optional` gives for a missing one."""


def optional(agent, member: str):
    """``agent``'s optional ``member``, or its default (:data:`OPTIONAL`) when the agent has none."""
    if member not in OPTIONAL:
        raise KeyError(f"{member!r} is not an optional member of the agent contract; optional: {', '.join(OPTIONAL)}")
    return getattr(agent, member, OPTIONAL[member])


def name_of(agent) -> str:
    """How messages and ``config.json`` name ``agent``: its ``NAME``, else its module name."""
    return getattr(agent, "NAME", getattr(agent, "__name__", str(agent)))


def _kind_problem(member: str, value) -> str | None:
    """What is wrong with ``value`` as ``member``, or None."""
    got = type(value).__name__
    if member == "NAME":
        return None if isinstance(value, str) and value else f"NAME must be a non-empty str (it is {value!r})"
    if member == "Config":
        # Imported here, not at the top: importing an agent has imported jax already.
        from rlx.core.config import TrainConfig

        if not (isinstance(value, type) and issubclass(value, TrainConfig)):
            return f"Config must be a subclass of rlx.core.config.TrainConfig (it is {value!r})"
        absent = [p for p in ("env_steps_per_iteration", "warmup_env_steps") if not hasattr(value, p)]
        return f"Config {value.__name__} has no {' or '.join(absent)}" if absent else None
    if member == "PRESETS":
        ok = isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, Mapping) for k, v in value.items())
        return None if ok else f"PRESETS must map names to dicts of config values (got {got})"
    if member == "INPUTS":
        ok = isinstance(value, tuple) and all(isinstance(v, str) and v for v in value)
        return None if ok else f"INPUTS must be a tuple of names (it is {value!r})"
    if member == "DATA_PARALLEL":
        return None if isinstance(value, bool) else f"DATA_PARALLEL must be a bool (got {got})"
    return None if callable(value) else f"{member} is not callable (got {got})"


def check_agent(agent) -> None:
    """Raise a :class:`TypeError` naming ``agent`` and every missing required member, every member
    of the wrong kind (a non-callable ``init``, a ``Config`` that is no TrainConfig), and an agent
    with ``from_inputs`` but no ``INPUTS``."""
    missing, wrong = [], []
    for member in REQUIRED:
        try:
            value = getattr(agent, member)
        except AttributeError:
            missing.append(member)
            continue
        problem = _kind_problem(member, value)
        if problem:
            wrong.append(problem)
    for member, default in OPTIONAL.items():
        value = getattr(agent, member, default)
        if value is not default:
            problem = _kind_problem(member, value)
            if problem:
                wrong.append(problem)
    if getattr(agent, "from_inputs", None) is not None and not getattr(agent, "INPUTS", ()):
        wrong.append("from_inputs needs INPUTS, the names of its file inputs (the command line's flags)")
    if missing or wrong:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + wrong
        raise TypeError(
            f"agent {name_of(agent)!r} does not meet the agent contract (rlx.core.contract.Agent): " + "; ".join(problems)
        )
