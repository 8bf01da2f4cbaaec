"""Uncertainty of accuracies measured on a finite test set: bootstrap and Wilson intervals.

A probe's accuracy on N test images is a mean of N right/wrong outcomes; its 95% interval comes
from resampling the test images (percentile bootstrap). Comparing two checkpoints on the *same*
test images, the difference is resampled with the same indices for both (a paired bootstrap),
which is much tighter than two independent intervals when the checkpoints err on the same images.

Example::

    correct = np.stack([pred_mae == y, pred_umae == y])        # (2, N) bool
    boot = bootstrap_accuracies(correct, n_boot=2000, seed=0)  # (2000, 2) percent
    umae = interval(100 * correct[1].mean(), boot[:, 1])
    diff = interval(100 * (correct[1].mean() - correct[0].mean()), boot[:, 1] - boot[:, 0])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Resamples per interval; percentile ends move by about 0.1 point between seeds at N = 1,000.
DEFAULT_BOOTSTRAP = 2000
#: Chunk of resamples drawn at once: chunk x N indices stay small (16 MB at N = 10,000).
_CHUNK = 200


@dataclass(frozen=True)
class Interval:
    """An estimate with a two-sided interval (same unit as the estimate, e.g. percent)."""

    estimate: float
    lo: float
    hi: float
    level: float = 0.95

    def excludes(self, value: float = 0.0) -> bool:
        """True when ``value`` lies outside [lo, hi]."""
        return value < self.lo or value > self.hi

    def to_json(self) -> dict[str, float]:
        return {"estimate": self.estimate, "lo": self.lo, "hi": self.hi, "level": self.level}


def bootstrap_accuracies(correct: np.ndarray, *, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """Accuracy (percent) of each row of ``correct`` on ``n_boot`` resamples of its columns.

    Parameters
    ----------
    correct : (C, N) bool, or float in [0, 1]
        Row c: whether checkpoint c classified each of the N test images correctly (a float: the
        fraction of several probes, e.g. low-shot draws, that did). Every row is resampled with
        the *same* column indices, so row differences are paired; the indices depend only on N,
        ``n_boot`` and ``seed``, so calls with other rows share them too.
    n_boot : int
        Number of resamples (with replacement, N images each).
    seed : int
        Seed of the resampling (a ``numpy.random.Generator``).

    Returns
    -------
    (n_boot, C) float64, percent.
    """
    c = np.asarray(correct)
    if c.dtype != bool and not np.issubdtype(c.dtype, np.floating):
        c = c.astype(bool)
    if c.ndim != 2 or c.shape[1] == 0:
        raise ValueError(f"correct must be (checkpoints, test images) with at least one image, got {c.shape}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    n = c.shape[1]
    rng = np.random.default_rng(seed)
    values = c.astype(np.float64)
    out = np.empty((n_boot, c.shape[0]), dtype=np.float64)
    for start in range(0, n_boot, _CHUNK):
        m = min(_CHUNK, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))
        out[start:start + m] = values[:, idx].mean(axis=2).T * 100.0
    return out


def interval(estimate: float, resamples: np.ndarray, level: float = 0.95) -> Interval:
    """The percentile interval of ``resamples`` around ``estimate`` (e.g. 2.5-97.5 at 0.95)."""
    r = np.asarray(resamples, dtype=np.float64)
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(r, [tail, 100.0 - tail])
    return Interval(float(estimate), float(lo), float(hi), level)


def centred_interval(estimate: float, resamples: np.ndarray, level: float = 0.95) -> Interval:
    """The percentile interval of ``resamples`` after shifting their mean onto ``estimate``.

    For statistics that resampling with replacement biases by itself: a resample repeats about
    a third of the rows, which lowers a rank (effective rank, RankMe) whatever the features are,
    so the plain percentile interval can miss the estimate. Shifting keeps the bootstrap's spread
    (its width and skew) and drops that offset.
    """
    r = np.asarray(resamples, dtype=np.float64)
    return interval(estimate, r - r.mean() + estimate, level)


def noise_verdict(beyond: bool, n: int, what: str = "test images") -> str:
    """The one wording of a paired difference's verdict, for every sentence that gives one.

    The intervals resample the test images only (not the probe fit, the masks' seed or the
    pre-training seed), so the verdict names that noise: ``'beyond test-image noise at 1,000 test
    images'`` when the 95% interval excludes 0, else ``'within test-image noise at ...'``.
    ``what`` names the images resampled when they are a subset (``'LiDAR images'``).
    """
    return f"{'beyond' if beyond else 'within'} test-image noise at {n:,} {what}"


def wilson_interval(percent: float, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval of a proportion measured on ``n`` trials, in percent.

    For a single accuracy with no per-image outcomes at hand (the online probe in metrics.jsonl).
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    z = _z(level)
    p = percent / 100.0
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(percent, 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half), level)


def _z(level: float) -> float:
    """The two-sided standard-normal quantile for ``level`` (1.959964 at 0.95)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2.0)
