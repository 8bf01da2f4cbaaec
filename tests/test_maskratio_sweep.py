"""Bootstrap, sweet spot, label error, graph spectrum, pair sampling and the sweep loops, each
against a direct computation on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umae_eval.errors import UmaeError
from umae_eval.maskratio.estimators import PIXEL_ESTIMATORS, patch_pair_stats, pixel_view_distances
from umae_eval.maskratio.graph import gaussian_affinity, graph_stats, normalized_adjacency, top_eigenvalues
from umae_eval.maskratio.label_error import class_means, nearest_mean_errors, pixel_view_errors
from umae_eval.maskratio.masks import keep_mask_from_ranks, noise_ranks, patchify
from umae_eval.maskratio.pairs import sample_balanced, sample_pairs
from umae_eval.maskratio.stats import (
    bootstrap_counts,
    bootstrap_means,
    percentile_interval,
    summarise_curves,
    summarise_rates,
)
from umae_eval.maskratio.sweep import (
    _MASKS,
    SweepConfig,
    _torch_gen,
    feature_distance_curves,
    parse_estimators,
    pixel_distance_curves,
    pixel_label_errors,
    run_sweep,
)

# ------------------------------------------------------------------ bootstrap and sweet spot


def test_bootstrap_counts_and_means_against_loop() -> None:
    values = np.random.default_rng(0).normal(size=(4, 7))
    counts = bootstrap_counts(7, 50, np.random.default_rng(1))
    idx = np.random.default_rng(1).integers(0, 7, size=(50, 7))
    means = bootstrap_means(values, counts)
    for b in range(50):
        assert np.array_equal(counts[b], np.bincount(idx[b], minlength=7))
        np.testing.assert_allclose(means[b], values[:, idx[b]].mean(axis=1), rtol=1e-12)


def _loop_summary(ratios, intra, inter, n_boot, seed):
    rng = np.random.default_rng(seed)
    ii = rng.integers(0, intra.shape[1], size=(n_boot, intra.shape[1]))
    ie = rng.integers(0, inter.shape[1], size=(n_boot, inter.shape[1]))
    rel, arg = [], []
    for b in range(n_boot):
        r = intra[:, ii[b]].mean(1) / inter[:, ie[b]].mean(1)
        rel.append(r)
        arg.append(ratios[int(np.argmin(r))])
    return np.array(rel), np.array(arg)


def test_summarise_curves_against_loop() -> None:
    rng = np.random.default_rng(0)
    ratios = np.array([0.0, 0.25, 0.5, 0.7, 0.9])
    # intra dips relative to inter at 0.7, both fall
    base = np.array([1.0, 0.9, 0.8, 0.7, 0.6])
    intra = base[:, None] * (0.8 + 0.05 * np.array([0, -1, -2, -3, 0]))[:, None] + rng.normal(0, 0.02, (5, 40))
    inter = base[:, None] + rng.normal(0, 0.02, (5, 30))
    s = summarise_curves("x", ratios, intra, inter, n_boot=300, seed=5)
    rel, arg = _loop_summary(ratios, intra, inter, 300, 5)
    np.testing.assert_allclose(s.intra.mean, intra.mean(1))
    np.testing.assert_allclose(s.ratio.mean, intra.mean(1) / inter.mean(1))
    np.testing.assert_allclose(s.ratio.lo, np.percentile(rel, 2.5, axis=0), rtol=1e-12)
    np.testing.assert_allclose(s.ratio.hi, np.percentile(rel, 97.5, axis=0), rtol=1e-12)
    change = rel - rel[:, :1]
    np.testing.assert_allclose(s.ratio_change.mean, s.ratio.mean - s.ratio.mean[0])
    np.testing.assert_allclose(s.ratio_change.lo, np.percentile(change, 2.5, axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(s.ratio_change.hi, np.percentile(change, 97.5, axis=0), rtol=1e-12, atol=1e-15)
    assert s.sweet_spot.ratio == 0.7
    assert s.sweet_spot.lo == np.percentile(arg, 2.5) and s.sweet_spot.hi == np.percentile(arg, 97.5)
    assert s.sweet_spot.frequency["0.7"] == pytest.approx(np.mean(arg == 0.7))
    assert s.shape.intra_falls and s.shape.inter_falls and s.shape.ratio_dips and s.shape.sweet_near_paper
    assert s.shape.reproduces


def test_shape_check_rejects_flat_and_monotone_curves() -> None:
    rng = np.random.default_rng(1)
    ratios = np.linspace(0, 0.9, 10)
    flat = summarise_curves("flat", ratios, 1 + rng.normal(0, 0.05, (10, 50)),
                            1.2 + rng.normal(0, 0.05, (10, 50)), n_boot=200, seed=0)
    assert not flat.shape.intra_falls and not flat.shape.reproduces
    mono_intra = (1 - ratios)[:, None] * 0.5 + 0.5 + rng.normal(0, 0.01, (10, 50))
    mono_inter = 1 + rng.normal(0, 0.01, (10, 50))
    mono = summarise_curves("mono", ratios, mono_intra, mono_inter, n_boot=200, seed=0)
    assert mono.shape.intra_falls and not mono.shape.inter_falls
    assert mono.sweet_spot.ratio == pytest.approx(0.9) and not mono.shape.ratio_dips


def test_summarise_rates_against_loop() -> None:
    vals = (np.random.default_rng(2).random((3, 20)) > 0.6).astype(float)
    iv = summarise_rates(vals, n_boot=100, seed=3)
    idx = np.random.default_rng(3).integers(0, 20, size=(100, 20))
    boots = np.stack([vals[:, idx[b]].mean(1) for b in range(100)])
    lo, hi = percentile_interval(boots)
    np.testing.assert_allclose(iv.mean, vals.mean(1))
    np.testing.assert_allclose(iv.lo, lo)
    np.testing.assert_allclose(iv.hi, hi)


# ------------------------------------------------------------------ label error


def test_class_means_and_nearest_mean_against_loop() -> None:
    g = torch.Generator().manual_seed(0)
    f = torch.randn((30, 4), generator=g)
    y = torch.arange(30) % 3
    means = class_means(f, y, 4)  # class 3 empty -> NaN row, never chosen
    for c in range(3):
        np.testing.assert_allclose(means[c].numpy(), f[y == c].double().mean(0).numpy(), rtol=1e-12)
    assert torch.isnan(means[3]).all()
    err = nearest_mean_errors(f, y, means)
    for i in range(30):
        d = [np.sum((f[i].double().numpy() - means[c].numpy()) ** 2) for c in range(3)]
        assert err[i].item() == (int(np.argmin(d)) != y[i].item())


def test_pixel_view_errors_against_loop() -> None:
    g = torch.Generator().manual_seed(1)
    patches = torch.rand((6, 4, 3), generator=g)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    means = torch.rand((4, 4, 3), generator=g, dtype=torch.float64)
    means[3] = float("nan")  # a class absent from train: never the nearest mean
    keep = keep_mask_from_ranks(noise_ranks(torch.rand((6, 5, 4), generator=g)), 0.5)
    err = pixel_view_errors(patches, labels, means, keep)
    for n in range(6):
        for k in range(5):
            vis = torch.nonzero(keep[n, k]).flatten().tolist()
            score = [sum(float(((patches[n, i].double() - means[c, i]) ** 2).sum()) for i in vis) for c in range(3)]
            assert err[n, k].item() == (int(np.argmin(score)) != labels[n].item())


def test_pixel_label_errors_uses_train_class_means() -> None:
    """Two classes: dark and bright images. Unmasked, every view is classified right (alpha 0);
    a test image that is dark on the left and bright on the right is judged by what is visible."""
    x_train = np.concatenate([np.full((5, 4, 4, 3), 20, np.uint8), np.full((5, 4, 4, 3), 230, np.uint8)])
    y_train = np.array([0] * 5 + [1] * 5)
    x_eval = np.full((2, 4, 4, 3), 30, np.uint8)
    x_eval[1] = 220
    errs = pixel_label_errors(x_train, y_train, x_eval, np.array([0, 1]), [0.0, 0.5, 0.75], n_classes=2,
                              patch_size=2, views=3, seed=0)
    assert errs.shape == (3, 2) and (errs == 0).all()
    flipped = np.array([1, 0])
    errs = pixel_label_errors(x_train, y_train, x_eval, flipped, [0.0, 0.5], n_classes=2,
                              patch_size=2, views=3, seed=0)
    assert (errs == 1).all()


# ------------------------------------------------------------------ graph


def test_graph_stats_against_numpy() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(12, 5))
    dist = np.linalg.norm(v[:, None] - v[None], axis=-1)
    labels = np.repeat([0, 1, 2], 4)
    ids = np.repeat(np.arange(6), 2)
    s = graph_stats(torch.from_numpy(dist), torch.from_numpy(labels), torch.from_numpy(ids), k=3, top=5)
    h = np.median(dist[np.triu_indices(12, 1)])
    A = np.exp(-dist ** 2 / (2 * h * h))
    d = A.sum(1)
    An = A / np.sqrt(d[:, None] * d[None, :])
    lam = np.sort(np.linalg.eigvalsh(An))[::-1]
    assert s.bandwidth == pytest.approx(h)
    np.testing.assert_allclose(s.eigenvalues.numpy(), lam[:5], atol=1e-10)
    assert lam[0] == pytest.approx(1.0) and lam.min() > -1e-10  # PSD kernel
    assert s.residual == pytest.approx(np.sum(lam[3:] ** 2))
    assert s.residual_share == pytest.approx(np.sum(lam[3:] ** 2) / np.sum(lam ** 2))
    num = den = 0.0
    for i in range(12):
        for j in range(12):
            if ids[i] != ids[j]:
                den += A[i, j]
                num += A[i, j] * (labels[i] == labels[j])
    assert s.same_class_edge_share == pytest.approx(num / den)
    # chance: the share of same-class pairs among pairs of views of different images, counted by loops
    pairs = [(u, v) for u in range(len(labels)) for v in range(len(labels)) if ids[u] != ids[v]]
    same = sum(labels[u] == labels[v] for u, v in pairs)
    assert s.same_class_chance == pytest.approx(same / len(pairs)) == pytest.approx((2 - 1) / (6 - 1))  # (m-1)/(n-1)
    np.testing.assert_allclose(normalized_adjacency(torch.from_numpy(A)).numpy(), An, rtol=1e-12)


def test_lanczos_path_matches_full_spectrum() -> None:
    """Large graphs use Lanczos for the top eigenvalues and ||A_bar||_F^2 for the residual."""
    rng = np.random.default_rng(4)
    v = rng.normal(size=(80, 6))
    dist = torch.from_numpy(np.linalg.norm(v[:, None] - v[None], axis=-1))
    labels, ids = torch.arange(80) % 4, torch.arange(80)
    exact = graph_stats(dist, labels, ids, k=4, top=8, exact_below=1000)
    lanczos = graph_stats(dist, labels, ids, k=4, top=8, exact_below=10)
    np.testing.assert_allclose(lanczos.eigenvalues.numpy(), exact.eigenvalues.numpy(), atol=1e-9)
    assert lanczos.residual == pytest.approx(exact.residual, rel=1e-8)
    sym = torch.from_numpy(np.cov(rng.normal(size=(30, 50))))
    np.testing.assert_allclose(top_eigenvalues(sym, 5, exact_below=5).numpy(),
                               np.sort(np.linalg.eigvalsh(sym.numpy()))[::-1][:5], atol=1e-9)


def test_graph_of_disconnected_clusters_has_two_unit_eigenvalues() -> None:
    """Clusters of 10 and 2 points far apart: most pairs lie within a cluster, so the median
    bandwidth is small, A is block diagonal, lambda_1 = lambda_2 = 1 and every cross-image edge
    joins the same class. Identical views (h = 0) give an all-ones A."""
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(0, 0.01, (10, 2)), 100 + rng.normal(0, 0.01, (2, 2))])
    dist = torch.from_numpy(np.linalg.norm(pts[:, None] - pts[None], axis=-1))
    s = graph_stats(dist, torch.tensor([0] * 10 + [1] * 2), torch.arange(12), k=2)
    assert s.eigenvalues[1].item() == pytest.approx(1.0, abs=1e-9)
    assert s.eigenvalues[2].item() < 0.99
    assert s.same_class_edge_share == pytest.approx(1.0, abs=1e-12)
    A, h = gaussian_affinity(torch.zeros((3, 3), dtype=torch.float64))
    assert h == 0.0 and torch.equal(A, torch.ones((3, 3), dtype=torch.float64))


# ------------------------------------------------------------------ pairs


def test_sample_pairs_balanced_and_valid() -> None:
    labels = np.repeat(np.arange(4), 6)
    intra = sample_pairs(labels, 22, "intra", np.random.default_rng(0))
    inter = sample_pairs(labels, 13, "inter", np.random.default_rng(0))
    assert len(intra) == 22 and len(inter) == 13
    assert (labels[intra.a] == labels[intra.b]).all() and (intra.a != intra.b).all()
    assert (labels[inter.a] != labels[inter.b]).all()
    assert sorted(intra.counts.values()) in ([5, 5, 6, 6],)
    assert set(inter.counts) == {"0-1", "0-2", "0-3", "1-2", "1-3", "2-3"}
    assert max(inter.counts.values()) - min(inter.counts.values()) <= 1
    again = sample_pairs(labels, 22, "intra", np.random.default_rng(0))
    assert np.array_equal(again.a, intra.a) and np.array_equal(again.b, intra.b)
    with pytest.raises(UmaeError, match="2 classes"):
        sample_pairs(np.zeros(5, int), 3, "inter", np.random.default_rng(0))
    idx = sample_balanced(labels, 9, np.random.default_rng(0))
    assert len(set(idx.tolist())) == 9 and sorted(np.bincount(labels[idx]).tolist()) == [2, 2, 2, 3]


@pytest.mark.parametrize("kind, n_pairs", [("intra", 60), ("intra", 20), ("inter", 144), ("inter", 90)])
def test_sample_pairs_never_repeats_a_pair(kind: str, n_pairs: int) -> None:
    """Up to every distinct pair (4 classes of 6: 15 intra pairs per class, 36 per class pair)."""
    labels = np.repeat(np.arange(4), 6)
    s = sample_pairs(labels, n_pairs, kind, np.random.default_rng(1))
    keys = {tuple(sorted(p)) for p in zip(s.a.tolist(), s.b.tolist())}
    assert len(s) == n_pairs and len(keys) == n_pairs
    same = labels[s.a] == labels[s.b]
    assert (same if kind == "intra" else ~same).all() and (s.a != s.b).all()


@pytest.mark.parametrize("kind, n_pairs, most", [("intra", 61, 60), ("inter", 217, 216)])
def test_sample_pairs_refuses_more_pairs_than_exist(kind: str, n_pairs: int, most: int) -> None:
    labels = np.repeat(np.arange(4), 6)
    with pytest.raises(UmaeError, match=f"--pairs {n_pairs}: .*use --pairs {most} or fewer"):
        sample_pairs(labels, n_pairs, kind, np.random.default_rng(0))


def test_parse_estimators() -> None:
    assert parse_estimators(None, "pixel") == tuple(PIXEL_ESTIMATORS)
    assert parse_estimators("aligned, all-pairs", "pixel") == ("aligned", "all-pairs")
    with pytest.raises(UmaeError, match="needs --checkpoint"):
        parse_estimators("shared-mask", "pixel")
    with pytest.raises(UmaeError, match="choose from"):
        parse_estimators("nearest", "feature")


# ------------------------------------------------------------------ the sweep loops


def _images(n: int, seed: int, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_pixel_distance_curves_against_direct_masks_and_batching() -> None:
    xa, xb = _images(7, 0), _images(7, 1)
    ratios = [0.0, 0.5, 0.75]
    names = list(PIXEL_ESTIMATORS)
    got = pixel_distance_curves(xa, xb, ratios, patch_size=2, views=3, estimators=names, seed=4,
                                stream=1, batch_size=3)
    same = pixel_distance_curves(xa, xb, ratios, patch_size=2, views=3, estimators=names, seed=4,
                                 stream=1, batch_size=100)
    for n in names:
        np.testing.assert_allclose(got[n], same[n], rtol=1e-6)  # independent of the batch size
    gen = _torch_gen(4, _MASKS, 1)
    ra = noise_ranks(torch.rand((7, 3, 16), generator=gen))
    rb = noise_ranks(torch.rand((7, 3, 16), generator=gen))
    stats = patch_pair_stats(patchify(xa, 2).double(), patchify(xb, 2).double())
    for r, rho in enumerate(ratios):
        ka, kb = keep_mask_from_ranks(ra, rho), keep_mask_from_ranks(rb, rho)
        for n in names:
            per = pixel_view_distances(n, stats, ka, kb)
            ref = per.min(-1).values if n == "closest-view" else per.mean(-1)
            np.testing.assert_allclose(got[n][r], ref.numpy(), rtol=1e-5)


class _PatchMeanEncoder:
    """A stand-in encoder: feature = mean colour of the visible 2x2 patches (+ a term in their
    positions), computed with the MAE rule from the noise, so the loop can be checked by hand."""

    num_patches = 16

    def prepare(self, images: np.ndarray) -> torch.Tensor:
        return patchify(images, 2).reshape(len(images), 16, 4, 3)  # (B, L, 4 pixels, 3)

    def encode(self, inputs: torch.Tensor, noise: torch.Tensor, mask_ratio: float) -> torch.Tensor:
        n = int(16 * (1 - mask_ratio))
        out = []
        for b in range(len(inputs)):
            keep = torch.argsort(noise[b])[:n]
            out.append(inputs[b, keep].mean(dim=(0, 1)) + 0.01 * keep.float().mean())
        return torch.stack(out)

    def __call__(self, images: np.ndarray, noise: torch.Tensor, mask_ratio: float) -> torch.Tensor:
        return self.encode(self.prepare(images), noise, mask_ratio)


def test_feature_distance_curves_against_loop() -> None:
    xa, xb = _images(5, 2), _images(5, 3)
    ratios = [0.0, 0.75]
    enc = _PatchMeanEncoder()
    got = feature_distance_curves(xa, xb, ratios, enc, views=2, estimators=["own-masks", "shared-mask", "closest-view"],
                                  metrics=["l2", "cosine"], seed=1, stream=0, batch_size=5)
    gen = _torch_gen(1, _MASKS, 0)
    na, nb = torch.rand((5, 2, 16), generator=gen), torch.rand((5, 2, 16), generator=gen)
    for r, rho in enumerate(ratios):
        for p in range(5):
            own, shared = [], []
            for k in range(2):
                fa = enc(xa[p:p + 1], na[p, k][None], rho)[0].double().numpy()
                fbs = enc(xb[p:p + 1], na[p, k][None], rho)[0].double().numpy()
                fbo = enc(xb[p:p + 1], nb[p, k][None], rho)[0].double().numpy()
                own.append(np.linalg.norm(fa - fbo))
                shared.append((np.linalg.norm(fa - fbs), 1 - fa @ fbs / np.linalg.norm(fa) / np.linalg.norm(fbs)))
            assert got["own-masks/l2"][r, p] == pytest.approx(np.mean(own), rel=1e-5)
            assert got["shared-mask/l2"][r, p] == pytest.approx(np.mean([s[0] for s in shared]), rel=1e-5)
            assert got["closest-view/l2"][r, p] == pytest.approx(min(s[0] for s in shared), rel=1e-5)
            assert got["shared-mask/cosine"][r, p] == pytest.approx(np.mean([s[1] for s in shared]), abs=1e-6)


def test_feature_label_errors_against_loop() -> None:
    from umae_eval.maskratio.sweep import _LABEL, feature_label_errors

    x_train, y_train, x_test, y_test = _toy_dataset(1)
    enc = _PatchMeanEncoder()
    ratios = [0.0, 0.75]
    got = feature_label_errors(enc, x_train, y_train, x_test, y_test, ratios, n_classes=3, views=2, seed=2)
    gen = _torch_gen(2, _LABEL)
    nt = torch.rand((len(x_train), 16), generator=gen)
    ne = torch.rand((len(x_test) * 2, 16), generator=gen)
    for r, rho in enumerate(ratios):
        ft = enc(x_train, nt, rho).double().numpy()
        means = np.stack([ft[y_train == c].mean(0) for c in range(3)])
        fe = enc(np.repeat(x_test, 2, axis=0), ne, rho).double().numpy()
        for n in range(len(x_test)):
            errs = [int(np.argmin(((fe[2 * n + k] - means) ** 2).sum(1))) != y_test[n] for k in range(2)]
            assert got[r, n] == pytest.approx(np.mean(errs))


def _toy_dataset(seed: int = 0):
    rng = np.random.default_rng(seed)
    y_train, y_test = np.repeat(np.arange(3), 8), np.repeat(np.arange(3), 6)
    tint = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]])
    x_train = np.clip(tint[y_train][:, None, None, :] + rng.normal(0, 40, (24, 8, 8, 3)), 0, 255).astype(np.uint8)
    x_test = np.clip(tint[y_test][:, None, None, :] + rng.normal(0, 40, (18, 8, 8, 3)), 0, 255).astype(np.uint8)
    return x_train, y_train, x_test, y_test


def test_run_sweep_pixel_end_to_end() -> None:
    x_train, y_train, x_test, y_test = _toy_dataset()
    cfg = SweepConfig(ratios=[0.0, 0.25, 0.5, 0.75], views=3, pairs=12, patch_size=2, n_boot=50,
                      label_images=9, graph_images=6, graph_views=2, graph_top=5)
    res = run_sweep(x_test, y_test, x_train, y_train, cfg, n_classes=3)
    assert res.space == "pixel" and res.num_patches == 16 and res.num_visible == [16, 12, 8, 4]
    assert set(res.curves) == set(PIXEL_ESTIMATORS)
    for c in res.curves.values():
        assert c.intra.mean.shape == (4,) and (c.intra.lo <= c.intra.mean + 1e-12).all()
        assert (c.ratio.mean < 1).all()  # coloured classes: intra closer than inter
    assert res.label_error.mean[0] == 0.0  # tinted classes are separable unmasked
    assert len(res.graph) == 4 and res.n_graph_nodes == 12
    assert sum(res.pair_counts["intra"].values()) == 12
    again = run_sweep(x_test, y_test, x_train, y_train, cfg, n_classes=3)
    np.testing.assert_array_equal(again.curves["aligned"].ratio.mean, res.curves["aligned"].ratio.mean)
    with pytest.raises(UmaeError, match="keeps int"):
        run_sweep(x_test, y_test, x_train, y_train, SweepConfig(ratios=[0.95], patch_size=2), n_classes=3)
