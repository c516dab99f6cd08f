"""XLA flags for child processes that only check a script runs end to end.

Examples, notebooks and benchmarks at their tiny sizes spend most of their time compiling. LLVM
at optimization level 0 compiles them in about two thirds of the time. The XLA program is the
same, but the machine code is not trusted with numbers: on jax 0.10.2's CPU backend, level 0
turns a SAC loop's losses to NaN where XLA's defaults keep them finite (docs/architecture.md,
"Known pitfalls"). So only tests that check a script runs end to end, or compare two programs
compiled alike in one child, use it; in-process tests, which learn or compare numbers, keep
XLA's defaults (a whole suite at level 0 ran 12 % faster and failed two of them).
"""

import os

LEVEL_0 = "--xla_backend_optimization_level=0"


def xla_flags(*extra: str) -> str:
    """The caller's XLA_FLAGS with optimization level 0 (and ``extra``) added."""
    return " ".join(f for f in (os.environ.get("XLA_FLAGS", ""), LEVEL_0, *extra) if f)
