"""Notebooks run top to bottom (tiny settings via RLX_NOTEBOOK_QUICK=1)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.timeout(600)

EXPECTED = {  # a line each notebook prints once it has trained and evaluated
    "quickstart.ipynb": "final evaluation return per seed",
    "dsac_t_vs_sac.ipynb": "DSAC-T  seed 1: Q(s0,a0)",
    "gigpo_household.ipynb": "Episode ended after",
    "reward_free_maze.ipynb": "planned return for goal",
    "morec_synthetic.ipynb": "one-step error of model rollouts",
}
NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, monkeypatch):
    monkeypatch.setenv("RLX_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=540, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = "".join(
        o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    )
    assert EXPECTED[path.name] in outputs


def test_every_notebook_is_checked():
    assert sorted(p.name for p in NOTEBOOKS) == sorted(EXPECTED)
