"""Differences over pre-training seeds: the t interval in closed form, the verdicts, bad input."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from umae_eval.pipeline.seeds import seed_difference, t975


def test_t_table_equals_scipy():
    for df in range(1, 14):
        assert t975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-6)


def test_three_seeds_closed_form():
    # diffs 2, 3, 4: mean 3, sd 1, half-width t(2) / sqrt(3)
    d = seed_difference("linear", [0, 1, 2], [10.0, 20.0, 30.0], [12.0, 23.0, 34.0])
    assert d.mean_diff == pytest.approx(3.0)
    assert d.sd_diff == pytest.approx(1.0)
    half = 4.302652729911275 / math.sqrt(3)
    assert (d.lo, d.hi) == (pytest.approx(3 - half), pytest.approx(3 + half))
    assert d.mean_a == pytest.approx(20.0) and d.sd_a == pytest.approx(10.0)
    assert "above" in d.verdict and "3 seeds" in d.verdict
    # the same interval from scipy's own t interval of the paired differences
    lo, hi = stats.t.interval(0.95, 2, loc=3.0, scale=stats.sem([2.0, 3.0, 4.0]))
    assert (d.lo, d.hi) == (pytest.approx(lo), pytest.approx(hi))


def test_two_seeds_covering_zero_is_noise_and_one_seed_says_so():
    d = seed_difference("knn", [0, 1], [40.0, 41.0], [42.0, 40.5])  # diffs +2, -0.5
    assert d.lo < 0 < d.hi
    assert d.verdict.startswith("within seed-to-seed noise (2 seeds")
    below = seed_difference("knn", [0, 1], [40.0, 41.0], [30.0, 30.5])
    assert "below" in below.verdict
    one = seed_difference("linear", [0], [46.05], [45.93])
    assert math.isnan(one.lo) and one.verdict.startswith("one seed")
    assert one.to_json()["lo"] is None and one.to_json()["diffs"] == [pytest.approx(-0.12)]


def test_bad_input():
    with pytest.raises(ValueError, match="one value per seed"):
        seed_difference("x", [0, 1], [1.0], [2.0, 3.0])
    with pytest.raises(ValueError, match="a seed appears twice"):
        seed_difference("x", [1, 1], [1.0, 2.0], [2.0, 3.0])
