"""Hugging Face ViTMAE folders and files, written by the real transformers, load with equal features."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from hf_factory import hf_cls, hf_model, hf_pretraining, identity_noise  # noqa: E402
from umae_eval.checkpoints import load_encoder, read_checkpoint  # noqa: E402
from umae_eval.errors import UmaeError  # noqa: E402


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def assert_same_features(folder_or_file: Path, hf, **load_kwargs) -> None:
    enc = load_encoder(folder_or_file, **load_kwargs)
    with torch.no_grad():
        ours = enc.model(images())
    torch.testing.assert_close(ours, hf_cls(hf, images()), rtol=0, atol=1e-5)


@pytest.mark.parametrize("original_names", [True, False], ids=["hub-names", "v5-names"])
def test_pretraining_folder_features_equal_transformers(tmp_path: Path, original_names: bool) -> None:
    hf = hf_pretraining(seed=3)
    hf.save_pretrained(tmp_path / "vit-mae", save_original_format=original_names)
    enc = load_encoder(tmp_path / "vit-mae")
    assert enc.info.layout == "hf-vitmae"
    # Heads (2, not 64 / 64) and eps (1e-12) exist only in config.json.
    assert enc.info.arch.num_heads == 2 and enc.info.arch.norm_eps == 1e-12
    assert enc.info.arch.embed_dim == 64 and enc.info.arch.depth == 2 and enc.info.arch.img_size == 32
    assert "ViTMAEForPreTraining, arch from config.json" in enc.info.summary()
    assert enc.info.metadata["model_type"] == "vit_mae"
    assert_same_features(tmp_path / "vit-mae", hf)
    # The weights file inside the folder finds its config.json beside it.
    assert_same_features(tmp_path / "vit-mae" / "model.safetensors", hf)


def test_fused_qkv_is_query_key_value_in_order(tmp_path: Path) -> None:
    hf = hf_pretraining(seed=1)
    hf.save_pretrained(tmp_path / "m")
    parsed = read_checkpoint(tmp_path / "m")
    attn = hf.vit.layers[1].attention
    want = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight], dim=0)
    assert torch.equal(parsed.encoder["blocks.1.attn.qkv.weight"], want)
    assert torch.equal(parsed.encoder["blocks.1.attn.qkv.bias"],
                       torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))


def test_vitmae_model_keys_and_qkv_bias_false(tmp_path: Path) -> None:
    hf = hf_model(seed=5, qkv_bias=False, layer_norm_eps=1e-6)
    hf.save_pretrained(tmp_path / "enc")
    enc = load_encoder(tmp_path / "enc")
    assert not enc.info.arch.qkv_bias and enc.info.arch.norm_eps == 1e-6
    assert "ViTMAEModel" in enc.info.note and "no-qkv-bias" in enc.info.summary()
    assert read_checkpoint(tmp_path / "enc").decoder == {}
    assert_same_features(tmp_path / "enc", hf)


def test_sharded_folder_and_pytorch_model_bin(tmp_path: Path) -> None:
    hf = hf_pretraining(seed=2)
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert_same_features(tmp_path / "sharded", hf)
    # transformers 4.x wrote pytorch_model.bin: torch.save of the same (hub-named) state dict.
    from safetensors.torch import load_file

    hf.save_pretrained(tmp_path / "st")
    (tmp_path / "bin").mkdir()
    shutil.copy(tmp_path / "st" / "config.json", tmp_path / "bin" / "config.json")
    torch.save(load_file(str(tmp_path / "st" / "model.safetensors")), tmp_path / "bin" / "pytorch_model.bin")
    assert_same_features(tmp_path / "bin", hf)


def test_lone_file_without_config_uses_vitmae_defaults(tmp_path: Path) -> None:
    # Width 128 with 2 heads = D / 64, eps 1e-12: what umae assumes with no config.json.
    hf = hf_pretraining(seed=4, hidden_size=128, num_attention_heads=2, intermediate_size=512)
    hf.save_pretrained(tmp_path / "m")
    lone = tmp_path / "downloads" / "vit-mae-tiny.safetensors"
    lone.parent.mkdir()
    shutil.copy(tmp_path / "m" / "model.safetensors", lone)
    enc = load_encoder(lone)
    assert enc.info.layout == "hf-vitmae" and "no config.json" in enc.info.note
    assert enc.info.arch.num_heads == 2 and enc.info.arch.norm_eps == 1e-12
    assert_same_features(lone, hf)


def test_decoder_renamed_to_official_mae_reconstructs_like_transformers(tmp_path: Path) -> None:
    from trainer.model import MaskedAutoencoderViT

    hf = hf_pretraining(seed=6, layer_norm_eps=1e-6, mask_ratio=0.75)
    hf.save_pretrained(tmp_path / "m")  # transformers 5 writes decoder.decoder_encoder.layer.*
    parsed = read_checkpoint(tmp_path / "m")
    ours = MaskedAutoencoderViT(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2,
                                decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2).eval()
    ours.load_state_dict({**parsed.encoder, **parsed.decoder}, strict=True)
    noise = torch.rand(3, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = hf(pixel_values=images(), noise=noise)
        got = ours(images(), 0.75, noise)
    assert torch.equal(got.mask, want.mask)
    torch.testing.assert_close(got.pred, want.logits, rtol=0, atol=1e-5)
    assert parsed.decoder_hints == {"decoder_num_heads": 2, "norm_pix_loss": False}


def test_identity_noise_keeps_patch_order() -> None:
    """The comparison's premise: with mask_ratio 0 and this noise transformers keeps every patch in order."""
    hf = hf_model(seed=0)
    x = images(1)
    with torch.no_grad():
        emb, mask, ids_restore = hf.embeddings(x, noise=identity_noise(1, 64))
        patches = hf.embeddings.patch_embeddings(x) + hf.embeddings.position_embeddings[:, 1:]
    assert mask.sum() == 0 and torch.equal(ids_restore[0], torch.arange(64))
    torch.testing.assert_close(emb[:, 1:], patches, rtol=0, atol=0)


# ------------------------------------------------------------------------------------ refusals

def test_non_gelu_activation_is_refused(tmp_path: Path) -> None:
    hf_pretraining(hidden_act="relu").save_pretrained(tmp_path / "relu")
    with pytest.raises(UmaeError, match="hidden_act 'relu'; only 'gelu'") as info:
        load_encoder(tmp_path / "relu")
    assert str(tmp_path / "relu") in str(info.value) and info.value.exit_code == 2


def test_unexpected_key_and_empty_folder(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    hf_model().save_pretrained(tmp_path / "m")
    state = load_file(str(tmp_path / "m" / "model.safetensors"))
    state["encoder.layer.0.attention.attention.lambda1"] = torch.zeros(1)  # not a ViTMAE tensor
    save_file(state, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(UmaeError, match="unexpected key 'encoder.layer.0.attention.attention.lambda1'"):
        load_encoder(tmp_path / "m")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(UmaeError, match=r"holds no model.safetensors / pytorch_model.bin \(it holds: notes.txt\)"):
        load_encoder(tmp_path / "empty")
