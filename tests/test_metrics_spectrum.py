"""Spectral metrics against numpy.linalg.svd, closed forms and direct formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umae_eval.errors import UmaeError
from umae_eval.metrics.spectrum import (
    ALPHA_REQ_FIT_RANGE,
    alpha_req,
    effective_rank,
    normalized_feature_std,
    rankme,
    singular_values,
    spectrum_summary,
)


def _centred_orthonormal(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """n x k orthonormal columns, each orthogonal to the all-ones vector (so column means are 0)."""
    a = rng.standard_normal((n, k))
    a -= a.mean(axis=0)
    q, _ = np.linalg.qr(a)
    return q


def _with_singular_values(rng: np.random.Generator, n: int, d: int, s: np.ndarray) -> np.ndarray:
    """A centred n x d matrix whose singular values are exactly ``s`` (len(s) <= min(n, d))."""
    u = _centred_orthonormal(rng, n, len(s))
    v, _ = np.linalg.qr(rng.standard_normal((d, len(s))))
    return (u * s) @ v.T


def _direct_erank(s: np.ndarray, eps: float = 0.0) -> float:
    p = s / s.sum() + eps
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


@pytest.mark.parametrize("shape", [(200, 16), (12, 30)])  # tall (Gram route) and wide (SVD route)
@pytest.mark.parametrize("center", [True, False])
def test_singular_values_match_numpy_svd(shape: tuple[int, int], center: bool) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) @ np.diag(np.linspace(3.0, 0.2, shape[1])) + 1.5
    ref_in = x - x.mean(axis=0) if center else x
    ref = np.linalg.svd(ref_in, compute_uv=False)
    got = singular_values(x, center=center, normalize=False)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(singular_values(x, center=center), ref / ref[0], rtol=1e-9, atol=1e-12)
    assert np.all(np.diff(got) <= 0)


def test_singular_values_accept_tensors() -> None:
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    ref = np.linalg.svd(x.double().numpy() - x.double().numpy().mean(0), compute_uv=False)
    np.testing.assert_allclose(singular_values(x, normalize=False), ref, rtol=1e-6)


def test_effective_rank_of_equal_singular_values_is_dimension() -> None:
    d = 8
    x = np.concatenate([np.eye(d), -np.eye(d)]) * 3.0  # centred, D singular values sqrt(2) * 3
    assert effective_rank(x) == pytest.approx(d, rel=1e-10)
    assert effective_rank(np.eye(d), center=False) == pytest.approx(d, rel=1e-10)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_effective_rank_of_rank_k_matrix_is_k(k: int) -> None:
    rng = np.random.default_rng(k)
    x = _with_singular_values(rng, 60, 20, np.full(k, 2.5))
    assert effective_rank(x) == pytest.approx(k, rel=1e-8)


def test_effective_rank_matches_direct_formula() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 24)) * np.linspace(4, 0.1, 24)
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    assert effective_rank(x) == pytest.approx(_direct_erank(s), rel=1e-10)
    s_raw = np.linalg.svd(x, compute_uv=False)
    assert effective_rank(x, center=False) == pytest.approx(_direct_erank(s_raw), rel=1e-10)


def test_effective_rank_of_identical_rows_is_zero() -> None:
    x = np.tile(np.array([[0.3, -1.2, 7.0]]), (10, 1))
    assert effective_rank(x) == 0.0
    assert effective_rank(x, center=False) == pytest.approx(1.0)


def test_rankme_matches_direct_formula_including_eps() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((100, 10)) * np.geomspace(5, 1e-3, 10) + 0.5
    s = np.linalg.svd(x, compute_uv=False)  # raw, uncentred
    assert rankme(x) == pytest.approx(_direct_erank(s, 1e-7), rel=1e-12)
    assert rankme(x, eps=1e-2) == pytest.approx(_direct_erank(s, 1e-2), rel=1e-12)
    assert rankme(x, eps=1e-2) != pytest.approx(rankme(x, eps=0.0), rel=1e-6)
    # rank-deficient: the zero singular values contribute -eps log eps each
    low = _with_singular_values(rng, 40, 10, np.array([2.0, 1.0]))
    s_low = np.linalg.svd(low, compute_uv=False)
    assert rankme(low) == pytest.approx(_direct_erank(s_low, 1e-7), rel=1e-9)


def test_alpha_req_recovers_exact_power_law() -> None:
    rng = np.random.default_rng(3)
    n, d, alpha = 400, 150, 1.3
    eig = np.arange(1, d + 1, dtype=float) ** -alpha  # covariance eigenvalues
    x = _with_singular_values(rng, n, d, np.sqrt(eig * (n - 1)))
    res = alpha_req(x)
    assert res.alpha == pytest.approx(alpha, abs=1e-6)
    assert res.r2 == pytest.approx(1.0, abs=1e-9)
    assert res.fit_range == ALPHA_REQ_FIT_RANGE == (6, 100)
    assert res.num_points == 95 and res.requested_range is None
    np.testing.assert_allclose(res.eigenvalues[:d], eig, rtol=1e-8)
    full = alpha_req(x, fit_range=(1, 1000))  # clipped to the non-zero eigenvalues
    assert full.fit_range == (1, d) and full.alpha == pytest.approx(alpha, abs=1e-6)


def test_alpha_req_on_gaussian_sample_and_small_dimension() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((20000, 40)) * np.arange(1, 41) ** -0.5  # eigenvalues ~ k^-1
    res = alpha_req(x, fit_range=(1, 40))
    assert res.alpha == pytest.approx(1.0, abs=0.05) and res.r2 > 0.99
    small = alpha_req(rng.standard_normal((50, 6)))  # default 6..100 leaves < 3 ranks: use all
    assert small.fit_range == (1, 6)


def test_alpha_req_rejects_bad_ranges() -> None:
    x = np.random.default_rng(0).standard_normal((30, 5))
    with pytest.raises(UmaeError, match="fit_range"):
        alpha_req(x, fit_range=(0, 3))
    with pytest.raises(UmaeError, match="fit_range"):
        alpha_req(x, fit_range=(4, 2))
    with pytest.raises(UmaeError, match="at least 2 non-zero eigenvalues"):
        alpha_req(x, fit_range=(5, 9))


def test_normalized_feature_std_closed_forms() -> None:
    x = np.tile(np.array([[1.0, 2.0, -2.0]]), (7, 1))
    assert normalized_feature_std(x) == pytest.approx(0.0, abs=1e-15)
    for d in (2, 5, 16):
        spread = np.concatenate([np.eye(d), -np.eye(d)]) * 4.0
        assert normalized_feature_std(spread) == pytest.approx(1 / np.sqrt(d), rel=1e-12)
    rng = np.random.default_rng(5)
    y = rng.standard_normal((50, 6))
    z = y / np.linalg.norm(y, axis=1, keepdims=True)
    assert normalized_feature_std(y) == pytest.approx(np.mean(np.std(z, axis=0)), rel=1e-12)


def test_spectrum_summary_bundles_the_individual_metrics() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((120, 12)) * np.linspace(2, 0.3, 12) + 0.7
    summary = spectrum_summary(x)
    np.testing.assert_allclose(summary.singular_values, singular_values(x))
    np.testing.assert_allclose(summary.singular_values_raw, singular_values(x, center=False))
    assert summary.effective_rank == pytest.approx(effective_rank(x))
    assert summary.rankme == pytest.approx(rankme(x))
    assert summary.alpha.alpha == pytest.approx(alpha_req(x).alpha)
    assert summary.feature_std == pytest.approx(normalized_feature_std(x))
    d = summary.to_dict()
    assert d["num_samples"] == 120 and d["dim"] == 12 and d["settings"]["rankme_eps"] == 1e-7
    assert len(d["alpha_req"]["eigenvalues"]) == 12


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.ones(5), "2-D"),
        (np.ones((2, 3, 4)), "2-D"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
        (np.zeros((0, 4)), "at least 1 row"),
        (np.array([["a", "b"]]), "real numbers"),
        ([[1.0, 2.0]], "numpy array or a torch tensor"),
    ],
)
def test_bad_features_raise_one_clear_error(bad: object, match: str) -> None:
    with pytest.raises(UmaeError, match=match):
        effective_rank(bad)  # type: ignore[arg-type]


def test_rankme_rejects_negative_eps() -> None:
    with pytest.raises(UmaeError, match="eps"):
        rankme(np.eye(3), eps=-1.0)


@pytest.mark.parametrize("module", ["umae_eval.metrics.spectrum", "umae_eval.metrics.geometry"])
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_constant_features_are_reported_as_total_collapse_not_an_alpha_fit() -> None:
    """Issue 23 (weak): an all-zero encoder was refused over alpha-ReQ's fit range."""
    import numpy as np
    import pytest

    from umae_eval.errors import UmaeError
    from umae_eval.metrics.spectrum import spectrum_summary

    with pytest.raises(UmaeError, match="totally collapsed"):
        spectrum_summary(np.zeros((50, 8)))
    with pytest.raises(UmaeError, match="totally collapsed"):
        spectrum_summary(np.ones((50, 8)) * 3.0)
