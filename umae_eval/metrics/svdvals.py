"""Singular values at a fixed resolution, and the entropy of a spectrum: the core every rank shares.

Its own module because the spectrum (:mod:`umae_eval.metrics.spectrum`), alpha-ReQ
(:mod:`umae_eval.metrics.alpha_req_fit`), the rank scalars (:mod:`umae_eval.metrics.scalars`) and the
row bootstrap (:mod:`umae_eval.metrics.rank_bootstrap`) must all floor tiny singular values the
same way, or their ranks would disagree on rank-deficient features.

Example
-------
>>> import numpy as np
>>> _svdvals(np.diag([3.0, 1.0]), center=False).tolist()
[3.0, 1.0]
"""

from __future__ import annotations

import numpy as np


def _svdvals(raw: np.ndarray, center: bool) -> np.ndarray:
    """Singular values of a float64 ``(N, D)`` matrix (centred first if asked), descending.

    Tall matrices (N > 2D) go through the D x D Gram matrix (``sqrt(eigvalsh(X^T X))``), about
    5x faster than an SVD at 50k x 768; others use ``numpy.linalg.svd``. Either way, values
    below the Gram route's resolution, ``sqrt(max(N, D) * eps) * sigma_1`` (about 1e-6 of the
    largest at N = 50k, below what float32 features resolve) and below the rounding of the
    centring, ``max(N, D) * eps * ||X||_F`` of the uncentred matrix, are returned as exact 0, so
    that the result does not depend on the route and rank-deficient inputs give exact ranks.
    """
    x = raw - raw.mean(axis=0, keepdims=True) if center else raw
    n, d = x.shape
    if n > 2 * d:
        eig = np.linalg.eigvalsh(x.T @ x)[::-1]
        s = np.sqrt(np.clip(eig, 0.0, None))
    else:
        s = np.linalg.svd(x, compute_uv=False)
    return _floor_small(s, n, d, float(np.linalg.norm(raw)))


def _floor_small(s: np.ndarray, n: int, d: int, frob_raw: float) -> np.ndarray:
    """Singular values ``s`` (descending) of an (n, d) matrix with those below resolution set to 0.

    The resolution is the larger of the Gram route's, ``sqrt(max(n, d) * eps) * s[0]``, and the
    centring's rounding, ``max(n, d) * eps * frob_raw`` (``frob_raw``: Frobenius norm of the
    uncentred matrix); see :func:`_svdvals`.
    """
    eps = np.finfo(np.float64).eps
    floor = max(np.sqrt(max(n, d) * eps) * s[0], max(n, d) * eps * frob_raw)
    return np.where(s > floor, s, 0.0)


def _entropy_rank(s: np.ndarray, eps: float = 0.0) -> float:
    """``exp(-sum p log p)`` with ``p = s / sum(s) + eps`` (terms with p = 0 contribute 0)."""
    total = float(s.sum())
    if total <= 0.0:
        return 0.0
    p = s / total + eps
    nz = p[p > 0]
    return float(np.exp(-np.sum(nz * np.log(nz))))
