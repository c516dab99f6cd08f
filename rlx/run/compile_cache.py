"""JAX's persistent compilation cache, on by default in the command line.

A training program takes seconds (CPU) to minutes (large GPU programs) to compile, and an
identical second run compiles exactly the same XLA program. With the persistent cache on, XLA's
executable is written to disk after the first compile and read back by every later process that
builds the same program (same code, shapes, static config, device kind and jax version), so a
rerun, a resume or a second seed batch of the same shape starts at once.

Where the cache lives, first match wins:

1. ``--compile-cache DIR`` (``enable(DIR)`` from Python);
2. the environment variable ``RLX_COMPILE_CACHE`` (a folder; ``0``, ``off``, ``false`` or
   ``none`` disable the cache);
3. ``$XDG_CACHE_HOME/rlx/jax``, else ``~/.cache/rlx/jax``.

``--no-compile-cache`` turns it off. The cache is bounded (``DEFAULT_MAX_BYTES``; jax evicts the
least recently used entries beyond it). Programs that compile faster than
``DEFAULT_MIN_COMPILE_SECONDS`` are not written: reading them back would cost as much as
compiling them.

Library use (``import rlx``) leaves jax's own settings alone; call :func:`enable` to opt in.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from pathlib import Path

ENV_VAR = "RLX_COMPILE_CACHE"
DEFAULT_MIN_COMPILE_SECONDS = 0.2
DEFAULT_MAX_BYTES = 4 * 1024**3
_OFF_WORDS = ("0", "off", "false", "none", "no")

_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_REQUEST_EVENT = "/jax/compilation_cache/compile_requests_use_cache"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rlx/jax`` (``~/.cache/rlx/jax`` when XDG_CACHE_HOME is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rlx" / "jax"


def resolve_cache_dir(path: str | os.PathLike | None = None, disabled: bool = False) -> Path | None:
    """The folder the cache should use, or None when it is off (see the module docstring)."""
    if disabled:
        return None
    if path is not None:
        return Path(path).expanduser()
    from_env = os.environ.get(ENV_VAR)
    if from_env is not None:
        if from_env.strip().lower() in _OFF_WORDS or not from_env.strip():
            return None
        return Path(from_env).expanduser()
    return default_cache_dir()


def enable(
    path: str | os.PathLike | None = None,
    *,
    min_compile_seconds: float = DEFAULT_MIN_COMPILE_SECONDS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Path:
    """Turn the persistent compilation cache on in ``path`` (default: :func:`resolve_cache_dir`).

    Programs compiling in at least ``min_compile_seconds`` are written, whatever their size
    (jax's default size floor would skip the small executables of CPU runs). Safe to call more
    than once; a new folder takes effect for the next compile.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    if min_compile_seconds < 0:
        raise ValueError(f"min_compile_seconds must be >= 0, got {min_compile_seconds}")
    if max_bytes == 0 or max_bytes < -1:
        raise ValueError(f"max_bytes must be > 0 (or -1: no limit), got {max_bytes}")
    folder = resolve_cache_dir(path)
    if folder is None:
        folder = default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--compile-cache {folder}: cannot create the folder ({err})") from err
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--compile-cache {folder}: the folder is not writable")
    previous = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # -1: no size floor
    try:
        import filelock  # noqa: F401  (jax bounds the cache under a file lock)
    except ImportError:
        max_bytes = -1
    jax.config.update("jax_compilation_cache_max_size", int(max_bytes))
    if previous != str(folder):
        # jax opens its cache once, at the first compile; a changed folder needs a fresh start.
        compilation_cache.reset_cache()
    return folder


def disable() -> None:
    """Turn the persistent compilation cache off for this process."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    jax.config.update("jax_enable_compilation_cache", False)
    jax.config.update("jax_compilation_cache_dir", None)
    compilation_cache.reset_cache()


def active_dir() -> Path | None:
    """The folder the cache writes to now, or None when it is off."""
    import jax

    path = jax.config.jax_compilation_cache_dir
    if not path or not jax.config.jax_enable_compilation_cache:
        return None
    return Path(path)


# ---------------------------------------------------------------------------------------------
# Counting cache hits (tests, benchmarks)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class CacheStats:
    """Compiles that consulted the persistent cache, and how many found their program there."""

    requests: int = 0
    hits: int = 0

    @property
    def misses(self) -> int:
        return self.requests - self.hits


@contextlib.contextmanager
def count_cache_events():
    """``with count_cache_events() as stats: ...`` counts the cache lookups and hits inside."""
    from jax import monitoring

    stats = CacheStats()

    def listener(event: str, **_):
        if event == _REQUEST_EVENT:
            stats.requests += 1
        elif event == _HIT_EVENT:
            stats.hits += 1

    monitoring.register_event_listener(listener)
    try:
        yield stats
    finally:
        monitoring.unregister_event_listener(listener)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def add_arguments(group: argparse._ActionsContainer) -> None:
    """``--compile-cache DIR`` and ``--no-compile-cache``."""
    group.add_argument(
        "--compile-cache", default=None, metavar="DIR",
        help=f"persistent compilation cache folder (default: ${ENV_VAR}, else {default_cache_dir()}); "
        "an identical later run loads its compiled program instead of compiling it",
    )
    group.add_argument(
        "--no-compile-cache", action="store_true",
        help="do not read or write the persistent compilation cache",
    )


def configure_from_args(args: argparse.Namespace) -> Path | None:
    """Apply the command line's cache flags; returns the folder in use (None: off)."""
    if getattr(args, "compile_cache", None) and getattr(args, "no_compile_cache", False):
        raise ValueError("--compile-cache and --no-compile-cache contradict each other; give one")
    folder = resolve_cache_dir(getattr(args, "compile_cache", None), getattr(args, "no_compile_cache", False))
    if folder is None:
        disable()
        return None
    return enable(folder)
