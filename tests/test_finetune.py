"""`umae finetune` building blocks: MAE's layer-wise lr decay, weight-decay exemptions, timm's
mixup / cutmix / label smoothing, presets and --set parsing (no training here)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

from trainer.finetune_data import make_mixup, mix, train_criterion
from trainer.finetune_model import build_finetune_model
from trainer.finetune_presets import FINETUNE_PRESETS, get_finetune_preset, parse_finetune_set
from trainer.lrd import param_groups_lrd
from umae_eval.checkpoints.arch import ViTArch
from umae_eval.compat import ensure_timm_importable
from umae_eval.errors import UmaeError

ensure_timm_importable()
from timm.data import Mixup  # noqa: E402
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402


def _mae_param_groups_lrd(model: nn.Module, weight_decay: float, no_weight_decay_list: set[str],
                          layer_decay: float) -> dict[str, dict]:
    """facebookresearch/mae util/lr_decay.py, re-typed from the paper's code (independent of umae)."""
    param_group_names: dict[str, dict] = {}
    num_layers = len(model.blocks) + 1
    layer_scales = list(layer_decay ** (num_layers - i) for i in range(num_layers + 1))

    def get_layer_id_for_vit(name: str, num_layers: int) -> int:
        if name in ["cls_token", "pos_embed"]:
            return 0
        elif name.startswith("patch_embed"):
            return 0
        elif name.startswith("blocks"):
            return int(name.split(".")[1]) + 1
        else:
            return num_layers

    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim == 1 or n in no_weight_decay_list:
            g_decay, this_decay = "no_decay", 0.0
        else:
            g_decay, this_decay = "decay", weight_decay
        layer_id = get_layer_id_for_vit(n, num_layers)
        group_name = "layer_%d_%s" % (layer_id, g_decay)
        if group_name not in param_group_names:
            param_group_names[group_name] = {"lr_scale": layer_scales[layer_id], "weight_decay": this_decay,
                                             "params": []}
        param_group_names[group_name]["params"].append(n)
    return param_group_names


def _vit(depth: int) -> VisionTransformer:
    return VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=depth, num_heads=2, num_classes=10,
                             global_pool="avg", norm_layer=functools.partial(nn.LayerNorm, eps=1e-6))


@pytest.mark.parametrize("depth,decay", [(12, 0.65), (6, 0.75)])
def test_param_groups_equal_mae_rule(depth: int, decay: float) -> None:
    model = _vit(depth)
    ours = param_groups_lrd(model, 0.05, decay, depth)
    ref = _mae_param_groups_lrd(model, 0.05, set(model.no_weight_decay()), decay)
    assert [g["names"] for g in ours] == [g["params"] for g in ref.values()]
    for g, r in zip(ours, ref.values()):
        assert g["lr_scale"] == pytest.approx(r["lr_scale"], rel=1e-12)
        assert g["weight_decay"] == r["weight_decay"]
    scale = {n: g["lr_scale"] for g in ours for n in g["names"]}
    # closed forms: head at the full lr, block i at decay^(depth - i), embeddings at decay^(depth + 1)
    assert scale["head.weight"] == 1.0 and scale["fc_norm.weight"] == 1.0
    assert scale["blocks.0.attn.qkv.weight"] == pytest.approx(decay ** depth)
    assert scale[f"blocks.{depth - 1}.mlp.fc2.weight"] == pytest.approx(decay)
    assert scale["cls_token"] == scale["pos_embed"] == scale["patch_embed.proj.weight"] == pytest.approx(
        decay ** (depth + 1))


def test_biases_norms_tokens_get_no_weight_decay() -> None:
    model = _vit(6)
    wd = {n: g["weight_decay"] for g in param_groups_lrd(model, 0.05, 0.75, 6) for n in g["names"]}
    for name, param in model.named_parameters():
        exempt = name.endswith(".bias") or "norm" in name or name in ("cls_token", "pos_embed")
        assert wd[name] == (0.0 if exempt else 0.05), name
    assert wd["blocks.3.attn.qkv.weight"] == 0.05 and wd["head.weight"] == 0.05


def test_frozen_parameters_are_left_out_of_the_groups() -> None:
    model = _vit(6)
    for p in model.blocks[0].parameters():
        p.requires_grad_(False)
    names = {n for g in param_groups_lrd(model, 0.05, 0.75, 6) for n in g["names"]}
    assert not any(n.startswith("blocks.0.") for n in names) and "blocks.1.attn.qkv.weight" in names


def test_mixup_cutmix_smoothing_come_from_timm_and_targets_sum_to_one() -> None:
    p = get_finetune_preset("cpu-demo")
    mixup = make_mixup(p, 10)
    assert isinstance(mixup, Mixup) and isinstance(train_criterion(p), SoftTargetCrossEntropy)
    assert (mixup.mixup_alpha, mixup.cutmix_alpha, mixup.label_smoothing) == (0.8, 1.0, 0.1)
    x = torch.randn(8, 3, 16, 16)
    y = torch.arange(8) % 10
    seen = set()
    for step in range(6):
        xm, t = mix(mixup, x.clone(), y, seed=0, epoch=0, step=step, rank=0)
        assert t.shape == (8, 10)
        torch.testing.assert_close(t.sum(1), torch.ones(8))
        assert float(t.min()) >= 0.1 / 10 - 1e-7  # smoothing puts eps/C on every class
        seen.add(round(float(t.max()), 6))
        xm2, t2 = mix(mixup, x.clone(), y, seed=0, epoch=0, step=step, rank=0)
        assert torch.equal(xm, xm2) and torch.equal(t, t2)  # a function of the position only
    assert len(seen) > 1  # lambda varies from step to step
    state = np.random.get_state()[1].copy()
    mix(mixup, x.clone(), y, seed=0, epoch=0, step=0, rank=0)
    assert np.array_equal(np.random.get_state()[1], state)  # the global stream is put back


def test_smoothing_without_mixup_uses_timm_label_smoothing_ce() -> None:
    p = get_finetune_preset("cpu-demo", mixup=0.0, cutmix=0.0)
    assert make_mixup(p, 10) is None and isinstance(train_criterion(p), LabelSmoothingCrossEntropy)
    assert isinstance(train_criterion(get_finetune_preset("cifar10-vit-tiny")), nn.CrossEntropyLoss)


def test_presets_carry_the_official_values() -> None:
    b, large = FINETUNE_PRESETS["vit-base-in1k"], FINETUNE_PRESETS["vit-large-in1k"]
    assert (b.batch_size, b.blr, b.layer_decay, b.weight_decay, b.drop_path, b.epochs, b.warmup_epochs) == (
        1024, 5e-4, 0.65, 0.05, 0.1, 100, 5)
    assert (b.mixup, b.cutmix, b.smoothing, b.reprob, b.rand_augment, b.pool) == (
        0.8, 1.0, 0.1, 0.25, "rand-m9-mstd0.5-inc1", "avg")
    assert (large.blr, large.layer_decay, large.drop_path, large.epochs) == (1e-3, 0.75, 0.2, 50)
    ic = FINETUNE_PRESETS["cifar10-vit-tiny"]
    assert (ic.batch_size, ic.blr, ic.weight_decay, ic.epochs, ic.warmup_epochs, ic.pool) == (128, 1e-3, 0.05, 100, 5, "cls")


def test_set_fields_parse_by_type_and_refuse_unknown_fields() -> None:
    got = parse_finetune_set("cpu-demo", ["drop_path=0.2", "epochs=3", "crop_scale=0.35,1", "rand_augment=none"])
    assert got == {"drop_path": 0.2, "epochs": 3, "crop_scale": (0.35, 1.0), "rand_augment": "none"}
    with pytest.raises(UmaeError, match="not a fine-tuning preset field"):
        parse_finetune_set("cpu-demo", ["drop_pth=0.2"])
    with pytest.raises(UmaeError, match="expected int"):
        parse_finetune_set("cpu-demo", ["epochs=two"])
    with pytest.raises(UmaeError, match="not a fine-tuning preset; choose one of"):
        get_finetune_preset("vit-base-in1")


def test_avg_pool_model_is_maes_global_pool_and_head_is_small() -> None:
    arch = ViTArch(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)
    avg = build_finetune_model(arch, get_finetune_preset("cpu-demo"), 10)
    assert isinstance(avg.norm, nn.Identity) and isinstance(avg.fc_norm, nn.LayerNorm)
    assert float(avg.head.weight.detach().abs().max()) < 1e-4  # trunc-normal std 2e-5
    cls = build_finetune_model(arch, get_finetune_preset("cpu-demo", pool="cls"), 10)
    assert isinstance(cls.norm, nn.LayerNorm) and isinstance(cls.fc_norm, nn.Identity)
    x = torch.randn(3, 3, 16, 16)
    avg.eval()
    tokens = avg.forward_features(x)
    torch.testing.assert_close(avg(x), avg.head(avg.fc_norm(tokens[:, 1:].mean(1))))


def test_randaugment_posterize_to_zero_bits_gives_old_pillows_black_image() -> None:
    """m9 + mstd noise reaches magnitude 10 = posterize to 0 bits, which Pillow >= 11 refuses."""
    from PIL import Image

    from trainer.finetune_data import _posterize, seeded_global_rngs, train_transform

    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    assert np.asarray(_posterize(im, 0)).max() == 0
    assert np.array_equal(np.asarray(_posterize(im, 4)), np.asarray(im) & 0xF0)
    t = train_transform(get_finetune_preset("cpu-demo"), 32, (0.5,) * 3, (0.5,) * 3)
    for seed in range(300):  # seed 234 raised ValueError before the fix
        with seeded_global_rngs(seed):
            assert t(im).shape == (3, 32, 32)
