"""Output folders: created on demand, never overwritten silently (runs, sweeps, datasets)."""

from __future__ import annotations

import os
from pathlib import Path


class OutputDirError(FileExistsError):
    """The output folder exists and is not empty (runs are never overwritten silently)."""


def prepare_out_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create ``path``; refuse a non-empty existing folder unless ``overwrite``.

    With ``overwrite`` only the files a run writes are replaced; nothing else is deleted.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"--out {path} exists and is not a folder")
    try:
        occupied = path.is_dir() and any(path.iterdir())
    except OSError as err:
        raise OutputDirError(f"cannot read output folder {path}: {err.strerror or err}") from err
    if occupied and not overwrite:
        raise OutputDirError(
            f"output folder {path} exists and is not empty; choose another --out, "
            "or pass --overwrite to replace the run files in it"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputDirError(f"cannot create output folder {path}: {err.strerror or err}") from err
    return path
