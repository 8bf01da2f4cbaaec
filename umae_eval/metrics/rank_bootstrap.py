"""Bootstrap of effective rank and RankMe over the rows (test images) of feature matrices.

Resampling N rows with replacement is the same as weighting each row by how often it was drawn
(``w``, summing to N), so the resampled Gram matrix is ``X^T diag(w) X`` and its eigenvalues are
the squared singular values of the resampled matrix. The features are centred once on their own
mean; each resample then needs one weighted Gram product of the rows it drew, from which both the
centred Gram (its mean shift is small, so nothing large cancels) and the raw Gram follow exactly.
The same resamples serve every matrix, so differences between checkpoints are paired, as for the
accuracies.

Each resample gives exactly what :func:`umae_eval.metrics.spectrum.effective_rank` (centred) and
:func:`umae_eval.metrics.spectrum.rankme` (raw, +eps) give on ``X[idx]`` (tested to 1e-7 relative), with the
same small-value floor. Only the rows a resample drew (about 63% of them) enter its product, in
chunks of 8,192 rows, so memory stays at two copies of the features plus a chunk. Against copying
the resampled rows and calling the two metrics (``benchmarks/rank_intervals.py``) this is 1.0-1.5x
faster, the gain growing with N and D; the cost is linear in N and in the resamples.

Example::

    mae = bootstrap_ranks(f_mae, n_boot=200, seed=0)     # (200, 2)
    umae = bootstrap_ranks(f_umae, n_boot=200, seed=0)   # the same 200 resamples of the rows
    erank_diff = umae[:, 0] - mae[:, 0]                  # U-MAE - MAE, paired
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from umae_eval.metrics._inputs import ArrayLike, check_features, to_numpy64
from umae_eval.metrics.spectrum import RANKME_EPS
from umae_eval.metrics.svdvals import _entropy_rank, _floor_small, _svdvals

#: Rows per Gram-product chunk of one resample.
_CHUNK_ROWS = 8192
#: The measures, in the order of the last axis of :func:`bootstrap_ranks`' result.
RANK_MEASURES: tuple[str, ...] = ("effective_rank", "rankme")


def resample_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """The row indices of each resample, ``(n_boot, n)`` int64 (``numpy.random.Generator(seed)``)."""
    if n < 2:
        raise ValueError(f"need at least 2 rows to resample, got {n}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _floored_singular(gram: np.ndarray, n: int, frob_raw: float) -> np.ndarray:
    """Singular values from a D x D Gram matrix with :func:`svdvals._svdvals`' floor, min(n, D) of them."""
    d = gram.shape[0]
    s = np.sqrt(np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None))[: min(n, d)]
    return _floor_small(s, n, d, frob_raw)


def resample_singular_values(x: np.ndarray, x0: np.ndarray, m0: np.ndarray,
                             idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Singular values of ``x[idx]``, centred and raw (as :func:`svdvals._svdvals` floors them).

    ``x0 = x - m0`` is centred once on the full-sample mean ``m0``. With row weights ``w``
    (sum n) and ``s = x0^T w``, the resample's mean is ``m0 + s / n``, so

        centred Gram = x0^T W x0 - s s^T / n        (s is small: no cancellation to fear)
        raw Gram     = x0^T W x0 + m0 s^T + s m0^T + n m0 m0^T

    one D x D product (a symmetric rank-k update) instead of two.
    """
    n, d = idx.size, x.shape[1]
    if n <= 2 * d:
        # small resamples: the direct route, exactly as the point estimate takes it
        xb = x[idx]
        return _svdvals(xb, center=True), _svdvals(xb, center=False)
    w = np.bincount(idx, minlength=x.shape[0]).astype(np.float64)
    drawn = np.flatnonzero(w)  # about 63% of the rows: the others have weight 0
    g0 = np.zeros((d, d))
    # row chunks keep the temporaries at _CHUNK_ROWS x D (64 MB at D = 1,024), whatever N is
    for start in range(0, drawn.size, _CHUNK_ROWS):
        rows = drawn[start:start + _CHUNK_ROWS]
        y = x0[rows] * np.sqrt(w[rows, None])
        g0 += y.T @ y
    sv = w[drawn] @ x0[drawn]
    g_c = g0 - np.outer(sv, sv) / n
    ms = np.outer(m0, sv)
    g_raw = g0 + ms + ms.T + n * np.outer(m0, m0)
    frob = float(np.sqrt(max(np.trace(g_raw), 0.0)))
    return _floored_singular(g_c, n, frob), _floored_singular(g_raw, n, frob)


def _ranks_of_resample(x: np.ndarray, x0: np.ndarray, m0: np.ndarray, idx: np.ndarray,
                       eps: float) -> tuple[float, float]:
    """(effective rank centred, RankMe raw) of ``x[idx]`` from :func:`resample_singular_values`."""
    s_c, s_r = resample_singular_values(x, x0, m0, idx)
    return _entropy_rank(s_c), _entropy_rank(s_r, eps=eps)


def bootstrap_ranks(
    features: ArrayLike,
    *,
    n_boot: int,
    seed: int,
    rankme_eps: float = RANKME_EPS,
    step: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Effective rank and RankMe of one feature matrix on ``n_boot`` row resamples.

    Two matrices with the same number of rows (the same test images, in order) and the same
    ``seed`` get the same resamples, so the difference of their results is paired; the pipeline
    calls this once per checkpoint and never holds two checkpoints' features at once.

    Parameters
    ----------
    features : (N, D) array
    n_boot : int
        Number of resamples (N rows each, with replacement).
    seed : int
        Seed of the resampling; :func:`resample_indices` gives the indices.
    rankme_eps : float
        RankMe's epsilon (as :func:`umae_eval.metrics.spectrum.rankme`).
    step : callable, optional
        Called with 1 after each resample (a progress bar's advance).

    Returns
    -------
    (n_boot, 2) float64
        ``[:, 0]`` effective rank (centred), ``[:, 1]`` RankMe (raw), see :data:`RANK_MEASURES`.
    """
    x = to_numpy64(check_features(features, "features", min_rows=2))
    idx = resample_indices(x.shape[0], n_boot, seed)
    out = np.empty((n_boot, len(RANK_MEASURES)), dtype=np.float64)
    m0 = x.mean(axis=0)
    x0 = x - m0
    for b in range(n_boot):
        out[b] = _ranks_of_resample(x, x0, m0, idx[b], rankme_eps)
        if step is not None:
            step(1)
    return out


#: Most resamples for the rank intervals (each costs a D x D Gram product, not a mean of 0/1s).
MAX_RANK_RESAMPLES = 200
#: Fewest resamples when the budget below forces fewer (percentile ends are rough below this).
MIN_RANK_RESAMPLES = 50
#: Multiply-adds (``2 R N D^2``) allowed for one checkpoint's rank intervals: about 25 s on one
#: core of the 2-core test machine (benchmarks/rank_intervals.py measured 4.8 s for 2e11).
RANK_BUDGET = 1e12


def rank_resample_count(n: int, d: int, requested: int) -> int:
    """How many resamples the rank intervals of an (n, d) matrix get.

    ``min(requested, 200)``, lowered so that ``2 * R * n * d^2`` stays within
    :data:`RANK_BUDGET`, but never below 50 (nor above ``requested``). E.g. 200 at
    10,000 x 384, 50 at 20,000 x 768 and beyond.
    """
    affordable = int(RANK_BUDGET // max(1.0, 2.0 * n * d * d))
    return max(1, min(requested, MAX_RANK_RESAMPLES, max(MIN_RANK_RESAMPLES, affordable)))
