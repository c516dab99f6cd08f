"""Notebooks run top to bottom (tiny settings via RLX_NOTEBOOK_QUICK=1)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from _fast_compile import xla_flags
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
    monkeypatch.setenv("XLA_FLAGS", xla_flags())  # the kernel's compiles (tests/_fast_compile.py)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=540, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = "".join(
        o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    )
    assert EXPECTED[path.name] in outputs


def test_every_notebook_is_checked():
    assert sorted(p.name for p in NOTEBOOKS) == sorted(EXPECTED)


# --- the install cell (notebooks/install_cell.py), checked without network ------------------------

REPO = Path(__file__).parent.parent
sys.path.insert(0, str(REPO / "notebooks"))
import install_cell  # noqa: E402


def test_every_notebook_starts_with_the_one_install_cell():
    assert install_cell.main(["--check"]) == 0
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[install_cell.install_cell_index(nb.cells)].source == install_cell.CELL.rstrip("\n")


def run_install_cell(monkeypatch, cwd, *, installed=False, field="", env=None):
    """Run the cell as Jupyter would; returns the pip commands it ran (none is run for real)."""
    calls = []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if installed else (None if name == "rlx" else real_find_spec(name, *a)))
    monkeypatch.setattr(subprocess, "check_call", lambda cmd, **kw: calls.append(cmd))
    monkeypatch.chdir(cwd)
    if env is None:
        monkeypatch.delenv("RLX_SOURCE", raising=False)
    else:
        monkeypatch.setenv("RLX_SOURCE", env)
    source = install_cell.CELL.replace('RLX_SOURCE = ""', f"RLX_SOURCE = {field!r}", 1)
    exec(compile(source, "install_cell", "exec"), {"__name__": "__main__"})
    return calls


def pip_target(calls):
    (cmd,) = calls
    assert cmd[:5] == [sys.executable, "-m", "pip", "install", "-q"]
    return cmd[5]


def test_install_cell_does_nothing_where_rlx_is_installed(monkeypatch, tmp_path):
    assert run_install_cell(monkeypatch, tmp_path, installed=True) == []


def test_install_cell_installs_the_checkout_it_sits_in(monkeypatch):
    assert pip_target(run_install_cell(monkeypatch, REPO / "notebooks")) == f"{REPO.resolve()}[notebook]"


def test_install_cell_on_a_fresh_runtime_asks_for_a_source(monkeypatch, tmp_path):
    with pytest.raises(RuntimeError, match="set RLX_SOURCE"):
        run_install_cell(monkeypatch, tmp_path)  # e.g. Colab's /content: no checkout around


def test_install_cell_takes_a_wheel_a_git_url_or_a_requirement(monkeypatch, tmp_path):
    wheel = tmp_path / "rlx-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    assert pip_target(run_install_cell(monkeypatch, tmp_path, field=str(wheel))) == f"{wheel}[notebook]"
    url = "git+https://example.org/team/rlx.git@main"
    assert pip_target(run_install_cell(monkeypatch, tmp_path, field=url)) == f"rlx[notebook] @ {url}"
    assert pip_target(run_install_cell(monkeypatch, tmp_path, field="rlx==0.1.0")) == "rlx==0.1.0"
    # the environment variable is used the same way; the cell's field wins over it
    assert pip_target(run_install_cell(monkeypatch, tmp_path, env=url)) == f"rlx[notebook] @ {url}"
    assert pip_target(run_install_cell(monkeypatch, tmp_path, field="rlx==0.1.0", env=url)) == "rlx==0.1.0"


def test_install_cell_git_requirement_is_valid_for_pip(monkeypatch, tmp_path):
    from pip._vendor.packaging.requirements import Requirement

    target = pip_target(run_install_cell(monkeypatch, tmp_path, field="git+https://example.org/team/rlx.git@main"))
    requirement = Requirement(target)
    assert (requirement.name, requirement.extras) == ("rlx", {"notebook"})
    assert requirement.url == "git+https://example.org/team/rlx.git@main"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_with_the_outputs_of_a_run(path):
    """Opened in a browser, a notebook shows a real run (python notebooks/execute.py), with no
    error, no progress-bar widget frozen at 0%, and nothing printed by its install cell."""
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    outputs = [o for cell in code for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert code[0].get("outputs", []) == []
    assert EXPECTED[path.name] in "".join(o.get("text", "") for o in outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure saved"
