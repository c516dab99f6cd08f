"""MkDocs hooks of the rlx documentation (registered in ``mkdocs.yml`` under ``hooks:``).

They generate, at build time, what would go stale if it were copied by hand:

* ``<!-- rlx:cli-reference -->`` in a page becomes the command-line reference: every command and
  option of ``rlx`` read from its argparse parser (``rlx.cli.build_parser``), and for every
  registered agent (``rlx.agents.agent_names()``) its presets and a table of its config fields
  from ``Config.field_help()``: flag, default, allowed range, tunable or static, meaning.
* ``<!-- rlx:presets AGENT -->`` (or a module's dotted name) becomes the table of its ``PRESETS``.
* ``<!-- rlx:results-index -->`` becomes a table of every ``benchmarks/results/*.md`` with the
  machine, date and versions recorded in the ``.json`` next to it.
* Links from a page to files of the repository outside ``docs/`` (``../examples/custom_env.py``,
  ``../benchmarks/results/sac_pendulum-cpu.md``) work on GitHub as they are; for the site, the
  linked files (and what linked Markdown files link to in turn) are copied under ``repo/`` and
  the links rewritten to those copies. A link to a file that does not exist is a warning, so
  ``mkdocs build --strict`` fails on it, as it does on a broken link inside ``docs/``.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import posixpath
import re
import sys
from pathlib import Path
from types import ModuleType

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.plugins.rlx")

CLI_MARKER = "<!-- rlx:cli-reference -->"
RESULTS_MARKER = "<!-- rlx:results-index -->"
PRESETS_MARKER = re.compile(r"<!-- rlx:presets ([a-z_.]+) -->")
MIRROR = "repo"  # site folder that holds the copies of repository files linked from the docs

# [text](target) and ![alt](target); the target has no spaces (ours never do).
_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")
_FENCE = re.compile(r"^(```|~~~)")


# ---------------------------------------------------------------------------------------------
# Links to repository files outside docs/
# ---------------------------------------------------------------------------------------------
def _repo_root(config) -> Path:
    return Path(config["config_file_path"]).resolve().parent


def _outside_links(text: str):
    """The target of every relative link outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if fenced:
            continue
        for m in _LINK.finditer(line):
            target = m.group(2)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
                continue  # absolute URL, mailto:, anchor on the same page, site-absolute path
            yield target


def _split_anchor(target: str) -> tuple[str, str]:
    path, sep, anchor = target.partition("#")
    return path, sep + anchor


def _resolve(base_dir: Path, target: str, root: Path) -> Path | None:
    """The repository file a relative link from ``base_dir`` points to (None: not in the repo)."""
    path, _ = _split_anchor(target)
    if not path:
        return None
    resolved = Path(os.path.normpath(base_dir / path))
    try:
        resolved.relative_to(root)
    except ValueError:
        return None
    return resolved


def on_files(files, config):
    """Copy the repository files that pages link to (outside docs/) under ``repo/``."""
    root = _repo_root(config)
    docs = Path(config["docs_dir"]).resolve()
    queue: list[tuple[Path, str, str]] = []  # (linked file, linking page, link as written)
    for f in files.documentation_pages():
        src = Path(f.abs_src_path)
        text = src.read_text(encoding="utf-8")
        for target in _outside_links(text):
            resolved = _resolve(src.parent, target, root)
            if resolved is not None and not _is_within(resolved, docs):
                queue.append((resolved, f.src_uri, target))
        if RESULTS_MARKER in text:  # the index links every result file
            queue += [(md, f.src_uri, md.name) for md in _result_pages(root)]
    mirrored: set[Path] = set()
    while queue:
        path, page, target = queue.pop()
        if path in mirrored:
            continue
        if not path.is_file():
            log.warning("%s links to '%s', which is not a file of the repository (%s)", page, target, path)
            continue
        mirrored.add(path)
        rel = path.relative_to(root).as_posix()
        files.append(File.generated(config, f"{MIRROR}/{rel}", abs_src_path=str(path)))
        if path.suffix == ".md":  # a copied page: what it links to must come along
            for inner in _outside_links(path.read_text(encoding="utf-8")):
                resolved = _resolve(path.parent, inner, root)
                if resolved is not None and not _is_within(resolved, docs):
                    queue.append((resolved, rel, inner))
    return files


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _rewrite_outside_links(markdown: str, page, config) -> str:
    """Point links that leave docs/ at the copies under ``repo/`` (pages of docs/ only)."""
    root = _repo_root(config)
    docs = Path(config["docs_dir"]).resolve()
    src = Path(page.file.abs_src_path)
    if not _is_within(src, docs):
        return markdown  # a copied repository page: its relative links already match the copies
    page_dir = posixpath.dirname(page.file.src_uri)

    def replace(m: re.Match) -> str:
        target = m.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            return m.group(0)
        resolved = _resolve(src.parent, target, root)
        if resolved is None or _is_within(resolved, docs) or not resolved.is_file():
            return m.group(0)
        _, anchor = _split_anchor(target)
        copy = f"{MIRROR}/{resolved.relative_to(root).as_posix()}"
        return m.group(1) + posixpath.relpath(copy, page_dir or ".") + anchor + m.group(3)

    out, fenced = [], False
    for line in markdown.split("\n"):
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
        out.append(line if fenced else _LINK.sub(replace, line))
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Markdown helpers
# ---------------------------------------------------------------------------------------------
_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc):`~?([^`]+)`")


def _cell(text) -> str:
    """Plain text (a help string, a docstring's first paragraph) as one Markdown table cell:
    reST roles become code spans, code spans are kept, everything else is escaped."""
    text = _ROLE.sub(lambda m: f"`{m.group(1)}`", re.sub(r"\s+", " ", str(text)))
    parts = re.split(r"(``.+?``|`[^`]*`)", text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # a code span
            out.append(part.replace("|", "\\|"))
        else:
            part = html.escape(part, quote=False)
            out.append(re.sub(r"([\\*_\[\]|])", r"\\\1", part))
    return "".join(out).strip()


def _code(text) -> str:
    text = str(text)
    if not text:
        return ""
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}".replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


# ---------------------------------------------------------------------------------------------
# The command-line reference
# ---------------------------------------------------------------------------------------------
def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    if parser._subparsers is None:
        return {}
    for action in parser._subparsers._group_actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _subcommand_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def _expanded_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    text = parser._get_formatter()._expand_help(action)
    return text.replace(str(Path.home()), "~")  # a default under the home folder of the builder


def _option_row(parser, action) -> list[str]:
    flags = ", ".join(action.option_strings) or action.metavar or action.dest
    if action.nargs == 0:
        value = ""
    else:
        metavar = action.metavar or (action.dest.upper() if action.option_strings else "")
        value = _code(metavar) if action.option_strings else ""
        if action.nargs in ("+", "*"):
            value += " ..."
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        value = "one of " + ", ".join(_code(c) for c in action.choices)
    default = action.default
    unset = default is None or default is False or default == [] or default == argparse.SUPPRESS
    shown = "" if unset or action.nargs == 0 else _code(default)
    return [_code(flags), value, shown, _cell(_expanded_help(parser, action))]


def _options_table(parser, actions) -> list[str]:
    rows = [_option_row(parser, a) for a in actions if not isinstance(a, argparse._HelpAction)]
    if not rows:
        return []
    return _table(["option", "value", "default", "meaning"], rows)


def _is_field(action) -> bool:
    return action.dest.startswith("cfg_")


def _field_table(config_cls) -> list[str]:
    from rlx.cli import _default_text, _flag

    rows = []
    for name, default, text, allowed, is_tunable in config_cls.field_help():
        rows.append([
            _code(_flag(name)), _code(_default_text(default)), _cell(allowed),
            "tunable" if is_tunable else "static", _cell(text),
        ])
    return _table(["flag", "default", "allowed", "kind", "meaning"], rows)


def _preset_table(presets: dict, as_flags: bool = True) -> list[str]:
    from rlx.cli import _default_text, _flag

    rows = []
    for name in sorted(presets):
        values = {k: v for k, v in presets[name].items() if not k.startswith("_")}
        if as_flags:
            shown = " ".join(_code(f"{_flag(k)} {_default_text(v)}") for k, v in values.items())
        else:
            shown = " ".join(_code(f"{k}={v!r}") for k, v in values.items())
        rows.append([_code(name), _cell(presets[name].get("_doc", "")), shown or "(nothing beyond the description)"])
    return _table(["preset", "what it is", "the flags it sets" if as_flags else "the fields it sets"], rows)


def _grouped_options(parser, keep) -> list[str]:
    """Option tables per argparse group (``keep(action)`` selects), with the group's title."""
    lines: list[str] = []
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if keep(a) and not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        title = group.title if group.title not in ("options", "optional arguments") else "options"
        lines += [f"**{_cell(title)}**", ""] + _options_table(parser, actions)
    return lines


def cli_reference() -> str:
    """The Markdown of the command-line reference, read from the parser and the configs."""
    from rlx.agents import agent_names, get_agent
    from rlx.cli import build_parser

    parser = build_parser()
    commands = _subparsers(parser)
    helps = _subcommand_help(parser)
    lines = ["## Commands", ""]
    lines += _table(["command", "what it does"], [[_code(f"rlx {n}"), _cell(helps.get(n, ""))] for n in commands])

    # rlx train: options every agent has, then each agent's own options, presets and fields.
    trains = _subparsers(commands["train"])
    names = agent_names()
    option_sets = [
        {a.option_strings[0] for a in trains[n]._actions if a.option_strings and not _is_field(a)} for n in names
    ]
    common = set.intersection(*option_sets)
    first = trains[names[0]]
    lines += [
        "## rlx train {#rlx-train}", "",
        "`rlx train AGENT [options]` trains one agent; `rlx train AGENT --resume RUN_DIR` continues a "
        "stopped run. Options of every agent:", "",
    ]
    lines += _grouped_options(first, lambda a: a.option_strings and a.option_strings[0] in common and not _is_field(a))
    lines += ["Every agent adds the fields of its config as flags (below): a value given on the command "
              "line is checked against the field's allowed range before anything is compiled. "
              "`--preset NAME` applies a named set of values first; individual flags win over it.", ""]
    for name in names:
        agent = get_agent(name)
        sub = trains[name]
        config_cls = agent.Config
        lines += [f"### rlx train {name} {{#train-{name.replace('_', '-')}}}", ""]
        # A module's docstring describes the algorithm; a variant object (MOREC on a base) is
        # described by the module that defines it.
        about = sub.description if isinstance(agent, ModuleType) else sys.modules[type(agent).__module__].__doc__
        if about:
            lines += [_cell(about.strip().split("\n\n")[0]), ""]
        tunable = sum(1 for *_, t in config_cls.field_help() if t)
        lines += [
            f"Config class `{config_cls.__module__}.{config_cls.__name__}`: "
            f"{len(config_cls.field_help())} fields, {tunable} of them tunable "
            "(sweepable with `rlx sweep --set`).", "",
        ]
        presets = getattr(agent, "PRESETS", {}) or {}
        extra = [
            a for a in sub._actions
            if a.option_strings and a.option_strings[0] not in common and not _is_field(a)
            and not (presets and a.option_strings[0] == "--preset")  # the presets table says it
        ]
        if extra:
            lines += ["Options of this agent only:", ""] + _options_table(sub, extra)
        if presets:
            lines += ["Presets (`--preset NAME`):", ""] + _preset_table(presets)
        lines += ["Config fields:", ""] + _field_table(config_cls)

    # The other commands: their options as argparse has them.
    for name, sub in commands.items():
        if name == "train":
            continue
        inner = _subparsers(sub)
        if name == "sweep":
            example = inner[names[0]]
            lines += [
                "## rlx sweep {#rlx-sweep}", "",
                _cell(helps.get(name, "")), "",
                "`rlx sweep AGENT --set FIELD=V1,V2,... [options]`: the agents, their config-field flags and "
                "the run options (`--env`, `--seed`, `--num-seeds`, `--out`, ...) are those of `rlx train`; "
                "options of the sweep itself:", "",
            ]
            lines += _grouped_options(
                example, lambda a: a.option_strings and not _is_field(a) and a.option_strings[0] not in common
            )
            continue
        lines += [f"## rlx {name} {{#rlx-{name}}}", ""]
        if sub.description or helps.get(name):
            lines += [_cell(sub.description or helps.get(name, "")), ""]
        positionals = [a for a in sub._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
        if positionals:
            lines += _table(
                ["argument", "meaning"], [[_code(a.metavar or a.dest), _cell(_expanded_help(sub, a))] for a in positionals]
            )
        lines += _grouped_options(sub, lambda a: bool(a.option_strings))
        for inner_name, inner_parser in inner.items():
            lines += [f"### rlx {name} {inner_name} {{#rlx-{name}-{inner_name}}}", ""]
            if inner_parser.description:
                lines += [_cell(inner_parser.description.split("\n\n")[0]), ""]
            positionals = [a for a in inner_parser._actions if not a.option_strings]
            if positionals:
                lines += _table(
                    ["argument", "meaning"],
                    [[_code(a.metavar or a.dest), _cell(_expanded_help(inner_parser, a))] for a in positionals],
                )
            lines += _grouped_options(inner_parser, lambda a: bool(a.option_strings))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The index of benchmark results
# ---------------------------------------------------------------------------------------------
def _machine_text(machine: dict) -> str:
    parts = [machine.get("cpu_model") or machine.get("processor") or ""]
    if machine.get("cpu_count"):
        parts.append(f"{machine['cpu_count']} CPU cores")
    kind = machine.get("device_kind") or machine.get("platform")
    if kind:
        parts.append(f"{machine.get('device_count', 1)} x {kind}")
    load = machine.get("load_average_at_start")
    if load:
        parts.append(f"load average at start {load[0]}")
    return ", ".join(p for p in parts if p)


def results_index(root: Path, page_dir: str) -> str:
    rows = []
    for md in _result_pages(root):
        title = next((ln[2:].strip() for ln in md.read_text(encoding="utf-8").splitlines() if ln.startswith("# ")), md.stem)
        meta = {}
        js = md.with_suffix(".json")
        if js.is_file():
            try:
                meta = json.loads(js.read_text(encoding="utf-8"))
            except ValueError:
                log.warning("%s is not valid JSON", js)
        machine = _machine_text(meta.get("machine", {}) or {})
        versions = meta.get("versions", {}) or {}
        jax_version = versions.get("jax", "")
        date = str(meta.get("date", ""))[:10]
        quick = "smoke run" if meta.get("quick") or md.stem.endswith("-quick") else ""
        link = posixpath.relpath(f"{MIRROR}/benchmarks/results/{md.name}", page_dir or ".")
        rows.append([
            f"[{_cell(title)}]({link})", _code(md.name), _cell(machine), _cell(jax_version), _cell(date), quick,
        ])
    return "\n".join(_table(["result", "file", "machine", "jax", "date", ""], rows))


def _result_pages(root: Path) -> list[Path]:
    return sorted((root / "benchmarks" / "results").glob("*.md"))


# ---------------------------------------------------------------------------------------------
# Hook entry points
# ---------------------------------------------------------------------------------------------
def presets_table(name: str) -> str:
    """The presets of an agent (``--preset NAME``) or of a module (``rlx.explore.linear_mixture``),
    read from its ``PRESETS``."""
    import importlib

    from rlx.agents import get_agent

    is_module = "." in name
    owner = importlib.import_module(name) if is_module else get_agent(name)
    presets = getattr(owner, "PRESETS", {}) or {}
    if not presets:
        log.warning("%s has no presets, but a page shows them", name)
        return ""
    return "\n".join(_preset_table(presets, as_flags=not is_module))


def on_page_markdown(markdown, page, config, files):
    markdown = PRESETS_MARKER.sub(lambda m: presets_table(m.group(1)), markdown)
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if RESULTS_MARKER in markdown:
        markdown = markdown.replace(
            RESULTS_MARKER, results_index(_repo_root(config), posixpath.dirname(page.file.src_uri))
        )
    return _rewrite_outside_links(markdown, page, config)
