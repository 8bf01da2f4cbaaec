"""Reconstruction and uniformity losses against hand computations and direct loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainer.losses import loss_terms, reconstruction_loss, uniformity_loss
from trainer.masking import patchify
from trainer.model import build_model
from trainer.presets import get_preset
from umae_eval.errors import UmaeError

PRED = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
TARGET = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])


def test_mse_by_hand() -> None:
    # patch 0 error (1 + 4)/2 = 2.5; patch 1 error (4 + 9)/2 = 6.5
    assert float(reconstruction_loss(PRED, TARGET, torch.tensor([[1.0, 0.0]]), False)) == 2.5
    assert float(reconstruction_loss(PRED, TARGET, torch.tensor([[0.0, 1.0]]), False)) == 6.5
    assert float(reconstruction_loss(PRED, TARGET, torch.tensor([[1.0, 1.0]]), False)) == 4.5


def test_mse_averages_over_removed_patches_not_images() -> None:
    pred = torch.cat([PRED, PRED])
    target = torch.cat([TARGET, TARGET])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # three removed patches: (2.5 + 6.5 + 2.5) / 3
    assert float(reconstruction_loss(pred, target, mask, False)) == pytest.approx(11.5 / 3)


def test_l1_by_hand() -> None:
    # patch 0 (1 + 2)/2 = 1.5; patch 1 (2 + 3)/2 = 2.5
    assert float(reconstruction_loss(PRED, TARGET, torch.tensor([[1.0, 1.0]]), False, "l1")) == 2.0
    assert float(reconstruction_loss(PRED, TARGET, torch.tensor([[0.0, 1.0]]), False, "l1")) == 2.5


def test_norm_pix_by_hand() -> None:
    target = torch.tensor([[[1.0, 3.0], [2.0, 2.0]]])
    pred = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    # patch 0: mean 2, unbiased var ((-1)^2 + 1^2)/(2-1) = 2 -> t = (-1, 1)/sqrt(2 + 1e-6);
    #   error vs 0 = 1/(2 + 1e-6).  patch 1: var 0 -> t = (0, 0); error vs (1, 1) = 1.
    want0 = 1.0 / (2.0 + 1e-6)
    got = reconstruction_loss(pred, target, torch.tensor([[1.0, 0.0]]), True)
    assert float(got) == pytest.approx(want0, rel=1e-6)
    got = reconstruction_loss(pred, target, torch.tensor([[1.0, 1.0]]), True)
    assert float(got) == pytest.approx((want0 + 1.0) / 2, rel=1e-6)
    # without norm_pix the same inputs give ((1 + 9)/2 + (1 + 1)/2) / 2 = 3
    assert float(reconstruction_loss(pred, target, torch.tensor([[1.0, 1.0]]), False)) == 3.0


@pytest.mark.parametrize("norm_pix", [False, True])
@pytest.mark.parametrize("kind", ["mse", "l1"])
def test_reconstruction_matches_loop(norm_pix: bool, kind: str) -> None:
    g = torch.Generator().manual_seed(0)
    b, n, p = 3, 5, 6
    pred, target = torch.randn(b, n, p, generator=g), torch.randn(b, n, p, generator=g)
    mask = (torch.rand(b, n, generator=g) > 0.4).float()
    mask[0, 0] = 1.0
    total, count = 0.0, 0
    for i in range(b):
        for l in range(n):
            if mask[i, l] == 0:
                continue
            t = [float(v) for v in target[i, l]]
            if norm_pix:
                mu = sum(t) / p
                var = sum((v - mu) ** 2 for v in t) / (p - 1)
                t = [(v - mu) / math.sqrt(var + 1e-6) for v in t]
            errs = [float(pred[i, l, k]) - t[k] for k in range(p)]
            total += sum(e * e if kind == "mse" else abs(e) for e in errs) / p
            count += 1
    got = reconstruction_loss(pred, target, mask, norm_pix, kind)  # type: ignore[arg-type]
    assert float(got) == pytest.approx(total / count, rel=1e-5)


def test_reconstruction_errors() -> None:
    with pytest.raises(UmaeError, match="must both be"):
        reconstruction_loss(PRED, TARGET[:, :1], torch.ones(1, 2), False)
    with pytest.raises(UmaeError, match="mask"):
        reconstruction_loss(PRED, TARGET, torch.ones(1, 3), False)
    with pytest.raises(UmaeError, match="kind"):
        reconstruction_loss(PRED, TARGET, torch.ones(1, 2), False, "huber")  # type: ignore[arg-type]


def _loop_uniformity(f: torch.Tensor, form: str) -> float:
    rows = [[float(v) for v in r] for r in f]
    if form == "code":
        rows = [[v / math.sqrt(sum(u * u for u in r)) for v in r] for r in rows]
    n, total, pairs = len(rows), 0.0, 0
    for i in range(n):
        for j in range(n):
            if form == "paper" and i == j:
                continue
            total += sum(a * b for a, b in zip(rows[i], rows[j])) ** 2
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("form", ["code", "paper"])
def test_uniformity_matches_double_loop(form: str) -> None:
    f = torch.randn(7, 5, generator=torch.Generator().manual_seed(1))
    assert float(uniformity_loss(f, form)) == pytest.approx(_loop_uniformity(f, form), rel=1e-5)  # type: ignore[arg-type]


def test_uniformity_by_hand() -> None:
    f = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # code: cosines 1, 1/sqrt2, 1/sqrt2, 1 -> squares 1, .5, .5, 1 -> mean 0.75
    assert float(uniformity_loss(f, "code")) == pytest.approx(0.75)
    # paper: f1.f2 = 1 for both ordered pairs -> 1
    assert float(uniformity_loss(f, "paper")) == pytest.approx(1.0)
    # orthonormal rows: only the diagonal counts in 'code' (1/N), nothing in 'paper'
    assert float(uniformity_loss(torch.eye(4), "code")) == pytest.approx(0.25)
    assert float(uniformity_loss(torch.eye(4), "paper")) == 0.0


def test_uniformity_scaling() -> None:
    f = torch.randn(6, 4)
    assert float(uniformity_loss(3 * f, "code")) == pytest.approx(float(uniformity_loss(f, "code")), rel=1e-5)
    assert float(uniformity_loss(3 * f, "paper")) == pytest.approx(81 * float(uniformity_loss(f, "paper")), rel=1e-5)


def test_uniformity_errors() -> None:
    with pytest.raises(UmaeError, match="at least 2"):
        uniformity_loss(torch.randn(1, 4), "paper")
    with pytest.raises(UmaeError, match="unif_form"):
        uniformity_loss(torch.randn(3, 4), "exact")  # type: ignore[arg-type]
    with pytest.raises(UmaeError, match=r"\(N, D\)"):
        uniformity_loss(torch.randn(3), "code")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    preset = get_preset("tiny-test", norm_pix_loss=True)
    model = build_model(preset)
    imgs = torch.randn(4, 3, 32, 32)
    noise = torch.rand(4, preset.num_patches)
    return preset, model, imgs, noise


def test_loss_terms_plain_mae(tiny) -> None:
    preset, model, imgs, noise = tiny
    terms = loss_terms(model, imgs, 0.75, 0.0, "code", noise=noise)
    out = model(imgs, 0.75, noise)
    want = reconstruction_loss(out.pred, patchify(imgs, 8), out.mask, True, "mse")
    torch.testing.assert_close(terms["loss_recon"], want)
    torch.testing.assert_close(terms["loss"], want)
    assert float(terms["loss_unif"]) == 0.0


@pytest.mark.parametrize("form", ["code", "paper"])
def test_loss_terms_umae(tiny, form: str) -> None:
    preset, model, imgs, noise = tiny
    terms = loss_terms(model, imgs, 0.75, 0.01, form, noise=noise)  # type: ignore[arg-type]
    out = model(imgs, 0.75, noise)
    unif = uniformity_loss(out.cls, form)  # type: ignore[arg-type]
    torch.testing.assert_close(terms["loss_unif"], unif)
    torch.testing.assert_close(terms["loss"], terms["loss_recon"] + 0.01 * unif)
    # not detached: the uniformity term reaches the encoder's parameters
    (g,) = torch.autograd.grad(terms["loss_unif"], model.blocks[0].attn.qkv.weight)
    assert g.abs().max() > 0


def test_loss_terms_uses_gather(tiny) -> None:
    preset, model, imgs, noise = tiny
    extra = torch.randn(3, model.embed_dim)
    seen: list[tuple[int, ...]] = []

    def gather(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return torch.cat([x, extra])

    terms = loss_terms(model, imgs, 0.75, 0.5, "code", gather=gather, noise=noise)
    assert seen == [(4, model.embed_dim)]
    out = model(imgs, 0.75, noise)
    torch.testing.assert_close(terms["loss_unif"], uniformity_loss(torch.cat([out.cls, extra]), "code"))


def test_code_form_matches_manual_formula_on_model_cls(tiny) -> None:
    preset, model, imgs, noise = tiny
    out = model(imgs, 0.75, noise)
    z = F.normalize(out.cls, dim=1)
    torch.testing.assert_close(uniformity_loss(out.cls, "code"), ((z @ z.t()) ** 2).mean())
