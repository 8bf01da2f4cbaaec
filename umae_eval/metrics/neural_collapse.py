"""Neural-collapse measures of labelled features: NC1, CDNV, NC2 (ETF distance, equinorm), NC4.

Definitions (Papyan, Han & Donoho, PNAS 2020; the reference code rhubarbwu/neural-collapse
``measure.py``; ``../shared/docs/PROTOCOLS.md`` section 3), for features h_i (rows of an ``(N, D)``
matrix) with labels y_i in C classes (the classes present in the labels):

- class means ``mu_c``, global mean ``mu_G`` = the mean of all N rows;
- within-class covariance ``Sigma_W = 1/N sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T``;
- between-class covariance ``Sigma_B = 1/C sum_c (mu_c - mu_G)(mu_c - mu_G)^T``;
- **NC1** ``= tr(Sigma_W Sigma_B^+) / C`` (``^+``: Moore-Penrose pseudo-inverse; eigenvalues of
  Sigma_B below ``max(D, C) * 2.2e-16 * lambda_max`` count as 0, numpy's ``pinv`` rule);
- **CDNV** (class-distance normalised variance, Galanti et al., ICLR 2022) between classes i != j:
  ``(var_i + var_j) / (2 ||mu_i - mu_j||^2)``, ``var_c = 1/n_c sum_{y_i = c} ||h_i - mu_c||^2``;
  reported as the (C, C) matrix (diagonal 0) and its mean over the ``C(C-1)/2`` pairs;
- **NC2** ``= || G / ||G||_F - (I - 11^T/C) / sqrt(C-1) ||_F`` with ``G = M^T M`` the Gram matrix
  of the centred class means ``M = [mu_c - mu_G]`` (D x C): 0 when the means form a simplex
  equiangular tight frame (ETF; the scaling makes both matrices unit-Frobenius);
  ``nc2_equinorm`` = std / mean of ``||mu_c - mu_G||`` (0 = equal norms);
- **NC4** = the fraction of samples on which a classifier's prediction equals the nearest class
  centre ``argmin_c ||h - mu_c||`` (Papyan's NC4 reports the mismatch, ``1 - agreement``); the
  centres are usually the train class means and the predictions a linear probe's.

Everything runs in float64 numpy in O(N D C) time and O(D C) extra memory (no D x D inverse:
the pseudo-inverse acts through the SVD of the C x D mean matrix).

Example
-------
>>> import numpy as np
>>> x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
>>> nc1(x, np.array([0, 0, 1, 1]))
0.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from umae_eval.errors import UmaeError
from umae_eval.metrics._inputs import ArrayLike, check_features, check_labels, to_numpy64

__all__ = [
    "NeuralCollapse",
    "cdnv",
    "class_means",
    "nc1",
    "nc2",
    "nc4",
    "nearest_class_centre",
    "neural_collapse",
]


def _inputs(features: ArrayLike, labels: object) -> tuple[np.ndarray, np.ndarray]:
    """float64 features and labels re-indexed to 0..C-1 over the classes present; needs C >= 2."""
    x = to_numpy64(check_features(features, "features", min_rows=2))
    y = check_labels(labels, x.shape[0])
    present, inverse = np.unique(y, return_inverse=True)
    if present.size < 2:
        raise UmaeError(f"neural-collapse measures need at least 2 classes in the labels, got {present.size}")
    return x, inverse.astype(np.int64)


def class_means(features: ArrayLike, labels: object) -> tuple[np.ndarray, np.ndarray]:
    """Class means ``(C, D)`` and counts ``(C,)`` over the classes present, in label order."""
    x, y = _inputs(features, labels)
    return _means(x, y)


def _means(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = int(y.max()) + 1
    counts = np.bincount(y, minlength=c).astype(np.float64)
    sums = np.zeros((c, x.shape[1]))
    np.add.at(sums, y, x)
    return sums / counts[:, None], counts


def _nc1(x: np.ndarray, y: np.ndarray, mu: np.ndarray) -> float:
    c = mu.shape[0]
    m = (mu - x.mean(axis=0)) / np.sqrt(c)  # Sigma_B = m^T m
    _, s, vt = np.linalg.svd(m, full_matrices=False)
    lam = s**2  # eigenvalues of Sigma_B, eigenvectors the rows of vt
    keep = lam > max(x.shape[1], c) * np.finfo(np.float64).eps * lam.max() if lam.max() > 0 else lam > 0
    if not keep.any():
        return float("inf")
    h0 = x - mu[y]  # within-class deviations
    # tr(Sigma_W Sigma_B^+) = sum_k v_k^T Sigma_W v_k / lambda_k, v_k^T Sigma_W v_k = ||h0 v_k||^2 / N
    proj = h0 @ vt[keep].T
    return float(np.sum(np.sum(proj**2, axis=0) / x.shape[0] / lam[keep]) / c)


def nc1(features: ArrayLike, labels: object) -> float:
    r"""NC1 ``= tr(Sigma_W Sigma_B^+) / C`` (Papyan et al. 2020): within- over between-class variability.

    0 when every feature equals its class mean; ``inf`` when all class means coincide.

    Parameters
    ----------
    features : ndarray or Tensor, shape (N, D)
    labels : array, shape (N,), integer classes (C >= 2 present)
    """
    x, y = _inputs(features, labels)
    return _nc1(x, y, _means(x, y)[0])


def _cdnv(x: np.ndarray, y: np.ndarray, mu: np.ndarray, counts: np.ndarray) -> np.ndarray:
    sq = np.zeros(mu.shape[0])
    np.add.at(sq, y, np.sum((x - mu[y]) ** 2, axis=1))
    var = sq / counts
    mn = np.sum(mu**2, axis=1)
    dist = np.maximum(mn[:, None] + mn[None, :] - 2.0 * mu @ mu.T, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mat = (var[:, None] + var[None, :]) / (2.0 * dist)
    np.fill_diagonal(mat, 0.0)
    return mat


def cdnv(features: ArrayLike, labels: object) -> tuple[float, np.ndarray]:
    r"""CDNV (Galanti et al. 2022): ``(var_i + var_j) / (2 ||mu_i - mu_j||^2)`` for every class pair.

    Returns
    -------
    (float, ndarray (C, C))
        The mean over the ``C(C-1)/2`` pairs ``i < j`` and the symmetric matrix (diagonal 0;
        ``inf`` for two classes with the same mean).
    """
    x, y = _inputs(features, labels)
    mu, counts = _means(x, y)
    mat = _cdnv(x, y, mu, counts)
    iu = np.triu_indices(mu.shape[0], k=1)
    return float(np.mean(mat[iu])), mat


def _nc2(x: np.ndarray, mu: np.ndarray) -> tuple[float, float]:
    c = mu.shape[0]
    m = mu - x.mean(axis=0)
    g = m @ m.T
    norm = np.linalg.norm(g)
    etf = (np.eye(c) - np.ones((c, c)) / c) / np.sqrt(c - 1)
    dist = float(np.linalg.norm(g / norm - etf)) if norm > 0 else float("nan")
    norms = np.linalg.norm(m, axis=1)
    equinorm = float(np.std(norms) / np.mean(norms)) if np.mean(norms) > 0 else float("nan")
    return dist, equinorm


def nc2(features: ArrayLike, labels: object) -> tuple[float, float]:
    r"""NC2: distance of the centred class means' Gram matrix to the simplex ETF, and equinorm.

    .. math::
        \mathrm{NC2} = \Big\lVert \frac{M^\top M}{\lVert M^\top M\rVert_F}
            - \frac{I_C - \tfrac{1}{C} 1 1^\top}{\sqrt{C-1}} \Big\rVert_F

    Returns
    -------
    (float, float)
        ``(etf_distance, equinorm)``; equinorm = std / mean of the centred mean norms.
    """
    x, y = _inputs(features, labels)
    return _nc2(x, _means(x, y)[0])


def nearest_class_centre(features: ArrayLike, centres: ArrayLike) -> np.ndarray:
    """Index of the nearest centre (Euclidean) for each row: ``(N,)`` int64 (ties -> smaller index)."""
    x = to_numpy64(check_features(features, "features"))
    mu = to_numpy64(check_features(centres, "centres"))
    if mu.shape[1] != x.shape[1]:
        raise UmaeError(f"centres have {mu.shape[1]} dimensions but features have {x.shape[1]}")
    d = np.sum(mu**2, axis=1)[None, :] - 2.0 * x @ mu.T  # ||x||^2 is the same for every centre
    return np.argmin(d, axis=1).astype(np.int64)


def nc4(features: ArrayLike, predictions: object, centres: ArrayLike) -> float:
    r"""NC4: agreement of a classifier with the nearest class centre, a fraction in [0, 1].

    ``mean_i [pred_i == argmin_c ||h_i - centre_c||]``; Papyan et al. plot the mismatch
    ``1 - agreement``. ``predictions`` index the rows of ``centres`` (class c = row c).
    """
    x = check_features(features, "features")
    pred = check_labels(predictions, int(x.shape[0]), "predictions", "features")
    return float(np.mean(nearest_class_centre(x, centres) == pred))


@dataclass(frozen=True)
class NeuralCollapse:
    """NC1, CDNV, NC2 and (when predictions are given) NC4 of one labelled feature matrix."""

    nc1: float
    cdnv: float
    cdnv_matrix: np.ndarray
    nc2_etf_distance: float
    nc2_equinorm: float
    nc4_agreement: float | None
    num_classes: int
    num_samples: int

    def values(self) -> dict[str, float]:
        out = {"nc1": self.nc1, "cdnv": self.cdnv, "nc2_etf_distance": self.nc2_etf_distance,
               "nc2_equinorm": self.nc2_equinorm}
        if self.nc4_agreement is not None:
            out["nc4_agreement"] = self.nc4_agreement
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**self.values(), "cdnv_matrix": self.cdnv_matrix.tolist(), "num_classes": self.num_classes,
                "num_samples": self.num_samples}


def neural_collapse(features: ArrayLike, labels: object, *, predictions: object | None = None,
                    centres: ArrayLike | None = None) -> NeuralCollapse:
    """Every measure at once on ``features`` (N, D) with ``labels`` (N,).

    NC4 is computed when ``predictions`` (N,) are given: against ``centres`` (C, D) if given
    (e.g. the train class means), else against these features' own class means (then the labels
    must be 0..C-1 with every class present, so that prediction c means row c).
    """
    x, y = _inputs(features, labels)
    mu, counts = _means(x, y)
    mat = _cdnv(x, y, mu, counts)
    etf, equi = _nc2(x, mu)
    agree = None
    if predictions is not None:
        if centres is None:
            raw = check_labels(labels, x.shape[0])
            if not np.array_equal(np.unique(raw), np.arange(mu.shape[0])):
                raise UmaeError("NC4 against the features' own class means needs labels 0..C-1 with every "
                                "class present; pass centres=")
            centres = mu
        agree = nc4(x, predictions, centres)
    return NeuralCollapse(nc1=_nc1(x, y, mu), cdnv=float(np.mean(mat[np.triu_indices(mu.shape[0], k=1)])),
                          cdnv_matrix=mat, nc2_etf_distance=etf, nc2_equinorm=equi, nc4_agreement=agree,
                          num_classes=int(mu.shape[0]), num_samples=int(x.shape[0]))
