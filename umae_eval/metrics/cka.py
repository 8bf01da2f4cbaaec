"""Similarity of two representations of the same images: linear CKA (biased, unbiased, minibatch),
block x block CKA matrices, and mutual kNN alignment.

Definitions (``../shared/docs/PROTOCOLS.md`` section 3), X ``(N, D1)`` and Y ``(N, D2)`` the two
representations of the same N images, row i of each from image i:

- **linear CKA** (Kornblith et al., ICML 2019), on centred X, Y:
  ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``; invariant to orthogonal maps and isotropic
  scaling of either side; biased upwards at small N (independent features give about D/N, not 0).
- **unbiased HSIC** (Song et al., JMLR 2012, Eq. 5), with ``K = X X^T``, ``L = Y Y^T`` and their
  diagonals set to 0 (``K~``, ``L~``), N >= 4::

      HSIC_1 = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((N-1)(N-2)) - 2/(N-2) 1^T K~ L~ 1] / (N (N-3))

  and ``CKA_1 = HSIC_1(K, L) / sqrt(HSIC_1(K, K) HSIC_1(L, L))``. For linear kernels every term
  is computed from ``X^T Y``, ``X^T 1`` and the row norms: O(N D1 D2) time, no N x N matrix.
- **minibatch CKA** (Nguyen, Raghu & Kornblith, ICLR 2021, Eq. 3): over k minibatches of m rows,
  ``sum_b HSIC_1(X_b, Y_b) / sqrt(sum_b HSIC_1(X_b, X_b) sum_b HSIC_1(Y_b, Y_b))``, with the
  m x m Gram matrices of each batch: memory O(m^2) per representation whatever N is, and the
  Grams of L blocks serve all L x L pairs (:func:`cka_matrix`).
- **mutual kNN alignment** (Huh et al., ICML 2024; minyoungg/platonic-rep ``metrics.py``
  ``mutual_knn``): rows L2-normalised, each row's k nearest other rows by cosine similarity in
  each space, ``mean_i |N_X(i) & N_Y(i)| / k``. 1 = the same neighbourhoods; independent
  spaces give about k / (N - 1).

Inputs are ``(N, D)`` numpy arrays or torch tensors; sums run in float64 numpy.

Example
-------
>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(100, 5))
>>> round(linear_cka(x, 3.0 * x), 6)
1.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from umae_eval.errors import UmaeError
from umae_eval.metrics._inputs import ArrayLike, check_features, to_numpy64

__all__ = [
    "DEFAULT_CKA_BATCH",
    "cka_from_terms",
    "cka_matrix",
    "cka_matrix_terms",
    "cka_unbiased",
    "hsic_unbiased",
    "linear_cka",
    "minibatch_cka",
    "mutual_knn",
    "mutual_knn_scores",
]

#: Rows per minibatch of :func:`minibatch_cka` / :func:`cka_matrix` (Gram matrices of 8 MB each).
DEFAULT_CKA_BATCH = 1024
#: Rows of one chunk of the kNN search (a chunk x N float32 similarity block).
_KNN_CHUNK = 1024


def _pair(x: ArrayLike, y: ArrayLike, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    a = to_numpy64(check_features(x, "x", min_rows=min_rows))
    b = to_numpy64(check_features(y, "y", min_rows=min_rows))
    if a.shape[0] != b.shape[0]:
        raise UmaeError(f"x and y must hold the same images (rows): got {a.shape[0]} and {b.shape[0]} rows")
    return a, b


def linear_cka(x: ArrayLike, y: ArrayLike) -> float:
    r"""Linear CKA (Kornblith et al. 2019): ``||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)``.

    The usual (biased) estimator on column-centred X, Y. 0.0 when either side is constant.

    Parameters
    ----------
    x : (N, D1), y : (N, D2)
        Two representations of the same N images.
    """
    a, b = _pair(x, y, 2)
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)
    return float(np.linalg.norm(b.T @ a) ** 2 / den) if den > 0 else 0.0


def _hsic1_features(a: np.ndarray, b: np.ndarray) -> float:
    """Song et al.'s unbiased HSIC of linear kernels, from features (see the module docstring)."""
    n = a.shape[0]
    ka, kb = np.sum(a * a, axis=1), np.sum(b * b, axis=1)  # diag(K), diag(L)
    tr = float(np.linalg.norm(a.T @ b) ** 2 - ka @ kb)  # sum_{i != j} K_ij L_ij
    ra = a @ a.sum(axis=0) - ka  # K~ 1
    rb = b @ b.sum(axis=0) - kb  # L~ 1
    return (tr + ra.sum() * rb.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(ra @ rb)) / (n * (n - 3))


def hsic_unbiased(x: ArrayLike, y: ArrayLike) -> float:
    """Unbiased HSIC (Song et al. 2012) of the linear kernels of ``x`` (N, D1) and ``y`` (N, D2), N >= 4.

    Computed in feature space, O(N D1 D2); the features are centred first, which leaves the
    estimator unchanged (it is invariant to adding a constant row) but keeps the sums small.
    """
    a, b = _pair(x, y, 4)
    return _hsic1_features(a - a.mean(axis=0), b - b.mean(axis=0))


def _ratio(xy: float, xx: float, yy: float) -> float:
    den = xx * yy
    return float(xy / np.sqrt(den)) if den > 0 else float("nan")


def cka_unbiased(x: ArrayLike, y: ArrayLike) -> float:
    r"""CKA with the unbiased HSIC: ``HSIC_1(X, Y) / sqrt(HSIC_1(X, X) HSIC_1(Y, Y))`` (all N rows).

    Near 0 for independent representations at any N (it can be slightly negative); NaN when a
    side has no variance. Bounded memory: O(N D + D1 D2).
    """
    a, b = _pair(x, y, 4)
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    return _ratio(_hsic1_features(a, b), _hsic1_features(a, a), _hsic1_features(b, b))


def _batches(n: int, batch_size: int, seed: int | None) -> list[np.ndarray]:
    if batch_size < 4:
        raise UmaeError(f"batch_size must be >= 4 (the unbiased HSIC needs 4 rows), got {batch_size}")
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    out = [order[s:s + batch_size] for s in range(0, n, batch_size)]
    return [b for b in out if len(b) >= 4]  # a last batch of < 4 rows is dropped


def _gram_terms(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(K~, K~ 1, 1^T K~ 1) of one batch's linear Gram matrix with its diagonal zeroed."""
    a = a - a.mean(axis=0)
    k = a @ a.T
    np.fill_diagonal(k, 0.0)
    r = k.sum(axis=1)
    return k, r, float(r.sum())


def _hsic1_grams(ta: tuple[np.ndarray, np.ndarray, float], tb: tuple[np.ndarray, np.ndarray, float]) -> float:
    k, rk, sk = ta
    l, rl, sl = tb
    m = k.shape[0]
    return (float(np.sum(k * l)) + sk * sl / ((m - 1) * (m - 2)) - 2.0 / (m - 2) * float(rk @ rl)) / (m * (m - 3))


def cka_matrix_terms(blocks_a: Sequence[ArrayLike], blocks_b: Sequence[ArrayLike] | None = None, *,
                     batch_size: int = DEFAULT_CKA_BATCH,
                     seed: int | None = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-minibatch unbiased HSIC terms behind :func:`cka_matrix`.

    Returns ``(xy, xx, yy)``: ``(k, La, Lb)``, ``(k, La)``, ``(k, Lb)`` over the k minibatches, so
    that ``cka = xy.sum(0) / sqrt(outer(xx.sum(0), yy.sum(0)))``; resampling the k batches gives a
    bootstrap over groups of images (:mod:`umae_eval.metrics.suite`).
    """
    same = blocks_b is None
    bl_b = blocks_a if blocks_b is None else blocks_b
    if not blocks_a or not bl_b:
        raise UmaeError("cka_matrix needs at least one block on each side")
    checked_a = [check_features(b, f"blocks_a[{i}]", min_rows=4) for i, b in enumerate(blocks_a)]
    checked_b = checked_a if same else [check_features(b, f"blocks_b[{i}]", min_rows=4) for i, b in enumerate(bl_b)]
    n = int(checked_a[0].shape[0])
    for name, arrs in (("blocks_a", checked_a), ("blocks_b", checked_b)):
        for i, arr in enumerate(arrs):
            if int(arr.shape[0]) != n:
                raise UmaeError(f"{name}[{i}] has {int(arr.shape[0])} rows but blocks_a[0] has {n}: "
                                "every block must hold the same images")
    la, lb = len(checked_a), len(checked_b)
    batches = _batches(n, batch_size, seed)
    xy = np.zeros((len(batches), la, lb))
    xx, yy = np.zeros((len(batches), la)), np.zeros((len(batches), lb))
    for k, rows in enumerate(batches):
        sel = np.sort(rows)  # sorted reads are cheaper on memory-mapped arrays; the set is what counts
        ta = [_gram_terms(to_numpy64(a[sel])) for a in checked_a]
        tb = ta if same else [_gram_terms(to_numpy64(b[sel])) for b in checked_b]
        for i in range(la):
            xx[k, i] = _hsic1_grams(ta[i], ta[i])
            for j in range(lb):
                if same and j < i:
                    xy[k, i, j] = xy[k, j, i]  # symmetric: computed already
                else:
                    xy[k, i, j] = _hsic1_grams(ta[i], tb[j])
        yy[k] = xx[k] if same else [_hsic1_grams(t, t) for t in tb]
    return xy, xx, yy


def cka_from_terms(xy: np.ndarray, xx: np.ndarray, yy: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Minibatch CKA ``(La, Lb)`` from per-batch terms, each batch weighted (default 1)."""
    w = np.ones(xy.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.tensordot(w, xy, axes=1) / np.sqrt(np.outer(w @ xx, w @ yy))


def cka_matrix(blocks_a: Sequence[ArrayLike], blocks_b: Sequence[ArrayLike] | None = None, *,
               batch_size: int = DEFAULT_CKA_BATCH, seed: int | None = 0) -> np.ndarray:
    """Minibatch CKA (Nguyen et al. 2021) between every block of ``blocks_a`` and of ``blocks_b``.

    Parameters
    ----------
    blocks_a : sequence of (N, D_l) arrays
        One representation per block (e.g. the [CLS] token after each transformer block) of the
        same N images; arrays may be memory-mapped: only one minibatch of rows is read at a time.
    blocks_b : sequence of (N, D_m) arrays, optional
        The blocks of another model on the same images (None: ``blocks_a`` against itself).
    batch_size : int
        Rows per minibatch (m); the rows are permuted with ``seed`` first (None: in order).

    Returns
    -------
    (La, Lb) float64
        Entry (l, m): ``sum_b HSIC_1(A_l, B_m) / sqrt(sum_b HSIC_1(A_l, A_l) sum_b HSIC_1(B_m, B_m))``.
    """
    return cka_from_terms(*cka_matrix_terms(blocks_a, blocks_b, batch_size=batch_size, seed=seed))


def minibatch_cka(x: ArrayLike, y: ArrayLike, *, batch_size: int = DEFAULT_CKA_BATCH, seed: int | None = 0) -> float:
    """Minibatch CKA (Nguyen et al. 2021) of two representations; see :func:`cka_matrix`."""
    _pair(x, y, 4)
    return float(cka_matrix([x], [y], batch_size=batch_size, seed=seed)[0, 0])


def _knn(z: np.ndarray, k: int) -> np.ndarray:
    """Indices (N, k) of each row's k most cosine-similar other rows (order within a row arbitrary).

    Similarities in float32 torch (``mm`` + ``topk``, a chunk of rows at a time): the neighbour
    order only needs float32's resolution, and it is 2-3x faster than float64 numpy.
    """
    import torch

    t = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
    zn = t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)
    n = zn.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    for s in range(0, n, _KNN_CHUNK):
        sim = zn[s:s + _KNN_CHUNK] @ zn.T
        rows = torch.arange(sim.shape[0])
        sim[rows, rows + s] = -float("inf")  # a row is not its own neighbour
        out[s:s + _KNN_CHUNK] = torch.topk(sim, k, dim=1).indices.numpy()
    return out


def mutual_knn_scores(x: ArrayLike, y: ArrayLike, k: int = 10) -> np.ndarray:
    """Per image, the fraction of its k nearest neighbours (cosine) that both spaces share: (N,) in [0, 1].

    The mean is :func:`mutual_knn`; the per-image scores serve its bootstrap over images.
    Neighbours tied at the k-th similarity (in float32) are broken arbitrarily (``torch.topk``).
    """
    a, b = _pair(x, y, 2)
    n = a.shape[0]
    if not 1 <= k < n:
        raise UmaeError(f"k must be between 1 and N - 1 = {n - 1}, got {k}")
    na, nb = _knn(a, k), _knn(b, k)
    hits = np.empty(n, dtype=np.int64)
    for s in range(0, n, _KNN_CHUNK):  # chunk x k x k comparisons at a time
        hits[s:s + _KNN_CHUNK] = (na[s:s + _KNN_CHUNK, :, None] == nb[s:s + _KNN_CHUNK, None, :]).any(axis=2).sum(axis=1)
    return hits / k


def mutual_knn(x: ArrayLike, y: ArrayLike, k: int = 10) -> float:
    r"""Mutual kNN alignment (Huh et al. 2024): ``mean_i |N_X(i) & N_Y(i)| / k`` over cosine kNN sets.

    Parameters
    ----------
    x : (N, D1), y : (N, D2)
        Two representations of the same images.
    k : int, default 10
        Neighbours per image (platonic-rep's default ``topk`` is 10).
    """
    return float(np.mean(mutual_knn_scores(x, y, k)))
