"""The package's layers point down: a module imports only from its own layer or the ones below,
at module level or inside a function alike, so there is no import cycle and each layer can be
read, tested and reused without the ones above it.

    cli                 argparse, the `rlx` command (rlx/cli/)
    explore             reward-free exploration on top of the runner
    run                 the runner: driver, sweeps, checkpoints, logging, reports
    agents              the algorithms
    models              dynamics ensembles, dynamics reward, model rollouts
    envs, buffers       environments (the envs/ folder); replay buffers and offline datasets
    core                types, configs, networks, distributions, memory, files
"""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"core": 0, "envs": 1, "buffers": 1, "models": 2, "agents": 3, "run": 4, "explore": 5, "cli": 6}


def _modules():
    for path in sorted((ROOT / "rlx").rglob("*.py")):
        yield path, ("rlx",) + path.relative_to(ROOT / "rlx").with_suffix("").parts
    for path in sorted((ROOT / "envs").rglob("*.py")):
        yield path, ("rlx", "envs") + path.relative_to(ROOT / "envs").with_suffix("").parts


def _layer(parts):
    """The layer of module ``rlx.X...``; None for the root package and rlx/__main__.py."""
    if len(parts) < 2 or parts[1] in ("__init__", "__main__"):
        return None
    return LAYERS[parts[1]]


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "rlx" and node.level == 0:
            for alias in node.names:
                yield node.lineno, ("rlx", alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rlx.") and node.level == 0:
            yield node.lineno, tuple(node.module.split("."))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("rlx."):
                    yield node.lineno, tuple(alias.name.split("."))


def test_every_module_has_a_layer():
    unknown = {parts[1] for _, parts in _modules() if len(parts) > 2 and parts[1] not in LAYERS}
    assert not unknown, f"subpackages without a layer in LAYERS: {sorted(unknown)}"


def test_imports_point_down():
    upward = []
    for path, parts in _modules():
        own = _layer(parts)
        if own is None:
            continue
        for line, target in _imports(ast.parse(path.read_text(), str(path))):
            theirs = _layer(target)
            if theirs is not None and theirs > own:
                upward.append(f"{path.relative_to(ROOT)}:{line} ({parts[1]}) imports {'.'.join(target)} ({target[1]})")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)
