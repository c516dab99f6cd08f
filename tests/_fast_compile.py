"""XLA flags for child processes that only check a script runs end to end.

Examples, notebooks and benchmarks at their tiny sizes spend most of their time compiling. LLVM
at optimization level 0 compiles them in about two thirds of the time and changes nothing a
smoke test looks at (the XLA program is the same; only the machine code is less optimized).
In-process tests, whose results are compared bit for bit, keep XLA's defaults.
"""

import os

LEVEL_0 = "--xla_backend_optimization_level=0"


def xla_flags(*extra: str) -> str:
    """The caller's XLA_FLAGS with optimization level 0 (and ``extra``) added."""
    return " ".join(f for f in (os.environ.get("XLA_FLAGS", ""), LEVEL_0, *extra) if f)
