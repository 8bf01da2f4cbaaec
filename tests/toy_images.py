"""Four classes of flat-coloured noisy 32x32 images, the trainer tests' toy data.

``tests/`` is on ``sys.path`` under pytest (conftest.py lives there)::

    from toy_images import toy_images, toy_npz
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def toy_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (n, 32, 32, 3) uint8 and labels (n,) int64 in 0..3 from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = np.clip(40.0 * y[:, None, None, None] + 40 + rng.normal(0, 25, (n, 32, 32, 3)), 0, 255)
    return x.astype(np.uint8), y.astype(np.int64)


def toy_npz(path: Path, seed: int, n_train: int = 64, n_test: int = 32) -> Path:
    """One draw of ``n_train + n_test`` toy images split into an npz (x/y_train, x/y_test)."""
    x, y = toy_images(n_train + n_test, seed)
    np.savez(path, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:], y_test=y[n_train:])
    return path
