import os

# Headless plotting in tests; set before matplotlib is imported anywhere.
os.environ.setdefault("MPLBACKEND", "Agg")
