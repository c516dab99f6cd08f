"""A learned model on disk: a folder with its arrays (``arrays/``, orbax) and a JSON file of what
it is (``<kind>.json``: format version and the static facts needed to rebuild it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax


def save_folder(path, kind: str, arrays: dict, meta: dict, version: int) -> Path:
    """Write ``arrays`` (a pytree) and ``meta`` to the folder ``path``; returns its absolute path."""
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    path.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path / "arrays", jax.device_get(arrays), force=True)
    (path / f"{kind}.json").write_text(json.dumps({"format_version": version, **meta}, indent=2) + "\n")
    return path


def load_folder(path, kind: str, version: int, what: str) -> tuple[Any, dict]:
    """(arrays as orbax restores them, meta) of a folder written by :func:`save_folder`; a clear
    error when ``path`` is not one or has another format version."""
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    meta_file = path / f"{kind}.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"{path} is not a saved {what} (no {kind}.json)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format_version") != version:
        raise ValueError(f"{path}: {what} format {meta.get('format_version')} is not {version}")
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(path / "arrays"), meta
