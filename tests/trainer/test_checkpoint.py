"""Checkpoints: layout, weights_only loading, timm compatibility, atomic writes, RNG states."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from umae_eval.compat import ensure_timm_importable

ensure_timm_importable()  # before timm
from trainer.checkpoint import (
    load_checkpoint,
    resume_path,
    rng_state,
    save_checkpoint,
    set_rng_state,
    update_last,
)
from trainer.loop import TrainConfig, train_run
from trainer.model import build_model, is_encoder_key
from trainer.presets import get_preset
from umae_eval.errors import UmaeError


def _toy_npz(path: Path, n_train: int = 64, n_test: int = 32) -> Path:
    """Four classes of flat-coloured noisy 32x32 images."""
    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 4, n)
        x = np.clip(40.0 * y[:, None, None, None] + 40 + rng.normal(0, 25, (n, 32, 32, 3)), 0, 255)
        return x.astype(np.uint8), y.astype(np.int64)

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ckpt")
    data = _toy_npz(root / "toy.npz")
    train_run(TrainConfig(data=str(data), preset="tiny-test", out=root / "run", epochs=1, lam=0.01,
                          eval_images=32, knn_train_images=64))
    return root / "run"


def test_layout_and_weights_only_load(run_dir: Path) -> None:
    ckpt = torch.load(run_dir / "last.pth", map_location="cpu", weights_only=True)
    assert {"model", "umae", "optimizer", "epoch", "step", "rng", "sampler"} <= set(ckpt)
    meta = ckpt["umae"]
    json.dumps(meta)  # JSON-safe metadata
    assert meta["format_version"] == 1
    assert meta["preset"] == "tiny-test" and meta["method"] == "mae"
    assert meta["lam"] == 0.01 and meta["unif_form"] == "code"
    arch = ("img_size", "patch_size", "embed_dim", "depth", "num_heads")
    assert tuple(meta[k] for k in arch) == (32, 8, 32, 2, 2)
    assert (meta["decoder_embed_dim"], meta["decoder_depth"], meta["decoder_num_heads"]) == (32, 1, 2)
    assert meta["mean"] == [0.5, 0.5, 0.5] and meta["std"] == [0.5, 0.5, 0.5]
    assert len(meta["data_fingerprint"]) >= 16 and meta["data_spec"].endswith("toy.npz")
    assert "torch" in meta["versions"]
    assert ckpt["epoch"] == meta["epoch"] == 1 and ckpt["step"] == meta["step"] == 4
    assert ckpt["sampler"] == {"epoch": 1, "step_in_epoch": 0, "seed": 0, "num_samples": 64}
    keys = set(ckpt["model"])
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.1.mlp.fc2.bias", "norm.weight",
            "mask_token", "decoder_embed.weight", "decoder_pos_embed", "decoder_blocks.0.attn.qkv.weight",
            "decoder_norm.bias", "decoder_pred.weight"} <= keys
    # the weights are the trained ones, not the initialisation
    torch.manual_seed(0)
    fresh = build_model(get_preset("tiny-test")).state_dict()
    assert not torch.equal(fresh["blocks.0.attn.qkv.weight"], ckpt["model"]["blocks.0.attn.qkv.weight"])


def test_numbered_checkpoint_and_last_are_the_same_file_contents(run_dir: Path) -> None:
    last, numbered = run_dir / "last.pth", run_dir / "checkpoint-1.pth"
    assert not last.is_symlink()
    assert last.read_bytes() == numbered.read_bytes()
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_encoder_loads_strictly_into_timm(run_dir: Path) -> None:
    import timm

    ckpt = torch.load(run_dir / "last.pth", map_location="cpu", weights_only=True)
    enc = {k: v for k, v in ckpt["model"].items() if is_encoder_key(k)}
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                            embed_dim=32, depth=2, num_heads=2, num_classes=0)
    vit.load_state_dict(enc, strict=True)
    vit.eval()
    model = build_model(get_preset("tiny-test"))
    model.load_state_dict(ckpt["model"])
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        latent, _, _ = model.forward_encoder(x, 0.0, torch.arange(16.0).expand(3, 16))
        assert torch.allclose(vit(x), latent[:, 0], atol=1e-5)


def test_rng_state_round_trip(tmp_path: Path) -> None:
    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    assert first[2] == again[2]


def test_atomic_save_keeps_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint-1.pth"
    save_checkpoint(path, {"x": torch.ones(2)})
    good = path.read_bytes()

    def broken_save(obj: object, fh: object) -> None:
        fh.write(b"half a checkpoint")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, {"x": torch.zeros(2)})
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1.pth"]


def test_update_last_follows_the_newest(tmp_path: Path) -> None:
    a = save_checkpoint(tmp_path / "checkpoint-1.pth", {"x": torch.ones(1)})
    update_last(a)
    b = save_checkpoint(tmp_path / "checkpoint-2.pth", {"x": torch.full((1,), 2.0)})
    last = update_last(b)
    assert torch.load(last, weights_only=True)["x"].item() == 2.0
    assert torch.load(a, weights_only=True)["x"].item() == 1.0
    # replacing the numbered file later must not change last.pth (no symlink)
    save_checkpoint(b, {"x": torch.full((1,), 3.0)})
    assert torch.load(last, weights_only=True)["x"].item() == 2.0


def test_load_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UmaeError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pth")
    torch.save({"model": {}}, tmp_path / "other.pth")
    with pytest.raises(UmaeError, match="not a umae training checkpoint"):
        load_checkpoint(tmp_path / "other.pth")
    (tmp_path / "cut.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UmaeError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "cut.pth")


def test_resume_path(tmp_path: Path) -> None:
    assert resume_path(tmp_path, None) is None
    assert resume_path(tmp_path, "auto") is None  # nothing to resume: fresh start
    (tmp_path / "last.pth").write_bytes(b"x")
    assert resume_path(tmp_path, "auto") == tmp_path / "last.pth"
    assert resume_path(tmp_path / "x", str(tmp_path)) == tmp_path / "last.pth"
    with pytest.raises(UmaeError, match="--resume"):
        resume_path(tmp_path, str(tmp_path / "missing.pth"))
    assert os.path.exists(tmp_path / "last.pth")
