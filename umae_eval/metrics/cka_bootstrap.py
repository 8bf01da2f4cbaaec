"""Per-cell 95% intervals of a block x block CKA matrix: a bootstrap over groups of images.

The matrix is the minibatch CKA of :func:`umae_eval.metrics.cka.cka_matrix` (Nguyen et al. 2021):
the images are permuted once and cut into k minibatches of m images, and for blocks l, j::

    CKA_lj = sum_b HSIC_1(A_l[b], B_j[b]) / sqrt(sum_b HSIC_1(A_l[b], A_l[b]) sum_b HSIC_1(B_j[b], B_j[b]))

with Song et al.'s unbiased HSIC per minibatch. A resample draws k minibatches with replacement
(weights ``w``, summing to k) and recomputes every cell from the same per-batch terms:
``sum_b w_b HSIC_1(...)``. Every cell and both sides of a cell see the same drawn images (the
resample is paired), and the terms are computed once, so R resamples cost O(R k La Lb) on top of
the matrix itself: memory stays that of :func:`~umae_eval.metrics.cka.cka_matrix_terms`.

Why groups and not single images: a resample that repeats an image puts two identical rows into
the kernel, whose off-diagonal entry is then a diagonal one; the unbiased HSIC excludes exactly
those, so row resampling would bias it. Resampling whole minibatches keeps each batch's estimate
unbiased. The interval is the plain percentile interval of the resamples (no shift: resampling
batches adds no bias of its own), and it covers image resampling only (not the order of the
permutation, nor the pre-training seed).

The batch size: :func:`interval_batch_size` keeps at least :data:`MIN_CKA_BATCHES` minibatches
(so the percentile ends mean something), at most the matrix's usual 1,024 rows, at least 32.

Example
-------
>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(640, 6))
>>> m = cka_matrix_interval([x], [2.0 * x], n_boot=100, seed=0)
>>> round(float(m.lo[0, 0]), 6), round(float(m.hi[0, 0]), 6)
(1.0, 1.0)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from umae_eval.metrics._inputs import ArrayLike
from umae_eval.metrics.cka import DEFAULT_CKA_BATCH, cka_from_terms, cka_matrix_terms

__all__ = ["MIN_CKA_BATCHES", "MIN_INTERVAL_BATCHES", "CkaMatrix", "cka_matrix_interval", "interval_batch_size"]

#: Fewest minibatches the interval's batch size aims for.
MIN_CKA_BATCHES = 20
#: Fewest minibatches for an interval (a percentile over fewer resampled groups means little).
MIN_INTERVAL_BATCHES = 5
#: Smallest minibatch (rows) of the interval's batch size.
MIN_CKA_BATCH_ROWS = 32


def interval_batch_size(n: int, *, max_rows: int = DEFAULT_CKA_BATCH, min_batches: int = MIN_CKA_BATCHES,
                        min_rows: int = MIN_CKA_BATCH_ROWS) -> int:
    """Rows per minibatch for ``n`` images: ``clip(n // min_batches, min_rows, max_rows)``.

    E.g. 50 at 1,000 images (20 batches), 500 at 10,000, 1,024 from 20,480 on.
    """
    return int(min(max_rows, max(min_rows, n // max(1, min_batches))))


@dataclass
class CkaMatrix:
    """A block x block CKA matrix with per-cell percentile intervals over resampled minibatches.

    ``estimate``, ``lo``, ``hi``: ``(La, Lb)``; ``lo`` / ``hi`` are NaN when fewer than
    :data:`MIN_INTERVAL_BATCHES` minibatches exist (no interval). ``resamples``: ``(R, La, Lb)``
    (empty without an interval).
    """

    estimate: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    resamples: np.ndarray
    batch_size: int
    n_batches: int
    n_images: int
    level: float = 0.95

    @property
    def has_interval(self) -> bool:
        return self.resamples.shape[0] > 0

    def settings(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "batches": self.n_batches, "images_used": self.n_images,
                "resamples": int(self.resamples.shape[0]), "level": self.level,
                "interval": (f"{100 * self.level:g}% percentile bootstrap over the {self.n_batches} minibatches of "
                             f"{self.batch_size} images (the same images for every block and both checkpoints)"
                             if self.has_interval else f"none: fewer than {MIN_INTERVAL_BATCHES} minibatches")}


def cka_matrix_interval(blocks_a: Sequence[ArrayLike], blocks_b: Sequence[ArrayLike] | None = None, *,
                        batch_size: int | None = None, n_boot: int = 1000, seed: int = 0,
                        level: float = 0.95) -> CkaMatrix:
    """Minibatch CKA between every block of ``blocks_a`` and ``blocks_b``, with per-cell intervals.

    Parameters
    ----------
    blocks_a, blocks_b : sequences of (N, D_l) arrays
        As :func:`umae_eval.metrics.cka.cka_matrix` (``blocks_b`` None: ``blocks_a`` against itself).
    batch_size : int, optional
        Rows per minibatch; default :func:`interval_batch_size` of N.
    n_boot : int
        Resamples of the k minibatches (0: no interval).
    seed : int
        Seeds the permutation of the images (``seed``) and the resamples (``seed + 1``); the same
        seed for two checkpoints gives them the same minibatches, so their matrices are paired.
    """
    from umae_eval.metrics.rank_bootstrap import resample_indices

    n = int(np.shape(blocks_a[0])[0]) if len(blocks_a) else 0
    m = interval_batch_size(n) if batch_size is None else int(batch_size)
    xy, xx, yy = cka_matrix_terms(blocks_a, blocks_b, batch_size=m, seed=seed)
    k = xy.shape[0]
    est = cka_from_terms(xy, xx, yy)
    nan = np.full_like(est, np.nan)
    if k < MIN_INTERVAL_BATCHES or n_boot < 1:
        return CkaMatrix(est, nan, nan.copy(), np.empty((0, *est.shape)), m, k, _rows_used(n, m), level)
    w = np.stack([np.bincount(r, minlength=k) for r in resample_indices(k, n_boot, seed + 1)]).astype(np.float64)
    num = np.tensordot(w, xy, axes=1)  # (R, La, Lb)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = num / np.sqrt((w @ xx)[:, :, None] * (w @ yy)[:, None, :])
    tail = (1.0 - level) / 2.0 * 100.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a constant block: its cells stay NaN
        lo, hi = np.nanpercentile(boot, [tail, 100.0 - tail], axis=0)
    return CkaMatrix(est, np.asarray(lo), np.asarray(hi), boot, m, k, _rows_used(n, m), level)


def _rows_used(n: int, m: int) -> int:
    """Images in the minibatches (a last batch of fewer than 4 rows is dropped)."""
    full, rest = divmod(n, m)
    return full * m + (rest if rest >= 4 else 0)
