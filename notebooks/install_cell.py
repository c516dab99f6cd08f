"""The first code cell of every notebook: install rlx where the runtime lacks it (a fresh Colab).

Where rlx is installed from is set in one place, ``RLX_SOURCE`` in :data:`CELL` below (empty: the
checkout the notebook sits in). ``python notebooks/install_cell.py`` writes :data:`CELL` into every
notebook; ``python notebooks/install_cell.py --check`` (run by tests/test_notebooks.py) fails when
a notebook's cell differs from it.

On Colab, until rlx is on a package index you can reach, build a wheel in a checkout
(``pip wheel . --no-deps -w dist``), upload it in Colab's *Files* pane and put its path, e.g.
``/content/rlx-0.1.0-py3-none-any.whl``, in the notebook's ``RLX_SOURCE`` field; a git URL
(``git+https://HOST/OWNER/rlx.git``) or a requirement (``rlx==0.1.0``) works the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path

CELL = '''\
# Install rlx if this runtime lacks it (a fresh Colab runtime). RLX_SOURCE is where from: a wheel
# uploaded to this runtime ("/content/rlx-0.1.0-py3-none-any.whl"), a git URL
# ("git+https://HOST/OWNER/rlx.git") or a requirement ("rlx==0.1.0"). Empty: the rlx checkout
# this notebook sits in. (The RLX_SOURCE environment variable, when set, is used the same way.)
RLX_SOURCE = ""  # @param {type:"string"}

import importlib, importlib.util, os, pathlib, subprocess, sys


def rlx_requirement(source, notebook_dir):
    """What pip installs: rlx with the notebook extra (ipywidgets, for the progress bars)."""
    if not source:
        checkout = pathlib.Path(notebook_dir).resolve().parent
        pyproject = checkout / "pyproject.toml"
        if not (pyproject.is_file() and 'name = "rlx"' in pyproject.read_text()):
            raise RuntimeError(
                "rlx is not installed and this notebook is not inside an rlx checkout: set RLX_SOURCE "
                "above to a wheel uploaded to this runtime, a git URL or a pip requirement"
            )
        source = str(checkout)
    if source.startswith(("git+", "http://", "https://")):
        return f"rlx[notebook] @ {source}"
    if os.path.exists(source):  # a checkout folder or a wheel file
        return f"{source}[notebook]"
    return source  # a requirement, e.g. "rlx==0.1.0"


if importlib.util.find_spec("rlx") is None:
    requirement = rlx_requirement(RLX_SOURCE or os.environ.get("RLX_SOURCE", ""), os.getcwd())
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", requirement])
    importlib.invalidate_caches()
'''

NOTEBOOKS = Path(__file__).resolve().parent


def install_cell_index(cells: list) -> int:
    """The index of the install cell: the first code cell."""
    return next(i for i, cell in enumerate(cells) if cell.cell_type == "code")


def main(argv: list[str]) -> int:
    import nbformat

    check = "--check" in argv
    stale = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cell = nb.cells[install_cell_index(nb.cells)]
        if cell.source == CELL.rstrip("\n"):
            continue
        stale.append(path.name)
        if not check:
            cell.source = CELL.rstrip("\n")
            cell.outputs = []
            nbformat.write(nb, path)
    if check and stale:
        print(f"install cell differs from notebooks/install_cell.py in: {', '.join(stale)}; "
              "run python notebooks/install_cell.py", file=sys.stderr)
        return 1
    if not check:
        print(f"updated: {', '.join(stale) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
