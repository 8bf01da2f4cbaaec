"""`umae convert`: every result loads in the official layout reader, in timm and in transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ckpt_factory import make_official_full, make_u_mae, make_umae, tiny_vit
from trainer.model import MaskedAutoencoderViT
from umae_eval.checkpoints import load_encoder, read_checkpoint
from umae_eval.checkpoints.convert import convert_checkpoint
from umae_eval.cli import main
from umae_eval.compat import ensure_timm_importable

ensure_timm_importable()
import timm  # noqa: E402


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def tiny_mae(**kw) -> MaskedAutoencoderViT:
    """umae's MAE for ckpt_factory's default full checkpoint (official names; decoder 32 x 1, 2 heads)."""
    args = dict(img_size=32, patch_size=4, embed_dim=192, depth=2, num_heads=3,
                decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
    return MaskedAutoencoderViT(**{**args, **kw}).eval()


@pytest.fixture
def umae_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    path = tmp_path / "runs" / "last.pth"
    path.parent.mkdir()
    saved = make_umae(path, metadata={"decoder_num_heads": 2}, seed=7)
    return path, saved


def test_to_official_round_trips_through_the_official_reader(tmp_path: Path, umae_file) -> None:
    src, saved = umae_file
    out = tmp_path / "mae_full.pth"
    result = convert_checkpoint(src, out, "official")
    assert result.source_layout == "umae" and result.decoder_tensors > 0
    ckpt = torch.load(out, weights_only=True)
    assert set(ckpt) == {"model"}
    assert set(ckpt["model"]) == set(saved) and all(torch.equal(ckpt["model"][k], v) for k, v in saved.items())
    assert load_encoder(out).info.layout == "official-full"
    tiny_mae().load_state_dict(ckpt["model"], strict=True)  # the official model's own names


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_to_timm_loads_with_timms_pretrained_file_path(tmp_path: Path, suffix: str) -> None:
    src = tmp_path / "u_mae.pth"
    make_u_mae(src, seed=3)  # U-MAE: fc_norm + online head fc.*, decoder
    out = tmp_path / f"vit_tiny_mae{suffix}"
    result = convert_checkpoint(src, out, "timm")
    assert any("decoder" in n for n in result.notes) and any("fc_norm left out" in n for n in result.notes)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(out)), img_size=32, patch_size=4,
                              depth=2, num_classes=0).eval()
    with torch.no_grad():
        assert torch.equal(model(images()), tiny_vit(seed=3)(images()))


def test_to_hf_loads_in_transformers_with_equal_features_and_reconstruction(tmp_path: Path, umae_file) -> None:
    pytest.importorskip("transformers")
    from hf_factory import hf_cls
    from transformers import ViTMAEForPreTraining

    src, saved = umae_file
    out = tmp_path / "umae-hf"
    result = convert_checkpoint(src, out, "hf")
    assert "written as ViTMAEForPreTraining" in result.summary()
    hf, info = ViTMAEForPreTraining.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    hf.eval()
    hf.config.mask_ratio = 0.0
    torch.testing.assert_close(hf_cls(hf, images()), tiny_vit(seed=7)(images()).detach(), rtol=0, atol=1e-5)
    # The decoder too: transformers' reconstruction equals umae's MAE on the same weights and noise.
    hf.config.mask_ratio = 0.75
    ours = tiny_mae()
    ours.load_state_dict(saved, strict=True)
    noise = torch.rand(3, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ours(images(), 0.75, noise)
        got = hf(pixel_values=images(), noise=noise)
    assert torch.equal(got.mask, want.mask)
    torch.testing.assert_close(got.logits, want.pred, rtol=0, atol=1e-5)
    # And back: umae reads the folder to the same tensors.
    back = read_checkpoint(out)
    assert all(torch.equal(back.encoder[k], saved[k]) for k in back.encoder)
    assert all(torch.equal(back.decoder[k], saved[k]) for k in back.decoder)


def test_hf_to_official_and_back_to_hf(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from hf_factory import hf_cls, hf_pretraining
    from transformers import ViTMAEForPreTraining

    hf = hf_pretraining(seed=2, layer_norm_eps=1e-6)
    hf.save_pretrained(tmp_path / "hub")
    official = tmp_path / "from_hf.pth"
    result = convert_checkpoint(tmp_path / "hub", official, "official")
    assert any("--num-heads 2" in n for n in result.notes)  # 2 heads at width 64: not D / 64
    enc = load_encoder(official, arch_overrides={"num_heads": 2})
    assert enc.info.layout == "official-full"
    with torch.no_grad():
        torch.testing.assert_close(enc.model(images()), hf_cls(hf, images()), rtol=0, atol=1e-5)
    again = tmp_path / "again"
    convert_checkpoint(tmp_path / "hub", again, "hf")
    twin = ViTMAEForPreTraining.from_pretrained(again).eval()
    ref = hf.state_dict()
    assert set(twin.state_dict()) == set(ref)
    assert all(torch.equal(v, ref[k]) for k, v in twin.state_dict().items())


def test_eps_note_and_encoder_only_hf(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from hf_factory import hf_model

    hf_model(seed=1, hidden_size=128, num_attention_heads=2, intermediate_size=512).save_pretrained(tmp_path / "enc")
    result = convert_checkpoint(tmp_path / "enc", tmp_path / "enc.safetensors", "timm")
    assert any("the source used 1e-12" in w for w in result.warnings)
    result = convert_checkpoint(tmp_path / "enc", tmp_path / "enc-hf", "hf")
    assert "written as ViTMAEModel" in result.summary() and result.decoder_tensors == 0


# ------------------------------------------------------------------------------------ refusals

def test_cli_convert_and_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "full.pth"
    make_official_full(src)  # decoder 32 wide, no args: its head count is unknown
    assert main(["convert", str(src), str(tmp_path / "enc.safetensors"), "--to", "timm"]) == 0
    assert str(tmp_path / "enc.safetensors") in capsys.readouterr().out
    assert main(["convert", str(src), str(tmp_path / "enc.safetensors"), "--to", "timm"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "x.pth"), "--to", "onnx"]) == 2
    assert "choose one of official, timm, hf" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "x.safetensors"), "--to", "official"]) == 2
    assert "writes a .pth file" in capsys.readouterr().err
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["convert", str(src), str(tmp_path / "hf"), "--to", "hf"]) == 2
    assert "--decoder-num-heads" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written
    assert main(["convert", str(src), str(tmp_path / "hf"), "--to", "hf", "--decoder-num-heads", "2"]) == 0
    assert (tmp_path / "hf" / "config.json").is_file()


def test_u_mae_to_official_drops_fc_norm_so_the_official_strict_load_works(tmp_path: Path) -> None:
    """Issue 23: U-MAE's fc_norm.* went into the official file, whose model (models_mae) has none."""
    src = tmp_path / "u_mae.pth"
    make_u_mae(src, seed=3)
    out = tmp_path / "official.pth"
    result = convert_checkpoint(src, out, "official")
    assert any("fc_norm left out" in n for n in result.notes)
    ckpt = torch.load(out, weights_only=True)
    assert not any(k.startswith("fc_norm.") for k in ckpt["model"])
    tiny_mae().load_state_dict(ckpt["model"], strict=True)


def test_hf_to_official_warns_about_the_eps_in_its_own_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 23: layer_norm_eps 1e-12 was dropped with only a clause inside the summary."""
    pytest.importorskip("transformers")
    from hf_factory import hf_pretraining

    hf_pretraining(seed=1).save_pretrained(tmp_path / "hf")
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "o.pth"), "--to", "official",
                 "--decoder-num-heads", "2"]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "eps 1e-12" in warned[0], err
