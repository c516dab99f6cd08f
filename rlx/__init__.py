"""rlx: JAX-native reinforcement learning whose whole training loop compiles into one program."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rlx")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.1.0"

__all__ = ["__version__"]
