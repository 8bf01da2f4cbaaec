"""patchify order, random masking rule, 2-D sin-cos positions: against direct loops / formulas."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.masking import (
    mask_from_noise,
    patchify,
    random_masking,
    sincos_pos_embed_2d,
    unpatchify,
)
from umae_eval.errors import UmaeError


def test_patchify_official_order_by_hand() -> None:
    # 1 image, 3 channels, 4x4 pixels, value = 100*c + 10*y + x.
    c, y, x = torch.meshgrid(torch.arange(3), torch.arange(4), torch.arange(4), indexing="ij")
    img = (100 * c + 10 * y + x).float().unsqueeze(0)
    out = patchify(img, 2)
    assert out.shape == (1, 4, 12)
    # Patch 1 = grid row 0, col 1 (pixels y 0-1, x 2-3); vector = (i, j, c) with c fastest.
    expected = [2, 102, 202, 3, 103, 203, 12, 112, 212, 13, 113, 213]
    assert out[0, 1].tolist() == expected
    # Patch 2 = grid row 1, col 0: first pixel (y=2, x=0).
    assert out[0, 2, :3].tolist() == [20, 120, 220]


def test_patchify_matches_direct_loop() -> None:
    g = torch.Generator().manual_seed(0)
    imgs = torch.randn(2, 3, 12, 12, generator=g)
    p = 3
    out = patchify(imgs, p)
    h = 12 // p
    for b in range(2):
        for gy in range(h):
            for gx in range(h):
                for i in range(p):
                    for j in range(p):
                        for ch in range(3):
                            assert out[b, gy * h + gx, (i * p + j) * 3 + ch] == imgs[b, ch, gy * p + i, gx * p + j]


def test_unpatchify_round_trip() -> None:
    imgs = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(unpatchify(patchify(imgs, 4), 4), imgs, rtol=0, atol=0)
    x = torch.randn(2, 16, 48)
    torch.testing.assert_close(patchify(unpatchify(x, 4), 4), x, rtol=0, atol=0)


def test_patchify_errors() -> None:
    with pytest.raises(UmaeError, match="multiple of patch size"):
        patchify(torch.zeros(1, 3, 10, 10), 4)
    with pytest.raises(UmaeError):
        unpatchify(torch.zeros(1, 15, 48), 4)


@pytest.mark.parametrize(("n", "ratio", "keep"), [(16, 0.75, 4), (10, 0.33, 6), (64, 0.6, 25), (7, 0.0, 7)])
def test_masking_counts(n: int, ratio: float, keep: int) -> None:
    x = torch.randn(3, n, 5)
    kept, mask, ids_restore = random_masking(x, ratio)
    assert kept.shape == (3, keep, 5)
    assert mask.shape == (3, n) and ids_restore.shape == (3, n)
    assert (mask.sum(1) == n - keep).all()
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_official_rule_smallest_noise_kept_and_restore() -> None:
    g = torch.Generator().manual_seed(3)
    b, n, d = 4, 16, 6
    x = torch.randn(b, n, d, generator=g)
    noise = torch.rand(b, n, generator=g)
    kept, mask, ids_restore = random_masking(x, 0.75, noise=noise)
    for i in range(b):
        order = sorted(range(n), key=lambda k: float(noise[i, k]))
        keep_idx = order[:4]
        # kept tokens: the 4 smallest-noise patches, in increasing noise order
        for slot, k in enumerate(keep_idx):
            assert torch.equal(kept[i, slot], x[i, k])
        for k in range(n):
            assert mask[i, k] == (0.0 if k in keep_idx else 1.0)
            # ids_restore[k] = rank of patch k in the noise order
            assert ids_restore[i, k] == order.index(k)
    # Unshuffling kept tokens + placeholders puts each kept token back at its patch index.
    filled = torch.cat([kept, torch.zeros(b, n - 4, d)], dim=1)
    restored = torch.gather(filled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))
    visible = (mask == 0).unsqueeze(-1)
    torch.testing.assert_close(restored * visible, x * visible, rtol=0, atol=0)
    assert torch.equal(ids_restore, torch.argsort(torch.argsort(noise, dim=1), dim=1))


def test_same_noise_same_mask_and_generator_reproducible() -> None:
    x = torch.randn(2, 16, 4)
    noise = torch.rand(2, 16)
    a = random_masking(x, 0.5, noise=noise)
    b = random_masking(x, 0.5, noise=noise.clone())
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    m1 = random_masking(x, 0.5, generator=torch.Generator().manual_seed(7))[1]
    m2 = random_masking(x, 0.5, generator=torch.Generator().manual_seed(7))[1]
    m3 = random_masking(x, 0.5, generator=torch.Generator().manual_seed(8))[1]
    assert torch.equal(m1, m2) and not torch.equal(m1, m3)


def test_mask_from_noise_matches_random_masking_and_errors() -> None:
    noise = torch.rand(2, 9)
    ids_keep, mask, ids_restore = mask_from_noise(noise, 0.5)
    _, mask2, ids_restore2 = random_masking(torch.zeros(2, 9, 1), 0.5, noise=noise)
    assert torch.equal(mask, mask2) and torch.equal(ids_restore, ids_restore2)
    assert ids_keep.shape == (2, 4)
    with pytest.raises(UmaeError, match="mask_ratio"):
        mask_from_noise(noise, 1.0)
    with pytest.raises(UmaeError, match="noise shape"):
        random_masking(torch.zeros(2, 9, 1), 0.5, noise=torch.rand(2, 8))


def _direct_1d(dim: int, pos: int, k: int) -> float:
    half = dim // 2
    i = k % half
    w = 1.0 / 10000 ** (2 * i / dim)
    return math.sin(pos * w) if k < half else math.cos(pos * w)


def test_sincos_shape_cls_slot_and_known_values() -> None:
    dim, grid = 16, 4
    emb = sincos_pos_embed_2d(dim, grid, cls_token=True)
    assert emb.shape == (1, grid * grid + 1, dim) and emb.dtype == torch.float32
    assert torch.all(emb[0, 0] == 0)
    assert sincos_pos_embed_2d(dim, grid, cls_token=False).shape == (1, grid * grid, dim)
    torch.testing.assert_close(sincos_pos_embed_2d(dim, grid, cls_token=False), emb[:, 1:])
    for row in range(grid):
        for col in range(grid):
            vec = emb[0, 1 + row * grid + col]
            for k in range(dim):
                # first half: column (x) embedding, second half: row (y) embedding (MAE layout)
                want = _direct_1d(dim // 2, col, k) if k < dim // 2 else _direct_1d(dim // 2, row, k - dim // 2)
                assert abs(float(vec[k]) - want) < 1e-6, (row, col, k)
    # Patch (row 0, col 0): sin(0) = 0 and cos(0) = 1 in each half.
    assert emb[0, 1].tolist() == [0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4


def test_sincos_properties() -> None:
    emb = sincos_pos_embed_2d(32, 8, cls_token=False)[0]
    assert emb.abs().max() <= 1.0
    # every position distinct; each (sin, cos) pair has unit norm -> row norm^2 = dim/2
    assert torch.cdist(emb, emb).add(torch.eye(64) * 10).min() > 1e-3
    torch.testing.assert_close((emb**2).sum(1), torch.full((64,), 16.0))
    with pytest.raises(UmaeError, match="multiple of 4"):
        sincos_pos_embed_2d(30, 4, cls_token=True)
