"""umae_eval.checkpoint_checks: NaN weights and metadata that contradicts the weights (issue 11)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import ckpt_factory as CF
from umae_eval.checkpoint_checks import metadata_conflicts, nonfinite_tensors
from umae_eval.checkpoints import load_encoder
from umae_eval.cli import main


def test_nonfinite_tensors_names_each_bad_tensor() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    assert nonfinite_tensors(model) == []
    with torch.no_grad():
        model[0].weight[1, 2] = float("nan")
        model[1].bias[0] = float("-inf")
    assert nonfinite_tensors(model) == ["0.weight", "1.bias"]


def test_umae_metadata_against_the_weights(tmp_path: Path) -> None:
    path = tmp_path / "edited.pth"
    CF.make_umae(path, seed=1)
    ckpt = torch.load(path, weights_only=True)
    assert metadata_conflicts("umae", ckpt["umae"], load_encoder(path).info.arch) == []
    ckpt["umae"].update(embed_dim=384, patch_size=16)
    ckpt["umae"]["preset_fields"] = {"embed_dim": 192, "patch_size": 16, "depth": 2}
    torch.save(ckpt, path)
    loaded = load_encoder(path)
    assert loaded.info.arch.embed_dim == 192 and loaded.info.arch.patch_size == 4  # the weights decide
    assert metadata_conflicts("umae", loaded.info.metadata, loaded.info.arch) == [
        "patch_size: metadata 16, weights 4",
        "embed_dim: metadata 384, weights 192",
        "embed_dim: metadata 384, preset_fields 192",
    ]


def test_official_args_against_the_weights(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint-3.pth"
    CF.make_umae_layout_official(path, seed=2)
    arch = load_encoder(path).info.arch  # ViT-T/4 at 32 px
    agreeing = {"model": "mae_vit_tiny_patch4", "input_size": 32}
    assert metadata_conflicts("official-full", agreeing, arch) == []
    assert metadata_conflicts("official-full", {"model": "mae_vit_base_patch16", "input_size": 224}, arch) == [
        "img_size: args.input_size 224, weights 32",
        "embed_dim: args.model 'mae_vit_base_patch16' (768), weights 192",
        "patch_size: args.model 'mae_vit_base_patch16' (16), weights 4",
    ]
    assert metadata_conflicts("official-full", {"model": "custom"}, arch) == []  # nothing to compare


def test_probe_warns_about_conflicting_metadata_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "edited.pth"
    CF.make_umae(path, seed=1)
    ckpt = torch.load(path, weights_only=True)
    ckpt["umae"]["embed_dim"] = 384
    torch.save(ckpt, path)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 4)
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8), y_train=y,
             x_test=rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8), y_test=y)
    assert main(["probe", str(path), "--data", str(npz), "--methods", "mean", "--device", "cpu",
                 "--out", str(tmp_path / "out")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {path}: its metadata contradicts its weights (embed_dim: metadata 384, "
                        "weights 192); the model is built from the weights: check the file"]
