"""`umae collapse-report` with the representation metrics: values with intervals in results.json,
the CSVs, paired differences, CKA between checkpoints and (--layers all) block x block CKA."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ckpt_factory as CF
from umae_eval.cli import main


def _images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.float64)[labels]
    return np.clip(base[:, None, None, :] + rng.normal(0, 40, size=(len(labels), 32, 32, 3)), 0, 255).astype(np.uint8)


@pytest.mark.slow  # three encoder passes per checkpoint plus two checkpoints' reports: ~30-100 s on 2 shared cores
def test_collapse_report_representation_metrics(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y_train, y_test = np.repeat(np.arange(3), 10), np.repeat(np.arange(3), 8)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x_train=_images(rng, y_train), y_train=y_train, x_test=_images(rng, y_test), y_test=y_test,
             class_names=np.array(["a", "b", "c"]))
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    CF.make_official_encoder(a, seed=2)
    CF.make_official_encoder(b, seed=3)
    out = tmp_path / "out"
    code = main(["collapse-report", str(a), str(b), "--data", str(npz), "--layers", "all", "--max-views", "12",
                 "--bootstrap", "100", "--device", "cpu", "--label", "A", "--label", "B", "--out", str(out)])
    assert code == 0
    res = json.loads((out / "results.json").read_text())["results"]
    per = res["checkpoints"]["A"]["representation_metrics"]
    for name in ("participation_ratio", "stable_rank", "rankme_paper", "rankme_pca", "nc1", "cdnv",
                 "lidar_masked", "lidar_augmented", "fourier_high"):
        assert np.isfinite(per["values"][name]), name
    assert per["settings"]["lidar_images"] == 24 and per["settings"]["lidar_views"] == 10
    cb = per["details"]["cka_blocks"]
    assert cb["blocks_a"] == [0, 1] and cb["matrix"][0][0] == pytest.approx(1.0)
    rm = res["representation_metrics"]
    iv = rm["intervals"]["B"]["lidar_masked"]
    assert iv["lo"] <= iv["estimate"] <= iv["hi"]
    assert {d["metric"] for d in rm["differences"]} >= {"stable_rank", "lidar_masked", "fourier_high"}
    assert rm["pairs"]["A vs B"]["values"]["cka_linear"] > 0
    assert len(rm["pairs"]["A vs B"]["details"]["cka_blocks"]["matrix"]) == 2
    table = pd.read_csv(out / "representation_metrics.csv")
    row = table[(table.checkpoint == "A") & (table.metric == "rankme_pca")].iloc[0]
    assert row["value"] == pytest.approx(per["values"]["rankme_pca"]) and row["value_lo"] <= row["value_hi"]
    assert "reptrix" in row["definition"]
    blocks = pd.read_csv(out / "cka_blocks.csv")
    assert len(blocks) == 3 * 4  # A x A, B x B, A vs B: 2 x 2 blocks each
    assert set(pd.read_csv(out / "fourier_by_block.csv")["block"]) == {0, 1}
    assert len(pd.read_csv(out / "representation_pairs.csv")) == 1
    html = (out / "report.html").read_text()
    assert "Representation metrics" in html and "CKA block x block: A vs B" in html
    assert (out / "figures" / "fourier-by-block.pdf").exists() and (out / "figures" / "cka-blocks.svg").exists()
    # CKA cells carry their interval columns (24 images: one minibatch, so no interval: empty cells)
    assert {"cka_lo", "cka_hi", "batches"} <= set(blocks.columns) and cb["interval"].startswith("none")
    # every block read gets the metrics, with intervals, in results.json, a CSV, the report and figures/
    by = res["checkpoints"]["B"]["representation_metrics_by_block"]
    assert set(by) == {"0", "1"} and by["1"]["values"]["lidar_masked"] == pytest.approx(
        res["checkpoints"]["B"]["representation_metrics"]["values"]["lidar_masked"])
    rows = pd.read_csv(out / "representation_by_block.csv")
    pr = rows[(rows.checkpoint == "A") & (rows.metric == "participation_ratio")].sort_values("block")
    assert list(pr["block"]) == [0, 1] and (pr["lo"] <= pr["value"]).all() and (pr["value"] <= pr["hi"]).all()
    assert set(pd.read_csv(out / "representation_block_differences.csv")["block"]) == {0, 1}
    assert len(rm["by_block"]["differences"]) > 0
    assert (out / "figures" / "by-block-participation-ratio.pdf").exists()
    assert "Participation ratio and stable rank by block" in html
    # the summary says the paired differences in words, with the one verdict wording
    sentences = res["summary"]["sentences"]
    lid = next(t for t in sentences if t.startswith("LiDAR over masked views: B minus A is "))
    assert lid.endswith("test-image noise at 24 test images.") and lid in rm["sentences"]
