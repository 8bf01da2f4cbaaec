"""`umae compare`'s two sections beside the frozen-feature results:

- a `umae finetune` checkpoint's own trained head: its top-1 equals an independent prediction
  (a plain timm ViT + the file's state dict, preprocessing written out here) and the run's own
  test_top1; which data it was tuned on is said, other classes are refused, and it is never
  among the frozen results;
- attention statistics per head and block (the same seeded test images for every checkpoint),
  their CSV, figures/ export and ``--attention-images 0``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ckpt_factory import make_official_encoder
from figure_checks import assert_pdf_draws
from toy_images import toy_npz
from trainer.finetune import FinetuneConfig, finetune_run
from trainer.runlog import read_metrics
from umae_eval.analysis import load_data, load_subjects
from umae_eval.cli import main
from umae_eval.compat import ensure_timm_importable
from umae_eval.pipeline import AnalysisConfig
from umae_eval.pipeline.finetuned import finetuned_stage

ensure_timm_importable()
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO_MAE = ROOT / "umae_eval" / "demo" / "encoders" / "mae-cifar10-vit96x6-p4-e20.pth"


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 3-block ViT fine-tuned for one epoch on toy data, once with each pooling."""
    d = tmp_path_factory.mktemp("tuned")
    enc = d / "enc.pth"
    make_official_encoder(enc, embed_dim=64, num_heads=2, depth=3, patch_size=8)
    data = toy_npz(d / "toy.npz", seed=0)
    out = {"enc": enc, "data": data}
    for pool in ("avg", "cls"):
        result = finetune_run(FinetuneConfig(checkpoint=str(enc), data=str(data), out=d / pool, preset="cpu-demo",
                                             epochs=1, batch_size=16, workers=0, seed=3, pool=pool))
        out[pool] = result.checkpoint
    return out


def independent_top1(ckpt_path: Path, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Top-1 (percent) and predictions of a plain timm ViT holding the file's state dict.

    The images are at the model's side already (32 px), so the input is ``(x / 255 - mean) / std``.
    """
    ckpt = torch.load(ckpt_path, weights_only=True)
    meta, ft = ckpt["umae"], ckpt["umae"]["finetune"]
    model = VisionTransformer(img_size=meta["img_size"], patch_size=meta["patch_size"], embed_dim=meta["embed_dim"],
                              depth=meta["depth"], num_heads=meta["num_heads"], num_classes=ft["num_classes"],
                              global_pool="avg" if ft["pool"] == "avg" else "token",
                              norm_layer=functools.partial(nn.LayerNorm, eps=meta["norm_eps"])).eval()
    model.load_state_dict(ckpt["model"], strict=True)
    mean, std = np.array(meta["mean"]), np.array(meta["std"])
    inp = torch.from_numpy(((x / 255.0 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32))
    with torch.no_grad():
        pred = model(inp).argmax(1).numpy()
    return 100.0 * float((pred == y).mean()), pred


@pytest.mark.parametrize("pool", ["avg", "cls"])
def test_finetuned_top1_equals_an_independent_prediction(tuned: dict[str, Path], pool: str) -> None:
    subject = load_subjects([tuned[pool]])[0]
    data = load_data(str(tuned["data"]))
    res = finetuned_stage(subject, data, AnalysisConfig(n_boot=200, device="cpu"), spec=str(tuned["data"]))
    assert res is not None and res.data_match == "same" and "the fingerprints match" in res.sentence
    want, pred = independent_top1(tuned[pool], data.x_test, data.y_test)
    assert res.accuracies["top1"].estimate == pytest.approx(want, abs=1e-9)
    assert np.array_equal(res.predictions, pred)
    # the fine-tuning run's own evaluation of the same test split
    assert res.accuracies["top1"].estimate == pytest.approx(read_metrics(tuned[pool].parent)[-1]["test_top1"])
    iv = res.accuracies["top1"]
    assert iv.lo <= iv.estimate <= iv.hi and "top5" not in res.accuracies  # 4 classes: no top-5
    assert res.n_test == len(data.y_test) and res.record.pool == pool


def test_other_data_is_said_and_other_classes_are_refused(tuned: dict[str, Path], tmp_path: Path) -> None:
    subject = load_subjects([tuned["avg"]])[0]
    config = AnalysisConfig(n_boot=50, device="cpu")
    other = toy_npz(tmp_path / "other.npz", seed=7)  # the same class names, other images
    res = finetuned_stage(subject, load_data(str(other)), config, spec=str(other))
    assert res.data_match == "other" and res.measured
    assert f"NOT the compare data {other}" in res.sentence and "may overlap this test split" in res.sentence
    z = np.load(other)
    renamed = tmp_path / "renamed.npz"
    np.savez(renamed, **{k: z[k] for k in z.files}, class_names=np.array(["a", "b", "c", "d"]))
    res = finetuned_stage(subject, load_data(str(renamed)), config, spec=str(renamed))
    assert res.data_match == "other classes" and not res.measured and res.predictions is None
    assert "its outputs do not name these classes, so no fine-tuned top-1 is measured" in res.reason
    assert res.to_json()["reason"] == res.reason and "accuracies" not in res.to_json()


def test_other_checkpoints_have_no_finetuned_result(tuned: dict[str, Path]) -> None:
    subject = load_subjects([tuned["enc"]])[0]
    assert finetuned_stage(subject, load_data(str(tuned["data"])), AnalysisConfig(device="cpu"), spec="x") is None


def test_attention_stage_uses_the_same_images_for_every_checkpoint(tuned: dict[str, Path]) -> None:
    from umae_eval.pipeline.attention import attention_rows, attention_stage
    from umae_eval.visual.run import attention_statistics

    data = load_data(str(tuned["data"]))
    config = AnalysisConfig(device="cpu", n_boot=100, attention_images=5, seed=2)
    subjects = load_subjects([tuned["enc"], tuned["cls"]])
    a, b = (attention_stage(s, data, config) for s in subjects)
    rows = attention_rows(len(data.y_test), 5, 2)
    assert np.array_equal(a.test_index, rows) and np.array_equal(b.test_index, rows) and a.n_images == 5
    assert attention_stage(subjects[0], data, AnalysisConfig(attention_images=0)) is None
    enc = subjects[1].encoder
    direct, per_block, _ = attention_statistics(enc.model, data.x_test[rows], img_size=32, patch_size=8,
                                                mean=enc.info.mean, std=enc.info.std, n_boot=100, seed=2)
    for name in ("distance", "cls_entropy", "patch_entropy", "nmi"):
        np.testing.assert_array_equal(b.stats[name].mean, direct[name].mean)
        np.testing.assert_array_equal(b.block_stats[name].hi, per_block[name].hi)
    assert b.to_json()["per_head"]["distance"]["mean"] == direct["distance"].mean.tolist()


def _compare(args: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    assert main(["compare", *args, "--methods", "mean", "--embed", "none", "--max-views", "8", "--bootstrap", "100",
                 "--device", "cpu", "--out", str(out)]) == 0
    return json.loads((out / "results.json").read_text()), capsys.readouterr().out


@pytest.mark.slow  # two compare runs (about 25 s on a quiet machine)
def test_compare_sections_files_and_switch(tuned: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from umae_eval.visual.run import attention_statistics

    out = tmp_path / "c"
    res, printed = _compare([str(tuned["avg"]), str(tuned["enc"]), "--label", "tuned", "--label", "source",
                             "--data", str(tuned["data"]), "--attention-images", "6"], out, capsys)
    results = res["results"]
    # the fine-tuned top-1: its own section, never among the frozen-feature results
    assert list(results["finetuned_classifiers"]) == ["tuned"]
    ft = results["finetuned_classifiers"]["tuned"]
    assert "not a frozen-feature result" in ft["kind"] and ft["data_match"] == "same"
    assert "top1" not in json.dumps(results["checkpoints"]) and "top1" not in json.dumps(results["summary"])
    table = pd.read_csv(out / "finetuned_classifiers.csv")
    assert list(table["checkpoint"]) == ["tuned"] and table["top1"][0] == ft["accuracies"]["top1"]["estimate"]
    html = (out / "report.html").read_text()
    assert "Fine-tuned classifiers (not frozen features)" in html and "Attention statistics" in html
    assert "Fine-tuned classifier (own head; not frozen features)" in printed
    # attention: the same test images for both, each statistic per block and head
    att = results["attention_statistics"]
    assert att["tuned"]["test_index"] == att["source"]["test_index"] and att["source"]["n_images"] == 6
    stats = pd.read_csv(out / "attention_stats.csv")
    heads = load_subjects([tuned["enc"]])[0].info.arch.num_heads
    assert len(stats) == 2 * 3 * heads and {"distance", "distance_lo", "distance_hi", "nmi"} <= set(stats.columns)
    assert_pdf_draws(out / "figures" / "attention-distance.pdf")
    assert (out / "figures" / "attention-entropy-nmi.pdf").is_file()
    enc = load_subjects([tuned["enc"]])[0].encoder
    x = np.load(tuned["data"])["x_test"][att["source"]["test_index"]]
    direct, _, _ = attention_statistics(enc.model.eval(), x, img_size=32, patch_size=8, mean=enc.info.mean,
                                        std=enc.info.std, n_boot=50, seed=0)
    got = stats[stats["checkpoint"] == "source"].sort_values(["block", "head"])["distance"].to_numpy()
    np.testing.assert_allclose(got, direct["distance"].mean.reshape(-1), rtol=1e-9)
    assert res["settings"]["attention_images"] == 6

    off, _ = _compare([str(tuned["enc"]), "--data", str(tuned["data"]), "--attention-images", "0"],
                      tmp_path / "off", capsys)
    assert "attention_statistics" not in off["results"] and "attention_images" not in off["settings"]
    assert not (tmp_path / "off" / "attention_stats.csv").exists()
    assert not list((tmp_path / "off" / "figures").glob("attention-*"))


@pytest.mark.slow  # a real `umae finetune` on the demo data, then compare (about a minute on a quiet machine)
def test_demo_finetune_then_compare_top1_equals_an_independent_prediction(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "ft"
    assert main(["finetune", str(DEMO_MAE), "--data", "demo", "--preset", "cpu-demo", "--epochs", "1",
                 "--max-train-images", "64", "--batch-size", "32", "--workers", "0", "--out", str(run)]) == 0
    res, printed = _compare([str(run / "last.pth"), str(DEMO_MAE), "--data", "demo", "--max-train", "200",
                             "--attention-images", "8"], tmp_path / "c", capsys)
    name = next(iter(res["results"]["finetuned_classifiers"]))
    ft = res["results"]["finetuned_classifiers"][name]
    assert name.startswith("fine-tuned (MAE e20)") and ft["data_match"] == "same"
    assert ft["tuned_on"]["tuned_on"] == "demo" and ft["n_test"] == 1000
    data = load_data("demo")
    want, _ = independent_top1(run / "last.pth", data.x_test, data.y_test)
    assert ft["accuracies"]["top1"]["estimate"] == pytest.approx(want, abs=1e-9)
    assert ft["accuracies"]["top1"]["estimate"] == pytest.approx(read_metrics(run)[-1]["test_top1"])
    assert "top5" in ft["accuracies"]  # 10 classes
    assert f"{name}: Its head was tuned on demo" in printed
