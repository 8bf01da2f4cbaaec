"""Spectra of a feature matrix: singular values, effective rank, RankMe, alpha-ReQ, feature std.

The paper ("How Mask Matters", Zhang et al., NeurIPS 2022) plots the normalised singular values
of the centred feature matrix (Fig. 1b) and its effective rank over training (Fig. 1c) to show
that MAE features collapse onto few directions and U-MAE's uniformity term spreads them.

All functions take a feature matrix ``(N, D)`` (N samples, D dimensions) as a ``numpy.ndarray``
or ``torch.Tensor`` (any device, any real dtype), compute in float64 on the CPU, and return
Python floats or numpy arrays.

Example
-------
>>> import numpy as np
>>> from umae_eval.metrics.spectrum import effective_rank
>>> round(effective_rank(np.eye(4), center=False), 6)
4.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from umae_eval.errors import UmaeError
from umae_eval.metrics._inputs import ArrayLike, check_features, to_numpy64
from umae_eval.metrics.alpha_req_fit import ALPHA_REQ_FIT_RANGE, AlphaReqResult, _alpha_from_singular, alpha_req
from umae_eval.metrics.svdvals import _entropy_rank, _svdvals

__all__ = [
    "ALPHA_REQ_FIT_RANGE",
    "RANKME_EPS",
    "AlphaReqResult",
    "SpectrumSummary",
    "alpha_req",
    "effective_rank",
    "normalized_feature_std",
    "rankme",
    "singular_values",
    "spectrum_summary",
]

#: RankMe's epsilon (Garrido et al., ICML 2023, Eq. 1 and their reference code).
RANKME_EPS: float = 1e-7


def _prepare(features: ArrayLike, name: str = "features") -> np.ndarray:
    return to_numpy64(check_features(features, name))


def singular_values(features: ArrayLike, center: bool = True, normalize: bool = True) -> np.ndarray:
    r"""Singular values of the feature matrix, sorted in descending order.

    .. math::
        X = U \,\mathrm{diag}(\sigma)\, V^\top,\quad \sigma_1 \ge \dots \ge \sigma_{\min(N,D)} \ge 0,
        \qquad \tilde\sigma_k = \sigma_k / \sigma_1 \ \text{(normalize)}

    With ``center`` the column means are subtracted first (``X - 1 \mu^\top``), as in the paper's
    Fig. 1b (centred, normalised to the largest, plotted on a log scale).

    Parameters
    ----------
    features : ndarray or Tensor, shape (N, D)
        One row per sample.
    center : bool, default True
        Subtract the mean feature before the decomposition.
    normalize : bool, default True
        Divide by the largest singular value (left as zeros for an all-zero matrix).

    Returns
    -------
    ndarray, shape (min(N, D),)
        float64 singular values, descending. Values below ``sqrt(max(N, D) * 2.2e-16)`` of the
        largest (the resolution of the fast Gram route, ~1e-6 at N = 50k) are exact zeros, so
        clip before taking logs for a plot.

    Examples
    --------
    >>> singular_values(np.diag([3.0, 1.0]), center=False).tolist()
    [1.0, 0.3333333333333333]
    """
    s = _svdvals(_prepare(features), center)
    if normalize and s[0] > 0:
        s = s / s[0]
    return s


def effective_rank(features: ArrayLike, center: bool = True) -> float:
    r"""Effective rank (Roy & Vetterli, EUSIPCO 2007), the paper's Fig. 1c metric.

    .. math::
        p_k = \frac{\sigma_k}{\sum_j \sigma_j}, \qquad
        \mathrm{erank}(X) = \exp\Big(-\sum_k p_k \log p_k\Big)

    over the singular values of the (by default centred) feature matrix, with ``0 log 0 = 0``.
    It lies in ``[1, min(N, D)]`` for a non-zero matrix: ``D`` equal singular values give ``D``,
    ``k`` equal non-zero ones give ``k``. A zero matrix (e.g. all rows identical, centred) gives
    0.0. Singular values below the resolution of :func:`singular_values` count as 0.

    Parameters
    ----------
    features : ndarray or Tensor, shape (N, D)
    center : bool, default True
        Subtract the mean feature first (the paper's convention for Fig. 1).

    Returns
    -------
    float
        The effective rank.

    Examples
    --------
    >>> round(effective_rank(np.eye(3), center=False), 6)
    3.0
    """
    return _entropy_rank(_svdvals(_prepare(features), center))


def rankme(features: ArrayLike, eps: float = RANKME_EPS) -> float:
    r"""RankMe (Garrido et al., ICML 2023): the smooth rank of the raw embedding matrix.

    .. math::
        p_k = \frac{\sigma_k}{\lVert\sigma\rVert_1} + \varepsilon, \qquad
        \mathrm{RankMe}(X) = \exp\Big(-\sum_{k=1}^{\min(N,D)} p_k \log p_k\Big)

    The paper's form: features are *not* centred and ``eps`` is added to every ``p_k``
    (``eps = 1e-7``, the RankMe authors' value). An all-zero matrix gives 0.0.

    Parameters
    ----------
    features : ndarray or Tensor, shape (N, D)
    eps : float, default 1e-7
        Added to each normalised singular value; must be >= 0.

    Returns
    -------
    float

    Examples
    --------
    >>> round(rankme(np.eye(2), eps=0.0), 6)
    2.0
    """
    if not np.isfinite(eps) or eps < 0:
        raise UmaeError(f"eps must be a number >= 0, got {eps}")
    return _entropy_rank(_svdvals(_prepare(features), center=False), eps=eps)


def normalized_feature_std(features: ArrayLike) -> float:
    r"""Per-dimension std of L2-normalised features, averaged over dimensions (collapse monitor).

    .. math::
        z_i = \frac{x_i}{\max(\lVert x_i\rVert_2, 10^{-12})}, \qquad
        \mathrm{std} = \frac{1}{D}\sum_{d=1}^{D} \sqrt{\frac{1}{N}\sum_i (z_{id} - \bar z_d)^2}

    (population std, ``ddof = 0``). 0 when all features point the same way (complete collapse);
    about ``1/sqrt(D)`` when they spread over the sphere (SimSiam, Chen & He 2021, Sec. 4.1),
    exactly ``1/sqrt(D)`` for the ``2D`` points ``±e_1, ..., ±e_D``.

    Parameters
    ----------
    features : ndarray or Tensor, shape (N, D)

    Returns
    -------
    float

    Examples
    --------
    >>> x = np.concatenate([np.eye(4), -np.eye(4)])
    >>> round(normalized_feature_std(x), 6)
    0.5
    """
    x = _prepare(features)
    norms = np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return float(np.mean(np.std(x / norms, axis=0)))


@dataclass(frozen=True)
class SpectrumSummary:
    """Every spectral number of one feature matrix, with the settings that produced them.

    Attributes
    ----------
    singular_values : ndarray
        Centred singular values normalised to the largest (the paper's Fig. 1b curve).
    singular_values_raw : ndarray
        Uncentred singular values normalised to the largest (what RankMe sees).
    effective_rank : float
        Roy & Vetterli effective rank of the centred features (Fig. 1c).
    rankme : float
        RankMe of the raw features, ``eps = rankme_eps``.
    alpha : AlphaReqResult
        alpha-ReQ fit of the centred covariance spectrum.
    feature_std : float
        :func:`normalized_feature_std`.
    num_samples, dim : int
        N and D.
    settings : dict
        ``rankme_eps``, ``alpha_fit_range`` requested, centring conventions.
    """

    singular_values: np.ndarray = field(repr=False)
    singular_values_raw: np.ndarray = field(repr=False)
    effective_rank: float
    rankme: float
    alpha: AlphaReqResult
    feature_std: float
    num_samples: int
    dim: int
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "singular_values": self.singular_values.tolist(),
            "singular_values_raw": self.singular_values_raw.tolist(),
            "effective_rank": self.effective_rank,
            "rankme": self.rankme,
            "alpha_req": self.alpha.to_dict(),
            "feature_std": self.feature_std,
            "num_samples": self.num_samples,
            "dim": self.dim,
            "settings": dict(self.settings),
        }


def spectrum_summary(features: ArrayLike, rankme_eps: float = RANKME_EPS,
                     alpha_fit_range: tuple[int, int] | None = None) -> SpectrumSummary:
    r"""All spectral metrics of one feature matrix at once (one conversion, two decompositions).

    Bundles :func:`singular_values` (centred and raw, normalised), :func:`effective_rank`
    (centred), :func:`rankme` (raw, ``+eps``), :func:`alpha_req` and
    :func:`normalized_feature_std`; see those for the formulas.

    Parameters
    ----------
    features : ndarray or Tensor, shape (N, D), N >= 2
    rankme_eps : float, default 1e-7
    alpha_fit_range : (int, int) or None
        Passed to :func:`alpha_req` (default ranks 6..100).

    Returns
    -------
    SpectrumSummary
    """
    raw = to_numpy64(check_features(features, "features", min_rows=2))
    if not np.isfinite(rankme_eps) or rankme_eps < 0:
        raise UmaeError(f"rankme_eps must be a number >= 0, got {rankme_eps}")
    s_c = _svdvals(raw, center=True)
    s_r = _svdvals(raw, center=False)
    if not s_c.size or s_c[0] <= 0:
        # every image gives the same feature: not a fit problem of alpha-ReQ but total collapse
        raise UmaeError(f"the features are the same for all {raw.shape[0]} images (every centred eigenvalue "
                        "is 0): the encoder has totally collapsed (an all-zero or dead checkpoint?), and no "
                        "spectrum, rank or probe can say more; check the checkpoint")
    alpha = _alpha_from_singular(s_c, raw.shape[0], alpha_fit_range)
    return SpectrumSummary(
        singular_values=s_c / s_c[0] if s_c[0] > 0 else s_c,
        singular_values_raw=s_r / s_r[0] if s_r[0] > 0 else s_r,
        effective_rank=_entropy_rank(s_c),
        rankme=_entropy_rank(s_r, eps=rankme_eps),
        alpha=alpha,
        feature_std=normalized_feature_std(raw),
        num_samples=int(raw.shape[0]),
        dim=int(raw.shape[1]),
        settings={"rankme_eps": rankme_eps, "alpha_fit_range": alpha_fit_range,
                  "alpha_fit_range_default": list(ALPHA_REQ_FIT_RANGE),
                  "effective_rank_centered": True, "rankme_centered": False,
                  "singular_values_normalized": "to the largest"},
    )

