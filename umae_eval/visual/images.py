"""Which images to show: by index, by class, or seeded at random; and reading just those rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from umae_eval.errors import UmaeError


def select_images(labels: np.ndarray, class_names: Sequence[str], *, n: int, index: Sequence[int] | None = None,
                  classes: Sequence[str] | None = None, seed: int = 0) -> np.ndarray:
    """Row indices of the images to show.

    ``index`` wins (those rows, in that order); else ``classes`` (names or numeric ids): ``n``
    images spread over those classes in turn, each class's first images in a seeded random
    order; else ``n`` rows drawn at random without replacement (``np.random.default_rng(seed)``).

    Raises
    ------
    UmaeError
        An index outside the split, an unknown class, or a class without images.
    """
    total = len(labels)
    if index:
        bad = [i for i in index if not 0 <= i < total]
        if bad:
            raise UmaeError(f"--index {bad[0]}: the split has {total} images (0 to {total - 1})")
        return np.asarray(index, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if classes:
        ids = []
        for c in classes:
            if c in class_names:
                ids.append(list(class_names).index(c))
            elif c.isdigit() and int(c) < len(class_names):
                ids.append(int(c))
            else:
                shown = ", ".join(list(class_names)[:12]) + (" ..." if len(class_names) > 12 else "")
                raise UmaeError(f"--class {c!r}: not a class of this dataset; classes: {shown}")
        pools = []
        for cid in ids:
            rows = np.flatnonzero(labels == cid)
            if len(rows) == 0:
                raise UmaeError(f"--class {class_names[cid]!r}: no image of that class in this split")
            pools.append(list(rng.permutation(rows)))
        out: list[int] = []
        while len(out) < n and any(pools):
            for pool in pools:
                if pool and len(out) < n:
                    out.append(int(pool.pop(0)))
        return np.asarray(out, dtype=np.int64)
    if n > total:
        raise UmaeError(f"--images {n}: the split has only {total} images")
    return np.sort(rng.choice(total, size=n, replace=False)).astype(np.int64)


def read_rows(dataset: Any, split: str, rows: np.ndarray, side: int) -> np.ndarray:
    """uint8 (len(rows), H, W, 3) of those rows of an in-memory or lazy dataset.

    A lazy set is decoded at ``side`` with the evaluation transform for that size; an in-memory
    set is returned as stored (the model's preprocessing resizes it).
    """
    if getattr(dataset, "lazy", False):
        from umae_eval.data.transforms import eval_rule

        view = dataset.view(split, side, eval_rule(side))
        return np.stack([view[int(i)] for i in rows]).astype(np.uint8)
    x = dataset.x_test if split == "test" else dataset.x_train
    return np.asarray(x[rows], dtype=np.uint8)
