"""Mask-ratio estimators, masks and ratio parsing, each checked against a direct Python loop."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from umae_eval.errors import UmaeError
from umae_eval.maskratio.estimators import (
    PIXEL_ESTIMATORS,
    all_pairs_distance,
    aligned_distance,
    feature_distance,
    masked_image_distance,
    patch_pair_stats,
    shared_masked_image_distance,
    pixel_view_distances,
    reduce_draws,
)
from umae_eval.maskratio.masks import (
    keep_mask_from_noise,
    keep_mask_from_ranks,
    noise_ranks,
    num_visible,
    parse_ratios,
    patchify,
    validate_ratios,
)


# ------------------------------------------------------------------ ratios and masks


def test_parse_ratios_range_is_exact_and_inclusive() -> None:
    r = parse_ratios("0:0.95:0.05")
    assert len(r) == 20
    assert r == [round(0.05 * i, 6) for i in range(20)]
    assert r[14] == 0.7  # no 0.7000000000000001
    assert parse_ratios(" 0.75 , 0.5,0.5") == [0.5, 0.75]
    assert parse_ratios("0.1:0.3:0.1") == [0.1, 0.2, 0.3]


@pytest.mark.parametrize("text", ["abc", "0:1", "0:0.5:0", "0.5:0.1:0.1", "", "nan", "0:0.9:x"])
def test_parse_ratios_rejects_bad_text(text: str) -> None:
    with pytest.raises(UmaeError) as err:
        parse_ratios(text)
    assert "--ratios" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("bad", [1.0, -0.05, 1.5])
def test_validate_ratios_range(bad: float) -> None:
    with pytest.raises(UmaeError, match="outside"):
        validate_ratios([0.0, bad], None)


def test_validate_ratios_refuses_no_visible_patch() -> None:
    validate_ratios([0.95], 64)  # keeps 3 of 64
    assert num_visible(64, 0.95) == 3
    with pytest.raises(UmaeError, match="keeps int"):
        validate_ratios([0.5, 0.99], 64)
    with pytest.raises(UmaeError, match="0 of 4"):
        validate_ratios([0.8], 4)


def test_num_visible_is_mae_rounding() -> None:
    for L in (4, 16, 64, 196, 256):
        for r in parse_ratios("0:0.95:0.05"):
            assert num_visible(L, r) == int(L * (1 - r))


def test_patchify_against_loop() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 8, 12, 3), dtype=np.uint8)
    p = 4
    got = patchify(x, p).numpy()
    assert got.shape == (2, 6, p * p * 3)
    for n in range(2):
        idx = 0
        for gy in range(2):
            for gx in range(3):
                block = x[n, gy * p:(gy + 1) * p, gx * p:(gx + 1) * p, :].astype(np.float64) / 255
                np.testing.assert_allclose(got[n, idx], block.reshape(-1), rtol=0, atol=1e-7)
                idx += 1
    with pytest.raises(UmaeError, match="does not divide"):
        patchify(x, 5)


def test_keep_mask_follows_mae_rule_and_encoder() -> None:
    from umae_eval.features import keep_indices

    gen = torch.Generator().manual_seed(0)
    noise = torch.rand((5, 16), generator=gen)
    for rho in (0.0, 0.3, 0.75, 0.9):
        keep = keep_mask_from_noise(noise, rho)
        n = int(16 * (1 - rho))
        for b in range(5):
            expected = set(np.argsort(noise[b].numpy())[:n].tolist())
            assert set(torch.nonzero(keep[b]).flatten().tolist()) == expected
        # the encoder keeps the same patches from the same noise
        enc = keep_indices(noise, rho)
        for b in range(5):
            assert set(enc[b].tolist()) == set(torch.nonzero(keep[b]).flatten().tolist())


def test_ranks_give_the_same_masks_nested() -> None:
    noise = torch.rand((3, 4, 64), generator=torch.Generator().manual_seed(1))
    ranks = noise_ranks(noise)
    prev = None
    for rho in parse_ratios("0:0.95:0.05"):
        keep = keep_mask_from_ranks(ranks, rho)
        assert torch.equal(keep, keep_mask_from_noise(noise, rho))
        assert (keep.sum(-1) == num_visible(64, rho)).all()
        if prev is not None:
            assert not (keep & ~prev).any()  # nested: visible now => visible at smaller rho
        prev = keep


def test_masks_are_uniform_over_positions() -> None:
    noise = torch.rand((20000, 8), generator=torch.Generator().manual_seed(2))
    freq = keep_mask_from_noise(noise, 0.75).double().mean(0)  # 2 of 8 kept
    assert torch.allclose(freq, torch.full((8,), 0.25, dtype=torch.float64), atol=0.015)


# ------------------------------------------------------------------ estimators vs loops


def _tiny(seed: int = 0, P: int = 3, K: int = 4, L: int = 6, d: int = 5, rho: float = 0.5):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand((P, L, d), generator=g, dtype=torch.float64)
    b = torch.rand((P, L, d), generator=g, dtype=torch.float64)
    ka = keep_mask_from_noise(torch.rand((P, K, L), generator=g), rho)
    kb = keep_mask_from_noise(torch.rand((P, K, L), generator=g), rho)
    return a, b, ka, kb


def _vis(mask: torch.Tensor) -> list[int]:
    return torch.nonzero(mask).flatten().tolist()


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.8])
def test_pixel_estimators_against_loops(rho: float) -> None:
    a, b, ka, kb = _tiny(rho=rho)
    P, K, L = ka.shape
    stats = patch_pair_stats(a, b)
    got_all = all_pairs_distance(stats, ka, kb)
    got_al = aligned_distance(stats, ka)
    got_mi = masked_image_distance(stats, ka, kb)
    got_smi = shared_masked_image_distance(stats, ka)
    an, bn = a.numpy(), b.numpy()
    for p in range(P):
        for k in range(K):
            va, vb = _vis(ka[p, k]), _vis(kb[p, k])
            ref_all = np.mean([np.linalg.norm(an[p, i] - bn[p, j]) for i in va for j in vb])
            ref_al = np.mean([np.linalg.norm(an[p, i] - bn[p, i]) for i in va])
            ma = an[p] * ka[p, k].numpy()[:, None]
            mb = bn[p] * kb[p, k].numpy()[:, None]
            ref_mi = np.linalg.norm((ma - mb).ravel())
            ref_smi = np.linalg.norm((ma - bn[p] * ka[p, k].numpy()[:, None]).ravel())
            assert got_all[p, k].item() == pytest.approx(ref_all, rel=1e-10)
            assert got_al[p, k].item() == pytest.approx(ref_al, rel=1e-10)
            assert got_mi[p, k].item() == pytest.approx(ref_mi, rel=1e-10)
            assert got_smi[p, k].item() == pytest.approx(ref_smi, rel=1e-10)
    # the named dispatcher and the K reductions
    for name, info in PIXEL_ESTIMATORS.items():
        per_draw = pixel_view_distances(name, stats, ka, kb)
        value = reduce_draws(per_draw, info.reduce)
        ref = per_draw.min(-1).values if name == "closest-view" else per_draw.mean(-1)
        assert torch.allclose(value, ref)
    closest = reduce_draws(pixel_view_distances("closest-view", stats, ka, kb), "min")
    for p in range(P):
        ref = min(np.mean([np.linalg.norm(an[p, i] - bn[p, i]) for i in _vis(ka[p, k])]) for k in range(K))
        assert closest[p].item() == pytest.approx(ref, rel=1e-10)


def test_masked_image_matches_pixel_images() -> None:
    """The masked-image distance equals the l2 of real zero-filled masked images (pixels / 255)."""
    rng = np.random.default_rng(3)
    xa = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    xb = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    p = 4
    ka = keep_mask_from_noise(torch.rand((2, 3, 4), generator=torch.Generator().manual_seed(0)), 0.5)
    kb = keep_mask_from_noise(torch.rand((2, 3, 4), generator=torch.Generator().manual_seed(1)), 0.5)
    got = masked_image_distance(patch_pair_stats(patchify(xa, p), patchify(xb, p)), ka, kb)
    for n in range(2):
        for k in range(3):
            ia, ib = xa[n].astype(np.float64) / 255, xb[n].astype(np.float64) / 255
            for idx in range(4):
                gy, gx = divmod(idx, 2)
                if not ka[n, k, idx]:
                    ia[gy * p:(gy + 1) * p, gx * p:(gx + 1) * p] = 0
                if not kb[n, k, idx]:
                    ib[gy * p:(gy + 1) * p, gx * p:(gx + 1) * p] = 0
            assert got[n, k].item() == pytest.approx(np.linalg.norm(ia - ib), rel=1e-5)


def test_all_pairs_and_aligned_are_unbiased_at_every_ratio() -> None:
    """Averaged over every possible mask, all-pairs and aligned do not depend on rho: why the
    paper's curves cannot come from the literal reading's mean."""
    a, b, _, _ = _tiny(P=1, L=5)
    stats = patch_pair_stats(a, b)
    full_all = stats.cross.mean().item()
    full_al = stats.aligned.mean().item()
    L = 5
    for n in (1, 2, 4):
        subsets = [torch.tensor([i in s for i in range(L)]) for s in itertools.combinations(range(L), n)]
        ka = torch.stack([s for s in subsets for _ in subsets])[None]
        kb = torch.stack([t for _ in subsets for t in subsets])[None]
        assert all_pairs_distance(stats, ka, kb).mean().item() == pytest.approx(full_all, rel=1e-10)
        assert aligned_distance(stats, torch.stack(subsets)[None]).mean().item() == pytest.approx(full_al, rel=1e-10)


def test_estimators_at_rho_zero_are_full_image_distances() -> None:
    a, b, ka, kb = _tiny(rho=0.0)
    stats = patch_pair_stats(a, b)
    assert ka.all() and kb.all()
    full = (a - b).reshape(a.shape[0], -1).norm(dim=1)
    assert torch.allclose(masked_image_distance(stats, ka, kb), full[:, None].expand(-1, ka.shape[1]))
    assert torch.allclose(aligned_distance(stats, ka).min(-1).values, stats.aligned.mean(-1))


def test_feature_distance_against_numpy() -> None:
    g = torch.Generator().manual_seed(0)
    fa, fb = torch.randn((4, 3, 7), generator=g), torch.randn((4, 3, 7), generator=g)
    l2 = feature_distance(fa, fb, "l2").numpy()
    cos = feature_distance(fa, fb, "cosine").numpy()
    A, B = fa.numpy(), fb.numpy()
    for i in range(4):
        for j in range(3):
            assert l2[i, j] == pytest.approx(np.linalg.norm(A[i, j] - B[i, j]), rel=1e-5)
            c = A[i, j] @ B[i, j] / (np.linalg.norm(A[i, j]) * np.linalg.norm(B[i, j]))
            assert cos[i, j] == pytest.approx(1 - c, abs=1e-6)
    with pytest.raises(ValueError):
        feature_distance(fa, fb, "l1")
