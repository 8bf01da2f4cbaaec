"""``--map-classes N``: the classes a t-SNE / UMAP map shows (the paper's Fig. 3a draws 10 classes).

A map of 100 or 200 classes is a cloud of near-identical hues; the paper's Fig. 3a shows 10
classes. The classes are drawn once per analysis from the seed (the same for every checkpoint, so
the maps compare), uniformly without replacement, and kept in label order.
"""

from __future__ import annotations

import numpy as np

from umae_eval.errors import UmaeError

__all__ = ["DEFAULT_MAP_CLASSES", "choose_map_classes"]

#: Classes a map shows when ``--map-classes`` is not given and the data set has more.
DEFAULT_MAP_CLASSES = 10
#: The spawn key of the map-class stream (independent of the other seeded draws of an analysis).
_STREAM = 7


def choose_map_classes(n_classes: int, requested: int | None, seed: int) -> np.ndarray:
    """The class ids (sorted, int64, shape (N,)) a map shows.

    ``requested`` None: every class when ``n_classes <= 10``, else 10 drawn at random. Otherwise
    ``requested`` classes drawn at random from ``SeedSequence(seed, spawn_key=(7,))`` (all of them,
    in order, when it equals ``n_classes``). Raises :class:`UmaeError` for ``requested < 2`` or
    ``requested > n_classes``.
    """
    if requested is None:
        requested = min(n_classes, DEFAULT_MAP_CLASSES)
    elif requested < 2:
        raise UmaeError(f"--map-classes {requested}: a map needs at least 2 classes; use 2 to {n_classes}")
    elif requested > n_classes:
        raise UmaeError(f"--map-classes {requested}: the data has only {n_classes} classes; "
                        f"use 2 to {n_classes} (or leave it out)")
    if requested >= n_classes:
        return np.arange(n_classes, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM,)))
    return np.sort(rng.choice(n_classes, size=requested, replace=False)).astype(np.int64)
