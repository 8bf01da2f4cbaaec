"""Intervals on block x block CKA: a planted case with a closed-form population CKA, X vs XQ,
shrinking with more images, and an independent recomputation on explicit N x N kernels."""

from __future__ import annotations

import numpy as np
import pytest

from umae_eval.metrics.cka import cka_unbiased
from umae_eval.metrics.cka_bootstrap import cka_matrix_interval, interval_batch_size


def _planted(n: int, seed: int, sigma: float = 1.5) -> tuple[np.ndarray, np.ndarray, float]:
    """X ~ N(0, I_6), Y = X A + sigma E; population linear CKA in closed form:
    ||Cov(Y, X)||_F^2 / (||Cov X||_F ||Cov Y||_F) = ||A||_F^2 / (sqrt(6) ||A^T A + sigma^2 I||_F)."""
    a = np.array([[1.0, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.3], [0.2, 0.0, 1.0, 0.0],
                  [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.4, 1.0]])
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    y = x @ a + sigma * rng.normal(size=(n, 4))
    pop = np.sum(a * a) / (np.sqrt(6.0) * np.linalg.norm(a.T @ a + sigma**2 * np.eye(4)))
    return x, y, float(pop)


def test_interval_covers_full_data_and_population_values_and_shrinks() -> None:
    widths = {}
    for n in (500, 8000):
        x, y, pop = _planted(n, seed=n)
        m = cka_matrix_interval([x], [y], n_boot=500, seed=3)
        assert m.n_batches >= 15 and m.batch_size == interval_batch_size(n)  # 16 batches of 32 at 500
        lo, hi = float(m.lo[0, 0]), float(m.hi[0, 0])
        assert lo <= cka_unbiased(x, y) <= hi  # the full-data (all-rows) unbiased CKA
        assert lo <= float(m.estimate[0, 0]) <= hi
        widths[n] = hi - lo
    # 16x the images: about 4x narrower (1/sqrt(N)); at least 2.5x
    assert widths[8000] < widths[500] / 2.5
    # calibration: the population value lies inside in about 95% of independent samples
    x, y, pop = _planted(10, 0)
    inside = []
    for rep in range(60):
        x, y, _ = _planted(1000, seed=1000 + rep)
        m = cka_matrix_interval([x], [y], n_boot=400, seed=rep)
        inside.append(m.lo[0, 0] <= pop <= m.hi[0, 0])
    assert 0.85 <= np.mean(inside)


def test_orthogonal_map_and_scaling_give_the_interval_one_one() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(900, 10)) * np.geomspace(3, 0.1, 10)
    z = np.tanh(x[:, :5]) + rng.normal(size=(900, 5))
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    m = cka_matrix_interval([x, z], [7.0 * x @ q, 0.1 * z], n_boot=300, seed=0)
    for i in (0, 1):
        assert m.estimate[i, i] == pytest.approx(1.0, abs=1e-10)
        assert m.lo[i, i] == pytest.approx(1.0, abs=1e-10) and m.hi[i, i] == pytest.approx(1.0, abs=1e-10)
    assert m.lo[0, 1] < m.hi[0, 1] < 1.0  # an off-diagonal cell has a real interval
    assert np.allclose(m.estimate, m.estimate.T, atol=1e-10)


def _song_hsic(x: np.ndarray, y: np.ndarray) -> float:
    """Song et al. 2012 Eq. 5 on explicit kernels with zeroed diagonals."""
    n = len(x)
    k, l = x @ x.T, y @ y.T
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    one = np.ones(n)
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))


def test_against_explicit_batches_and_kernels() -> None:
    x, y, _ = _planted(203, seed=5)
    m = cka_matrix_interval([x], [y], batch_size=40, n_boot=50, seed=11)
    order = np.random.default_rng(11).permutation(203)
    batches = [order[s:s + 40] for s in range(0, 203, 40)]
    batches = [b for b in batches if len(b) >= 4]  # 5 batches of 40, the last 3 rows dropped
    assert m.n_batches == 5 and m.n_images == 200
    terms = np.array([[_song_hsic(x[b], y[b]), _song_hsic(x[b], x[b]), _song_hsic(y[b], y[b])] for b in batches])
    draws = np.random.default_rng(12).integers(0, 5, size=(50, 5))
    boot = []
    for d in draws:
        t = terms[d].sum(axis=0)
        boot.append(t[0] / np.sqrt(t[1] * t[2]))
    assert m.resamples[:, 0, 0] == pytest.approx(np.array(boot), rel=1e-9)
    assert [m.lo[0, 0], m.hi[0, 0]] == pytest.approx(np.percentile(boot, [2.5, 97.5]), rel=1e-9)
    full = terms.sum(axis=0)
    assert m.estimate[0, 0] == pytest.approx(full[0] / np.sqrt(full[1] * full[2]), rel=1e-9)


def test_one_batch_has_no_interval() -> None:
    x, y, _ = _planted(40, seed=2)
    m = cka_matrix_interval([x], [y], n_boot=100)  # batches of 32 and 8: too few groups to resample
    assert m.n_batches == 2 and not m.has_interval and np.isnan(m.lo[0, 0])
    assert m.settings()["interval"].startswith("none")
