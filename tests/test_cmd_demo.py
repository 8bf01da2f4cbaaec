"""`umae demo` end to end, with the model shrunk so the test stays fast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from umae_eval.cli import main
from umae_eval.commands import demo as demo_cmd


@pytest.fixture
def tiny_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_cmd, "DEMO_OVERRIDES", {
        "img_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 2,
        "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2,
    })


def test_demo_analyses_the_shipped_pair_and_a_smoke_run(tiny_demo: None, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "1", "--embed", "none", "--out", str(out), "--device", "cpu"]) == 0
    # the terminal ends with the study's verdicts over pre-training seeds, not the sample's alone
    printed = capsys.readouterr().out
    assert "The full study over 3 pre-training seeds (reports/cifar10-mae-vs-umae-cpu/seeds)" in printed
    assert ("linear probe: -2.5 [-7.4, 2.5] (MAE 48.1, U-MAE 45.7): within seed-to-seed noise "
            "(3 seeds; the interval covers 0)") in printed
    assert "kNN k=20: +6.4 [1.5, 11.3]" in printed and "mean classifier: +11.3 [3.6, 19.1]" in printed
    # then the fine-tuning runs, with both of their intervals
    assert "Fine-tuning of the seed-0 encoders and a random init (reports/cifar10-mae-vs-umae-cpu/finetune" in printed
    assert ("full, MAE − random init: +13.6 [12.7, 14.5]; [11.4, 15.8] (random init 34.0, MAE 47.6; 2 seed(s)): "
            "MAE above random init across fine-tuning seeds (t interval over 2 seeds excludes 0)") in printed
    assert ("last 2 blocks, U-MAE − random init: +11.2 [10.3, 12.1]; n/a (random init 33.9, U-MAE 45.2; 1 seed(s)): "
            "U-MAE above random init beyond test-image noise (one fine-tuning seed)") in printed
    assert ("full, U-MAE − MAE: +0.8 [0.3, 1.3]; [-2.3, 3.9] (MAE 47.6, U-MAE 48.5; 2 seed(s)): U-MAE above MAE "
            "beyond test-image noise, within fine-tuning-seed noise (2 seeds)") in printed
    assert ("last 2 blocks, U-MAE − MAE: +1.4 [0.9, 2.0]; n/a (MAE 43.8, U-MAE 45.2; 1 seed(s)): U-MAE above MAE "
            "beyond test-image noise (one fine-tuning seed)") in printed

    run = out / "runs" / "smoke"
    assert (run / "last.pth").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1] and records[0]["lam"] == 0.01

    results = json.loads((out / "results.json").read_text())
    assert results["command"] == "demo" and results["command_line"][:2] == ["umae", "demo"]
    names = {"MAE (CIFAR-10, 20 ep)", "U-MAE (CIFAR-10, 20 ep)", "random init", demo_cmd.SMOKE_LABEL}
    assert set(results["results"]["ranking"]) == names
    for name in names:
        accs = results["results"]["checkpoints"][name]["accuracies"]
        assert accs and all(0.0 <= v <= 100.0 for v in accs.values())
    assert "full" in results["results"]["preface"] and "smoke run" in results["results"]["preface"]
    shas = {c["name"]: c["sha256"] for c in results["settings"]["checkpoints"]}
    prov = json.loads((demo_cmd.shipped_encoders()[0].parent / "provenance.json").read_text())
    assert shas["MAE (CIFAR-10, 20 ep)"] == prov["mae-cifar10-vit96x6-p4-e20.pth"]["sha256"]
    html = (out / "report.html").read_text()
    # the summary opens the page, with what the full study found first, then the sample as a check
    order = ["summary", "what-the-full-study-found", "on-these-test-images-a-consistency-check",
             "differences-in-linear-accuracy", "checkpoints"]
    at = [html.index(f"id='{a}'") for a in order]
    assert at == sorted(at), dict(zip(order, at))
    assert "45.9 [45.0, 46.9]" in html and "-0.1 [-1.1, 0.8]" in html  # the study's numbers, full split first
    assert "not the probe fit and not the pre-training seed" in html
    assert "Over 3 pre-training seeds per method" in html and "-2.5 [-7.4, 2.5]" in html
    assert html.index("Over 3 pre-training seeds per method") < html.index("Neither covers pre-training seeds") \
        < html.index("Seed 0 (the shipped encoders)")  # the fine-tuning table between the two
    # the smoke run is a table row, never one side of a paired verdict
    summ = results["results"]["summary"]
    assert summ["not_compared"] == [demo_cmd.SMOKE_LABEL]
    assert {c["better"] for c in summ["comparisons"]} | {c["worse"] for c in summ["comparisons"]} == names - {
        demo_cmd.SMOKE_LABEL}
    assert len(summ["comparisons"]) == 3 * 5 and any("not corrected for multiple comparisons" in x
                                                     for x in summ["sentences"])
    # Fig. 1c / 3b / the mean classifier from the shipped encoders' 20-epoch runs, not the smoke run
    per = results["results"]["checkpoints"]
    assert per[demo_cmd.SMOKE_LABEL]["training_curves"] is None
    for name, shipped_run in zip(("MAE (CIFAR-10, 20 ep)", "U-MAE (CIFAR-10, 20 ep)"), demo_cmd.shipped_curves()):
        rows = [json.loads(line) for line in (shipped_run / "metrics.jsonl").read_text().splitlines()]
        curves = per[name]["training_curves"]
        assert curves["epoch"] == [float(r["epoch"]) for r in rows] and len(rows) == 20
        assert curves["effective_rank"] == [r["effective_rank"] for r in rows]
        assert curves["mean_classifier_accuracy"] == [r["mean_classifier_accuracy"] for r in rows
                                                      if "mean_classifier_accuracy" in r]
    for stem in ("fig1c-effective-rank", "fig3b-linear-accuracy", "mean-classifier-along-training"):
        assert (out / "figures" / f"{stem}.pdf").is_file(), stem

    # A second call with the same --out continues the finished smoke run instead of training again.
    mtime = (run / "last.pth").stat().st_mtime_ns
    assert main(["demo", "--epochs", "1", "--embed", "none", "--out", str(out), "--device", "cpu"]) == 0
    assert (run / "last.pth").stat().st_mtime_ns == mtime


def test_shipped_encoders_load_safely_through_the_normal_loader() -> None:
    """encoder only, float16, under 2 MB, torch.load(weights_only=True), provenance beside them."""
    import hashlib

    import torch

    from umae_eval.checkpoints import load_encoder

    paths = demo_cmd.shipped_encoders()
    prov = json.loads((paths[0].parent / "provenance.json").read_text())
    for path, lam in zip(paths, (0.0, 0.01)):
        assert path.stat().st_size < 2_000_000
        raw = torch.load(path, map_location="cpu", weights_only=True)
        assert all(v.dtype == torch.float16 for v in raw["model"].values())
        assert not any(k.startswith(("decoder", "mask_token")) for k in raw["model"])
        meta = raw["umae"]
        assert (meta["lam"], meta["epoch"], meta["unif_form"]) == (lam, 20, "code")
        entry = prov[path.name]
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["data_fingerprint"] == meta["data_fingerprint"] and entry["epochs"] == 20
        enc = load_encoder(path)
        arch = enc.info.arch
        assert (arch.embed_dim, arch.depth, arch.patch_size, arch.img_size) == (96, 6, 4, 32)
        assert enc.info.layout == "umae" and tuple(enc.info.mean) == (0.5, 0.5, 0.5)
        assert next(enc.model.parameters()).dtype == torch.float32  # cast on load


def test_demo_refuses_a_file_as_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert main(["demo", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err
