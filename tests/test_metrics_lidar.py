"""LiDAR: closed forms (two and four surrogate classes in known directions), an independent
implementation written from the paper (loops, scipy's matrix power), and the reptrix-style variant."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umae_eval.errors import UmaeError
from umae_eval.metrics.lidar import lidar, lidar_resampled


def _exp_entropy(lam: np.ndarray, eps: float) -> float:
    p = (lam + eps) / np.sum(lam + eps)
    return float(np.exp(-np.sum(p * np.log(p))))


def test_two_separated_classes_closed_form() -> None:
    # two images, q = 4 views each, D = 3. Views spread along e1 only (+-s twice), means at +-m u.
    s, d, delta, eps = 0.5, 3, 1e-4, 1e-8
    u = np.array([3.0, 4.0, 0.0]) / 5.0
    mu = np.stack([2.0 * u, -2.0 * u])
    offsets = np.array([[s, 0, 0], [-s, 0, 0], [s, 0, 0], [-s, 0, 0]])
    views = mu[:, None, :] + offsets[None]
    # Sigma_w = (2 images * 4 s^2 e1e1^T) / (n (q - 1)) + delta I = diag(8 s^2 / 6 + delta, delta, delta)
    sw = np.diag([8 * s * s / 6 + delta, delta, delta])
    # Sigma_b = (Delta Delta^T) / 2 / (n - 1), Delta = mu_1 - mu_2: one non-zero eigenvalue
    diff = mu[0] - mu[1]
    lam1 = float(diff @ np.linalg.solve(sw, diff)) / 2.0
    expect = _exp_entropy(np.array([lam1, 0.0, 0.0]), eps)
    res = lidar(views, delta=delta, eps=eps)
    assert res.value == pytest.approx(expect, rel=1e-9)
    assert res.eigenvalues[0] == pytest.approx(lam1, rel=1e-9)
    assert res.value == pytest.approx(1.0, abs=1e-6)  # one direction separates the two classes


def test_four_classes_diagonal_closed_form() -> None:
    a, b, s1, s2, delta, eps = 2.0, 1.0, 0.5, 1.0, 1e-4, 1e-8
    means = np.array([[a, 0], [-a, 0], [0, b], [0, -b]], dtype=float)
    offsets = np.array([[s1, 0], [-s1, 0], [0, s2], [0, -s2]], dtype=float)
    views = means[:, None, :] + offsets[None]  # (4, 4, 2)
    n, q = 4, 4
    sb = np.diag([2 * a * a, 2 * b * b]) / (n - 1)
    sw = np.diag([n * 2 * s1 * s1, n * 2 * s2 * s2]) / (n * (q - 1)) + delta * np.eye(2)
    lam = np.diag(sb) / np.diag(sw)
    assert lidar(views, delta=delta, eps=eps).value == pytest.approx(_exp_entropy(lam, eps), rel=1e-12)


def _paper_lidar(views: np.ndarray, delta: float = 1e-4, eps: float = 1e-8) -> float:
    """Thilak et al. Eq. 3-6 written out: loops over images and views, scipy's inverse square root."""
    from scipy.linalg import fractional_matrix_power

    n, q, d = views.shape
    mus = [views[i].mean(axis=0) for i in range(n)]
    mu = sum(mus) / n
    sb = sum(np.outer(m - mu, m - mu) for m in mus) / (n - 1)
    sw = np.zeros((d, d))
    for i in range(n):
        for j in range(q):
            sw += np.outer(views[i, j] - mus[i], views[i, j] - mus[i])
    sw = sw / (n * (q - 1)) + delta * np.eye(d)
    root = np.real(fractional_matrix_power(sw, -0.5))
    lam = np.clip(np.real(np.linalg.eigvals(root @ sb @ root)), 0, None)
    return _exp_entropy(lam, eps)


def _views(seed: int, n: int = 60, q: int = 5, d: int = 10) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n, d)) * np.geomspace(3, 0.1, d)
    return centres[:, None, :] + 0.4 * rng.normal(size=(n, q, d)) * rng.uniform(0.2, 1, size=d)


def test_against_independent_paper_implementation() -> None:
    v = _views(1)
    res = lidar(torch.from_numpy(v))
    assert res.value == pytest.approx(_paper_lidar(v), rel=1e-8)
    assert (res.n_images, res.n_views, res.dim) == (60, 5, 10)


def test_reptrix_variant_differs_where_it_should() -> None:
    v = _views(2)
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(10, 10)))
    rotated = v @ q
    paper, paper_rot = lidar(v).value, lidar(rotated).value
    rep, rep_rot = lidar(v, method="reptrix").value, lidar(rotated, method="reptrix").value
    # the paper's LiDAR only sees the LDA eigenvalues: a rotation of feature space leaves it alone
    assert paper_rot == pytest.approx(paper, rel=1e-9)
    # PCA over the rows of the LiDAR matrix depends on the basis, and squares the spectrum: lower
    assert abs(rep_rot - rep) > 1e-3
    assert rep < paper - 0.5
    # independent check of the variant: reptrix's own scalings and sklearn's PCA of the matrix rows
    from sklearn.decomposition import PCA

    n, nq, d = v.shape
    mus = v.mean(axis=1)
    cm = mus - mus.mean(axis=0)
    sb = cm.T @ cm
    dev = (v - mus[:, None, :])
    sw = np.einsum("iqd,iqe->de", dev, dev) / n + 1e-6 * np.eye(d)
    ew, vw = np.linalg.eigh(sw)
    root = vw @ np.diag(ew ** -0.5) @ vw.T
    ratios = PCA(svd_solver="full").fit(root @ sb @ root).explained_variance_ratio_
    p = ratios / ratios.sum() + 1e-7
    assert rep == pytest.approx(float(np.exp(-np.sum(p * np.log(p)))), rel=1e-6)


def test_resampled_matches_stacked_copies() -> None:
    v = _views(4, n=20)
    idx = np.random.default_rng(0).integers(0, 20, size=(3, 20))
    got = lidar_resampled(v, idx)
    for r in range(3):
        assert got[r] == pytest.approx(lidar(v[idx[r]]).value, rel=1e-9)
    assert lidar_resampled(v, np.arange(20)[None])[0] == pytest.approx(lidar(v).value, rel=1e-12)


def test_bad_inputs() -> None:
    with pytest.raises(UmaeError, match=r"views must be 3-D \(n images, q views, D\), got shape \(4, 3\)"):
        lidar(np.ones((4, 3)))
    with pytest.raises(UmaeError, match="at least 2 images with 2 views"):
        lidar(np.ones((3, 1, 4)))
    with pytest.raises(UmaeError, match="method must be one of"):
        lidar(np.ones((3, 2, 4)), method="pca")  # type: ignore[arg-type]
    with pytest.raises(UmaeError, match="delta and eps must be numbers >= 0"):
        lidar(np.ones((3, 2, 4)), delta=-1.0)
