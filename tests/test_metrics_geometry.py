"""Alignment, uniformity and the U-MAE term against direct double loops."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from umae_eval.errors import UmaeError
from umae_eval.metrics.geometry import alignment, umae_uniformity, uniformity


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("alpha", [2.0, 1.0, 0.5])
def test_alignment_matches_loop(alpha: float) -> None:
    rng = np.random.default_rng(0)
    z1, z2 = rng.standard_normal((25, 6)), rng.standard_normal((25, 6))
    ref = np.mean([np.linalg.norm(_unit(a) - _unit(b)) ** alpha for a, b in zip(z1, z2)])
    assert alignment(z1, z2, alpha=alpha) == pytest.approx(ref, rel=1e-12)


def test_alignment_closed_forms() -> None:
    x = np.random.default_rng(1).standard_normal((10, 4))
    assert alignment(x, 3.0 * x) == pytest.approx(0.0, abs=1e-14)  # scale does not matter
    assert alignment(x, -x) == pytest.approx(4.0, rel=1e-12)  # antipodal: ||2 z||^2


@pytest.mark.parametrize("t", [2.0, 0.5, 40.0])
def test_uniformity_matches_double_loop(t: float) -> None:
    rng = np.random.default_rng(2)
    z = rng.standard_normal((30, 5))
    vals = [math.exp(-t * np.linalg.norm(_unit(a) - _unit(b)) ** 2)
            for i, a in enumerate(z) for j, b in enumerate(z) if i != j]
    assert uniformity(z, t=t) == pytest.approx(math.log(np.mean(vals)), rel=1e-10)


def test_uniformity_closed_forms_and_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    same = np.tile([[1.0, 2.0]], (5, 1))
    assert uniformity(same) == pytest.approx(0.0, abs=1e-12)  # collapsed: exp(0)
    z = np.random.default_rng(3).standard_normal((37, 4))
    whole = uniformity(z)
    import umae_eval.metrics.geometry as geometry

    monkeypatch.setattr(geometry, "_BLOCK", 5)  # several row blocks give the same number
    assert uniformity(z) == pytest.approx(whole, rel=1e-12)


def test_umae_uniformity_code_form_matches_double_loop() -> None:
    rng = np.random.default_rng(4)
    z = rng.standard_normal((20, 7))
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    ref = np.mean([(zn[i] @ zn[j]) ** 2 for i, j in itertools.product(range(20), repeat=2)])
    assert umae_uniformity(z, form="code") == pytest.approx(ref, rel=1e-12)
    assert umae_uniformity(z) == pytest.approx(ref, rel=1e-12)  # 'code' is the default


def test_umae_uniformity_paper_form_matches_double_loop() -> None:
    rng = np.random.default_rng(5)
    z = rng.standard_normal((20, 7)) * 3.0
    ref = np.mean([(z[i] @ z[j]) ** 2 for i, j in itertools.product(range(20), repeat=2) if i != j])
    assert umae_uniformity(z, form="paper") == pytest.approx(ref, rel=1e-10)


def test_umae_uniformity_closed_forms() -> None:
    d = 6
    eye = np.eye(d)
    assert umae_uniformity(eye, "code") == pytest.approx(1 / d)  # only the diagonal survives
    assert umae_uniformity(eye, "paper") == pytest.approx(0.0, abs=1e-15)
    same = np.tile([[2.0, 0.0]], (4, 1))
    assert umae_uniformity(same, "code") == pytest.approx(1.0)
    assert umae_uniformity(same, "paper") == pytest.approx(16.0)


def test_geometry_accepts_tensors() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(15, 4, generator=g), torch.randn(15, 4, generator=g)
    assert alignment(z1, z2) == pytest.approx(alignment(z1.numpy(), z2.numpy()), rel=1e-6)
    assert uniformity(z1) == pytest.approx(uniformity(z1.numpy()), rel=1e-6)
    assert umae_uniformity(z1, "paper") == pytest.approx(umae_uniformity(z1.numpy(), "paper"), rel=1e-6)


def test_geometry_bad_inputs() -> None:
    z = np.ones((4, 3))
    with pytest.raises(UmaeError, match="same shape"):
        alignment(z, np.ones((5, 3)))
    with pytest.raises(UmaeError, match="alpha must be a positive"):
        alignment(z, z, alpha=0)
    with pytest.raises(UmaeError, match="at least 2 row"):
        uniformity(np.ones((1, 3)))
    with pytest.raises(UmaeError, match="t must be a positive"):
        uniformity(z, t=-1.0)
    with pytest.raises(UmaeError, match="form must be one of 'code', 'paper'"):
        umae_uniformity(z, form="cosine")  # type: ignore[arg-type]
    with pytest.raises(UmaeError, match="NaN"):
        umae_uniformity(np.array([[np.inf, 1.0], [0.0, 1.0]]))
    with pytest.raises(UmaeError, match="2-D"):
        uniformity(np.ones(4))
