"""One child process on 8 fake CPU devices serves tests/test_mesh.py and tests/test_data_parallel.py.

The device count of jax's CPU platform is fixed when jax starts
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``) and the rest of the suite runs on one
device, so the sharded programs run in a child process: this file run as a script. It imports
the two test modules (neither imports jax at module level) and runs their ``_child`` functions
one after the other, each writing into its own folder. One process start and one jax
initialisation serve both; the session-scoped ``eight_devices`` fixture in ``tests/conftest.py``
launches it once per test process, and both files name ``XDIST_GROUP = "eight_devices"`` so
that pytest-xdist sends their tests to the same worker (tests/_xdist_groups.py).
"""

import os
import subprocess
import sys
from pathlib import Path

from _fast_compile import xla_flags

NUM_DEVICES = 8
# Launch, both programs' compiles and runs: well under this on a 2-core machine.
CHILD_TIMEOUT_S = 560
PARTS = ("mesh", "data_parallel")


def launch(out: Path) -> Path:
    """Run this file as a script on 8 CPU devices, writing ``out/<part>/``; return ``out``."""
    # LLVM optimization level 0 halves the compile time of these tiny programs; every comparison
    # is between programs of the same child, and the partitioning (done on HLO) is unchanged.
    env = {
        **os.environ,
        "XLA_FLAGS": xla_flags(f"--xla_force_host_platform_device_count={NUM_DEVICES}"),
        "JAX_PLATFORMS": "cpu",
        "MPLBACKEND": "Agg",
    }
    proc = subprocess.run(
        [sys.executable, __file__, str(out)], env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def _main(out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import test_data_parallel
    import test_mesh

    for part, module in zip(PARTS, (test_mesh, test_data_parallel), strict=True):
        (out / part).mkdir(parents=True, exist_ok=True)
        module._child(out / part)


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
