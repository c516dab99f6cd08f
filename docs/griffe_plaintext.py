"""A griffe extension for the API pages: rlx's docstrings are prose written for ``help()``,
not Markdown, so before mkdocstrings renders them as Markdown they are made to show as written.

* reST literal blocks (a paragraph ending in ``::``, then an indented block) become fenced code;
* reST roles (``:func:`rlx.run.make_train```) become code spans; ````x```` stays a code span,
  ``**bold**`` stays bold;
* outside code, the characters Markdown would read as markup in formulas (``*``, ``_``, ``[``,
  ``]``, ``<``, ``>``, ``\\``, a leading ``#``) are escaped, so ``[P V](s,a)`` is not a link
  and ``theta*`` does not start emphasis. List items (``* item``, ``1. item``) stay lists.

Registered in ``mkdocs.yml`` (mkdocstrings' python handler, ``extensions:``).
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc|const|ref):`~?([^`]+)`")
# Kept as written: code spans, and **bold** (which some docstrings use for their step names).
_CODE = re.compile(r"(``.+?``|`[^`]+`|\*\*[^*\s][^*]*?\*\*)")
_LIST_ITEM = re.compile(r"^(\s*)([*+-]|\d+[.)])(\s+)")


def _escape_prose(text: str) -> str:
    text = text.replace("\\", "\\\\")
    text = re.sub(r"([*_\[\]])", r"\\\1", text)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _inline(line: str) -> str:
    line = _ROLE.sub(lambda m: f"`{m.group(1)}`", line)
    prefix = ""
    item = _LIST_ITEM.match(line)
    if item:
        prefix, line = line[: item.end()], line[item.end() :]
    else:
        stripped = line.lstrip()
        prefix, line = line[: len(line) - len(stripped)], stripped
        if line.startswith("#"):
            prefix, line = prefix + "\\", line
    parts = _CODE.split(line)
    return prefix + "".join(p if i % 2 else _escape_prose(p) for i, p in enumerate(parts))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def plain_to_markdown(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            base = _indent(line)
            head = line.rstrip()[:-2].rstrip()
            if head.strip():
                out.append(_inline(head + (":" if not head.endswith(":") else "")))
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            block: list[str] = []
            while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            if block:
                strip = min(_indent(b) for b in block if b.strip())
                out += ["", "```text", *[b[strip:] for b in block], "```", ""]
                i = j
                continue
            i += 1
            continue
        out.append(_inline(line))
        i += 1
    return "\n".join(out)


class PlainTextDocstrings(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        seen: set[int] = set()

        def visit(obj) -> None:
            if id(obj) in seen or obj.is_alias:
                return
            seen.add(id(obj))
            if obj.docstring is not None and not getattr(obj.docstring, "_rlx_plain", False):
                obj.docstring.value = plain_to_markdown(obj.docstring.value)
                obj.docstring._rlx_plain = True
            for member in obj.members.values():
                visit(member)

        visit(pkg)
