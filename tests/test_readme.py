"""The README's Python example runs as written (with tiny settings substituted), and the docs'
copy of it (docs/getting-started.md) is the same example."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

README = Path(__file__).parent.parent / "README.md"
GETTING_STARTED = Path(__file__).parent.parent / "docs" / "getting-started.md"


def _python_blocks(path=README):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_quickstart_commands_are_the_ci_ones():
    text = README.read_text()
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    test_cmd = 'python -m pip install -e ".[dev,brax]" && python -m pytest -q'
    assert test_cmd in text and test_cmd in ci
    assert "rlx train sac --env gymnax/Pendulum-v1" in text


def test_readme_script_runs(capsys):
    (script,) = [b for b in _python_blocks() if "make_train" in b]
    assert len(script.strip().splitlines()) <= 16
    small = {
        "total_steps=20_000": "total_steps=400, learning_starts=100, batch_size=16, eval_episodes=2",
        "eval_every=1_000": "eval_every=150",
        "hidden_sizes=(64, 64)": "hidden_sizes=(16,)",
    }
    for old, new in small.items():
        assert old in script, f"README script no longer contains {old!r}; update this test"
        script = script.replace(old, new)
    exec(compile(script, "README.md", "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == "250"  # one line per evaluation


def test_docs_show_the_tested_example():
    """The getting-started page shows the very example executed above, so it is tested too."""
    (readme,) = [b for b in _python_blocks() if "make_train" in b]
    (docs,) = [b for b in _python_blocks(GETTING_STARTED) if "make_train" in b]
    assert docs == readme, "docs/getting-started.md and README.md show different make_train examples"
