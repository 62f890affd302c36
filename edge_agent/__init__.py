import os

__version__ = "0.1.0"

# The agent's picture checks work on small frames, one a second: OpenBLAS's worker threads
# would only busy-wait after each call, costing a battery-powered unit CPU for nothing.
# Set before anything imports NumPy; an explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
