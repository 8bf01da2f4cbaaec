"""Seeded subsets of a split: class-balanced (``--max-train-per-class``) and their digests.

Example
-------
>>> import numpy as np
>>> from umae_eval.subsets import balanced_subset
>>> balanced_subset(np.array([0, 0, 0, 1, 2, 2]), per_class=2, seed=0).tolist()
[1, 2, 3, 4, 5]
"""

from __future__ import annotations

import hashlib

import numpy as np

from umae_eval.errors import UmaeError


def balanced_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of at most ``per_class`` images of every class, drawn without replacement.

    Classes with ``per_class`` images or fewer keep all of them. Each class is drawn from its
    own stream (``np.random.default_rng([seed, class])``), so a class's draw does not depend on
    which other classes the split holds or how large they are.

    Parameters
    ----------
    labels : ndarray, shape (N,), integer
        Class of each image.
    per_class : int
        At least 1.
    seed : int
        Same seed, same labels: same subset.

    Returns
    -------
    ndarray, shape (M,), int64
        Sorted row indices into ``labels``.

    Raises
    ------
    UmaeError
        ``per_class < 1``, or labels that are not a 1-D array of non-negative integers.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise UmaeError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and labels.min() < 0:
        raise UmaeError(f"labels must be non-negative class indices, got {int(labels.min())}")
    if int(seed) != seed or seed < 0:
        raise UmaeError(f"--seed must be a non-negative integer, got {seed}")
    if int(per_class) != per_class or per_class < 1:
        raise UmaeError(f"--max-train-per-class must be at least 1, got {per_class}")
    keep: list[np.ndarray] = []
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        if len(rows) > per_class:
            rng = np.random.default_rng([int(seed), int(cls)])
            rows = rng.choice(rows, size=int(per_class), replace=False)
        keep.append(rows)
    if not keep:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(keep)).astype(np.int64)


def subset_digest(indices: np.ndarray | None) -> str:
    """``'all'`` for None, else 16 hex digits of sha256 over the int64 indices in order.

    The ``subset`` field of a feature store key: the same rows in the same order, same digest.
    """
    if indices is None:
        return "all"
    data = np.ascontiguousarray(indices, dtype=np.int64).tobytes()
    return hashlib.sha256(data).hexdigest()[:16]
