import os

# Headless plotting in tests; set before matplotlib is imported anywhere.
os.environ.setdefault("MPLBACKEND", "Agg")
# The command line turns jax's persistent compilation cache on by default (~/.cache/rlx/jax);
# tests that run it in-process keep it off, and tests/test_compile_cache.py uses its own folder.
os.environ.setdefault("RLX_COMPILE_CACHE", "off")
