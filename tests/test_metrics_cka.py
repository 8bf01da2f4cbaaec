"""CKA and mutual kNN: invariances, independence, minibatch vs full, and independent N x N
implementations of Kornblith's CKA and Song et al.'s unbiased HSIC written from the papers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umae_eval.errors import UmaeError
from umae_eval.metrics.cka import (
    cka_matrix,
    cka_unbiased,
    hsic_unbiased,
    linear_cka,
    minibatch_cka,
    mutual_knn,
    mutual_knn_scores,
)


def _kernel_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. Eq. with kernels: tr(KHLH) / sqrt(tr(KHKH) tr(LHLH))."""
    n = len(x)
    h = np.eye(n) - 1.0 / n
    k, l = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def _song_hsic(x: np.ndarray, y: np.ndarray) -> float:
    """Song et al. 2012 Eq. 5 on explicit N x N kernels with zeroed diagonals."""
    n = len(x)
    k, l = x @ x.T, y @ y.T
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    one = np.ones(n)
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))


def _correlated(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)) * np.geomspace(2, 0.2, 8) + 1.0
    y = np.tanh(x @ rng.normal(size=(8, 6))) + 0.5 * rng.normal(size=(n, 6))
    return x, y


def test_invariance_to_orthogonal_maps_and_isotropic_scaling() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16)) * np.geomspace(3, 0.1, 16)
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    for c in (0.01, 1.0, 37.0):
        y = c * x @ q
        assert linear_cka(x, y) == pytest.approx(1.0, abs=1e-10)
        assert cka_unbiased(x, y) == pytest.approx(1.0, abs=1e-10)
        assert minibatch_cka(x, y, batch_size=100) == pytest.approx(1.0, abs=1e-10)


def test_against_kernel_implementations() -> None:
    x, y = _correlated(1, n=120)
    assert linear_cka(x, y) == pytest.approx(_kernel_cka(x, y), rel=1e-10)
    assert hsic_unbiased(x, y) == pytest.approx(_song_hsic(x, y), rel=1e-9)
    assert cka_unbiased(x, y) == pytest.approx(
        _song_hsic(x, y) / np.sqrt(_song_hsic(x, x) * _song_hsic(y, y)), rel=1e-9)
    # one minibatch of all rows is the full unbiased estimate
    assert minibatch_cka(x, y, batch_size=120) == pytest.approx(cka_unbiased(x, y), rel=1e-9)


def test_independent_gaussians_unbiased_near_zero_biased_not() -> None:
    unbiased, biased = [], []
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        x, y = rng.normal(size=(200, 20)), rng.normal(size=(200, 20))
        unbiased.append(cka_unbiased(x, y))
        biased.append(linear_cka(x, y))
    assert abs(np.mean(unbiased)) < 0.01
    assert np.mean(biased) > 0.05  # the biased estimator sits near D / N here


def test_minibatch_within_001_of_full() -> None:
    x, y = _correlated(2, n=6000)
    full = cka_unbiased(x, y)
    assert 0.2 < full < 0.95
    for seed in (0, 1):
        assert minibatch_cka(x, y, batch_size=500, seed=seed) == pytest.approx(full, abs=0.01)
    # and the unbiased full value sits near the biased one at N >> D
    assert full == pytest.approx(linear_cka(x, y), abs=0.01)


def test_cka_matrix_blocks() -> None:
    x, y = _correlated(3, n=600)
    z = np.random.default_rng(9).normal(size=(600, 5))
    m = cka_matrix([x, 2 * x, y, z], batch_size=200)
    assert m.shape == (4, 4)
    assert np.allclose(np.diag(m), 1.0)
    assert np.allclose(m, m.T)
    assert m[0, 1] == pytest.approx(1.0)
    assert m[0, 2] == pytest.approx(minibatch_cka(x, y, batch_size=200), rel=1e-12)
    cross = cka_matrix([x, y], [torch.from_numpy(y), z], batch_size=200)
    assert cross.shape == (2, 2)
    assert cross[1, 0] == pytest.approx(1.0)
    assert cross[0, 0] == pytest.approx(m[0, 2], rel=1e-12)


def _brute_mutual_knn(x: np.ndarray, y: np.ndarray, k: int) -> float:
    def sets(z: np.ndarray) -> list[set[int]]:
        zn = z / np.linalg.norm(z, axis=1, keepdims=True)
        s = zn @ zn.T
        np.fill_diagonal(s, -np.inf)
        return [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in s]

    a, b = sets(x), sets(y)
    return float(np.mean([len(p & q) / k for p, q in zip(a, b)]))


def test_mutual_knn() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 12))
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    assert mutual_knn(x, 5.0 * x @ q, k=10) == pytest.approx(1.0)
    y = x[:, :6] + 0.3 * rng.normal(size=(300, 6))
    assert mutual_knn(x, y, k=10) == pytest.approx(_brute_mutual_knn(x, y, 10))
    z = rng.normal(size=(300, 12))
    assert mutual_knn(x, z, k=10) == pytest.approx(10 / 299, abs=0.02)  # chance overlap
    s = mutual_knn_scores(x, y, k=10)
    assert s.shape == (300,) and s.min() >= 0 and s.max() <= 1


def test_bad_inputs() -> None:
    x = np.ones((10, 3))
    with pytest.raises(UmaeError, match="same images .rows.: got 10 and 9 rows"):
        linear_cka(x, np.ones((9, 3)))
    with pytest.raises(UmaeError, match="batch_size must be >= 4"):
        minibatch_cka(x, x, batch_size=2)
    with pytest.raises(UmaeError, match="k must be between 1 and N - 1 = 9"):
        mutual_knn(x, x, k=10)
    with pytest.raises(UmaeError, match="blocks_a.1. has 9 rows"):
        cka_matrix([x, np.ones((9, 3))])
