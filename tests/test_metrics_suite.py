"""The metric suite: each resample equals the metric recomputed on copied rows; pairing by seed."""

from __future__ import annotations

import numpy as np
import pytest

from umae_eval.metrics.cka import cka_unbiased, linear_cka, minibatch_cka, mutual_knn
from umae_eval.metrics.fourier import fourier_profile
from umae_eval.metrics.lidar import lidar
from umae_eval.metrics.rank_bootstrap import rank_resample_count, resample_indices
from umae_eval.metrics.scalars import spectrum_scalars
from umae_eval.metrics.spectrum import alpha_req
from umae_eval.metrics.suite import pair_metrics, representation_metrics, resampled_scalars


@pytest.mark.parametrize("n", [30, 200])  # n <= 2D: direct route; n > 2D: weighted Gram route
def test_spectral_resamples_equal_metrics_of_copied_rows(n: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 16)) * np.geomspace(2, 0.05, 16) + 0.4
    res = resampled_scalars(x, n_boot=5, seed=3, alpha=True)
    reps = rank_resample_count(n, 16, 5)
    idx = resample_indices(n, reps, 3)
    for r in range(reps):
        direct = {**spectrum_scalars(x[idx[r]]).values(), "alpha_req": alpha_req(x[idx[r]]).alpha}
        for name, values in res.items():
            assert values[r] == pytest.approx(direct[name], rel=1e-7), name


def test_representation_metrics_all_parts() -> None:
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), 30)
    x = rng.normal(size=(4, 12))[y] * 2 + rng.normal(size=(120, 12))
    views = x[:40, None, :] + 0.3 * rng.normal(size=(40, 3, 12))
    tokens = rng.normal(size=(10, 1 + 16, 5))
    out = representation_metrics(x, labels=y, predictions=y, mask_views=views, aug_views=views * 2,
                                 tokens=tokens, token_prefix=1, n_boot=20, seed=0)
    v = out.values
    for name in ("participation_ratio", "stable_rank", "collapse_std_ratio", "rankme_paper", "rankme_pca",
                 "nc1", "cdnv", "nc2_etf_distance", "nc4_agreement", "lidar_masked", "lidar_masked_reptrix",
                 "lidar_augmented", "fourier_high", "fourier_energy_share_high"):
        assert np.isfinite(v[name]), name
    assert v["lidar_masked"] == pytest.approx(lidar(views).value)
    assert v["lidar_augmented"] == pytest.approx(lidar(views * 2).value)
    prof = fourier_profile(tokens, prefix_tokens=1)
    idx = resample_indices(10, 20, 0 + 3)
    assert np.allclose(out.resamples["fourier_high"], prof.per_image_high[idx].mean(axis=1))
    assert set(out.resamples) == {"participation_ratio", "stable_rank", "rankme_paper", "rankme_pca",
                                  "collapse_std_ratio", "alpha_req", "lidar_masked", "lidar_augmented",
                                  "fourier_high"}
    assert v["alpha_req"] == pytest.approx(alpha_req(x).alpha)
    js = out.to_json()
    assert js["resample_counts"]["lidar_masked"] == 20 and js["settings"]["n"] == 120


def test_same_seed_pairs_the_resamples() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=(150, 10))
    b = a * np.linspace(1, 3, 10)  # another "checkpoint" on the same images
    ra = representation_metrics(a, n_boot=10, seed=5).resamples
    rb = representation_metrics(b, n_boot=10, seed=5).resamples
    idx = resample_indices(150, rank_resample_count(150, 10, 10), 5)
    for r in range(3):
        assert ra["stable_rank"][r] - rb["stable_rank"][r] == pytest.approx(
            spectrum_scalars(a[idx[r]]).stable_rank - spectrum_scalars(b[idx[r]]).stable_rank, rel=1e-7)


def test_pair_metrics() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1200, 8))
    y = np.tanh(x @ rng.normal(size=(8, 6))) + 0.3 * rng.normal(size=(1200, 6))
    out = pair_metrics(x, y, n_boot=30, seed=0)
    assert out.values["cka_linear"] == pytest.approx(linear_cka(x, y))
    assert out.values["cka_unbiased"] == pytest.approx(cka_unbiased(x, y))
    assert out.values["mutual_knn"] == pytest.approx(mutual_knn(x, y, k=10))
    assert out.settings["cka_batches"] == 5  # 1200 / 256: four full batches and one of 176
    boot = out.resamples["cka_unbiased"]
    assert len(boot) == 30 and np.std(boot) > 0
    assert np.mean(boot) == pytest.approx(minibatch_cka(x, y, batch_size=256, seed=0), abs=0.05)
    same = pair_metrics(x, 2.0 * x, n_boot=10, seed=0)
    assert np.allclose(same.resamples["cka_unbiased"], 1.0) and np.allclose(same.resamples["mutual_knn"], 1.0)
