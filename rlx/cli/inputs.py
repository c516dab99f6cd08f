"""The command-line side of an agent's file inputs (:func:`rlx.core.contract.OptionalMembers.from_inputs`).

An agent that trains from files names them in ``INPUTS`` (``("dataset", "dynamics")``); each
name becomes a flag ``--NAME PATH``, and an input the agent trains when it is not given (a
dynamics model, MOREC's dynamics reward) also gets ``--save-NAME PATH``. The parsed flags, with
``--env``, ``--env-kwarg``, ``--seed`` and ``--no-progress``, become the keyword arguments of
``agent.from_inputs(config, **inputs)``: nothing below the command line sees argparse.

Imports no jax: ``rlx train ALGO --help`` is built before jax is imported.
"""

from __future__ import annotations

from rlx.core import contract
from rlx.core.parse import parse_env_kwargs

# name -> (help of --NAME, help of --save-NAME or None for an input that is never trained here)
INPUT_FLAGS: dict[str, tuple[str, str | None]] = {
    "dataset": ("offline dataset folder (rlx.buffers.dataset format; D4RL / Minari files via their loaders)", None),
    "dynamics": ("a saved dynamics model to use instead of training one", "save the trained dynamics model here"),
    "dynamics_reward": ("a saved dynamics reward to use instead of training one", "save the trained dynamics reward here"),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _helps(name: str) -> tuple[str, str | None]:
    return INPUT_FLAGS.get(name, (f"the {name.replace('_', ' ')} file", None))


def builds_from_inputs(agent) -> bool:
    """Whether ``agent`` is built from files (offline: a dataset) before it can train."""
    return contract.optional(agent, "from_inputs") is not None


def saved_inputs(agent) -> list[str]:
    """The inputs of ``agent`` that are trained when not given, and so have a ``--save-NAME`` flag."""
    return [name for name in contract.optional(agent, "INPUTS") if _helps(name)[1] is not None]


def add_input_arguments(group, inputs: tuple[str, ...]) -> None:
    """``--NAME PATH`` for each input name (and ``--save-NAME PATH`` for those trained here)."""
    for name in inputs:
        given, save = _helps(name)
        group.add_argument(_flag(name), default=None, metavar="PATH", help=given)
        if save is not None:
            group.add_argument(_flag("save_" + name), default=None, metavar="PATH", help=save)


def inputs_from_args(agent, args) -> dict:
    """The keyword arguments of ``agent.from_inputs(config, **inputs)`` from parsed flags."""
    inputs = {name: getattr(args, name, None) for name in contract.optional(agent, "INPUTS")}
    inputs.update({"save_" + name: getattr(args, "save_" + name, None) for name in saved_inputs(agent)})
    return {
        **inputs,
        "env": getattr(args, "env", None),
        "env_kwargs": parse_env_kwargs(getattr(args, "env_kwarg", None) or []),
        "seed": getattr(args, "seed", 0),
        "progress": not getattr(args, "no_progress", False),
    }
