"""umae_eval.visual: masks, the MAE forward, panels, norm-pix detection, attention and its statistics.

Numbers are checked against independent implementations: the trainer's masking and MAE model,
transformers' ViTMAEForPreTraining, plain-Python closed forms of the attention distance.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ckpt_factory import make_official_encoder, make_umae
from trainer.masking import random_masking
from trainer.model import MaskedAutoencoderViT
from umae_eval.checkpoints import read_checkpoint
from umae_eval.errors import UmaeError
from umae_eval.preprocess import to_model_input
from umae_eval.visual.attention import AttentionRecorder, attention_maps, rollout_cls
from umae_eval.visual.attention_stats import (
    attention_nmi,
    bootstrap_summary,
    cls_entropy,
    mean_attention_distance,
    patch_entropy,
)
from umae_eval.visual.images import select_images
from umae_eval.visual.mae_model import build_mae
from umae_eval.visual.masks import mask_from_noise, mask_noise
from umae_eval.visual.normpix import (
    norm_pix_from_outputs,
    normalise_patches,
    stated_norm_pix,
    visible_statistics,
)
from umae_eval.visual.reconstruct import panels, patchify, predict

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _images(n: int = 3, side: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


# ------------------------------------------------------------------ masks


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_masks_equal_the_trainers_for_the_same_seed(ratio: float) -> None:
    tokens = torch.zeros(5, 64, 8)
    torch.manual_seed(7)
    _, mask, ids_restore = random_masking(tokens, ratio)  # the trainer: global RNG after manual_seed
    ours = mask_from_noise(mask_noise(5, 64, 7), ratio)
    assert torch.equal(ours.mask, mask) and torch.equal(ours.ids_restore, ids_restore)
    assert int(ours.mask.sum(1)[0]) == 64 - int(64 * (1 - ratio))


def test_masks_are_nested_across_ratios_and_leave_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    noise = mask_noise(4, 64, 0)
    assert torch.equal(torch.get_rng_state(), state)
    low, high = mask_from_noise(noise, 0.75).mask, mask_from_noise(noise, 0.9).mask
    assert bool((high >= low).all())  # hidden at 0.75 -> hidden at 0.9
    with pytest.raises(UmaeError, match="no visible patch"):
        mask_from_noise(noise, 0.99)


# ------------------------------------------------------------------ the MAE forward


def test_forward_equals_the_trainers_mae_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = MaskedAutoencoderViT(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2,
                               decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.save({"model": ref.state_dict()}, tmp_path / "mae.pth")  # official-full layout
    loaded = build_mae(read_checkpoint(tmp_path / "mae.pth"), arch_overrides={"num_heads": 2}, decoder_num_heads=2)
    x = torch.randn(3, 3, 16, 16)
    noise = mask_noise(3, 16, 1)
    masks = mask_from_noise(noise, 0.75)
    with torch.no_grad():
        want = ref(x, 0.75, noise).pred
    got = predict(loaded.model, x, masks)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_forward_equals_transformers_vitmae(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from hf_factory import hf_pretraining

    model = hf_pretraining(seed=3, mask_ratio=0.75)
    model.save_pretrained(tmp_path / "hf")
    loaded = build_mae(read_checkpoint(tmp_path / "hf"))
    x = torch.randn(2, 3, 32, 32)
    noise = mask_noise(2, 64, 5)
    with torch.no_grad():
        out = model(pixel_values=x, noise=noise)
    masks = mask_from_noise(noise, 0.75)
    assert torch.equal(masks.mask, out.mask)
    torch.testing.assert_close(predict(loaded.model, x, masks), out.logits, rtol=1e-4, atol=1e-4)


def test_encoder_only_file_says_which_files_carry_the_decoder(tmp_path: Path) -> None:
    make_official_encoder(tmp_path / "enc.pth")
    with pytest.raises(UmaeError, match=r"reconstruction needs the MAE decoder.*visualize"):
        build_mae(read_checkpoint(tmp_path / "enc.pth"))


# ------------------------------------------------------------------ panels


class CopyDecoder(torch.nn.Module):
    """A 'model' whose prediction copies its input: every patch exactly as it is."""

    def __init__(self, p: int, norm_pix: bool = False) -> None:
        super().__init__()
        self.p, self.norm_pix = p, norm_pix

    def forward(self, x: torch.Tensor, ids_keep: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        t = patchify(x, self.p)
        return normalise_patches(t) if self.norm_pix else t


def test_copy_decoder_reconstructs_the_original_exactly() -> None:
    imgs = _images()
    x = to_model_input(imgs, 32, MEAN, STD)
    masks = mask_from_noise(mask_noise(3, 64, 0), 0.75)
    pred = predict(CopyDecoder(4), x, masks)
    ps = panels(imgs, pred, masks, img_size=32, patch_size=4, mean=MEAN, std=STD, norm_pix=False, mode="visible")
    assert np.array_equal(ps.pasted, ps.original) and np.array_equal(ps.reconstruction, ps.original)
    assert ps.mode == "pixels" and np.all(ps.mse_target == 0) and np.all(ps.mse_pixels == 0)
    assert np.allclose(ps.original, imgs / 255.0, atol=1e-6)
    hidden = np.repeat(np.repeat(ps.mask.reshape(3, 8, 8), 4, 1), 4, 2).astype(bool)
    assert np.all(ps.masked[hidden] == 0.25) and np.array_equal(ps.masked[~hidden], ps.original[~hidden])


def test_norm_pix_display_modes() -> None:
    imgs = _images()
    x = to_model_input(imgs, 32, MEAN, STD)
    masks = mask_from_noise(mask_noise(3, 64, 0), 0.75)
    pred = predict(CopyDecoder(4, norm_pix=True), x, masks)
    common = dict(img_size=32, patch_size=4, mean=MEAN, std=STD, norm_pix=True)
    true = panels(imgs, pred, masks, mode="true", **common)
    visible = panels(imgs, pred, masks, mode="visible", **common)
    raw = panels(imgs, pred, masks, mode="raw", **common)
    assert np.all(true.mse_target < 1e-10)  # the loss is on normalised targets
    np.testing.assert_allclose(true.pasted, true.original, atol=1e-5)  # leaks: perfect picture
    assert np.all(visible.mse_pixels > 1e-4) and np.all(raw.mse_pixels > visible.mse_pixels)
    for ps in (true, visible, raw):  # visible patches are pasted back exactly in every mode
        keep = np.repeat(np.repeat(ps.mask.reshape(3, 8, 8), 4, 1), 4, 2) == 0
        assert np.array_equal(ps.pasted[keep], ps.original[keep])


def test_visible_statistics_use_no_hidden_patch() -> None:
    t = torch.randn(2, 16, 12)
    mask = mask_from_noise(mask_noise(2, 16, 0), 0.75).mask
    mean, var = visible_statistics(t, mask)
    t2 = t.clone()
    t2[mask.bool()] = 100.0  # change every hidden patch
    mean2, var2 = visible_statistics(t2, mask)
    assert torch.equal(mean, mean2) and torch.equal(var, var2)
    # a hidden patch whose 4 nearest visible patches are known: check one by hand
    b = 0
    hidden = int(mask[b].nonzero()[0])
    vis = [int(i) for i in (mask[b] == 0).nonzero().squeeze(1)]
    d = sorted(vis, key=lambda i: (math.dist(divmod(i, 4), divmod(hidden, 4)), i))[:4]
    assert float(mean[b, hidden]) == pytest.approx(float(t[b, d].mean(-1).mean()), abs=1e-6)


# ------------------------------------------------------------------ norm-pix detection


@pytest.mark.parametrize("norm_pix", [True, False])
def test_norm_pix_stated_by_a_umae_trained_checkpoint(norm_pix: bool, tmp_path: Path) -> None:
    from trainer.loop import TrainConfig, train_run

    from toy_images import toy_images

    x, y = toy_images(32, 0)
    np.savez(tmp_path / "toy.npz", x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
    train_run(TrainConfig(data=str(tmp_path / "toy.npz"), preset="tiny-test", out=tmp_path / "run", epochs=1,
                          eval_every=0, overrides={"norm_pix_loss": norm_pix}))
    parsed = read_checkpoint(tmp_path / "run" / "last.pth")
    verdict = stated_norm_pix(parsed.decoder_hints, parsed.path)
    assert verdict is not None and verdict.norm_pix is norm_pix and verdict.source == "stated"
    build_mae(parsed)  # the trainer's file carries its decoder and its head count


def test_norm_pix_from_file_names() -> None:
    assert stated_norm_pix({}, "mae_visualize_vit_base.pth").norm_pix is False
    assert stated_norm_pix({}, "mae_pretrain_vit_base_full.pth").norm_pix is True
    assert stated_norm_pix({}, "checkpoint.pth") is None
    assert stated_norm_pix({"norm_pix_loss": True}, "mae_visualize_vit_base.pth").norm_pix is True  # stated wins


def test_norm_pix_from_outputs_both_ways() -> None:
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(4, 64, 1, generator=gen) * 2 - 1  # patch brightness varies across patches
    target = base + 0.3 * torch.randn(4, 64, 48, generator=gen)
    mask = mask_from_noise(mask_noise(4, 64, 0), 0.75).mask
    noise = 0.3 * torch.randn(4, 64, 48, generator=gen)
    as_norm = norm_pix_from_outputs(normalise_patches(target) + noise, target, mask)
    as_pix = norm_pix_from_outputs(target + 0.3 * noise, target, mask)
    untrained = norm_pix_from_outputs(torch.randn(4, 64, 48, generator=gen), target, mask)
    assert (as_norm.norm_pix, as_norm.source) == (True, "outputs")
    assert (as_pix.norm_pix, as_pix.source) == (False, "outputs")
    assert (untrained.norm_pix, untrained.source) == (None, "undetermined")
    assert as_norm.r2_normalised > 0.5 and as_pix.r2_pixel > 0.5


# ------------------------------------------------------------------ attention


def test_recorded_attention_is_the_models_and_leaves_outputs_unchanged(tmp_path: Path) -> None:
    make_umae(tmp_path / "u.pth", {"decoder_num_heads": 2})
    enc = build_mae(read_checkpoint(tmp_path / "u.pth")).model.encoder
    for blk in enc.blocks:
        blk.attn.fused_attn = True  # the fused path hides the softmax: the hook must still see it
    x = to_model_input(_images(2), 32, MEAN, STD)
    with torch.no_grad():
        before = enc.forward_features(x)
        pre_proj: list[torch.Tensor] = []
        hook = enc.blocks[-1].attn.proj.register_forward_hook(lambda m, i, o: pre_proj.append(i[0]))
        values: list[torch.Tensor] = []
        vhook = enc.blocks[-1].attn.qkv.register_forward_hook(lambda m, i, o: values.append(o))
        with AttentionRecorder(enc.blocks) as rec:
            during = enc.forward_features(x)
        hook.remove()
        vhook.remove()
        after = enc.forward_features(x)
    assert torch.equal(before, during) and torch.equal(before, after)
    att = rec.stacked()
    assert att.shape == (2, 2, 3, 65, 65)
    torch.testing.assert_close(att.sum(-1), torch.ones(2, 2, 3, 65), rtol=0, atol=1e-5)
    # attention @ v reproduces what the block's fused attention fed its projection
    b, n, _ = values[0].shape
    v = values[0].reshape(b, n, 3, 3, 64).permute(2, 0, 3, 1, 4)[2]
    mixed = (att[-1] @ v).transpose(1, 2).reshape(b, n, 192)
    torch.testing.assert_close(mixed, pre_proj[0], rtol=1e-4, atol=1e-5)
    maps = attention_maps(enc, x)
    assert maps.cls_last_block().shape == (2, 3, 8, 8) and maps.rollout().shape == (2, 8, 8)
    torch.testing.assert_close(maps.rollout().sum((1, 2)), torch.ones(2))


def test_rollout_equals_a_plain_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    att = torch.rand(3, 2, 2, 5, 5, generator=gen)
    att = att / att.sum(-1, keepdim=True)
    got = rollout_cls(att)
    for b in range(2):
        joint = np.eye(5)
        for layer in range(3):
            a = att[layer, b].numpy().mean(0) + np.eye(5)
            a = a / a.sum(1, keepdims=True)
            joint = a @ joint
        row = joint[0, 1:] / joint[0, 1:].sum()
        np.testing.assert_allclose(got[b].numpy(), row, rtol=1e-5)


def _with_cls(patch_att: torch.Tensor) -> torch.Tensor:
    """Embed a patch->patch attention (L, L) into (1 + L, 1 + L) with a [CLS] row and column."""
    n = patch_att.shape[0]
    full = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    full[1:, 1:] = patch_att * 0.8
    full[1:, 0] = 0.2  # attention to [CLS] is dropped and the rows renormalised
    full[0, 1:] = 1.0 / n
    return full


def test_mean_attention_distance_closed_forms() -> None:
    grid, p = 4, 16
    n = grid * grid
    assert float(mean_attention_distance(_with_cls(torch.eye(n, dtype=torch.float64)), grid, p)) == 0.0
    uniform = _with_cls(torch.full((n, n), 1.0 / n, dtype=torch.float64))
    cells = list(itertools.product(range(grid), range(grid)))
    expected = p * sum(math.dist(a, b) for a in cells for b in cells) / n ** 2
    assert float(mean_attention_distance(uniform, grid, p)) == pytest.approx(expected, rel=1e-12)
    two = _with_cls(torch.full((4, 4), 0.25, dtype=torch.float64))
    assert float(mean_attention_distance(two, 2, 1)) == pytest.approx((2 + math.sqrt(2)) / 4)


def test_entropy_and_nmi() -> None:
    n = 9
    uniform = _with_cls(torch.full((n, n), 1.0 / n, dtype=torch.float64))
    assert float(attention_nmi(uniform)) == pytest.approx(0.0, abs=1e-12)  # identical rows
    assert float(patch_entropy(uniform)) == pytest.approx(math.log(n))
    assert float(cls_entropy(uniform)) == pytest.approx(math.log(n))
    gen = torch.Generator().manual_seed(0)
    row = torch.rand(n, generator=gen, dtype=torch.float64)
    same = _with_cls((row / row.sum()).expand(n, n).clone())
    assert float(attention_nmi(same)) == pytest.approx(0.0, abs=1e-12)
    assert float(attention_nmi(_with_cls(torch.eye(n, dtype=torch.float64)))) == pytest.approx(1.0)
    assert float(patch_entropy(_with_cls(torch.eye(n, dtype=torch.float64)))) == pytest.approx(0.0, abs=1e-9)


def test_bootstrap_summary() -> None:
    const = np.full((10, 2, 3), 4.0)
    s = bootstrap_summary(const, n_boot=50)
    assert np.all(s.lo == 4.0) and np.all(s.hi == 4.0) and np.all(s.mean == 4.0)
    vals = np.random.default_rng(0).normal(size=(200, 1, 1))
    s = bootstrap_summary(vals, n_boot=500)
    se = vals.std(ddof=1) / math.sqrt(200)
    assert s.lo[0, 0] < vals.mean() < s.hi[0, 0]
    assert (s.hi - s.lo)[0, 0] == pytest.approx(2 * 1.96 * se, rel=0.2)


# ------------------------------------------------------------------ image choice


def test_select_images() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2, 0])
    names = ["cat", "dog", "ship"]
    assert select_images(labels, names, n=3, index=[6, 0]).tolist() == [6, 0]
    picked = select_images(labels, names, n=4, classes=["dog", "0"], seed=1)
    assert [labels[i] for i in picked] == [1, 0, 1, 0]
    rnd = select_images(labels, names, n=3, seed=2)
    assert len(set(rnd.tolist())) == 3 and rnd.tolist() == select_images(labels, names, n=3, seed=2).tolist()
    with pytest.raises(UmaeError, match=r"--index 7: the split has 7 images"):
        select_images(labels, names, n=1, index=[7])
    with pytest.raises(UmaeError, match=r"--class 'horse': not a class"):
        select_images(labels, names, n=1, classes=["horse"])


def test_attention_statistics_do_not_depend_on_batching(tmp_path: Path) -> None:
    from umae_eval.visual.attention_stats import per_image_stats
    from umae_eval.visual.run import attention_statistics

    make_umae(tmp_path / "u.pth", {"decoder_num_heads": 2})
    enc = build_mae(read_checkpoint(tmp_path / "u.pth")).model.encoder
    imgs = _images(11)  # more than one batch of 8
    stats, block, per_image = attention_statistics(enc, imgs, img_size=32, patch_size=4, mean=MEAN, std=STD,
                                                   n_boot=50)
    whole = attention_maps(enc, to_model_input(imgs, 32, MEAN, STD))
    direct = per_image_stats(whole.attentions, whole.grid, 4)
    np.testing.assert_allclose(per_image.distance, direct.distance, rtol=1e-5)
    np.testing.assert_allclose(stats["nmi"].mean, direct.nmi.mean(0), rtol=1e-5)
    np.testing.assert_allclose(block["distance"].mean, direct.distance.mean((0, 2)), rtol=1e-5)
    assert stats["distance"].mean.shape == (2, 3) and np.all(stats["distance"].lo <= stats["distance"].hi)


@pytest.mark.parametrize("maker", ["make_official_full", "make_u_mae", "make_umae_layout_official"])
def test_every_layout_with_a_decoder_reconstructs(maker: str, tmp_path: Path) -> None:
    import ckpt_factory as CF

    path = tmp_path / "mae_visualize_vit_tiny.pth"
    getattr(CF, maker)(path)
    parsed = read_checkpoint(path, trust_pickle=False)
    loaded = build_mae(parsed, decoder_num_heads=2)  # these tiny files do not record the decoder's heads
    imgs = _images(2)
    x = to_model_input(imgs, 32, MEAN, STD)
    masks = mask_from_noise(mask_noise(2, 64, 0), 0.75)
    ps = panels(imgs, predict(loaded.model, x, masks), masks, img_size=32, patch_size=4, mean=MEAN, std=STD,
                norm_pix=False, mode="visible")
    keep = np.repeat(np.repeat(ps.mask.reshape(2, 8, 8), 4, 1), 4, 2) == 0
    assert np.array_equal(ps.pasted[keep], ps.original[keep]) and not np.array_equal(ps.pasted, ps.original)
    verdict = stated_norm_pix(parsed.decoder_hints, path)
    assert verdict is not None and verdict.norm_pix is False  # stated by args, else the *visualize* name
    with pytest.raises(UmaeError, match=r"32-wide decoder has; pass --decoder-num-heads N"):
        build_mae(parsed)
