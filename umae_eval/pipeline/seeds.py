"""Differences between two methods over pre-training seeds: the noise a single run cannot show.

Every interval of `umae compare` resamples the test images of one pair of encoders; a second
pre-training seed can move a probe by more than that interval (the CIFAR-10 study's lambda sweep
moved linear accuracy by about 2 points). Given the same measure for method A and method B
pre-trained with seeds 1..n (A and B share each seed's data order and initialisation), this module
gives, per measure:

- the mean and the sample standard deviation of each method over seeds,
- the paired per-seed differences d_s = B_s - A_s, their mean and a Student t interval
  ``mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n)`` (seeds treated as a random sample of seeds; the
  test-image noise of each d_s is inside sd(d), so it is not added again),
- a verdict worded for that interval.

With n = 2 the t quantile is 12.71: two seeds can show a sign that holds, rarely an interval that
excludes 0. With n = 1 there is no seed interval and the verdict says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

# Student t 0.975 quantiles for 1..10 degrees of freedom (scipy.stats.t.ppf(0.975, df)); kept as a
# table so that the module needs no scipy import at run time. tests/test_seeds.py checks them.
_T975 = (12.7062047, 4.30265273, 3.18244631, 2.77644511, 2.57058184, 2.44691185, 2.36462425,
         2.30600414, 2.26215716, 2.22813885)


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (1 <= df)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    from scipy.stats import t  # only for more than 11 seeds

    return float(t.ppf(0.975, df))


@dataclass(frozen=True)
class SeedDifference:
    """One measure, method B minus method A, over n pre-training seeds."""

    measure: str
    seeds: tuple[int, ...]
    a: tuple[float, ...]  # method A per seed, in the order of ``seeds``
    b: tuple[float, ...]
    mean_a: float
    sd_a: float  # sample standard deviation (n - 1); nan for one seed
    mean_b: float
    sd_b: float
    mean_diff: float
    sd_diff: float
    lo: float  # t interval of the mean difference; nan for one seed
    hi: float
    verdict: str

    @property
    def n(self) -> int:
        return len(self.seeds)

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in ("measure", "mean_a", "sd_a", "mean_b", "sd_b", "mean_diff",
                                             "sd_diff", "lo", "hi", "verdict")}
        out.update(seeds=list(self.seeds), a=list(self.a), b=list(self.b), n=self.n,
                   diffs=[y - x for x, y in zip(self.a, self.b)],
                   interval_method="Student t over pre-training seeds, paired by seed")
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def _mean_sd(xs: Sequence[float]) -> tuple[float, float]:
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, math.nan
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))


def seed_verdict(mean_diff: float, lo: float, hi: float, n: int, names: tuple[str, str]) -> str:
    """A sentence for B - A worded for an interval over ``n`` seeds."""
    a, b = names
    if n < 2:
        return f"one seed: {b} - {a} = {mean_diff:+.2f}; seed-to-seed variation not measured"
    if lo > 0:
        return f"{b} above {a} across seeds (t interval over {n} seeds excludes 0)"
    if hi < 0:
        return f"{b} below {a} across seeds (t interval over {n} seeds excludes 0)"
    return f"within seed-to-seed noise ({n} seeds; the interval covers 0)"


def seed_difference(measure: str, seeds: Sequence[int], a: Sequence[float], b: Sequence[float],
                    names: tuple[str, str] = ("MAE", "U-MAE")) -> SeedDifference:
    """B - A over seeds: ``a[i]`` and ``b[i]`` were measured on encoders pre-trained with ``seeds[i]``."""
    if not (len(seeds) == len(a) == len(b)) or not seeds:
        raise ValueError(f"{measure}: need one value per seed for both methods "
                         f"(seeds {len(seeds)}, A {len(a)}, B {len(b)})")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{measure}: a seed appears twice: {list(seeds)}")
    diffs = [y - x for x, y in zip(a, b)]
    mean_a, sd_a = _mean_sd(a)
    mean_b, sd_b = _mean_sd(b)
    mean_d, sd_d = _mean_sd(diffs)
    n = len(diffs)
    if n < 2:
        lo = hi = math.nan
    else:
        half = t975(n - 1) * sd_d / math.sqrt(n)
        lo, hi = mean_d - half, mean_d + half
    return SeedDifference(measure, tuple(int(s) for s in seeds), tuple(map(float, a)), tuple(map(float, b)),
                          mean_a, sd_a, mean_b, sd_b, mean_d, sd_d, lo, hi,
                          seed_verdict(mean_d, lo, hi, n, names))
