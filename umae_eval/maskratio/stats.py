"""Bootstrap intervals over pairs, the sweet spot of the intra/inter ratio, and shape checks.

Pairs are the unit of resampling: one bootstrap resample draws the intra-class pairs and the
inter-class pairs (independently, each with replacement, keeping each group's size) and carries
every pair's whole curve over the mask ratios with it, so curves and the argmin of a resample
stay coherent. Everything is vectorised: ``(B, P)`` resample counts times ``(P, R)`` values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Interval",
    "CurveSummary",
    "SweetSpot",
    "ShapeCheck",
    "bootstrap_counts",
    "bootstrap_means",
    "percentile_interval",
    "summarise_curves",
    "summarise_rates",
]


@dataclass
class Interval:
    """A per-ratio curve: point estimate and bootstrap percentile interval, each shape (R,)."""

    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


@dataclass
class SweetSpot:
    """The mask ratio minimising intra/inter, and the bootstrap distribution of that argmin.

    Attributes
    ----------
    ratio : float
        ``argmin_rho mean_intra(rho) / mean_inter(rho)`` on the full sample.
    lo, hi : float
        2.5 and 97.5 percentiles of the argmin ratio over bootstrap resamples.
    frequency : dict[str, float]
        Share of resamples whose argmin is each ratio (only ratios that occur; keys are ``f"{rho:g}"``).
    """

    ratio: float
    lo: float
    hi: float
    frequency: dict[str, float] = field(default_factory=dict)


@dataclass
class ShapeCheck:
    """Does the curve have the paper's Fig. 2b/2c shape? Each test is a bootstrap test at 95%.

    ``intra_falls`` / ``inter_falls``: the 95% interval of ``d(rho_first) - d(rho_last)`` is above 0.
    ``ratio_dips``: the sweet spot is an interior ratio and the intervals of
    ``ratio(rho_first) - ratio(sweet)`` and ``ratio(rho_last) - ratio(sweet)`` are both above 0
    (falls, then rises). ``sweet_near_paper``: the sweet spot lies in [0.6, 0.8] (paper: 0.7).
    ``reproduces``: all four.
    """

    intra_falls: bool
    inter_falls: bool
    ratio_dips: bool
    sweet_near_paper: bool

    @property
    def reproduces(self) -> bool:
        return self.intra_falls and self.inter_falls and self.ratio_dips and self.sweet_near_paper


@dataclass
class CurveSummary:
    """Intra, inter and their ratio per mask ratio for one estimator, with bootstrap intervals.

    ``ratio_change`` is ``ratio(rho) - ratio(rho_first)`` with the interval of that paired
    difference over the resamples: much narrower than the marginal intervals of ``ratio``,
    because every resample carries whole curves.
    """

    name: str
    ratios: np.ndarray
    intra: Interval
    inter: Interval
    ratio: Interval
    ratio_change: Interval
    sweet_spot: SweetSpot
    shape: ShapeCheck
    n_intra: int
    n_inter: int
    n_boot: int


def sweet_spot_identified(ratio: float, lo: float, hi: float, ratios: Sequence[float]) -> bool:
    """True when the argmin ``ratio`` is interior and its 95% interval [lo, hi] does not span
    (nearly) the whole range swept, i.e. it leaves out the second ratio or the second-to-last.

    An interval of 0.1 to 0.9 on 0.1..0.9 (or 0.2 to 0.8) says the data cannot place the minimum:
    "not identified", whatever the point estimate.

    >>> grid = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    >>> sweet_spot_identified(0.7, 0.1, 0.9, grid), sweet_spot_identified(0.7, 0.6, 0.8, grid)
    (False, True)
    """
    r = sorted(float(v) for v in ratios)
    if len(r) < 3 or not r[0] + 1e-12 < ratio < r[-1] - 1e-12:
        return False
    return not (lo <= r[1] + 1e-12 and hi >= r[-2] - 1e-12)


def bootstrap_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``n`` items is drawn in each of ``n_boot`` resamples with replacement.

    Returns
    -------
    ndarray, float64, shape (n_boot, n)
        Row ``b`` sums to ``n``; equal to ``bincount(idx[b], minlength=n)`` where
        ``idx = rng.integers(0, n, size=(n_boot, n))`` (the same draws, the same order).
    """
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = (np.arange(n_boot)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def bootstrap_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Resampled means of per-item curves.

    Parameters
    ----------
    values : ndarray, shape (R, n)
        One value per ratio and item.
    counts : ndarray, shape (B, n)
        From :func:`bootstrap_counts`.

    Returns
    -------
    ndarray, shape (B, R)
        ``out[b, r] = sum_i counts[b, i] * values[r, i] / n``.
    """
    return counts @ values.T / values.shape[1]


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 (the bootstrap axis): ``(q_{(1-level)/2}, q_{(1+level)/2})``."""
    tail = (1.0 - level) / 2.0 * 100.0
    return np.percentile(samples, tail, axis=0), np.percentile(samples, 100.0 - tail, axis=0)


def _fraction_positive_interval(diff: np.ndarray, level: float) -> bool:
    lo, _ = percentile_interval(diff, level)
    return bool(np.all(lo > 0))


def summarise_curves(name: str, ratios: np.ndarray, intra: np.ndarray, inter: np.ndarray, *,
                     n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                     paper_window: tuple[float, float] = (0.6, 0.8)) -> CurveSummary:
    """Means, bootstrap intervals, the sweet spot and the shape check of one estimator.

    Parameters
    ----------
    name : str
        Estimator (series) name.
    ratios : ndarray, shape (R,)
        Mask ratios, increasing.
    intra, inter : ndarray, shape (R, P_intra) and (R, P_inter)
        Per-pair distances of intra-class and inter-class pairs at each ratio.
    n_boot : int
        Bootstrap resamples ``B``.
    seed : int
        Seeds the resampling (``numpy.random.default_rng(seed)``; intra counts are drawn first).

    Returns
    -------
    CurveSummary
        ``ratio = mean_intra / mean_inter`` per rho; its interval from the resampled ratios
        ``mean_intra_b / mean_inter_b``; sweet spot = argmin of the ratio.
    """
    ratios = np.asarray(ratios, dtype=float)
    intra = np.asarray(intra, dtype=float)
    inter = np.asarray(inter, dtype=float)
    if intra.shape[0] != len(ratios) or inter.shape[0] != len(ratios):
        raise ValueError("intra and inter must have one row per ratio")
    rng = np.random.default_rng(seed)
    ci = bootstrap_counts(intra.shape[1], n_boot, rng)
    ce = bootstrap_counts(inter.shape[1], n_boot, rng)
    intra_b = bootstrap_means(intra, ci)  # (B, R)
    inter_b = bootstrap_means(inter, ce)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_b = intra_b / inter_b
        ratio_mean = intra.mean(1) / inter.mean(1)

    def interval(point: np.ndarray, samples: np.ndarray) -> Interval:
        lo, hi = percentile_interval(samples, level)
        return Interval(mean=point, lo=lo, hi=hi)

    best = int(np.nanargmin(ratio_mean))
    arg_b = ratios[np.nanargmin(ratio_b, axis=1)]
    lo, hi = percentile_interval(arg_b, level)
    values, freq = np.unique(arg_b, return_counts=True)
    sweet = SweetSpot(
        ratio=float(ratios[best]), lo=float(lo), hi=float(hi),
        frequency={f"{v:g}": float(c) / n_boot for v, c in zip(values, freq)},
    )
    last = len(ratios) - 1
    shape = ShapeCheck(
        intra_falls=len(ratios) > 1 and _fraction_positive_interval(intra_b[:, 0] - intra_b[:, last], level),
        inter_falls=len(ratios) > 1 and _fraction_positive_interval(inter_b[:, 0] - inter_b[:, last], level),
        ratio_dips=bool(0 < best < last
                        and _fraction_positive_interval(ratio_b[:, 0] - ratio_b[:, best], level)
                        and _fraction_positive_interval(ratio_b[:, last] - ratio_b[:, best], level)),
        sweet_near_paper=bool(paper_window[0] <= ratios[best] <= paper_window[1]),
    )
    return CurveSummary(
        name=name, ratios=ratios,
        intra=interval(intra.mean(1), intra_b), inter=interval(inter.mean(1), inter_b),
        ratio=interval(ratio_mean, ratio_b),
        ratio_change=interval(ratio_mean - ratio_mean[0], ratio_b - ratio_b[:, :1]),
        sweet_spot=sweet, shape=shape,
        n_intra=intra.shape[1], n_inter=inter.shape[1], n_boot=n_boot,
    )


def summarise_rates(values: np.ndarray, *, n_boot: int = 1000, seed: int = 0,
                    level: float = 0.95) -> Interval:
    """Mean per ratio of per-item values (e.g. label errors), bootstrap interval over items.

    Parameters
    ----------
    values : ndarray, shape (R, n)

    Returns
    -------
    Interval
        Each field shape (R,).
    """
    values = np.asarray(values, dtype=float)
    counts = bootstrap_counts(values.shape[1], n_boot, np.random.default_rng(seed))
    lo, hi = percentile_interval(bootstrap_means(values, counts), level)
    return Interval(mean=values.mean(1), lo=lo, hi=hi)
