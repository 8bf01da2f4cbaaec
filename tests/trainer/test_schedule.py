"""Learning-rate schedule, lr scaling and AdamW parameter groups."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.model import build_model
from trainer.presets import get_preset
from trainer.schedule import CosineSchedule, build_optimizer, param_groups, scaled_lr, set_lr
from umae_eval.errors import UmaeError


def test_scaled_lr_is_the_cifar_recipe() -> None:
    assert scaled_lr(1.5e-4, 4096) == pytest.approx(2.4e-3)  # REFERENCE.md section 2


def test_warmup_then_half_cosine() -> None:
    s = CosineSchedule(base_lr=1.0, warmup_steps=10, total_steps=110, min_lr=0.1)
    assert s(0) == 0.0
    assert s(5) == pytest.approx(0.5)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way down the cosine
    assert s(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert s(110) == pytest.approx(0.1)
    assert s(500) == pytest.approx(0.1)  # clamped past the end
    lrs = [s(i) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_no_warmup_starts_at_peak() -> None:
    s = CosineSchedule(base_lr=2.0, warmup_steps=0, total_steps=4)
    assert [round(s(i), 6) for i in range(5)] == [2.0, round(1 + math.cos(math.pi / 4), 6), 1.0,
                                                  round(1 + math.cos(3 * math.pi / 4), 6), 0.0]


@pytest.mark.parametrize("kw", [dict(warmup_steps=11, total_steps=10), dict(warmup_steps=0, total_steps=0),
                                dict(warmup_steps=0, total_steps=5, min_lr=2.0)])
def test_bad_schedule_is_refused(kw: dict) -> None:
    with pytest.raises(UmaeError):
        CosineSchedule(base_lr=1.0, **kw)


def test_param_groups_exempt_biases_norms_tokens() -> None:
    model = build_model(get_preset("tiny-test"))
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names_d, names_n = set(decay["names"]), set(no_decay["names"])
    assert {"cls_token", "mask_token", "norm.weight", "norm.bias", "blocks.0.attn.qkv.bias",
            "decoder_norm.weight", "patch_embed.proj.bias"} <= names_n
    assert {"patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.weight",
            "decoder_embed.weight", "decoder_pred.weight"} <= names_d
    # fixed sin-cos positions are not trained at all
    assert "pos_embed" not in names_d | names_n and "decoder_pos_embed" not in names_d | names_n
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names_d | names_n == trainable and not names_d & names_n
    assert all(p.ndim >= 2 for p in decay["params"])


def test_no_decay_group_really_gets_no_decay() -> None:
    torch.manual_seed(0)
    model = build_model(get_preset("tiny-test"))
    opt = build_optimizer(model, lr=0.1, betas=(0.9, 0.95), weight_decay=0.5, device=torch.device("cpu"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # zero gradient: only weight decay can move a parameter
    opt.step()
    after = dict(model.named_parameters())
    assert torch.equal(after["cls_token"], before["cls_token"])
    assert torch.equal(after["norm.weight"], before["norm.weight"])
    assert torch.allclose(after["blocks.0.attn.qkv.weight"], before["blocks.0.attn.qkv.weight"] * (1 - 0.1 * 0.5))


def test_optimizer_implementation_choice() -> None:
    model = build_model(get_preset("tiny-test"))
    fast = build_optimizer(model, 1e-3, (0.9, 0.95), 0.05, torch.device("cpu"))
    plain = build_optimizer(model, 1e-3, (0.9, 0.95), 0.05, torch.device("cpu"), fast=False)
    assert fast.defaults["foreach"] is True and plain.defaults["foreach"] is False
    set_lr(fast, 0.123)
    assert all(g["lr"] == 0.123 for g in fast.param_groups)
