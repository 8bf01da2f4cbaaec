"""Scalar summaries of a feature spectrum: participation ratio, stable rank, collapse std, RankMe x 2.

Definitions (``../shared/docs/PROTOCOLS.md`` section 3), Z an ``(N, D)`` feature matrix,
sigma_k its singular values, Z_c = Z - 1 mu^T the centred matrix:

- participation ratio (Gao et al. 2017; Recanatesi et al. 2022): ``(sum lambda)^2 / sum lambda^2``
  over the covariance eigenvalues ``lambda_k = sigma_k(Z_c)^2 / (N - 1)`` (centred; the
  ``1/(N-1)`` cancels);
- stable rank (Rudelson & Vershynin 2007): ``||Z||_F^2 / ||Z||_2^2 = sum sigma_k^2 / sigma_1^2``
  on Z as given (uncentred, ``center=True`` for Z_c);
- collapse std (lightly ``utils/debug.py`` ``std_of_l2_normalized``; SimSiam, Chen & He 2021):
  mean over dimensions of the std (``ddof=1``, torch.std's default) of the L2-normalised rows,
  against ``1/sqrt(D)``, its value for features spread evenly over the sphere;
- RankMe, two conventions, each labelled in results:
  ``rankme_paper`` (Garrido et al., ICML 2023): ``p_k = sigma_k(Z) / sum sigma + eps`` on the
  *uncentred* features, ``exp(-sum p log p)``, eps = 1e-7 (the authors' value);
  ``rankme_pca`` (the reptrix library's ``get_rankme``): PCA explained-variance ratios
  ``p_k = sigma_k(Z_c)^2 / sum sigma^2 + eps`` of the *centred* features, the same entropy.
  The two differ by design (squares and centring): quote the name with the number.

All functions take ``(N, D)`` numpy arrays or torch tensors and compute in float64 on the CPU,
through :func:`umae_eval.metrics.svdvals._svdvals` (so tiny singular values are floored to 0 the
same way as the effective rank's). :func:`scalars_from_singular` is the shared core that the
bootstrap (:mod:`umae_eval.metrics.suite`) calls on resampled Gram spectra.

Example
-------
>>> import numpy as np
>>> round(stable_rank(np.diag([3.0, 1.0])), 6)
1.111111
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from umae_eval.errors import UmaeError
from umae_eval.metrics._inputs import ArrayLike, check_features, to_numpy64
from umae_eval.metrics.spectrum import RANKME_EPS
from umae_eval.metrics.svdvals import _entropy_rank, _svdvals

__all__ = [
    "SCALAR_CONVENTIONS",
    "SpectrumScalars",
    "collapse_std",
    "participation_ratio",
    "rankme_paper",
    "rankme_pca",
    "scalars_from_singular",
    "spectrum_scalars",
    "stable_rank",
]

#: How each scalar is computed, as recorded beside the numbers in results.json.
SCALAR_CONVENTIONS: dict[str, str] = {
    "participation_ratio": "(sum lambda)^2 / sum lambda^2, lambda = covariance eigenvalues (centred)",
    "stable_rank": "||Z||_F^2 / ||Z||_2^2 on the uncentred features",
    "collapse_std": "mean over dims of std (ddof=1) of L2-normalised features (lightly); compare 1/sqrt(D)",
    "collapse_std_ratio": "collapse_std * sqrt(D): 1 = spread over the sphere, 0 = collapsed",
    "rankme_paper": "Garrido et al. 2023: p = sigma(Z) / sum sigma + 1e-7, uncentred",
    "rankme_pca": "reptrix: p = PCA explained-variance ratio (sigma(Z_c)^2 / sum) + 1e-7, centred",
}


def _prepare(features: ArrayLike, min_rows: int = 1) -> np.ndarray:
    return to_numpy64(check_features(features, "features", min_rows=min_rows))


def _check_eps(eps: float) -> float:
    if not np.isfinite(eps) or eps < 0:
        raise UmaeError(f"eps must be a number >= 0, got {eps}")
    return float(eps)


def _pr(eig: np.ndarray) -> float:
    total_sq = float(np.sum(eig**2))
    return float(np.sum(eig) ** 2 / total_sq) if total_sq > 0 else 0.0


def participation_ratio(features: ArrayLike) -> float:
    r"""Participation ratio of the covariance spectrum (centred features).

    .. math::
        \lambda_k = \frac{\sigma_k(Z - 1\mu^\top)^2}{N-1}, \qquad
        \mathrm{PR} = \frac{(\sum_k \lambda_k)^2}{\sum_k \lambda_k^2} \in [1, \min(N, D)]

    ``k`` equal non-zero eigenvalues give ``k``. 0.0 when every row is the same.

    Parameters
    ----------
    features : ndarray or Tensor, shape (N, D), N >= 2

    Returns
    -------
    float
    """
    s = _svdvals(_prepare(features, 2), center=True)
    return _pr(s**2)


def stable_rank(features: ArrayLike, center: bool = False) -> float:
    r"""Stable rank ``||Z||_F^2 / ||Z||_2^2 = sum_k sigma_k^2 / sigma_1^2`` (uncentred by default).

    It lies in ``[1, rank(Z)]``; 0.0 for an all-zero matrix.

    Parameters
    ----------
    features : ndarray or Tensor, shape (N, D)
    center : bool, default False
        Subtract the column means first.

    Returns
    -------
    float
    """
    s = _svdvals(_prepare(features), center=center)
    return float(np.sum(s**2) / s[0] ** 2) if s[0] > 0 else 0.0


def rankme_paper(features: ArrayLike, eps: float = RANKME_EPS) -> float:
    r"""RankMe as Garrido et al. (ICML 2023) define it: uncentred singular values, ``+eps``.

    .. math::
        p_k = \frac{\sigma_k(Z)}{\sum_j \sigma_j(Z)} + \varepsilon, \qquad
        \mathrm{RankMe} = \exp\Big(-\sum_k p_k \log p_k\Big)

    The same number as :func:`umae_eval.metrics.spectrum.rankme`.
    """
    return _entropy_rank(_svdvals(_prepare(features), center=False), eps=_check_eps(eps))


def rankme_pca(features: ArrayLike, eps: float = RANKME_EPS) -> float:
    r"""RankMe in reptrix's convention: PCA explained-variance ratios of the centred features.

    .. math::
        p_k = \frac{\sigma_k(Z - 1\mu^\top)^2}{\sum_j \sigma_j(Z - 1\mu^\top)^2} + \varepsilon, \qquad
        \exp\Big(-\sum_k p_k \log p_k\Big)

    (``sklearn.decomposition.PCA().explained_variance_ratio_`` are these ``p_k`` before eps.)
    Squaring sharpens the distribution, so this is at most the paper's value on centred data.
    """
    s = _svdvals(_prepare(features, 2), center=True)
    return _entropy_rank(s**2, eps=_check_eps(eps))


def collapse_std(features: ArrayLike) -> tuple[float, float]:
    r"""The collapse std of L2-normalised features and its reference ``1/sqrt(D)``.

    .. math::
        z_i = x_i / \max(\lVert x_i\rVert, 10^{-12}), \qquad
        \mathrm{std} = \frac{1}{D}\sum_d \sqrt{\tfrac{1}{N-1}\sum_i (z_{id} - \bar z_d)^2}

    (lightly's ``std_of_l2_normalized``: ``torch.std``, ``ddof = 1``). Isotropic Gaussian
    features give about ``1/sqrt(D)``; features that all point one way give 0.

    Returns
    -------
    (float, float)
        ``(std, 1/sqrt(D))``.
    """
    x = _prepare(features, 2)
    z = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return float(np.mean(np.std(z, axis=0, ddof=1))), float(1.0 / np.sqrt(x.shape[1]))


def scalars_from_singular(s_centered: np.ndarray, s_raw: np.ndarray, eps: float = RANKME_EPS) -> dict[str, float]:
    """Participation ratio, stable rank and both RankMe conventions from the two singular spectra.

    ``s_centered`` (descending) are the singular values of the centred matrix, ``s_raw`` of the
    uncentred one, both as :func:`umae_eval.metrics.svdvals._svdvals` returns them.
    """
    stable = float(np.sum(s_raw**2) / s_raw[0] ** 2) if s_raw[0] > 0 else 0.0
    return {
        "participation_ratio": _pr(s_centered**2),
        "stable_rank": stable,
        "rankme_paper": _entropy_rank(s_raw, eps=eps),
        "rankme_pca": _entropy_rank(s_centered**2, eps=eps),
    }


@dataclass(frozen=True)
class SpectrumScalars:
    """Every scalar of this module for one feature matrix, with the conventions used."""

    participation_ratio: float
    stable_rank: float
    collapse_std: float
    collapse_std_reference: float
    rankme_paper: float
    rankme_pca: float
    num_samples: int
    dim: int
    rankme_eps: float

    def values(self) -> dict[str, float]:
        """The scalars by result name (``collapse_std_ratio`` = std * sqrt(D))."""
        return {
            "participation_ratio": self.participation_ratio,
            "stable_rank": self.stable_rank,
            "collapse_std": self.collapse_std,
            "collapse_std_ratio": self.collapse_std / self.collapse_std_reference,
            "rankme_paper": self.rankme_paper,
            "rankme_pca": self.rankme_pca,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.values(), "collapse_std_reference": self.collapse_std_reference,
                "num_samples": self.num_samples, "dim": self.dim,
                "settings": {"rankme_eps": self.rankme_eps, "conventions": dict(SCALAR_CONVENTIONS)}}


def spectrum_scalars(features: ArrayLike, eps: float = RANKME_EPS) -> SpectrumScalars:
    """All scalars at once: two decompositions (centred, raw) and one normalisation pass.

    Parameters
    ----------
    features : ndarray or Tensor, shape (N, D), N >= 2
    eps : float
        RankMe's epsilon for both conventions.
    """
    x = _prepare(features, 2)
    vals = scalars_from_singular(_svdvals(x, center=True), _svdvals(x, center=False), _check_eps(eps))
    std, ref = collapse_std(x)
    return SpectrumScalars(participation_ratio=vals["participation_ratio"], stable_rank=vals["stable_rank"],
                           collapse_std=std, collapse_std_reference=ref, rankme_paper=vals["rankme_paper"],
                           rankme_pca=vals["rankme_pca"], num_samples=int(x.shape[0]), dim=int(x.shape[1]),
                           rankme_eps=float(eps))
