"""``--unif-form released``: bit-equal to the released U-MAE loss, written here from its description.

The released code (its ``forward_loss``): reconstruction as official MAE, then the uniformity term
on ``self.norm(latent)[:, 0]`` where ``latent`` already passed the encoder's final LayerNorm (so
the norm is applied twice), L2-normalised, ``mean((Z Z^T)^2)`` over the gathered batch.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainer.distributed import gather_for, gather_released, gather_with_grad
from trainer.losses import UNIF_FORM_DESCRIPTIONS, effective_lambda, loss_terms
from trainer.model import build_model
from trainer.presets import get_preset

LAM = 0.5


def released_reference(model, imgs: torch.Tensor, mask_ratio: float, lam: float,
                       noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The released model's loss, step by step: (total, uniformity term)."""
    latent, mask, ids_restore = model.forward_encoder(imgs, mask_ratio, noise)
    pred = model.forward_decoder(latent, ids_restore)
    p = model.patch_embed.patch_size[0]
    b, c, h, w = imgs.shape
    target = imgs.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, p * p * c)
    if model.norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(dim=-1)
    loss = (loss * mask).sum() / mask.sum()
    feats = model.norm(latent)[:, 0]          # the second application of the final norm
    feats = F.normalize(feats, dim=1)
    unif = ((feats @ feats.t()) ** 2).mean()
    return loss + lam * unif, unif


@pytest.fixture
def trained_like():
    """tiny-test MAE whose final norm has non-trivial weights (trained values are far from 1, 0)."""
    torch.manual_seed(0)
    preset = get_preset("tiny-test", norm_pix_loss=True)
    model = build_model(preset)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        model.norm.weight.copy_(1.0 + 0.5 * torch.randn(model.norm.weight.shape, generator=gen))
        model.norm.bias.copy_(0.3 * torch.randn(model.norm.bias.shape, generator=gen))
    imgs = torch.randn(6, 3, preset.img_size, preset.img_size, generator=gen)
    noise = torch.rand(6, preset.num_patches, generator=gen)
    return preset, model, imgs, noise


def _grads(model, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_released_is_bit_equal_to_the_released_formula(trained_like) -> None:
    preset, model, imgs, noise = trained_like
    ref_total, ref_unif = released_reference(model, imgs, preset.mask_ratio, LAM, noise)
    ref_grads = _grads(model, ref_total)
    terms = loss_terms(model, imgs, preset.mask_ratio, LAM, "released", noise=noise)
    assert torch.equal(terms["loss_unif"], ref_unif)
    assert torch.equal(terms["loss"], ref_total)
    got = _grads(model, terms["loss"])
    assert got.keys() == ref_grads.keys()
    for name, want in ref_grads.items():
        assert torch.equal(got[name], want), name


def test_released_differs_from_code_where_the_norm_is_trained(trained_like) -> None:
    """Keeps the test above able to fail: 'code' (one norm) gives another value and gradient."""
    preset, model, imgs, noise = trained_like
    code = loss_terms(model, imgs, preset.mask_ratio, LAM, "code", noise=noise)
    released = loss_terms(model, imgs, preset.mask_ratio, LAM, "released", noise=noise)
    c, r = float(code["loss_unif"].detach()), float(released["loss_unif"].detach())
    assert abs(c - r) > 1e-3 * c
    w = model.blocks[0].attn.qkv.weight
    (g_code,) = torch.autograd.grad(code["loss_unif"], w)
    (g_rel,) = torch.autograd.grad(released["loss_unif"], w)
    assert float(F.cosine_similarity(g_code.flatten(), g_rel.flatten(), dim=0)) < 0.999


def test_effective_lambda_and_gather_choice() -> None:
    assert effective_lambda(0.01, "released", 8) == 0.01 / 8
    assert effective_lambda(0.01, "code", 8) == 0.01 and effective_lambda(0.01, "paper", 4) == 0.01
    assert gather_for("released") is gather_released
    assert gather_for("code") is gather_with_grad and gather_for("paper") is gather_with_grad
    x = torch.randn(3, 2)
    assert gather_released(x) is x  # no process group: identity, like gather_with_grad
    assert set(UNIF_FORM_DESCRIPTIONS) == {"code", "paper", "released"}


def test_preset_and_cli_accept_released() -> None:
    from umae_eval.cli import main

    assert get_preset("tiny-test", unif_form="released").unif_form == "released"
    assert main(["train", "--data", "demo", "--preset", "tiny-test", "--unif-form", "exact"]) == 2


def test_train_released_records_form_and_effective_lambda(tmp_path) -> None:
    import json

    from umae_eval.cli import main

    out = tmp_path / "run"
    assert main(["train", "--data", "demo", "--preset", "tiny-test", "--epochs", "1", "--lam", "0.01",
                 "--unif-form", "released", "--max-train-images", "64", "--batch-size", "32",
                 "--eval-images", "32", "--knn-train-images", "64", "--out", str(out)]) == 0
    uni = json.loads((out / "results.json").read_text())["results"]["uniformity"]
    assert uni == {"form": "released", "lam": 0.01, "world_size": 1, "effective_lam": 0.01,
                   "description": UNIF_FORM_DESCRIPTIONS["released"]}
    meta = torch.load(out / "last.pth", weights_only=True)["umae"]
    assert meta["unif_form"] == "released"
