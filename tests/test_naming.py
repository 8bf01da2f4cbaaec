"""Checkpoint names from metadata (``U-MAE λ=0.01 e200``) when no --label is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckpt_factory import make_official_full, make_u_mae, make_umae
from umae_eval import analysis as A
from umae_eval.checkpoints import load_encoder
from umae_eval.checkpoints.naming import metadata_name


@pytest.mark.parametrize("meta,want", [
    ({"method": "mae", "lam": 0.01, "unif_form": "code", "epoch": 200}, "U-MAE λ=0.01 e200"),
    ({"method": "mae", "lam": 0.0, "unif_form": "code", "epoch": 3}, "MAE e3"),
    ({"method": "mae", "lam": 0.01, "unif_form": "released", "epoch": 50}, "U-MAE λ=0.01 released e50"),
    ({"method": "simmim", "lam": 0.001, "unif_form": "paper", "epoch": 7}, "U-SimMIM λ=0.001 paper e7"),
])
def test_umae_metadata_names(tmp_path: Path, meta: dict, want: str) -> None:
    make_umae(tmp_path / "last.pth", metadata=meta)
    assert metadata_name(load_encoder(tmp_path / "last.pth").info) == want


def test_u_mae_args_and_official_files(tmp_path: Path) -> None:
    make_u_mae(tmp_path / "checkpoint-399.pth", lamb=0.01, epoch=399)  # 0-based epoch of the save
    assert metadata_name(load_encoder(tmp_path / "checkpoint-399.pth").info) == "U-MAE λ=0.01 e400"
    make_official_full(tmp_path / "mae_visualize_vit_tiny.pth")  # no args, no epoch: its file name stays
    assert metadata_name(load_encoder(tmp_path / "mae_visualize_vit_tiny.pth").info) is None


def test_reports_name_checkpoints_from_metadata(tmp_path: Path) -> None:
    paths = []
    for run, lam in (("run1", 0.01), ("run2", 0.01), ("run3", 0.0)):
        (tmp_path / run).mkdir()
        make_umae(tmp_path / run / "last.pth", metadata={"method": "mae", "lam": lam, "epoch": 200})
        paths.append(tmp_path / run / "last.pth")
    make_official_full(tmp_path / "mae_visualize.pth")
    paths.append(tmp_path / "mae_visualize.pth")
    names = [s.name for s in A.load_subjects(paths)]
    assert names == ["U-MAE λ=0.01 e200 (run1)", "U-MAE λ=0.01 e200 (run2)", "MAE e200", "mae_visualize"]
    assert [s.name for s in A.load_subjects(paths[2:], labels=["a", "b"])] == ["a", "b"]
