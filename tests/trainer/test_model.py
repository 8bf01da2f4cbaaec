"""MAE and SimMIM models: shapes, timm names, strict load into timm, [CLS] equality, decoder wiring."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from umae_eval.compat import ensure_timm_importable

ensure_timm_importable()  # before timm
import timm
from timm.models.vision_transformer import VisionTransformer

from trainer.losses import loss_terms, reconstruction_loss
from trainer.masking import patchify, sincos_pos_embed_2d, unpatchify
from trainer.model import MaskedAutoencoderViT, MAEOutput, build_model, is_encoder_key
from trainer.presets import get_preset, method_defaults
from trainer.simmim import SimMIMViT
from umae_eval.errors import UmaeError


@pytest.fixture(scope="module")
def mae() -> MaskedAutoencoderViT:
    torch.manual_seed(0)
    return build_model(get_preset("tiny-test")).eval()  # type: ignore[return-value]


@pytest.fixture(scope="module")
def simmim() -> SimMIMViT:
    torch.manual_seed(0)
    return build_model(get_preset("tiny-test", **method_defaults("simmim"))).eval()  # type: ignore[return-value]


def _timm_tiny(patch_size: int = 8, depth: int = 2, dim: int = 32, heads: int = 2) -> VisionTransformer:
    return VisionTransformer(
        img_size=32, patch_size=patch_size, embed_dim=dim, depth=depth, num_heads=heads, num_classes=0
    ).eval()


def test_mae_shapes(mae: MaskedAutoencoderViT) -> None:
    imgs = torch.randn(3, 3, 32, 32)
    out = mae(imgs, 0.75)
    assert isinstance(out, MAEOutput)
    assert out.pred.shape == (3, 16, 8 * 8 * 3)
    assert out.mask.shape == (3, 16) and (out.mask.sum(1) == 12).all()
    assert out.cls.shape == (3, 32)
    latent, mask, ids_restore = mae.forward_encoder(imgs, 0.75)
    assert latent.shape == (3, 1 + 4, 32) and ids_restore.shape == (3, 16)
    assert (mae.patch_size, mae.num_patches, mae.loss_kind) == (8, 16, "mse")


def test_encoder_names_equal_timm(mae: MaskedAutoencoderViT, simmim: SimMIMViT) -> None:
    ref = {k: tuple(v.shape) for k, v in _timm_tiny().state_dict().items()}
    for model in (mae, simmim):
        enc = {k: tuple(v.shape) for k, v in model.encoder_state_dict().items()}
        assert enc == ref
    dec = set(mae.state_dict()) - set(mae.encoder_state_dict())
    assert {k.split(".")[0] for k in dec} == {
        "mask_token", "decoder_embed", "decoder_pos_embed", "decoder_blocks", "decoder_norm", "decoder_pred",
    }
    assert set(simmim.state_dict()) - set(simmim.encoder_state_dict()) == {"mask_token", "decoder_pred.0.weight", "decoder_pred.0.bias"}
    assert not is_encoder_key("decoder_norm.weight") and is_encoder_key("norm.weight")


@pytest.mark.parametrize("patch_size", [2, 4])
def test_strict_load_into_timm_vit_tiny_and_same_cls(patch_size: int) -> None:
    torch.manual_seed(patch_size)
    model = MaskedAutoencoderViT(32, patch_size, 192, 12, 3, 192, 1, 3).eval()
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=patch_size, num_classes=0).eval()
    vit.load_state_dict(model.encoder_state_dict(), strict=True)
    imgs = torch.randn(2, 3, 32, 32)
    n = (32 // patch_size) ** 2
    noise = torch.rand(2, n)  # mask ratio 0 keeps every patch, shuffled: attention does not care
    with torch.no_grad():
        ours = model(imgs, 0.0, noise).cls
        theirs = vit.forward_features(imgs)[:, 0]
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_pos_embed_fixed_in_state_dict(mae: MaskedAutoencoderViT) -> None:
    assert not mae.pos_embed.requires_grad and not mae.decoder_pos_embed.requires_grad
    assert "pos_embed" in mae.state_dict() and "decoder_pos_embed" in mae.state_dict()
    torch.testing.assert_close(mae.pos_embed.data, sincos_pos_embed_2d(32, 4, cls_token=True))
    torch.testing.assert_close(mae.decoder_pos_embed.data, sincos_pos_embed_2d(32, 4, cls_token=True))


def test_official_init() -> None:
    torch.manual_seed(0)
    model = MaskedAutoencoderViT(32, 4, 64, 2, 2, 48, 2, 2)
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            bound = math.sqrt(6.0 / (m.in_features + m.out_features))
            assert m.weight.abs().max() <= bound + 1e-7, name
            assert m.weight.abs().max() > 0.8 * bound, name  # uniform on [-bound, bound], not default init
            assert torch.all(m.bias == 0), name
        if isinstance(m, nn.LayerNorm):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0) and m.eps == 1e-6, name
    w = model.patch_embed.proj.weight
    bound = math.sqrt(6.0 / (w.shape[0] + w[0].numel()))
    assert w.abs().max() <= bound + 1e-7 and w.abs().max() > 0.8 * bound
    for tok in (model.cls_token, model.mask_token):
        assert 0.01 < float(tok.detach().std()) < 0.04
    assert model.blocks[0].attn.qkv.bias is not None


def test_encoder_ignores_removed_patches(mae: MaskedAutoencoderViT) -> None:
    imgs = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 16)
    out = mae(imgs, 0.75, noise)
    patches = patchify(imgs, 8)
    changed = torch.where(out.mask.bool().unsqueeze(-1), torch.randn_like(patches), patches)
    out2 = mae(unpatchify(changed, 8), 0.75, noise)
    torch.testing.assert_close(out.cls, out2.cls)
    torch.testing.assert_close(out.pred, out2.pred)
    # ... but a visible patch's pixels matter
    visible = (1 - out.mask).bool().unsqueeze(-1)
    out3 = mae(unpatchify(torch.where(visible, patches + 1, patches), 8), 0.75, noise)
    assert not torch.allclose(out.cls, out3.cls)


def test_decoder_puts_tokens_back_in_patch_order() -> None:
    # Without decoder blocks, pred[l] = pred_head(norm(embed(token) + pos[l])): check every slot.
    torch.manual_seed(0)
    model = MaskedAutoencoderViT(32, 8, 32, 1, 2, 16, 0, 2).eval()
    imgs = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 16)
    with torch.no_grad():
        latent, mask, ids_restore = model.forward_encoder(imgs, 0.5, noise)
        pred = model(imgs, 0.5, noise).pred
        kept_order = torch.argsort(noise, dim=1)[:, :8]
        for b in range(2):
            for l in range(16):
                pos = model.decoder_pos_embed[0, 1 + l]
                if mask[b, l] == 0:
                    slot = int((kept_order[b] == l).nonzero())
                    tok = model.decoder_embed(latent[b, 1 + slot])
                else:
                    tok = model.mask_token[0, 0]
                want = model.decoder_pred(model.decoder_norm(tok + pos))
                torch.testing.assert_close(pred[b, l], want, rtol=1e-5, atol=1e-5)


def test_mae_trains_a_step() -> None:
    torch.manual_seed(0)
    model = build_model(get_preset("tiny-test"))
    imgs = torch.randn(4, 3, 32, 32)
    noise = torch.rand(4, 16)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    before = loss_terms(model, imgs, 0.75, 0.0, "code", noise=noise)["loss"]
    before.backward()
    opt.step()
    after = loss_terms(model, imgs, 0.75, 0.0, "code", noise=noise)["loss"]
    assert float(after.detach()) < float(before.detach())


def test_build_model_dispatch_and_errors() -> None:
    assert isinstance(build_model(get_preset("tiny-test")), MaskedAutoencoderViT)
    assert isinstance(build_model(get_preset("tiny-test", method="simmim")), SimMIMViT)
    bad = dataclasses.replace(get_preset("tiny-test"), method="byol")
    with pytest.raises(UmaeError, match="unknown method"):
        build_model(bad)
    with pytest.raises(UmaeError, match="multiple of patch_size"):
        MaskedAutoencoderViT(30, 8, 32, 1, 2, 32, 1, 2)
    with pytest.raises(UmaeError, match="divisible"):
        MaskedAutoencoderViT(32, 8, 32, 1, 3, 32, 1, 2)


# ---------------------------------------------------------------- SimMIM


def test_simmim_shapes_and_mask_count(simmim: SimMIMViT) -> None:
    imgs = torch.randn(3, 3, 32, 32)
    out = simmim(imgs, 0.6)
    assert out.pred.shape == (3, 16, 192) and out.cls.shape == (3, 32)
    # keep int(16 * 0.4) = 6, remove 10
    assert (out.mask.sum(1) == 10).all()
    latent, _, _ = simmim.forward_encoder(imgs, 0.6)
    assert latent.shape == (3, 17, 32)  # every token goes through the encoder
    assert simmim.loss_kind == "l1"


def test_simmim_pred_is_pixel_shuffled_linear_decoder(simmim: SimMIMViT) -> None:
    imgs = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 16)
    p = 8
    with torch.no_grad():
        latent, _, _ = simmim.forward_encoder(imgs, 0.6, noise)
        pred = simmim(imgs, 0.6, noise).pred
        conv = simmim.decoder_pred[0]
        w, bias = conv.weight[:, :, 0, 0], conv.bias
        for b in range(2):
            for l in (0, 5, 15):
                y = w @ latent[b, 1 + l] + bias  # channel k = c*p*p + i*p + j (PixelShuffle)
                for i, j, c in ((0, 0, 0), (3, 5, 1), (7, 7, 2)):
                    want = y[c * p * p + i * p + j]
                    assert float(pred[b, l, (i * p + j) * 3 + c]) == pytest.approx(float(want), abs=1e-5)


def test_simmim_masked_patches_replaced_by_mask_token(simmim: SimMIMViT) -> None:
    imgs = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 16)
    out = simmim(imgs, 0.6, noise)
    patches = patchify(imgs, 8)
    changed = unpatchify(torch.where(out.mask.bool().unsqueeze(-1), torch.randn_like(patches), patches), 8)
    out2 = simmim(changed, 0.6, noise)
    torch.testing.assert_close(out.pred, out2.pred)
    torch.testing.assert_close(out.cls, out2.cls)


def test_simmim_loss_only_on_masked_pixels(simmim: SimMIMViT) -> None:
    imgs = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 16)
    out = simmim(imgs, 0.6, noise)
    target = patchify(imgs, 8)
    base = reconstruction_loss(out.pred, target, out.mask, False, "l1")
    visible = (out.mask == 0).unsqueeze(-1)
    # changing the target on visible patches leaves the loss unchanged ...
    t_vis = torch.where(visible, target + 5.0, target)
    torch.testing.assert_close(reconstruction_loss(out.pred, t_vis, out.mask, False, "l1"), base)
    # ... on removed patches it does not
    t_rem = torch.where(visible, target, target + 5.0)
    assert float(reconstruction_loss(out.pred, t_rem, out.mask, False, "l1").detach()) > float(base.detach()) + 1.0
    # and it is SimMIM's mean |error| over removed pixels
    m = out.mask.unsqueeze(-1).expand_as(target).bool()
    torch.testing.assert_close(base, (out.pred - target).abs()[m].mean())
    terms = loss_terms(simmim, imgs, 0.6, 0.0, "code", noise=noise)
    torch.testing.assert_close(terms["loss_recon"], base)


def test_simmim_encoder_loads_into_timm_and_cls_matches_at_mask_zero(simmim: SimMIMViT) -> None:
    vit = _timm_tiny()
    vit.load_state_dict(simmim.encoder_state_dict(), strict=True)
    imgs = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(simmim(imgs, 0.0).cls, vit.forward_features(imgs)[:, 0], rtol=1e-4, atol=1e-5)
