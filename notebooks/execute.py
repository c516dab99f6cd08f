"""Run notebooks top to bottom in place, so they are committed with the outputs of a real run.

``python notebooks/execute.py [NOTEBOOK ...]`` (default: every notebook here) runs each at the
settings it picks for the machine (CPU: its CPU settings) and saves its outputs, less the
progress-bar widgets, which a saved notebook would only show at 0%.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

WIDGET = "application/vnd.jupyter.widget-view+json"


def execute(path: Path) -> float:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET not in o.get("data", {})]
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(Path(__file__).resolve().parent.glob("*.ipynb"))
    for path in paths:
        print(f"{path.name}: {execute(path):.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
