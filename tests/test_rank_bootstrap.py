"""Bootstrap intervals of effective rank and RankMe (umae_eval.metrics.rank_bootstrap).

Each resample must equal the public metric on the resampled rows themselves (an independent
route: explicit copies, SVD or the Gram of the copy), on both sides of the N > 2D switch and for a
feature mean far larger than its spread (where centring after the product would cancel away the
small eigenvalues).
"""

from __future__ import annotations

import numpy as np
import pytest

from umae_eval.metrics.rank_bootstrap import (
    MAX_RANK_RESAMPLES,
    MIN_RANK_RESAMPLES,
    bootstrap_ranks,
    rank_resample_count,
    resample_indices,
)
from umae_eval.metrics.spectrum import effective_rank, rankme
from umae_eval.pipeline.intervals import centred_interval, interval


def _features(n: int, d: int, offset: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.geomspace(3.0, 1e-3, d) + offset


@pytest.mark.parametrize("n,d,offset", [(60, 8, 0.0), (12, 8, 1.0), (300, 24, 1e6), (40, 40, 5.0)])
def test_each_resample_equals_the_metric_on_the_copied_rows(n: int, d: int, offset: float) -> None:
    x = _features(n, d, offset)
    boot = bootstrap_ranks(x, n_boot=6, seed=11)
    idx = resample_indices(n, 6, 11)
    expected = np.array([[effective_rank(x[i]), rankme(x[i])] for i in idx])
    np.testing.assert_allclose(boot, expected, rtol=1e-7, atol=1e-9)  # naive centring is 4% off
    assert boot.shape == (6, 2)


def test_a_constant_matrix_resamples_to_zero_rank_and_duplicates_lower_the_rank() -> None:
    x = np.ones((50, 4)) * 3.0
    assert np.all(bootstrap_ranks(x, n_boot=3, seed=0)[:, 0] == 0.0)  # centred: all rows equal
    # isotropic features: every resample repeats rows, so its effective rank is below the full one
    iso = np.random.default_rng(1).normal(size=(200, 64))
    boot = bootstrap_ranks(iso, n_boot=20, seed=0)
    assert np.all(boot[:, 0] < effective_rank(iso))


def test_same_seed_and_rows_give_the_same_resamples_so_differences_are_paired() -> None:
    a, b = _features(100, 6, 0.0, seed=1), _features(100, 6, 0.0, seed=2)
    ra, rb = bootstrap_ranks(a, n_boot=30, seed=4), bootstrap_ranks(b, n_boot=30, seed=4)
    idx = resample_indices(100, 30, 4)
    np.testing.assert_allclose(rb[:, 0] - ra[:, 0],
                               [effective_rank(b[i]) - effective_rank(a[i]) for i in idx], atol=1e-9)
    # a prefix of a longer draw is the shorter draw: checkpoints of other widths share the first R
    np.testing.assert_array_equal(resample_indices(100, 10, 4), idx[:10])


def test_centred_interval_keeps_the_spread_and_holds_the_estimate() -> None:
    r = np.random.default_rng(0).normal(loc=10.0, scale=2.0, size=4000)
    plain, centred = interval(16.0, r), centred_interval(16.0, r)
    assert not plain.lo < 16.0 < plain.hi  # the resamples centre on 10, three sd below the estimate
    assert centred.hi - centred.lo == pytest.approx(plain.hi - plain.lo, rel=1e-12)
    assert centred.lo == pytest.approx(plain.lo + 16.0 - r.mean(), rel=1e-12)
    assert centred.lo < 16.0 < centred.hi


def test_rank_resample_count_follows_its_budget() -> None:
    assert rank_resample_count(1000, 96, 2000) == MAX_RANK_RESAMPLES
    assert rank_resample_count(10_000, 192, 2000) == 200
    assert rank_resample_count(50_000, 768, 2000) == MIN_RANK_RESAMPLES
    assert rank_resample_count(1000, 96, 120) == 120
    assert rank_resample_count(10, 4, 1) == 1


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="n_boot must be >= 1"):
        bootstrap_ranks(np.eye(3), n_boot=0, seed=0)
    with pytest.raises(ValueError, match="at least 2 rows"):
        resample_indices(1, 5, 0)


def test_row_chunks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import umae_eval.metrics.rank_bootstrap as RB

    x = _features(500, 12, 2.0, seed=3)
    whole = bootstrap_ranks(x, n_boot=4, seed=9)
    monkeypatch.setattr(RB, "_CHUNK_ROWS", 37)  # many uneven chunks
    chunked = bootstrap_ranks(x, n_boot=4, seed=9)
    np.testing.assert_allclose(chunked, whole, rtol=1e-10)
    idx = resample_indices(500, 4, 9)
    np.testing.assert_allclose(chunked, [[effective_rank(x[i]), rankme(x[i])] for i in idx], rtol=1e-9)
