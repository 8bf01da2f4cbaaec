"""LiDAR (Thilak et al., "LiDAR: Sensing Linear Probing Performance in Joint Embedding SSL
Architectures", ICLR 2024): the effective rank of the LDA matrix of a surrogate task.

Surrogate classes: n clean images, each seen through q views (the paper: q augmentations; for a
masked autoencoder the natural views are q different random masks of the image, the
"mask-induced positive pairs"). The input is one ``(n, q, D)`` array of view features, e_ij the
feature of view j of image i. With ``mu_i`` the mean over image i's views and ``mu`` the mean of
the ``mu_i`` (the conventions of the paper and of galilai-group/stable-pretraining
``callbacks/lidar.py``, whose defaults are n = 100, q = 10, delta = 1e-4, eps = 1e-8)::

    Sigma_b = 1/(n-1) sum_i (mu_i - mu)(mu_i - mu)^T
    Sigma_w = 1/(n(q-1)) sum_ij (e_ij - mu_i)(e_ij - mu_i)^T + delta I_D
    Sigma   = Sigma_w^{-1/2} Sigma_b Sigma_w^{-1/2}       (eigenvalues of Sigma_w clamped at eps)
    lambda  = eigenvalues of Sigma (clamped at 0),  p_k = (lambda_k + eps) / sum_j (lambda_j + eps)
    LiDAR   = exp(-sum_k p_k log p_k)

Without delta, LiDAR is unchanged by any invertible linear map of the features (Sigma only turns
by an orthogonal similarity); with delta > 0 it is still unchanged by orthogonal maps (delta I
turns with them) and moves little under others while delta is small against Sigma_w.

``method='reptrix'`` gives the variant the reptrix library computes (``reptrix/lidar.py``):
Sigma_b and Sigma_w as plain sums over images (no 1/(n-1); within-class sums averaged over
images, no 1/(q-1)), delta = 1e-6, and instead of the eigenvalues of Sigma the PCA
explained-variance ratios of Sigma's *rows* (rows centred, squared singular values), then
``p = r / ||r||_1 + 1e-7``. Those ratios are about the squared eigenvalues and depend on the basis,
so the variant is neither the paper's number nor rotation-invariant; it is here to show how far
apart the two are.

Example
-------
>>> import numpy as np
>>> v = np.random.default_rng(0).normal(size=(50, 4, 8))
>>> 1.0 <= lidar(v).value <= 8.0
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from umae_eval.errors import UmaeError
from umae_eval.metrics._inputs import check_choice

__all__ = ["LIDAR_DELTA", "LIDAR_EPS", "LidarMethod", "LidarResult", "lidar", "lidar_resampled"]

#: Paper / stable-pretraining defaults.
LIDAR_DELTA: float = 1e-4
LIDAR_EPS: float = 1e-8
#: reptrix's defaults (``get_lidar(del_sigma_augs=1e-6)``, ``get_rank`` eps 1e-7).
_REPTRIX_DELTA: float = 1e-6
_REPTRIX_EPS: float = 1e-7

LidarMethod = Literal["paper", "reptrix"]


@dataclass(frozen=True)
class LidarResult:
    """LiDAR of one set of views, with the eigenvalues and the settings that produced it."""

    value: float
    eigenvalues: np.ndarray = field(repr=False)
    n_images: int
    n_views: int
    dim: int
    delta: float
    eps: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"lidar": self.value, "n_images": self.n_images, "n_views": self.n_views, "dim": self.dim,
                "settings": {"delta": self.delta, "eps": self.eps, "method": self.method},
                "eigenvalues_top": self.eigenvalues[:20].tolist()}


def _check_views(views: object) -> np.ndarray:
    if isinstance(views, torch.Tensor):
        arr = views.detach().to("cpu", torch.float64).numpy()
    elif isinstance(views, np.ndarray):
        arr = np.asarray(views, dtype=np.float64)
    else:
        raise UmaeError(f"views must be a numpy array or torch tensor of shape (n images, q views, D), "
                        f"got {type(views).__name__}")
    if arr.ndim != 3:
        raise UmaeError(f"views must be 3-D (n images, q views, D), got shape {tuple(arr.shape)}")
    n, q, d = arr.shape
    if n < 2 or q < 2 or d < 1:
        raise UmaeError(f"LiDAR needs at least 2 images with 2 views each, got shape {(n, q, d)}")
    if not np.isfinite(arr).all():
        raise UmaeError(f"views contain NaN or infinite values (shape {(n, q, d)})")
    return arr


def _entropy_rank(values: np.ndarray, eps: float, normalise_first: bool) -> float:
    """exp(H(p)): ``p = (v + eps) / sum(v + eps)`` (paper) or ``p = v / sum(v) + eps`` (reptrix)."""
    if normalise_first:
        total = float(np.sum(np.abs(values)))
        p = (values / total if total > 0 else values) + eps
    else:
        p = (values + eps) / float(np.sum(values + eps))
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def _lidar(arr: np.ndarray, w: np.ndarray, delta: float, eps: float, method: str) -> tuple[float, np.ndarray]:
    """LiDAR of views ``arr`` (n, q, D) with image weights ``w`` (n,), summing to n (1 = no resampling)."""
    n, q, d = arr.shape
    mu_i = arr.mean(axis=1)
    mu = (w @ mu_i) / n
    cm = (mu_i - mu) * np.sqrt(w)[:, None]
    dev = (arr - mu_i[:, None, :]) * np.sqrt(w)[:, None, None]
    dev = dev.reshape(n * q, d)
    if method == "paper":
        sb = cm.T @ cm / (n - 1)
        sw = dev.T @ dev / (n * (q - 1))
    else:
        sb = cm.T @ cm
        sw = dev.T @ dev / n
    sw[np.diag_indices(d)] += delta
    ew, vw = np.linalg.eigh(sw)
    inv_sqrt = (vw / np.sqrt(np.maximum(ew, eps))) @ vw.T
    sigma = inv_sqrt @ sb @ inv_sqrt
    sigma = 0.5 * (sigma + sigma.T)
    if method == "paper":
        lam = np.clip(np.linalg.eigvalsh(sigma)[::-1], 0.0, None)
        return _entropy_rank(lam, eps, normalise_first=False), lam
    # reptrix: PCA over the rows of the LiDAR matrix (rows centred), explained-variance ratios
    s = np.linalg.svd(sigma - sigma.mean(axis=0), compute_uv=False)
    ratio = s**2 / np.sum(s**2) if np.sum(s**2) > 0 else s**2
    return _entropy_rank(ratio, eps, normalise_first=True), ratio


def _settings(method: str, delta: float | None, eps: float | None) -> tuple[float, float]:
    check_choice(method, ("paper", "reptrix"), "method")
    dflt = (LIDAR_DELTA, LIDAR_EPS) if method == "paper" else (_REPTRIX_DELTA, _REPTRIX_EPS)
    d = dflt[0] if delta is None else float(delta)
    e = dflt[1] if eps is None else float(eps)
    if not (np.isfinite(d) and d >= 0 and np.isfinite(e) and e >= 0):
        raise UmaeError(f"delta and eps must be numbers >= 0, got delta={delta}, eps={eps}")
    return d, e


def lidar(views: object, *, delta: float | None = None, eps: float | None = None,
          method: LidarMethod = "paper") -> LidarResult:
    r"""LiDAR of ``views`` (n images, q views, D): see the module docstring for every formula.

    Parameters
    ----------
    views : ndarray or Tensor, shape (n, q, D), n >= 2, q >= 2
        Row ``[i, j]``: the feature of view j (a random mask or an augmentation) of image i.
    delta : float, optional
        Ridge added to Sigma_w (default 1e-4; reptrix method 1e-6).
    eps : float, optional
        Added to each eigenvalue before normalising (default 1e-8; reptrix method 1e-7, added after).
    method : {'paper', 'reptrix'}
        The paper's eigenvalues, or reptrix's PCA over the rows of the LiDAR matrix.

    Returns
    -------
    LidarResult
        ``value`` in [1, D]; ``eigenvalues`` of Sigma, descending (reptrix: the row-PCA ratios).
    """
    arr = _check_views(views)
    d_, e_ = _settings(method, delta, eps)
    value, lam = _lidar(arr, np.ones(arr.shape[0]), d_, e_, method)
    n, q, d = arr.shape
    return LidarResult(value=value, eigenvalues=lam, n_images=n, n_views=q, dim=d, delta=d_, eps=e_, method=method)


def lidar_resampled(views: object, indices: np.ndarray, *, delta: float | None = None, eps: float | None = None,
                    method: LidarMethod = "paper") -> np.ndarray:
    """LiDAR on resamples of the images: ``indices`` (R, n) rows drawn with replacement -> (R,).

    Each resample weights image i by how often it was drawn (the same as stacking the drawn
    images' views), so that a resample costs one weighted D x D product, not a copy.
    """
    arr = _check_views(views)
    d_, e_ = _settings(method, delta, eps)
    idx = np.asarray(indices)
    out = np.empty(idx.shape[0])
    for r in range(idx.shape[0]):
        w = np.bincount(idx[r], minlength=arr.shape[0]).astype(np.float64)
        out[r] = _lidar(arr, w, d_, e_, method)[0]
    return out
