"""What a timing benchmark does before numpy and torch load (``attentive_cost.py``, ``layer_sweep.py``).

BLAS and OpenMP read their thread counts when they load, so the arguments are parsed and the
``*_NUM_THREADS`` variables set first; then the repository goes first on ``sys.path``, so the
benchmark times this checkout's code. Imported as a module (not run), a benchmark takes its
defaults (no argv).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def prepare(parse: Callable[[list[str] | None], argparse.Namespace], module_name: str) -> argparse.Namespace:
    """``parse`` the command line (``[]`` unless ``module_name`` is ``'__main__'``), pin ``args.threads``."""
    args = parse(sys.argv[1:] if module_name == "__main__" else [])
    for var in THREAD_VARIABLES:
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(ROOT))
    return args
