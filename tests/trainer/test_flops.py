"""The analytic FLOP count against a hand count and against torch's own FLOP counter."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from trainer.flops import block_forward_flops, flops_per_image, mfu, peak_tflops
from trainer.model import build_model
from trainer.presets import get_preset


def test_tiny_preset_matches_hand_count() -> None:
    # tiny-test: img 32, patch 8 -> L = 16 patches of 8*8*3 = 192 values; D = Dd = 32, MLP 128;
    # encoder 2 blocks on int(16 * 0.25) + 1 = 5 tokens; decoder 1 block on 17 tokens.
    p = get_preset("tiny-test")
    per_token_linear = 2 * (3 * 32 * 32 + 32 * 32 + 2 * 32 * 128)  # qkv, proj, fc1, fc2 = 24576
    patch_embed = 2 * 16 * 192 * 32                                # 196608
    enc_block = 5 * per_token_linear + 4 * 5 * 5 * 32               # QK^T and AV
    dec_block = 17 * per_token_linear + 4 * 17 * 17 * 32
    encoder = patch_embed + 2 * enc_block
    decoder = 2 * 5 * 32 * 32 + dec_block + 2 * 17 * 32 * 192      # decoder_embed, block, decoder_pred
    count = flops_per_image(p)
    assert count.encoder_forward == encoder == 448_768
    assert count.decoder_forward == decoder == 673_920
    assert count.forward == encoder + decoder
    # backward = 2x forward, except the patch embedding (no gradient w.r.t. the image)
    assert count.train == 3 * (encoder + decoder) - patch_embed == 3_171_456
    assert (count.encoder_tokens, count.decoder_tokens) == (5, 17)


def test_block_formula() -> None:
    assert block_forward_flops(tokens=1, dim=4, mlp_ratio=1.0) == 2 * (16 * 4 + 2 * 16) + 4 * 4


@pytest.mark.parametrize("overrides", [{}, {"method": "simmim", "mask_ratio": 0.6},
                                       {"mask_ratio": 0.5, "mlp_ratio": 3.0}])
def test_matches_torch_flop_counter(overrides: dict) -> None:
    """torch counts every matmul/conv of a real forward+backward; attention as explicit bmm."""
    p = get_preset("tiny-test", **overrides)
    torch.manual_seed(0)
    model = build_model(p)
    for m in model.modules():  # timm's explicit attention path, so the counter sees the bmm's
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    x = torch.randn(4, 3, p.img_size, p.img_size)
    with FlopCounterMode(display=False) as counter:
        out = model(x, p.mask_ratio)
        out.pred.float().pow(2).mean().backward()
    assert counter.get_total_flops() == 4 * flops_per_image(p).train


def test_cifar_p2_is_about_5_5_gflop() -> None:
    train = flops_per_image(get_preset("cifar10-vit-tiny-p2")).train
    assert train == 5_544_617_472
    assert abs(train / 5.5e9 - 1) < 0.01
    # patch 4: 4x fewer tokens -> roughly 4x fewer FLOPs
    p4 = flops_per_image(get_preset("cifar10-vit-tiny-p4")).train
    assert 3.5 < train / p4 < 5


def test_peak_table_and_mfu() -> None:
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 790.0
    assert peak_tflops("NVIDIA H200") == 790.0
    assert peak_tflops("Some Unknown GPU") is None
    assert mfu(1000.0, 10**9, 1.0) == pytest.approx(1.0)
