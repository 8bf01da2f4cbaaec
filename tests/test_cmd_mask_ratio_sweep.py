"""`umae mask-ratio-sweep` end to end through `umae_eval.cli.main`, on tiny synthetic data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import ckpt_factory as CF
from umae_eval.cli import main

CLASSES = ["<b>red</b>", "green", "blue"]


def _images(rng: np.random.Generator, labels: np.ndarray, size: int) -> np.ndarray:
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.float64)[labels]
    x = base[:, None, None, :] + rng.normal(0, 50, size=(len(labels), size, size, 3))
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    y_train, y_test = np.repeat(np.arange(3), 10), np.repeat(np.arange(3), 8)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x_train=_images(rng, y_train, 16), y_train=y_train, x_test=_images(rng, y_test, 16),
             y_test=y_test, class_names=np.array(CLASSES))
    return path


SMALL = ["--pairs", "12", "--views", "3", "--bootstrap", "50", "--label-images", "9",
         "--graph-images", "6", "--graph-views", "2", "--seed", "3", "--device", "cpu"]


def test_pixel_sweep_writes_results_csv_and_report(tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["mask-ratio-sweep", "--data", str(tiny_npz), "--ratios", "0:0.75:0.25",
                 "--patch-size", "4", *SMALL, "--out", str(out)])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["command"] == "mask-ratio-sweep"
    s, r = doc["settings"], doc["results"]
    assert s["space"] == "pixel" and s["patch_size"] == 4 and s["num_patches"] == 16
    assert s["mask_ratios"] == [0.0, 0.25, 0.5, 0.75] and s["views"] == 3 and s["seed"] == 3
    assert "[0, 1]" in s["pixel_scaling"]
    assert r["num_visible"] == [16, 12, 8, 4]
    assert set(r["distances"]) == {"all-pairs", "aligned", "closest-view", "masked-image", "shared-masked-image"}
    for name, cur in r["distances"].items():
        assert len(cur["relative"]["mean"]) == 4
        np.testing.assert_allclose(np.array(cur["intra"]["mean"]) / np.array(cur["inter"]["mean"]),
                                   cur["relative"]["mean"], rtol=1e-12)
        assert cur["sweet_spot"]["mask_ratio"] in s["mask_ratios"]
        assert cur["n_intra_pairs"] == 12 and cur["n_inter_pairs"] == 12
    assert sum(r["pair_counts"]["intra"].values()) == 12
    assert len(r["label_error"]["mean"]) == 4 and r["graph"]["n_nodes"] == 12
    # unmasked, every estimator but all-pairs is the plain patch distance of the images
    al, cv = r["distances"]["aligned"], r["distances"]["closest-view"]
    assert al["intra"]["mean"][0] == pytest.approx(cv["intra"]["mean"][0], rel=1e-6)
    dist = pd.read_csv(out / "distances.csv")
    assert len(dist) == 20 and {"estimator", "mask_ratio", "relative_lo", "relative_hi"} <= set(dist.columns)
    assert len(pd.read_csv(out / "sweet_spots.csv")) == 5
    assert len(pd.read_csv(out / "label_error.csv")) == 4
    assert len(pd.read_csv(out / "graph.csv")) == 4
    html = (out / "report.html").read_text()
    assert html.count("class='umae-figure'") == 5  # Fig. 2c, its change panel, Fig. 2b, label error, graph
    for needle in ("all-pairs (the paper&#x27;s text)", "masked-image", "int(L(1 - rho))", "D^-1/2 A D^-1/2",
                   "sweet spot"):
        assert needle in html
    assert "<b>red</b>" not in html  # class names are escaped
    # the verdict opens the page: one sentence per estimator, the settings come last, collapsed
    body = html.split("</nav>", 1)[1]
    assert body.index("id='summary'") < body.index("id='fig-2c-relative-distance-intra-inter'") \
        < body.index("id='settings-and-versions'")
    sweet = pd.read_csv(out / "sweet_spots.csv")
    for _, row in sweet.iterrows():
        boundary = row["sweet_spot"] in (0.0, 0.75)
        # on 0, 0.25, 0.5, 0.75 an interval from 0.25 or below to 0.5 or above spans the range: not identified
        spans = row["sweet_lo"] <= 0.25 and row["sweet_hi"] >= 0.5
        words = ("no interior minimum (smallest at" if boundary else "sweet spot not identified (smallest at"
                 if spans else f"sweet spot at ρ = {row['sweet_spot']:g} (95%")
        assert bool(row["sweet_identified"]) == (not boundary and not spans)
        assert f"{row['estimator']}" in html and words in html, words
    for stem in ("fig2c-relative-distance", "fig2c-change", "fig2b-distances", "label-error", "graph-spectrum"):
        assert (out / "figures" / f"{stem}.pdf").stat().st_size > 1000 and (out / "figures" / f"{stem}.svg").is_file()


def test_feature_sweep_matches_unmasked_features_at_rho_zero(tiny_npz: Path, tmp_path: Path) -> None:
    from umae_eval.checkpoints import load_encoder
    from umae_eval.data import load_dataset
    from umae_eval.maskratio.pairs import sample_pairs
    from umae_eval.maskratio.sweep import _PAIRS, _rng
    from umae_eval.preprocess import to_model_input

    ckpt = tmp_path / "mae_pretrain_tiny.pth"
    CF.make_official_encoder(ckpt, img_size=16, patch_size=4, depth=1)
    out = tmp_path / "feat"
    code = main(["mask-ratio-sweep", "--data", str(tiny_npz), "--checkpoint", str(ckpt), "--ratios", "0,0.5",
                 *SMALL, "--label-train", "9", "--out", str(out)])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    s, r = doc["settings"], doc["results"]
    assert s["space"] == "feature" and s["checkpoint"]["sha256"] and s["patch_size"] == 4
    keys = {f"{e}/{m}" for e in ("own-masks", "shared-mask", "closest-view") for m in ("l2", "cosine")}
    assert set(r["distances"]) == keys
    # rho = 0 keeps every patch: all three estimators equal the distance of unmasked features
    enc = load_encoder(ckpt)
    ds = load_dataset(str(tiny_npz))
    intra = sample_pairs(ds.y_test, 12, "intra", _rng(3, _PAIRS))
    with torch.no_grad():
        f = enc.model(to_model_input(ds.x_test, 16, enc.info.mean, enc.info.std)).double()
    ref = (f[intra.a] - f[intra.b]).norm(dim=1).mean().item()
    for e in ("own-masks", "shared-mask", "closest-view"):
        assert r["distances"][f"{e}/l2"]["intra"]["mean"][0] == pytest.approx(ref, rel=1e-4)
    html = (out / "report.html").read_text()
    assert html.count("class='umae-figure'") == 5 and s["checkpoint"]["sha256"][:12] in html


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--ratios", "0:0.9:abc"], "--ratios"),
        (["--ratios", "0.5,1.2"], "outside [0, 1)"),
        (["--ratios", "0,0.99"], "keeps int(16 * (1 - 0.99)) = 0"),
        (["--estimator", "aligned,nearest"], "--estimator"),
        (["--estimator", "shared-mask"], "needs --checkpoint"),
        (["--patch-size", "5"], "--patch-size 5"),
        (["--pool", "max"], "--pool"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], needle: str, tiny_npz: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bad"
    assert main(["mask-ratio-sweep", "--data", str(tiny_npz), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error:") and needle in err
    assert not (out / "results.json").exists()


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mask-ratio-sweep", "--help"]) == 0
    text = capsys.readouterr().out
    assert "Example" in text and re.search(r"--ratios", text) and "--checkpoint" in text
