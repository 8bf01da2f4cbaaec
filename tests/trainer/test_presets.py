"""Presets: the recipes' values, overrides, validation, JSON round trip."""

from __future__ import annotations

import dataclasses
import json

import pytest

from trainer.presets import PRESETS, Preset, get_preset, method_defaults
from umae_eval.errors import UmaeError


def test_cifar_table1_recipe() -> None:
    p = get_preset("cifar10-vit-tiny-p2")
    assert (p.method, p.img_size, p.patch_size, p.num_patches) == ("mae", 32, 2, 256)
    assert (p.embed_dim, p.depth, p.num_heads, p.mlp_ratio) == (192, 12, 3, 4.0)
    assert (p.decoder_embed_dim, p.decoder_depth, p.decoder_num_heads) == (192, 4, 3)
    assert p.mask_ratio == 0.75 and p.norm_pix_loss is False
    assert (p.batch_size, p.micro_batch, p.accum_steps) == (4096, 512, 8)
    assert p.blr == 1.5e-4 and p.lr == pytest.approx(2.4e-3)
    assert p.betas == (0.9, 0.95) and p.weight_decay == 0.05
    assert (p.epochs, p.warmup_epochs, p.augment) == (2000, 200, "none")
    assert p.mean == (0.5, 0.5, 0.5) and p.std == (0.5, 0.5, 0.5)
    assert p.lam == 0.0 and p.unif_form == "code"


def test_p4_differs_from_p2_only_in_patch_size() -> None:
    p2, p4 = PRESETS["cifar10-vit-tiny-p2"], PRESETS["cifar10-vit-tiny-p4"]
    diff = {k for k, v in p2.to_dict().items() if p4.to_dict()[k] != v}
    assert diff == {"name", "patch_size"}
    assert p4.patch_size == 4 and p4.num_patches == 64


def test_imagenet_presets() -> None:
    b, l = get_preset("vit-base-p16"), get_preset("vit-large-p16")
    assert (b.img_size, b.patch_size, b.embed_dim, b.depth, b.num_heads) == (224, 16, 768, 12, 12)
    assert (l.embed_dim, l.depth, l.num_heads) == (1024, 24, 16)
    for p in (b, l):
        assert (p.decoder_embed_dim, p.decoder_depth, p.decoder_num_heads) == (512, 8, 16)
        assert p.norm_pix_loss is True and p.mask_ratio == 0.75
        assert (p.epochs, p.warmup_epochs, p.augment, p.batch_size) == (800, 40, "rrc-flip", 4096)
        assert p.mean == (0.485, 0.456, 0.406) and p.std == (0.229, 0.224, 0.225)


def test_tiny_test_preset() -> None:
    p = get_preset("tiny-test")
    assert (p.img_size, p.patch_size, p.embed_dim, p.depth, p.num_heads) == (32, 8, 32, 2, 2)
    assert (p.decoder_embed_dim, p.decoder_depth, p.decoder_num_heads) == (32, 1, 2)
    assert (p.batch_size, p.micro_batch, p.epochs, p.warmup_epochs) == (16, 8, 2, 1)


def test_overrides_and_none_ignored() -> None:
    p = get_preset("tiny-test", lam=0.01, unif_form="paper", mask_ratio=None, epochs=None)
    assert p.lam == 0.01 and p.unif_form == "paper"
    assert p.mask_ratio == 0.75 and p.epochs == 2
    assert get_preset("tiny-test", betas=[0.8, 0.9]).betas == (0.8, 0.9)
    assert PRESETS["tiny-test"].lam == 0.0  # the registry is not mutated


def test_method_defaults_simmim() -> None:
    assert method_defaults("mae") == {"method": "mae"}
    p = get_preset("tiny-test", **method_defaults("simmim"))
    assert p.method == "simmim" and p.mask_ratio == 0.6
    p = get_preset("tiny-test", **{**method_defaults("simmim"), "mask_ratio": 0.5})
    assert p.mask_ratio == 0.5
    with pytest.raises(UmaeError, match="valid methods"):
        method_defaults("byol")


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UmaeError) as e:
        get_preset("vit-huge")
    for name in PRESETS:
        assert name in str(e.value)


def test_unknown_field() -> None:
    with pytest.raises(UmaeError, match="unknown preset field.*'lr_base'"):
        get_preset("tiny-test", lr_base=1.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_heads": 3}, "not divisible by num_heads"),
        ({"patch_size": 5}, "not a multiple of patch_size"),
        ({"mask_ratio": 1.0}, "mask_ratio"),
        ({"mask_ratio": -0.1}, "mask_ratio"),
        ({"micro_batch": 5}, "not a multiple of micro_batch"),
        ({"method": "byol"}, "method"),
        ({"unif_form": "exact"}, "unif_form"),
        ({"augment": "randaug"}, "augment"),
        ({"lam": -1.0}, "lam"),
        ({"decoder_num_heads": 5}, "decoder_num_heads"),
        ({"embed_dim": 30, "num_heads": 2}, "embed_dim 30 is not a multiple of 4"),
        ({"decoder_embed_dim": 34, "decoder_num_heads": 2}, "decoder_embed_dim 34 is not a multiple of 4"),
    ],
)
def test_validation(overrides: dict, message: str) -> None:
    with pytest.raises(UmaeError, match=message):
        get_preset("tiny-test", **overrides)


def test_simmim_skips_decoder_check_and_micro_batch_none() -> None:
    p = get_preset("tiny-test", method="simmim", decoder_num_heads=5, micro_batch=None)
    assert p.micro_batch == 8 and p.accum_steps == 2  # None overrides are ignored
    assert get_preset("vit-base-p16").micro_batch is None
    assert get_preset("vit-base-p16").accum_steps == 1


def test_every_preset_valid_and_json_round_trip() -> None:
    for name, p in PRESETS.items():
        assert p.name == name
        d = p.to_dict()
        back = Preset.from_dict(json.loads(json.dumps(d)))
        assert back == p
        assert isinstance(d["betas"], list) and isinstance(d["mean"], list)
    with pytest.raises(UmaeError, match="unknown preset field"):
        Preset.from_dict({**PRESETS["tiny-test"].to_dict(), "extra": 1})


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["tiny-test"].lam = 1.0  # type: ignore[misc]
