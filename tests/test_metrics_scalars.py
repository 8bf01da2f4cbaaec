"""Spectrum scalars against closed forms (diagonal spectra) and independent code (sklearn PCA, numpy SVD)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umae_eval.errors import UmaeError
from umae_eval.metrics.scalars import (
    collapse_std,
    participation_ratio,
    rankme_paper,
    rankme_pca,
    spectrum_scalars,
    stable_rank,
)
from umae_eval.metrics.spectrum import rankme


def _centred_with_spectrum(rng: np.random.Generator, n: int, d: int, s: np.ndarray) -> np.ndarray:
    """A centred (n, d) matrix whose singular values are exactly ``s``."""
    a = rng.standard_normal((n, len(s)))
    a -= a.mean(axis=0)
    u, _ = np.linalg.qr(a)
    v, _ = np.linalg.qr(rng.standard_normal((d, len(s))))
    return (u * s) @ v.T


@pytest.mark.parametrize("s", [[2.0, 1.0], [3.0, 3.0, 3.0], [5.0, 1.0, 0.5, 0.1]])
def test_participation_ratio_and_stable_rank_closed_form(s: list[float]) -> None:
    sv = np.array(s)
    x = _centred_with_spectrum(np.random.default_rng(0), 50, 8, sv)
    lam = sv**2
    assert participation_ratio(x) == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-9)
    # centred construction: the uncentred and centred stable ranks agree
    assert stable_rank(x) == pytest.approx(lam.sum() / lam.max(), rel=1e-9)
    assert stable_rank(x, center=True) == pytest.approx(lam.sum() / lam.max(), rel=1e-9)


def test_diagonal_matrix_closed_forms() -> None:
    # diag(3, 1): stable rank (9 + 1) / 9; k equal eigenvalues -> participation ratio k
    assert stable_rank(np.diag([3.0, 1.0])) == pytest.approx(10 / 9)
    x = _centred_with_spectrum(np.random.default_rng(1), 40, 10, np.full(4, 2.0))
    assert participation_ratio(x) == pytest.approx(4.0, rel=1e-9)
    assert participation_ratio(np.ones((5, 3))) == 0.0
    assert stable_rank(np.zeros((4, 3))) == 0.0


def test_rankme_conventions_against_independent_code() -> None:
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 20)) * np.geomspace(1.0, 0.05, 20) + 0.7
    eps = 1e-7
    # paper: uncentred singular values, L1-normalised, + eps
    s = np.linalg.svd(x, compute_uv=False)
    p = s / s.sum() + eps
    assert rankme_paper(x) == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-9)
    assert rankme_paper(x) == pytest.approx(rankme(x), rel=1e-12)
    # reptrix: sklearn PCA explained-variance ratios of the (centred) features, + eps
    q = PCA(svd_solver="full").fit(x).explained_variance_ratio_ + eps
    assert rankme_pca(x) == pytest.approx(np.exp(-np.sum(q * np.log(q))), rel=1e-7)
    # the two are different numbers on the same features
    assert abs(rankme_paper(x) - rankme_pca(x)) > 1.0


def test_collapse_std_closed_forms() -> None:
    d = 6
    x = np.concatenate([np.eye(d), -np.eye(d)]) * 3.0  # rows +-3 e_i: normalised to +-e_i
    std, ref = collapse_std(x)
    assert std == pytest.approx(np.sqrt(2.0 / (2 * d - 1)))  # each column: one +1, one -1, ddof=1
    assert ref == pytest.approx(1 / np.sqrt(d))
    same = np.tile(np.array([[1.0, 2.0, 2.0]]), (10, 1)) * np.arange(1, 11)[:, None]
    assert collapse_std(same)[0] == pytest.approx(0.0, abs=1e-12)  # all one direction: collapsed
    g = np.random.default_rng(3).standard_normal((20000, 64))
    s, r = collapse_std(torch.from_numpy(g))
    assert s / r == pytest.approx(1.0, abs=0.02)


def test_spectrum_scalars_bundle_matches_single_functions() -> None:
    x = np.random.default_rng(4).standard_normal((200, 12)) + 0.3
    out = spectrum_scalars(x)
    v = out.values()
    assert v["participation_ratio"] == pytest.approx(participation_ratio(x))
    assert v["stable_rank"] == pytest.approx(stable_rank(x))
    assert v["rankme_paper"] == pytest.approx(rankme_paper(x))
    assert v["rankme_pca"] == pytest.approx(rankme_pca(x))
    assert v["collapse_std_ratio"] == pytest.approx(collapse_std(x)[0] * np.sqrt(12))
    d = out.to_dict()
    assert d["settings"]["conventions"]["rankme_paper"].startswith("Garrido")


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(UmaeError, match="eps must be a number >= 0"):
        rankme_pca(np.ones((3, 2)), eps=-1.0)
    with pytest.raises(UmaeError, match="features must be 2-D"):
        participation_ratio(np.ones(3))
    with pytest.raises(UmaeError, match="at least 2 row"):
        participation_ratio(np.ones((1, 3)))
