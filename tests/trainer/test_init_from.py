"""``umae train --init CKPT``: start from an official-layout file or a Hugging Face folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ckpt_factory import make_official_encoder, make_official_full
from trainer.init_from import init_from_checkpoint
from trainer.model import build_model
from trainer.presets import get_preset
from umae_eval.cli import main
from umae_eval.errors import UmaeError

#: tiny-test's encoder: 32 px, patch 8, width 32, depth 2, 2 heads; decoder 32 x 1, 2 heads.
TINY_ARCH = dict(patch_size=8, embed_dim=32, num_heads=2)
RUN = ["train", "--data", "demo", "--preset", "tiny-test", "--epochs", "1", "--max-train-images", "32",
       "--batch-size", "16", "--eval-images", "16", "--knn-train-images", "32", "--device", "cpu"]


def _fresh():
    torch.manual_seed(0)
    preset = get_preset("tiny-test")
    return preset, build_model(preset)


def test_official_full_file_fills_encoder_and_decoder(tmp_path: Path) -> None:
    saved = make_official_full(tmp_path / "mae_visualize.pth", seed=4, **TINY_ARCH)
    preset, model = _fresh()
    report = init_from_checkpoint(model, preset, tmp_path / "mae_visualize.pth")
    state = model.state_dict()
    assert report.layout == "official-full" and report.new == [] and report.dropped == []
    assert sorted(report.from_file) == sorted(state)
    for key, value in saved.items():
        assert torch.equal(state[key], value), key
    assert "0 new" in report.summary() and "(decoder, encoder)" in report.summary()


def test_encoder_only_file_keeps_a_fresh_decoder_and_says_so(tmp_path: Path) -> None:
    saved = make_official_encoder(tmp_path / "mae_pretrain.pth", seed=5, **TINY_ARCH)
    preset, model = _fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = init_from_checkpoint(model, preset, tmp_path / "mae_pretrain.pth")
    state = model.state_dict()
    assert sorted(report.from_file) == sorted(saved)
    assert report.new and all(k.startswith(("mask_token", "decoder_")) for k in report.new)
    assert set(report.new) | set(report.from_file) == set(state)
    assert all(torch.equal(state[k], before[k]) for k in report.new)
    assert all(torch.equal(state[k], saved[k]) for k in report.from_file)
    assert "new (decoder: decoder_blocks, decoder_embed, decoder_norm, decoder_pos_embed, decoder_pred, mask_token)" \
        in report.summary()


def test_cli_init_from_official_file_starts_from_its_weights(tmp_path: Path, capsys) -> None:
    saved = make_official_full(tmp_path / "mae.pth", seed=6, **TINY_ARCH)
    out = tmp_path / "run"
    # lr 0: AdamW leaves every weight where --init put it, so last.pth must hold the file's tensors.
    assert main([*RUN, "--blr", "0", "--init", str(tmp_path / "mae.pth"), "--out", str(out)]) == 0
    assert "--init" in capsys.readouterr().err
    model = torch.load(out / "last.pth", weights_only=True)["model"]
    for key, value in saved.items():
        assert torch.equal(model[key], value), key
    config = json.loads((out / "config.json").read_text())
    assert config["init"]["layout"] == "official-full" and config["init"]["new"] == []
    results = json.loads((out / "results.json").read_text())["results"]
    assert results["init"] == config["init"]


def test_cli_init_from_hf_folder(tmp_path: Path, capsys) -> None:
    pytest.importorskip("transformers")
    from hf_factory import hf_pretraining

    from umae_eval.checkpoints import read_checkpoint

    hf = hf_pretraining(seed=2, hidden_size=32, num_attention_heads=2, intermediate_size=128, patch_size=8,
                        decoder_intermediate_size=128, layer_norm_eps=1e-6)
    hf.save_pretrained(tmp_path / "vit-mae")
    out = tmp_path / "run"
    assert main([*RUN, "--blr", "0", "--lam", "0.01", "--init", str(tmp_path / "vit-mae"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "(hf-vitmae)" in err and "0 new" in err
    parsed = read_checkpoint(tmp_path / "vit-mae")
    model = torch.load(out / "last.pth", weights_only=True)["model"]
    assert set(model) == set(parsed.encoder) | set(parsed.decoder)
    for key, value in {**parsed.encoder, **parsed.decoder}.items():
        assert torch.equal(model[key], value), key


def test_hf_eps_is_reported(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from hf_factory import hf_model

    hf_model(hidden_size=32, num_attention_heads=2, intermediate_size=128, patch_size=8).save_pretrained(tmp_path / "m")
    preset, model = _fresh()
    report = init_from_checkpoint(model, preset, tmp_path / "m")
    assert "eps 1e-12 becomes the trainer's 1e-6" in report.summary()


# ------------------------------------------------------------------------------------ refusals

def test_misfit_encoder_names_fields_and_fix(tmp_path: Path) -> None:
    make_official_encoder(tmp_path / "vit_t4.pth")  # width 192, patch 4
    preset, model = _fresh()
    with pytest.raises(UmaeError) as info:
        init_from_checkpoint(model, preset, tmp_path / "vit_t4.pth")
    msg = str(info.value)
    assert "patch_size 4 in the file vs 8" in msg and "embed_dim 192 in the file vs 32" in msg
    assert "--set patch_size=4 --set embed_dim=192" in msg


def test_stated_heads_must_match(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from hf_factory import hf_model

    hf_model(hidden_size=32, num_attention_heads=1, intermediate_size=128, patch_size=8).save_pretrained(tmp_path / "m")
    preset, model = _fresh()
    with pytest.raises(UmaeError, match="num_heads 1 in the file vs 2"):
        init_from_checkpoint(model, preset, tmp_path / "m")


def test_misfit_decoder_is_refused(tmp_path: Path) -> None:
    make_official_full(tmp_path / "full.pth", decoder_depth=2, **TINY_ARCH)
    preset, model = _fresh()
    with pytest.raises(UmaeError, match="decoder does not fit preset tiny-test .'decoder_blocks.1"):
        init_from_checkpoint(model, preset, tmp_path / "full.pth")


def test_cli_refusals(tmp_path: Path, capsys) -> None:
    make_official_encoder(tmp_path / "big.pth")
    assert main([*RUN, "--init", str(tmp_path / "big.pth"), "--out", str(tmp_path / "r1")]) == 2
    assert "does not fit preset tiny-test" in capsys.readouterr().err
    assert not (tmp_path / "r1").exists()
    assert main([*RUN, "--init", str(tmp_path / "big.pth"), "--resume", str(tmp_path / "big.pth"),
                 "--out", str(tmp_path / "r2")]) == 2
    assert "pass only one of them" in capsys.readouterr().err
    # --resume still refuses another tool's file, and now points at --init.
    assert main([*RUN, "--resume", str(tmp_path / "big.pth"), "--out", str(tmp_path / "r3")]) == 2
    assert "use --init PATH" in capsys.readouterr().err
