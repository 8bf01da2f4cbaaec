"""IcarusWizard/MAE, mmpretrain, solo-learn and lightly checkpoints: built from models written here
under each tool's names, saved the way each tool saves, loaded with features equal to a direct
forward of the model that made them."""

from __future__ import annotations

import importlib
import json
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from ckpt_factory import _randomise
from thirdparty_models import MMPreNeck, MMPreViT, OfficialNamedDecoder, TimmNamedViT, icarus_module_source
from trainer.model import MaskedAutoencoderViT
from umae_eval.checkpoints import load_encoder, read_checkpoint
from umae_eval.errors import UmaeError


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------ IcarusWizard/MAE

@pytest.fixture
def icarus_file(tmp_path: Path):
    """``torch.save(model)`` of an MAE_ViT from a module named ``model`` (as mae_pretrain.py does);
    the module is importable during the save only, as on a machine without that repository."""
    src = tmp_path / "icarus_src"
    src.mkdir()
    (src / "model.py").write_text(icarus_module_source())
    sys.path.insert(0, str(src))
    try:
        mod = importlib.import_module("model")
        torch.manual_seed(0)
        mae = mod.MAE_ViT(image_size=32, patch_size=4, emb_dim=192, encoder_layer=2, encoder_head=3,
                          decoder_layer=1, decoder_head=3)
        _randomise(mae, 3)
        path = tmp_path / "vit-t-mae.pt"
        torch.save(mae, path)
        want = mae.encoder.cls_all_patches(images())
    finally:
        sys.path.remove(str(src))
        sys.modules.pop("model", None)
    return path, want, src


def test_icarus_whole_model_pickle_needs_trust_and_loads_without_its_code(icarus_file) -> None:
    path, want, _ = icarus_file
    with pytest.raises(UmaeError, match=r"needs full unpickling of model\.MAE_ViT.*--trust-pickle"):
        load_encoder(path)
    enc = load_encoder(path, trust_pickle=True)  # 'model' is not importable now: stubbed
    assert enc.info.layout == "icarus-mae"
    assert enc.info.arch.norm_eps == 1e-5 and not enc.info.arch.qkv_bias and enc.info.arch.num_heads == 3
    assert enc.info.mean == (0.5, 0.5, 0.5) and enc.info.std == (0.5, 0.5, 0.5)
    assert "whole-model pickle of model.MAE_ViT" in enc.info.note and "decoder" in enc.info.note
    with torch.no_grad():
        close(enc.model(images()), want)
    # [CLS] has no position in this code: the slot umae adds is zero.
    assert torch.equal(enc.model.pos_embed[0, 0], torch.zeros(192))


def test_icarus_with_its_code_importable(icarus_file) -> None:
    path, want, src = icarus_file
    sys.path.insert(0, str(src))
    try:
        enc = load_encoder(path, trust_pickle=True)  # the real classes unpickle
    finally:
        sys.path.remove(str(src))
        sys.modules.pop("model", None)
    with torch.no_grad():
        close(enc.model(images()), want)


# ------------------------------------------------------------------------------ mmpretrain

MMPRE_CFG = """model = dict(
    type='MAE',
    backbone=dict(type='MAEViT', arch=dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=256), img_size=32, patch_size=4, mask_ratio=0.75),
    neck=dict(type='MAEPretrainDecoder', num_patches=64, patch_size=4, embed_dim=64, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2),
    head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=4, loss=dict(type='PixelReconstructionLoss', criterion='L2')))
data_preprocessor = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
"""


def _mmpre_file(path: Path, cfg: str = MMPRE_CFG) -> tuple[MMPreViT, MMPreNeck]:
    backbone, neck = MMPreViT(seed=4), MMPreNeck(seed=5)
    state = OrderedDict([(f"backbone.{k}", v) for k, v in backbone.state_dict().items()]
                        + [(f"neck.{k}", v) for k, v in neck.state_dict().items()])
    torch.save({"meta": {"mmengine_version": "0.10.4", "epoch": 300, "iter": 93600, "seed": 0,
                         "experiment_name": "mae_vit-tiny", "cfg": cfg}, "state_dict": state}, path)
    return backbone, neck


def test_mmpretrain_features_heads_norm_and_decoder(tmp_path: Path) -> None:
    backbone, neck = _mmpre_file(tmp_path / "epoch_300.pth")
    enc = load_encoder(tmp_path / "epoch_300.pth")
    assert enc.info.layout == "mmpretrain" and enc.info.arch.num_heads == 2  # from the config's arch
    torch.testing.assert_close(torch.tensor(enc.info.mean), torch.tensor((0.485, 0.456, 0.406)))
    with torch.no_grad():
        close(enc.model(images()), backbone.cls(images()))
    parsed = read_checkpoint(tmp_path / "epoch_300.pth")
    assert parsed.decoder_hints == {"decoder_num_heads": 2, "norm_pix_loss": True}
    mae = MaskedAutoencoderViT(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2,
                               decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
    mae.load_state_dict({**parsed.encoder, **parsed.decoder}, strict=True)
    assert torch.equal(mae.decoder_norm.weight, neck.ln1.weight)
    assert torch.equal(mae.decoder_blocks[0].mlp.fc2.weight, neck.decoder_blocks[0].ffn.layers[1].weight)


def test_mmpretrain_without_config_and_with_layer_scale(tmp_path: Path) -> None:
    _mmpre_file(tmp_path / "a.pth", cfg="")
    assert "pass --num-heads 8" in load_encoder(tmp_path / "a.pth").info.note
    ckpt = torch.load(tmp_path / "a.pth", weights_only=True)
    ckpt["state_dict"]["backbone.layers.0.attn.gamma1.weight"] = torch.ones(64)
    torch.save(ckpt, tmp_path / "b.pth")
    with pytest.raises(UmaeError, match="unexpected module 'attn.gamma1'.*layer scale"):
        load_encoder(tmp_path / "b.pth")


# ------------------------------------------------------------------------------ solo-learn, lightly

def _lightning(state: OrderedDict) -> dict:
    """What pytorch-lightning's Trainer.save_checkpoint writes around the state dict."""
    return {"epoch": 399, "global_step": 15600, "pytorch-lightning_version": "2.1.3", "state_dict": state,
            "loops": {"fit_loop": {"epoch_progress": {"total": {"completed": 399}}}}, "callbacks": {},
            "optimizer_states": [], "lr_schedulers": []}


def test_solo_learn_with_args_json(tmp_path: Path) -> None:
    vit = TimmNamedViT(dim=192, heads=12, seed=6)  # solo-learn's vit_tiny: 12 heads of 16
    dec = OfficialNamedDecoder(eps=1e-5)
    state = OrderedDict([(f"backbone.{k}", v) for k, v in vit.state_dict().items()]
                        + [(f"decoder.{k}", v) for k, v in dec.state_dict().items()]
                        + [("classifier.weight", torch.zeros(10, 192)), ("classifier.bias", torch.zeros(10))])
    folder = tmp_path / "trained_models" / "mae" / "abc123"
    folder.mkdir(parents=True)
    torch.save(_lightning(state), folder / "mae-cifar10-abc123-ep=399.ckpt")
    # no args.json yet: the heads are never guessed (D/64 = 3 gave features off by 0.34)
    with pytest.raises(UmaeError, match="does not record its attention heads .* or pass --num-heads N"):
        load_encoder(folder / "mae-cifar10-abc123-ep=399.ckpt")
    enc = load_encoder(folder / "mae-cifar10-abc123-ep=399.ckpt", arch_overrides={"num_heads": 12})
    assert "heads from --num-heads" in enc.info.note
    with torch.no_grad():
        close(enc.model(images()), vit.cls(images()))
    (folder / "args.json").write_text(json.dumps({
        "name": "mae-cifar10", "method": "mae", "backbone": {"name": "vit_tiny", "kwargs": {"img_size": 32, "patch_size": 4}},
        "method_kwargs": {"decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2, "mask_ratio": 0.75,
                          "norm_pix_loss": False},
        "data": {"dataset": "cifar10"}, "max_epochs": 400}))
    enc = load_encoder(folder / "mae-cifar10-abc123-ep=399.ckpt")
    assert enc.info.layout == "solo-learn" and enc.info.arch.num_heads == 12
    assert enc.info.mean == (0.4914, 0.4822, 0.4465) and "vit_tiny from args.json" in enc.info.note
    with torch.no_grad():
        close(enc.model(images()), vit.cls(images()))
    parsed = read_checkpoint(folder / "mae-cifar10-abc123-ep=399.ckpt")
    assert parsed.decoder_hints == {"decoder_num_heads": 2, "norm_pix_loss": False}
    assert set(parsed.decoder) == set(dec.state_dict())


def test_lightly_masked_vit_timm_and_decoder(tmp_path: Path) -> None:
    vit = TimmNamedViT(dim=128, heads=2, seed=7)
    dec = OfficialNamedDecoder(dim=128)
    state = OrderedDict([(f"backbone.vit.{k}", v) for k, v in vit.state_dict().items()]
                        + [("backbone.mask_token", torch.zeros(1, 1, 128))]
                        + [(f"decoder.{k}", v) for k, v in dec.state_dict().items()])
    torch.save(_lightning(state), tmp_path / "epoch=99-step=1000.ckpt")
    enc = load_encoder(tmp_path / "epoch=99-step=1000.ckpt")
    assert enc.info.layout == "lightly" and "MAEDecoderTIMM" in enc.info.note
    with torch.no_grad():
        close(enc.model(images()), vit.cls(images()))
    # A bare torch.save(module.state_dict()) reads the same.
    torch.save(state, tmp_path / "lightly_mae.pth")
    parsed = read_checkpoint(tmp_path / "lightly_mae.pth")
    assert parsed.layout == "lightly" and set(parsed.decoder) == set(dec.state_dict())
    assert all(torch.equal(parsed.decoder[k], v) for k, v in dec.state_dict().items())


def test_lightly_1_6_masked_vit_decoder_timm_names(tmp_path: Path) -> None:
    """lightly 1.6.0's MAE example: MaskedVisionTransformerDecoderTIMM ('decoder.blocks',
    'decoder.norm', 'decoder.pos_embed', 'decoder.mask_token') with 'decoder_embed' and
    'prediction_head' on the module itself (names from lightly 1.6.0's
    masked_vision_transformer_decoder_timm.py). Was: "unexpected key 'decoder_embed.weight'"."""
    vit = TimmNamedViT(dim=128, heads=2, seed=8)
    dec = OfficialNamedDecoder(dim=128, seed=3)
    renamed = {"decoder_embed": "decoder_embed", "mask_token": "decoder.mask_token",
               "decoder_pos_embed": "decoder.pos_embed", "decoder_blocks": "decoder.blocks",
               "decoder_norm": "decoder.norm", "decoder_pred": "prediction_head"}
    lightly_names = OrderedDict()
    for k, v in dec.state_dict().items():
        first, dot, rest = k.partition(".")
        lightly_names[renamed[first] + dot + rest] = v
    state = OrderedDict([(f"backbone.vit.{k}", v) for k, v in vit.state_dict().items()]
                        + [("backbone.mask_token", torch.zeros(1, 1, 128))] + list(lightly_names.items()))
    torch.save(_lightning(state), tmp_path / "epoch=9-step=100.ckpt")
    enc = load_encoder(tmp_path / "epoch=9-step=100.ckpt")
    assert enc.info.layout == "lightly" and "MaskedVisionTransformerDecoderTIMM" in enc.info.note
    with torch.no_grad():
        close(enc.model(images()), vit.cls(images()))
    parsed = read_checkpoint(tmp_path / "epoch=9-step=100.ckpt")
    assert set(parsed.decoder) == set(dec.state_dict())
    assert all(torch.equal(parsed.decoder[k], v) for k, v in dec.state_dict().items())


class HistoryBuffer:
    """Stands for mmengine's HistoryBuffer (message_hub's log_scalars) in a work-dir checkpoint."""

    def __init__(self) -> None:
        self._log_history = [0.5, 0.4]


class _RunsAShellCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_mmpretrain_work_dir_file_loads_without_running_its_training_state(tmp_path: Path) -> None:
    """Issue 23: mmpretrain's epoch_N.pth holds mmengine objects in 'message_hub' (and optimizer
    state), so weights-only loading refused it and --trust-pickle would have run that code. The
    weights are now read with every non-allow-listed global stubbed: nothing of it runs."""
    backbone, _ = _mmpre_file(tmp_path / "epoch_300.pth")
    ckpt = torch.load(tmp_path / "epoch_300.pth", weights_only=True)
    marker = tmp_path / "pwned"
    ckpt["message_hub"] = {"log_scalars": {"train/loss": HistoryBuffer()}, "hostile": _RunsAShellCommand(marker)}
    ckpt["optimizer"] = {"state": {}, "param_groups": [{"lr": 1e-4}]}
    torch.save(ckpt, tmp_path / "epoch_300.pth")
    enc = load_encoder(tmp_path / "epoch_300.pth")
    assert enc.info.layout == "mmpretrain" and not marker.exists()
    with torch.no_grad():
        close(enc.model(images()), backbone.cls(images()))


def test_a_stubbed_object_inside_the_weights_is_still_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"backbone.x": _RunsAShellCommand(marker)}}, tmp_path / "w.pth")
    with pytest.raises(UmaeError, match="--trust-pickle"):
        load_encoder(tmp_path / "w.pth")
    assert not marker.exists()


def test_mmpretrain_and_solo_learn_sizes_that_contradict_the_weights_are_reported(tmp_path: Path) -> None:
    """Issue 23 (weak): metadata saying patch 8 for patch-4 weights was not reported for these two."""
    from umae_eval.checkpoint_checks import metadata_conflicts

    _mmpre_file(tmp_path / "epoch_1.pth", cfg=MMPRE_CFG.replace("img_size=32, patch_size=4,", "img_size=64, patch_size=8,"))
    enc = load_encoder(tmp_path / "epoch_1.pth")
    assert enc.info.arch.patch_size == 4 and enc.info.arch.img_size == 32  # the weights decide
    assert metadata_conflicts(enc.info.layout, enc.info.metadata, enc.info.arch) == [
        "img_size: meta['cfg'] backbone img_size=64, weights 32", "patch_size: meta['cfg'] backbone patch_size=8, weights 4"]
    _mmpre_file(tmp_path / "epoch_2.pth")
    enc = load_encoder(tmp_path / "epoch_2.pth")
    assert metadata_conflicts(enc.info.layout, enc.info.metadata, enc.info.arch) == []

    vit = TimmNamedViT(dim=192, heads=12, seed=6)
    folder = tmp_path / "solo"
    folder.mkdir()
    torch.save(_lightning(OrderedDict((f"backbone.{k}", v) for k, v in vit.state_dict().items())), folder / "m.ckpt")
    args = {"method": "mae", "backbone": {"name": "vit_tiny", "kwargs": {"img_size": 32, "patch_size": 8}},
            "data": {"dataset": "cifar10"}}
    (folder / "args.json").write_text(json.dumps(args))
    enc = load_encoder(folder / "m.ckpt")
    assert metadata_conflicts(enc.info.layout, enc.info.metadata, enc.info.arch) == [
        "patch_size: args.json backbone.kwargs.patch_size 8, weights 4"]
    args["backbone"]["kwargs"]["patch_size"] = 4
    (folder / "args.json").write_text(json.dumps(args))
    enc = load_encoder(folder / "m.ckpt")
    assert metadata_conflicts(enc.info.layout, enc.info.metadata, enc.info.arch) == []
