"""`umae probe`, `umae collapse-report` and `umae compare` end to end through `umae_eval.cli.main`.

Tiny ViTs (tests/ckpt_factory.py) on a tiny synthetic .npz whose class names try to inject
markup, so every test also checks that the report shows them as text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ckpt_factory as CF
from umae_eval import analysis as A
from umae_eval.pipeline import curves as C
from umae_eval.cli import main
from umae_eval.provenance import sha256_file

EVIL_IMG = "<img src=x onerror=alert(1)>"
EVIL_SCRIPT = "</script><script>alert(1)</script>"
CLASSES = [EVIL_IMG, EVIL_SCRIPT, "cat"]


def _images(rng: np.random.Generator, labels: np.ndarray, size: int = 32) -> np.ndarray:
    """Class-dependent colour plus noise, uint8 (N, size, size, 3): separable but not trivial."""
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.float64)[labels]
    x = base[:, None, None, :] + rng.normal(0, 40, size=(len(labels), size, size, 3))
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    y_train = np.repeat(np.arange(3), 30)
    y_test = np.repeat(np.arange(3), 12)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x_train=_images(rng, y_train), y_train=y_train, x_test=_images(rng, y_test),
             y_test=y_test, class_names=np.array(CLASSES))
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One checkpoint of each layout; the umae one sits in a run folder with metrics.jsonl."""
    root = tmp_path_factory.mktemp("ckpts")
    run = root / "runs" / "tiny-umae"
    run.mkdir(parents=True)
    rows = [{"epoch": e, "loss": 1.0 / e, "effective_rank": 10.0 + e, "rankme": 11.0 + e} for e in (1, 2, 3, 4)]
    rows[1].update(knn_accuracy=40.0, mean_classifier_accuracy=35.0)
    rows[3].update(knn_accuracy=55.0, mean_classifier_accuracy=50.0)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"epoch": 5, "lo')
    paths = {
        "umae": run / "checkpoint-4.pth",
        "official": root / "mae_pretrain_vit_tiny.pth",
        "u-mae": root / "u_mae_tiny.pth",
        "timm": root / "vit_tiny.mae.safetensors",
    }
    CF.make_umae(paths["umae"], seed=1)
    CF.make_official_encoder(paths["official"], seed=2)
    CF.make_u_mae(paths["u-mae"], seed=3)
    CF.make_timm(paths["timm"], "safetensors", seed=4)
    return paths


#: The umae checkpoint's name without --label: from its metadata (ckpt_factory.umae_metadata:
#: method u-mae, lambda 0.01, 3 epochs), not its file stem 'checkpoint-4'.
UMAE_NAME = "U-MAE λ=0.01 e3"


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _n_figures(html: str) -> int:
    return html.count("<div class='umae-figure'>")


def _assert_figures_carry_settings(html: str, sha256s: list[str]) -> None:
    """Each section with figures (one, or a row of maps) carries its settings incl. sha256 and versions."""
    import re as _re

    sections = [s for s in _re.split(r"<h[23][ >]", html) if "<div class='umae-figure'>" in s]
    assert sections
    for section in sections:
        assert "class='figsettings'" in section
        settings = section.split("class='figsettings'>")[1]
        assert ("seed=" in settings or "source=metrics.jsonl" in settings) and "versions=umae " in settings
        assert "torch " in settings
        assert all(f"sha256 {sha[:12]}" in settings for sha in sha256s)


def _assert_escaped(html: str) -> None:
    """The injected class names appear only in escaped form, in markup and in plotly's JSON."""
    assert "<img src=x" not in html
    assert "<script>alert(1)" not in html
    assert "</script><script>alert" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # settings table / legend text
    # plotly.js itself and the print helper are one <script> each; every figure adds exactly one more
    assert html.count("<script") == _n_figures(html) + 2
    assert html.count("</script>") == html.count("<script")


def test_probe_writes_results_csv_and_report(tiny_npz: Path, ckpts: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "probe"
    code = main(["probe", str(ckpts["umae"]), "--data", str(tiny_npz), "--k", "5,10,200", "--temperature", "0.1",
                 "--device", "cpu", "--seed", "3", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # what was loaded, in one line: layout, arch, sha256 prefix
    assert f"{UMAE_NAME}: umae: ViT dim192" in captured.err and sha256_file(ckpts["umae"])[:12] in captured.err
    res = _results(out)
    assert res["command"] == "probe"
    acc = res["results"]["checkpoints"][UMAE_NAME]["accuracies"]
    assert set(acc) == {"mean_classifier_accuracy", "linear_accuracy", "knn_accuracy@5", "knn_accuracy@10",
                        "knn_accuracy@200"}
    assert all(0.0 <= v <= 100.0 for v in acc.values())
    assert acc["mean_classifier_accuracy"] > 50.0  # colour classes are easy; chance is 33%
    s = res["settings"]
    ck = s["checkpoints"][0]
    assert ck["sha256"] == sha256_file(ckpts["umae"]) and ck["layout"] == "umae"
    assert ck["arch"]["embed_dim"] == 192 and ck["name"] == UMAE_NAME
    assert s["data"]["fingerprint"] and s["data"]["n_train"] == 90 and s["data"]["class_names"] == CLASSES
    assert (s["pool"], s["k"], s["temperature"], s["seed"], s["protocol"]) == ("cls", [5, 10, 200], 0.1, 3, "fast")
    assert "torch" in res["versions"]
    csv = pd.read_csv(out / "accuracy.csv")
    assert list(csv["checkpoint"]) == [UMAE_NAME]
    assert csv.loc[0, "linear_accuracy"] == pytest.approx(acc["linear_accuracy"])
    html = (out / "report.html").read_text()
    assert _n_figures(html) == 1
    assert ck["sha256"] in html
    _assert_escaped(html)
    _assert_figures_carry_settings(html, [ck["sha256"]])
    assert UMAE_NAME in captured.out and str(out / "report.html") in captured.out


def test_collapse_report_figures_maps_and_training_curves(tiny_npz: Path, ckpts: dict[str, Path],
                                                          tmp_path: Path) -> None:
    out = tmp_path / "collapse"
    code = main(["collapse-report", str(ckpts["umae"]), str(ckpts["official"]), "--data", str(tiny_npz),
                 "--random-init", "--embed", "tsne", "--per-class", "10", "--max-views", "24",
                 "--mask-ratio", "0.5", "--device", "cpu", "--label", "ours", "--label", "mae", "--out", str(out)])
    assert code == 0
    res = _results(out)
    per = res["results"]["checkpoints"]
    assert list(per) == ["ours", "mae", "random init"]
    assert [c["layout"] for c in res["settings"]["checkpoints"]] == ["umae", "official-encoder", "random-init"]
    for r in per.values():
        assert 1.0 <= r["effective_rank"] <= 192.0 and 1.0 <= r["rankme"] <= 192.0
        assert r["singular_values_centered"][0] == pytest.approx(1.0)
        assert r["masked_views"] == {"mask_ratio": 0.5, "n_images": 24, "seed": 0}
        assert 0.0 <= r["alignment"] <= 4.0 and r["uniformity"] <= 0.0
        assert r["maps"][0]["n_points"] == 30
    assert per["ours"]["training_curves"]["effective_rank"] == [11.0, 12.0, 13.0, 14.0]  # torn line skipped
    assert per["mae"]["training_curves"] is None
    frame = pd.read_csv(out / "collapse.csv")
    assert list(frame["checkpoint"]) == ["ours", "mae", "random init"]
    # the summary's verdict is the effective rank, each value with its 95% interval
    summ = res["results"]["summary"]
    assert summ["metric"] == "effective_rank" and summ["rank_bootstrap_resamples"] == 200
    for h in summ["headlines"]:
        iv = h["rank_intervals"]["effective_rank"]
        assert iv["lo"] <= per[h["name"]]["effective_rank"] == iv["estimate"] <= iv["hi"]
    assert len(summ["comparisons"]) == 6
    assert summ["sentences"][0].endswith(f"at {res['settings']['data']['n_test']} test images.")
    ivs = pd.read_csv(out / "intervals.csv")
    assert sorted(set(ivs["metric"])) == ["effective_rank", "rankme"] and len(ivs) == 6
    assert len(pd.read_csv(out / "differences.csv")) == 6
    maps = pd.read_csv(out / "maps.csv", keep_default_na=False)
    assert set(maps["class_name"]) == set(CLASSES) and len(maps) == 90
    html = (out / "report.html").read_text()
    # 2 spectra + ranks + alignment/uniformity + 3 t-SNE maps + 3 curves (effective rank, kNN, mean classifier)
    assert _n_figures(html) == 11  # + the token Fourier lines by block (representation metrics)
    assert "Effective rank along training (Fig. 1c)" in html and '"type": "log"' in html
    _assert_escaped(html)
    _assert_figures_carry_settings(html, [c["sha256"] for c in res["settings"]["checkpoints"]])


def test_compare_ranks_mixed_layouts(tiny_npz: Path, ckpts: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "compare"
    order = ["official", "u-mae", "timm", "umae"]
    code = main(["compare", *[str(ckpts[k]) for k in order], "--data", str(tiny_npz), "--embed", "none",
                 "--methods", "linear,knn", "--k", "5", "--max-views", "16", "--device", "cpu",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    res = _results(out)
    assert res["results"]["ranked_by"] == "linear_accuracy"
    layouts = {c["name"]: c["layout"] for c in res["settings"]["checkpoints"]}
    assert sorted(layouts.values()) == sorted(["official-encoder", "u-mae", "timm", "umae"])
    ranking = pd.read_csv(out / "ranking.csv")
    assert list(ranking["rank"]) == [1, 2, 3, 4]
    assert list(ranking["linear_accuracy"]) == sorted(ranking["linear_accuracy"], reverse=True)
    assert list(ranking["checkpoint"]) == res["results"]["ranking"]
    assert set(ranking["checkpoint"]) == set(layouts)
    for r in res["results"]["checkpoints"].values():
        assert set(r["accuracies"]) == {"linear_accuracy", "knn_accuracy@5"} and "effective_rank" in r
    html = (out / "report.html").read_text()
    # accuracy bars + 2 spectra + ranks + alignment/uniformity + 3 curves of the umae run
    # + the token Fourier lines by block + attention distance and entropy/NMI (compare's default)
    assert _n_figures(html) == 11
    assert len(pd.read_csv(out / "attention_stats.csv")["checkpoint"].unique()) == 4
    _assert_escaped(html)
    printed = capsys.readouterr().out
    assert "Accuracy, % [95% interval]" in printed and "Rank [95% interval]" in printed  # best first, 80 columns


def test_imagefolder_class_named_like_markup(ckpts: dict[str, Path], tmp_path: Path) -> None:
    """A class folder named <img ...> (16 px images for a 32 px model: resized, fine) shows as text."""
    from PIL import Image

    rng = np.random.default_rng(1)
    root = tmp_path / "folder"
    for split, n in (("train", 6), ("test", 3)):
        for c, name in enumerate([EVIL_IMG, "dog"]):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_images(rng, np.array([c]), size=16)[0]).save(d / f"{i}.png")
    out = tmp_path / "out"
    code = main(["collapse-report", str(ckpts["official"]), "--data", str(root), "--embed", "tsne",
                 "--per-class", "3", "--device", "cpu", "--out", str(out)])
    assert code == 0
    res = _results(out)
    assert res["settings"]["data"]["image_size"] == [16, 16]
    assert res["settings"]["checkpoints"][0]["arch"]["img_size"] == 32
    html = (out / "report.html").read_text()
    assert _n_figures(html) == 6  # + the token Fourier lines by block
    _assert_escaped(html)
    legend_names = re.findall(r'"name": "([^"]*)"', html)
    assert "\\u0026lt;img src=x onerror=alert(1)\\u0026gt;" in legend_names


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["probe", "{missing}", "--data", "{npz}"], "checkpoint not found"),
        (["probe", "{ckpt}", "--data", "{npz}", "--methods", "mean,svm"], "--methods"),
        (["probe", "{ckpt}", "--data", "{npz}", "--k", "10,abc"], "--k"),
        (["probe", "{ckpt}", "--data", "{npz}", "--k", "0"], "--k"),
        (["probe", "{ckpt}", "--data", "{npz}", "--protocol", "slow"], "--protocol"),
        (["probe", "{ckpt}", "--data", "{npz}", "--pool", "max"], "--pool"),
        (["probe", "{ckpt}", "--data", "{npz}", "--label", "a", "--label", "b"], "--label"),
        (["probe", "{ckpt}", "--data", "{missing}"], "no such file"),
        (["collapse-report", "{ckpt}", "--data", "{npz}", "--embed", "pca"], "--embed"),
        (["collapse-report", "{ckpt}", "--data", "{npz}", "--mask-ratio", "1.5"], "--mask-ratio"),
        (["compare", "{ckpt}", "{missing}", "--data", "{npz}"], "checkpoint not found"),
        (["compare", "{ckpt}", "--data", "{npz}", "--out", "{npz}"], "--out"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], needle: str, tiny_npz: Path, ckpts: dict[str, Path],
                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    subst = {"{missing}": str(tmp_path / "nope.pth"), "{npz}": str(tiny_npz), "{ckpt}": str(ckpts["official"])}
    argv = [subst.get(a, a) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    # One error line; the only other lines allowed are the one-line summaries of checkpoints that
    # loaded before the bad input was found.
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], lines
    assert all(ln.startswith("error:") or "sha256" in ln for ln in lines), lines
    assert not any("Traceback" in ln for ln in lines)
    assert not (tmp_path / "out" / "results.json").exists()


def test_display_names_are_short_and_unique(tmp_path: Path) -> None:
    paths = [tmp_path / "a" / "checkpoint.pth", tmp_path / "b" / "checkpoint.pth", tmp_path / "mae.pth"]
    assert A.display_names(paths) == ["a/checkpoint", "b/checkpoint", "mae"]
    assert A.display_names([Path("x/m.pth"), Path("x/m.pth")]) == ["x/m", "x/m#2"]
    assert A.display_names(paths, ["one", "two", "one"]) == ["one", "two", "one#2"]


def test_read_training_curves_aligns_sparse_columns(tmp_path: Path) -> None:
    rows = [{"epoch": 2, "effective_rank": 5.0, "knn_accuracy": 30.0}, {"epoch": 1, "effective_rank": 4.0},
            {"epoch": 3, "effective_rank": 6.0, "knn_accuracy": 31.0}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    c = C.read_training_curves(tmp_path)
    assert c is not None
    assert c["epoch"] == [1.0, 2.0, 3.0] and c["effective_rank"] == [4.0, 5.0, 6.0]
    assert c["knn_accuracy:epoch"] == [2.0, 3.0] and c["knn_accuracy"] == [30.0, 31.0]
    assert C.curve_for({"run": c}, "knn_accuracy") == {"run": {"epoch": [2.0, 3.0], "knn_accuracy": [30.0, 31.0]}}
    assert C.read_training_curves(tmp_path / "absent") is None


def test_num_heads_and_norm_options_reach_the_loader(tmp_path, capsys) -> None:
    """A width-96 ViT has no default head count: --num-heads fills it in, --norm sets mean/std."""
    import json

    import numpy as np
    from ckpt_factory import make_official_encoder

    from umae_eval.cli import main

    ckpt = tmp_path / "w96.pth"
    make_official_encoder(ckpt, embed_dim=96, num_heads=2, depth=1)
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8), y_train=np.arange(40) % 4,
             x_test=rng.integers(0, 255, (20, 32, 32, 3), dtype=np.uint8), y_test=np.arange(20) % 4)
    base = ["probe", str(ckpt), "--data", str(data), "--methods", "mean", "--device", "cpu"]

    assert main(base + ["--out", str(tmp_path / "a")]) == 2
    assert "--num-heads" in capsys.readouterr().err

    assert main(base + ["--num-heads", "2", "--norm", "cifar-recipe", "--out", str(tmp_path / "b")]) == 0
    settings = json.loads((tmp_path / "b" / "results.json").read_text())["settings"]
    text = json.dumps(settings)
    assert '"num_heads": 2' in text and "0.5" in text

    assert main(base + ["--num-heads", "2", "--norm", "1,2/3", "--out", str(tmp_path / "c")]) == 2
    assert "--norm" in capsys.readouterr().err
