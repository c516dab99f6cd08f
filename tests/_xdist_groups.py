"""pytest-xdist scheduling that keeps the tests sharing an expensive fixture in one worker.

A module-scoped fixture (a trained agent, a collected data set, the 8-device child) is computed
once per worker that runs a test of its module. With plain ``--dist load`` the tests of such a
module are spread over all workers, so each of them computes it again. This scheduler (used for
``--dist loadgroup``, see ``pyproject.toml`` and ``tests/conftest.py``) sends together:

* every test of a file that defines a module-scoped fixture (one group per file);
* every test of the files that name the same ``XDIST_GROUP = "name"`` at module level (the
  8-device child serves tests/test_mesh.py and tests/test_data_parallel.py);
* tests whose node id carries xdist's own ``@group`` suffix (``xdist_group`` marks, where the
  installed pytest and pytest-xdist agree on node ids).

Every other test is its own unit, spread one by one as with ``--dist load``. The controller
does not collect tests, so it reads the test files' source for the two markers above.
"""

import re
from functools import cache
from pathlib import Path

from xdist.scheduler import LoadGroupScheduling

_MODULE_FIXTURE = re.compile(r"""@pytest\.fixture\([^)]*scope\s*=\s*["']module["']""")
_GROUP = re.compile(r"""^XDIST_GROUP\s*=\s*["'](\w+)["']""", re.MULTILINE)


@cache
def file_group(path: str) -> str | None:
    """The group of every test in the file at ``path``, or None to spread them."""
    try:
        source = Path(path).read_text()
    except OSError:
        return None
    named = _GROUP.search(source)
    if named:
        return named.group(1)
    return path if _MODULE_FIXTURE.search(source) else None


class FixtureGroupScheduling(LoadGroupScheduling):
    """``loadgroup`` that also groups by file-level fixtures (see the module docstring)."""

    def __init__(self, config, log=None):
        super().__init__(config, log)
        self._root = Path(config.rootpath)

    def _split_scope(self, nodeid: str) -> str:
        if "@" in nodeid.rsplit("::", 1)[-1]:
            return super()._split_scope(nodeid)
        group = file_group(str(self._root / nodeid.split("::", 1)[0]))
        return nodeid if group is None else group
