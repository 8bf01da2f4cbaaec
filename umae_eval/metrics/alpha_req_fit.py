"""alpha-ReQ (Agrawal et al., NeurIPS 2022): a power law fitted to the covariance spectrum.

Apart from :mod:`umae_eval.metrics.spectrum` because it is a fit with its own range rules and
result type, not a rank; it shares the floored singular values of
:mod:`umae_eval.metrics.svdvals`, so its eigenvalues are exactly the spectrum's.
:mod:`umae_eval.metrics.spectrum` re-exports ``alpha_req``, ``AlphaReqResult`` and
``ALPHA_REQ_FIT_RANGE``.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((4000, 50)) * np.arange(1, 51) ** -0.5
>>> round(alpha_req(x, fit_range=(1, 50)).alpha, 1)
1.0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from umae_eval.errors import UmaeError
from umae_eval.metrics._inputs import ArrayLike, check_features, to_numpy64
from umae_eval.metrics.svdvals import _svdvals

__all__ = ["ALPHA_REQ_FIT_RANGE", "AlphaReqResult", "alpha_req"]

#: Default alpha-ReQ fit range, 1-based inclusive eigenvalue ranks: the default of the
#: alpha-ReQ authors' code (reptrix ``get_alpha``, ``fit_range=np.arange(5, 100)`` 0-based,
#: Agrawal et al., NeurIPS 2022): skip the first 5 eigenvalues, fit up to rank 100.
ALPHA_REQ_FIT_RANGE: tuple[int, int] = (6, 100)

@dataclass(frozen=True)
class AlphaReqResult:
    """A power-law fit ``lambda_k ~ C k^-alpha`` to the covariance eigenvalues.

    Attributes
    ----------
    alpha : float
        The decay exponent (larger = faster decay = fewer effective directions).
    r2 : float
        Coefficient of determination of the log-log least-squares fit over ``fit_range``.
    fit_range : tuple[int, int]
        1-based inclusive ranks actually used (after clipping to the non-zero eigenvalues).
    intercept : float
        ``log C`` of the fit.
    num_points : int
        Number of eigenvalues in the fit.
    requested_range : tuple[int, int] | None
        The range the caller asked for (None = the default ``ALPHA_REQ_FIT_RANGE``).
    eigenvalues : ndarray, shape (min(N, D),)
        All covariance eigenvalues ``sigma_k^2 / (N - 1)``, descending.
    """

    alpha: float
    r2: float
    fit_range: tuple[int, int]
    intercept: float
    num_points: int
    requested_range: tuple[int, int] | None
    eigenvalues: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["eigenvalues"] = self.eigenvalues.tolist()
        out["fit_range"] = list(self.fit_range)
        return out


def _resolve_fit_range(fit_range: tuple[int, int] | None, usable: int) -> tuple[int, int]:
    if fit_range is None:
        lo, hi = ALPHA_REQ_FIT_RANGE
        hi = min(hi, usable)
        if hi - lo + 1 < 3:  # too few eigenvalues past the first five: fit them all
            lo = 1
        return lo, hi
    if len(fit_range) != 2 or not all(isinstance(v, (int, np.integer)) for v in fit_range):
        raise UmaeError(f"fit_range must be two integer ranks (first, last), got {fit_range!r}")
    lo, hi = int(fit_range[0]), int(fit_range[1])
    if lo < 1 or hi < lo:
        raise UmaeError(f"fit_range must satisfy 1 <= first <= last (1-based ranks), got {fit_range!r}")
    return lo, min(hi, usable)


def alpha_req(features: ArrayLike, fit_range: tuple[int, int] | None = None) -> AlphaReqResult:
    r"""alpha-ReQ (Agrawal et al., NeurIPS 2022): power-law decay of the covariance spectrum.

    .. math::
        \lambda_k = \frac{\sigma_k^2(X - 1\mu^\top)}{N - 1}, \qquad
        \log \lambda_k \approx \log C - \alpha \log k \quad (k \in [k_1, k_2])

    solved by ordinary least squares in log-log space; ``r2`` is that fit's R^2.

    The default ``fit_range`` is ranks 6..100 (1-based, inclusive; ``ALPHA_REQ_FIT_RANGE``, the
    default of the alpha-ReQ authors' code, which skips the leading eigenvalues to fit the tail),
    clipped to the eigenvalues that are non-zero (above the resolution of
    :func:`umae_eval.metrics.spectrum.singular_values`). When fewer than 3 ranks remain past rank 5,
    every non-zero eigenvalue is used.
    A given range is clipped at the top the same way and recorded.

    Parameters
    ----------
    features : ndarray or Tensor, shape (N, D), N >= 2
    fit_range : (int, int) or None
        First and last 1-based eigenvalue rank of the fit.

    Returns
    -------
    AlphaReqResult
        ``alpha``, ``r2``, the ``fit_range`` used, the intercept and all eigenvalues.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((4000, 50)) * np.arange(1, 51) ** -0.5
    >>> round(alpha_req(x, fit_range=(1, 50)).alpha, 1)
    1.0
    """
    raw = to_numpy64(check_features(features, "features", min_rows=2))
    return _alpha_from_singular(_svdvals(raw, center=True), raw.shape[0], fit_range)


def _alpha_from_singular(s: np.ndarray, n: int, fit_range: tuple[int, int] | None) -> AlphaReqResult:
    eig = s**2 / (n - 1)
    usable = int(np.count_nonzero(eig > 0))
    lo, hi = _resolve_fit_range(fit_range, usable)
    if hi - lo + 1 < 2:
        raise UmaeError(f"alpha-ReQ needs at least 2 non-zero eigenvalues in the fit range; the features "
                        f"have {usable} non-zero eigenvalue(s), range asked {fit_range or ALPHA_REQ_FIT_RANGE}")
    ranks = np.arange(lo, hi + 1, dtype=np.float64)
    lx, ly = np.log(ranks), np.log(eig[lo - 1:hi])
    design = np.stack([np.ones_like(lx), lx], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, ly, rcond=None)
    resid = ly - (intercept + slope * lx)
    ss_tot = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else 1.0
    return AlphaReqResult(alpha=float(-slope), r2=r2, fit_range=(lo, hi), intercept=float(intercept),
                          num_points=hi - lo + 1,
                          requested_range=None if fit_range is None else (int(fit_range[0]), int(fit_range[1])),
                          eigenvalues=eig)
