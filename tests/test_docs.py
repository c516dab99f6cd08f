"""The documentation site builds without a warning, its generated pages are complete, and the
code and commands the pages (and the README) show still match the code."""

import ast
import importlib
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """``mkdocs build --strict`` into a temporary folder: (folder, seconds, output)."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's banner, not a warning
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out, seconds, proc.stdout + proc.stderr


def _text(html_file: Path) -> str:
    return html_file.read_text(encoding="utf-8")


@pytest.mark.timeout(300)
def test_site_builds_strict(site):
    out, seconds, _ = site
    print(f"mkdocs build --strict: {seconds:.1f} s")
    for page in PAGES:
        rel = page.relative_to(DOCS).with_suffix("")
        built = out / ("index.html" if rel.name == "index" and rel.parent == Path(".") else rel / "index.html")
        assert built.is_file(), f"{page} was not built ({built})"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("agent", ["sac", "gigpo", "dsac_t", "ppo", "grpo", "mopo", "mobile", "morec_mopo", "morec_mobile", "bc", "td3_bc", "iql"])
def test_cli_reference_lists_every_field(site, agent):
    from rlx.agents import agent_names, get_agent
    from rlx.cli import _flag

    assert agent in agent_names()
    page = _text(site[0] / "reference" / "cli" / "index.html")
    assert f'id="train-{agent.replace("_", "-")}"' in page
    section = page.split(f'id="train-{agent.replace("_", "-")}"', 1)[1]
    following = [n for n in agent_names() if n > agent]  # sections come in agent_names() order
    if following:
        section = section.split(f'id="train-{following[0].replace("_", "-")}"', 1)[0]
    config = get_agent(agent).Config
    for name, _default, _help, _allowed, _tunable in config.field_help():
        assert f"<code>{_flag(name)}</code>" in section, f"{_flag(name)} of {agent} missing from the CLI reference"
    for preset in getattr(get_agent(agent), "PRESETS", {}) or {}:
        assert f"<code>{preset}</code>" in section, f"preset {preset} of {agent} missing"


@pytest.mark.timeout(300)
def test_results_index_lists_every_result_file(site):
    page = _text(site[0] / "results" / "index.html")
    for md in sorted((ROOT / "benchmarks" / "results").glob("*.md")):
        assert md.name in page
        assert (site[0] / "repo" / "benchmarks" / "results" / md.stem / "index.html").is_file()


# ---------------------------------------------------------------------------------------------
# What the pages show: Python snippets and rlx commands
# ---------------------------------------------------------------------------------------------
def _blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


SNIPPETS = [(p, i, b) for p in [README, *PAGES] for i, b in enumerate(_blocks(p, "python"))]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "path,index,code", SNIPPETS, ids=[f"{p.relative_to(ROOT)}#{i}" for p, i, _ in SNIPPETS]
)
def test_python_snippets_compile_and_import(path, index, code):
    """Every Python block parses, and every name it imports exists (the examples are run where
    they are cheap: tests/test_readme.py; here nothing is trained)."""
    tree = ast.parse(code, filename=f"{path.name} block {index}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    importlib.import_module(f"{node.module}.{alias.name}")  # a submodule


def _rlx_commands(path: Path) -> list[str]:
    """Every ``rlx ...`` command line in the page's bash blocks (continuations joined)."""
    commands = []
    for block in _blocks(path, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0]
            for m in re.finditer(r"(?:^|[\s\"'=])rlx (.*)", line):
                text = re.split(r"&&|\||;|\"|'", m.group(1))[0].strip()
                if not text.startswith("..."):  # `python -m rlx ...`: any command
                    commands.append("rlx " + text)
    return commands


COMMANDS = sorted({(p, c) for p in [README, *PAGES] for c in _rlx_commands(p)}, key=str)


@pytest.fixture(scope="module")
def parser():
    from rlx.cli import build_parser

    return build_parser()


def _subparser(parser, name):
    for action in parser._subparsers._group_actions:
        if name in getattr(action, "choices", {}):
            return action.choices[name]
    raise AssertionError(f"unknown command {name!r}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path,command", COMMANDS, ids=[f"{p.name}:{c[:60]}" for p, c in COMMANDS])
def test_rlx_commands_shown_exist(parser, path, command):
    """Every `rlx` command a page shows names a real command, agent and options."""
    tokens = shlex.split(command)[1:]
    assert tokens, command
    sub = _subparser(parser, tokens[0])
    rest = tokens[1:]
    if sub._subparsers is not None and rest and not rest[0].startswith("-"):
        sub = _subparser(sub, rest[0])  # rlx train AGENT / rlx sweep AGENT / rlx dataset collect
        rest = rest[1:]
    known = {s for a in sub._actions for s in a.option_strings}
    for token in rest:
        if token.startswith("--"):
            flag = token.split("=", 1)[0]
            assert flag in known, f"{path.name}: `{command}` uses {flag}, which `rlx {tokens[0]}` does not have"


# ---------------------------------------------------------------------------------------------
# README: a landing page whose links work on GitHub
# ---------------------------------------------------------------------------------------------
def _slug(heading: str) -> str:
    heading = re.sub(r"`", "", heading.strip().lower())
    heading = re.sub(r"[^\w\- ]", "", heading)
    return heading.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+?)\s*$", text, flags=re.M)}


def test_readme_links_resolve():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert any(link.startswith("docs/") for link in links), "the README links to the docs pages"
    for link in links:
        if re.match(r"^[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = ROOT / path if path else README
        assert target.exists(), f"README links to {link}, which does not exist"
        if anchor and target.suffix == ".md":
            assert anchor in _anchors(target), f"README links to {link}: no heading with that anchor"


def test_readme_is_a_landing_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines; the details belong in docs/"
    assert "mkdocs serve" in README.read_text(encoding="utf-8")
