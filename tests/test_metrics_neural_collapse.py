"""Neural-collapse measures: closed forms (collapsed features, simplex ETF) and an independent
implementation with explicit D x D covariances, numpy's pinv and loops."""

from __future__ import annotations

import numpy as np
import pytest

from umae_eval.errors import UmaeError
from umae_eval.metrics.neural_collapse import (
    cdnv,
    class_means,
    nc1,
    nc2,
    nc4,
    nearest_class_centre,
    neural_collapse,
)


def _data(seed: int = 0, c: int = 5, per: int = 40, d: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(c, d)) * 2.0
    y = np.repeat(np.arange(c), per)
    x = mu[y] + rng.normal(size=(c * per, d)) * rng.uniform(0.3, 1.5, size=d)
    perm = rng.permutation(len(y))
    return x[perm], y[perm]


def _reference(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Papyan et al. / Galanti et al. written out with loops and full matrices."""
    classes = sorted(set(y.tolist()))
    c, (n, d) = len(classes), x.shape
    mu_g = x.mean(axis=0)
    means = [x[y == k].mean(axis=0) for k in classes]
    sw = np.zeros((d, d))
    for k, m in zip(classes, means):
        for row in x[y == k]:
            sw += np.outer(row - m, row - m)
    sw /= n
    sb = sum(np.outer(m - mu_g, m - mu_g) for m in means) / c
    out = {"nc1": float(np.trace(sw @ np.linalg.pinv(sb, hermitian=True)) / c)}
    var = [np.mean(np.sum((x[y == k] - m) ** 2, axis=1)) for k, m in zip(classes, means)]
    pairs = [(var[i] + var[j]) / (2 * np.sum((means[i] - means[j]) ** 2)) for i in range(c) for j in range(i + 1, c)]
    out["cdnv"] = float(np.mean(pairs))
    mm = np.stack([m - mu_g for m in means], axis=1)  # D x C
    g = mm.T @ mm
    etf = (np.eye(c) - 1.0 / c) / np.sqrt(c - 1)
    out["nc2"] = float(np.linalg.norm(g / np.linalg.norm(g) - etf))
    return out


def test_collapsed_features_give_zero_nc1_and_cdnv() -> None:
    x, y = _data()
    mu, _ = class_means(x, y)
    collapsed = mu[y]  # every feature equals its class mean
    assert nc1(collapsed, y) == pytest.approx(0.0, abs=1e-12)
    mean, mat = cdnv(collapsed, y)
    assert mean == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(mat, 0.0)


def _simplex_etf(c: int, d: int, seed: int = 0) -> np.ndarray:
    """C unit-norm vectors in R^D with pairwise cosine -1/(C-1), summing to 0: (C, D)."""
    m = np.sqrt(c / (c - 1)) * (np.eye(c) - 1.0 / c)  # columns: the ETF in R^C
    p, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, c)))  # orthonormal embedding
    return (p @ m).T


def test_simplex_etf_gives_zero_nc2() -> None:
    c, d, per = 6, 20, 30
    etf = _simplex_etf(c, d) * 4.0
    y = np.repeat(np.arange(c), per)
    noise = np.random.default_rng(1).normal(size=(c * per, d))
    noise -= np.stack([noise[y == k].mean(axis=0) for k in range(c)])[y]  # class means stay exactly the ETF
    dist, equinorm = nc2(etf[y] + noise, y)
    assert dist == pytest.approx(0.0, abs=1e-12)
    assert equinorm == pytest.approx(0.0, abs=1e-12)
    # a non-ETF configuration is measurably away from it
    skew = etf.copy()
    skew[0] *= 3.0
    assert nc2(skew[y], y)[0] > 0.1


def test_against_independent_implementation() -> None:
    x, y = _data(seed=3)
    ref = _reference(x, y)
    assert nc1(x, y) == pytest.approx(ref["nc1"], rel=1e-9)
    assert cdnv(x, y)[0] == pytest.approx(ref["cdnv"], rel=1e-12)
    assert nc2(x, y)[0] == pytest.approx(ref["nc2"], rel=1e-12)
    # labels that are not 0..C-1 (absent classes) are re-indexed over the classes present
    out = neural_collapse(x, y * 2 + 1)
    assert out.nc1 == pytest.approx(ref["nc1"], rel=1e-9)
    assert out.num_classes == 5


def test_nc4_agreement() -> None:
    x, y = _data(seed=4)
    mu, _ = class_means(x, y)
    ncc = nearest_class_centre(x, mu)
    # brute force: distances to every centre
    brute = np.argmin(((x[:, None, :] - mu[None]) ** 2).sum(axis=2), axis=1)
    assert np.array_equal(ncc, brute)
    assert nc4(x, ncc, mu) == 1.0
    wrong = (ncc + 1) % 5
    assert nc4(x, wrong, mu) == 0.0
    half = ncc.copy()
    half[:100] = wrong[:100]
    assert nc4(x, half, mu) == pytest.approx(0.5)
    assert neural_collapse(x, y, predictions=ncc).nc4_agreement == 1.0


def test_bad_inputs() -> None:
    x, y = _data()
    with pytest.raises(UmaeError, match="at least 2 classes"):
        nc1(x, np.zeros(len(y), dtype=int))
    with pytest.raises(UmaeError, match="labels has 3 entries but features has 200 rows"):
        nc1(x, y[:3])
    with pytest.raises(UmaeError, match="centres have 3 dimensions"):
        nearest_class_centre(x, np.zeros((5, 3)))
    with pytest.raises(UmaeError, match="pass centres="):
        neural_collapse(x, y + 1, predictions=y)
