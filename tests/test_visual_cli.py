"""`umae reconstruct` end to end: files written, settings recorded, the encoder-only refusal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ckpt_factory as CF
from figure_checks import assert_pdf_draws, pdf_operators
from umae_eval.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 6)
    x = rng.integers(0, 256, (len(y), 32, 32, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y, class_names=np.array(["cat", "dog", "ship"]))
    return path


def _umae(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "umae_eval.cli", *cmd], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


@pytest.mark.slow  # ~15 s of CPU: four picture figures in three formats
def test_reconstruct_writes_report_figures_and_settings(tiny_npz: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    CF.make_umae(a, {"decoder_num_heads": 2, "norm_pix_loss": False}, seed=0)
    CF.make_umae(b, {"decoder_num_heads": 2, "norm_pix_loss": True}, seed=1)
    out = tmp_path / "out"
    code = main(["reconstruct", str(a), str(b), "--data", str(tiny_npz), "--index", "7", "--mask-ratio", "0.75",
                 "--seed", "3", "--stat-images", "6", "--bootstrap", "50", "--label", "MAE", "--label", "NP",
                 "--unnormalise", "visible,true", "--out", str(out)])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert res["settings"]["mask_ratios"] == [0.75] and res["settings"]["seed"] == 3
    assert res["settings"]["image_indices"] == [7] and res["results"]["images"] == [{"index": 7, "label": "dog"}]
    cks = res["results"]["checkpoints"]
    assert [c["norm_pix"]["norm_pix"] for c in cks] == [False, True]
    assert [(r["mask_ratio"], r["display"]) for r in cks[0]["reconstructions"]] == [(0.75, "pixels")]
    assert [r["display"] for r in cks[1]["reconstructions"]] == ["visible", "true"]
    assert "LEAKS THE TARGET" in cks[1]["reconstructions"][1]["display_meaning"]
    mse = pd.read_csv(out / "reconstruction_mse.csv")
    assert len(mse) == 1 + 2  # MAE: one grid; NP: one per display mode; one image
    stats = pd.read_csv(out / "attention_stats.csv")
    assert len(stats) == 2 * 2 * 3 and {"distance", "distance_lo", "nmi", "cls_entropy"} <= set(stats.columns)
    html = (out / "report.html").read_text()
    assert "LEAK" in html and html.count("<img class='umae-picture'") == 5
    figs = sorted(p.name for p in (out / "figures").glob("*.pdf"))
    assert figs == ["attention-distance.pdf", "attention-entropy-nmi.pdf", "attention-mae.pdf", "attention-np.pdf",
                    "reconstruction-mae.pdf", "reconstruction-np.pdf", "side-by-side-0p75.pdf"]
    assert_pdf_draws(out / "figures" / "attention-distance.pdf")
    # a picture figure: one drawn image per panel (1 image x 4 panels x 2 display modes) and its labels
    assert pdf_operators(out / "figures" / "reconstruction-np.pdf")[b"Do"] >= 8


def test_encoder_only_and_bad_options_exit_2(tmp_path: Path) -> None:
    enc = tmp_path / "mae_pretrain_vit_tiny.pth"
    CF.make_official_encoder(enc)
    run = _umae(["reconstruct", str(enc), "--data", "demo", "--out", str(tmp_path / "o")])
    assert run.returncode == 2, run.stderr
    lines = [ln for ln in run.stdout.splitlines() + run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "reconstruction needs the MAE decoder" in lines[0] and "visualize" in lines[0]
    assert "Traceback" not in run.stderr and not (tmp_path / "o").exists()
    run = _umae(["reconstruct", str(enc), "--mask-ratio", "1.2"])
    assert run.returncode == 2 and "--mask-ratio 1.2: each ratio must be in (0, 1)" in run.stdout + run.stderr


@pytest.mark.slow  # ~10 s of CPU: transformers' import and the figures
def test_reconstruct_a_hugging_face_vitmae_folder_on_the_demo_images(tmp_path: Path) -> None:
    """The shipped demo encoders have no decoder; a transformers ViTMAEForPreTraining folder does."""
    pytest.importorskip("transformers")
    from hf_factory import hf_pretraining

    hf_pretraining(seed=2, mask_ratio=0.75).save_pretrained(tmp_path / "vit-mae")
    out = tmp_path / "out"
    assert main(["reconstruct", str(tmp_path / "vit-mae"), "--data", "demo", "--images", "2", "--stat-images", "4",
                 "--bootstrap", "20", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    ck = res["results"]["checkpoints"][0]
    assert ck["layout"] == "hf-vitmae" and ck["decoder"] == "decoder dim32 depth1 heads2"
    assert ck["norm_pix"]["source"] == "stated" and ck["norm_pix"]["norm_pix"] is False  # config.json says so
    assert len(res["settings"]["image_indices"]) == 2 and (out / "figures" / "attention-distance.pdf").is_file()


def test_the_shipped_demo_encoders_are_refused_with_one_line(tmp_path: Path) -> None:
    demo = ROOT / "umae_eval" / "demo" / "encoders" / "mae-cifar10-vit96x6-p4-e20.pth"
    run = _umae(["reconstruct", str(demo), "--data", "demo", "--out", str(tmp_path / "o")])
    assert run.returncode == 2
    assert "this umae file holds the encoder only" in run.stdout + run.stderr
