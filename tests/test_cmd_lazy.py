"""Commands on lazy datasets: the same numbers as the in-memory path, features from the store,
only the used images decoded by the mask-ratio sweep, bad images skipped and counted."""

from __future__ import annotations

import json
from pathlib import Path

import ckpt_factory as CF
import numpy as np
import pytest
from PIL import Image

from umae_eval.cli import main

CLASSES = ["cat", "dog", "emu"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("UMAE_CACHE_DIR", str(root))
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32-px PNG ImageFolder (lossless, native size = the checkpoint's): both paths see equal pixels."""
    root = tmp_path_factory.mktemp("lazy") / "tree"
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("val", 8)):
        for k, c in enumerate(CLASSES):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                x = rng.integers(0, 90, (32, 32, 3)).astype(np.uint8)
                x[..., k] += 150
                Image.fromarray(x).save(root / split / c / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ck") / "mae_pretrain_vit_tiny.pth"
    CF.make_official_encoder(path, seed=2)
    return path


def _probe(ckpt: Path, data: Path, out: Path, *extra: str) -> dict:
    code = main(["probe", str(ckpt), "--data", str(data), "--device", "cpu", "--k", "5,10", "--out", str(out),
                 *extra])
    assert code == 0
    return json.loads((out / "results.json").read_text())


def test_probe_lazy_equals_memory_and_reuses_the_store(folder: Path, ckpt: Path, tmp_path: Path,
                                                       _own_cache: Path) -> None:
    memory = _probe(ckpt, folder, tmp_path / "m", "--data-mode", "memory")
    lazy = _probe(ckpt, folder, tmp_path / "l", "--data-mode", "lazy", "--workers", "2")
    acc_m = memory["results"]["checkpoints"]["mae_pretrain_vit_tiny"]["accuracies"]
    acc_l = lazy["results"]["checkpoints"]["mae_pretrain_vit_tiny"]["accuracies"]
    assert acc_l == acc_m  # same pixels, same encoder, same probes: equal to the last digit
    assert lazy["settings"]["data"]["data_mode"] == "lazy" and memory["settings"]["data"]["data_mode"] == "memory"
    stores = list((_own_cache / "features").glob("*/manifest.json"))
    assert len(stores) == 2  # train and test
    manifests = [json.loads(p.read_text()) for p in stores]
    assert {m["key"]["transform"] for m in manifests} == {"fit32-bicubic"}
    mtimes = {p: p.stat().st_mtime_ns for p in stores}
    again = _probe(ckpt, folder, tmp_path / "l2", "--data-mode", "lazy", "--workers", "0")
    assert again["results"]["checkpoints"]["mae_pretrain_vit_tiny"]["accuracies"] == acc_l
    assert {p: p.stat().st_mtime_ns for p in stores} == mtimes  # read back, not recomputed


def test_max_train_per_class_takes_a_balanced_subset(folder: Path, ckpt: Path, tmp_path: Path) -> None:
    res = _probe(ckpt, folder, tmp_path / "p", "--data-mode", "lazy", "--max-train-per-class", "4")
    data = res["settings"]["data"]
    assert data["n_train"] == 12 and data["n_train_available"] == 60
    assert any("at most 4 images per class" in n for n in data["notes"])


def test_bad_image_is_skipped_and_counted(folder: Path, ckpt: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(folder, tree)
    (tree / "val" / "dog" / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code = main(["probe", str(ckpt), "--data", str(tree), "--device", "cpu", "--data-mode", "lazy",
                 "--out", str(tmp_path / "fail")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot read image val/dog/zz-broken.png" in err and "Traceback" not in err
    res = _probe(ckpt, tree, tmp_path / "ok", "--skip-bad-images", "--k", "5")  # auto picks the lazy path
    ck = res["results"]["checkpoints"]["mae_pretrain_vit_tiny"]
    assert ck["probes"][0]["settings"]["num_test"] == 24  # the broken file is left out of the 25
    assert "test: 1 undecodable images left out (--skip-bad-images)" in res["settings"]["data"]["notes"]
    # issue 23: n_test counted the skipped image
    assert res["settings"]["data"]["n_test"] == 24 and res["settings"]["data"]["n_skipped"] == {"test": 1}


def test_sweep_decodes_only_the_images_it_uses(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import umae_eval.data.lazy as lazy

    decoded: list[str] = []
    real = lazy.open_rgb

    def counting(src, name, source, size):  # type: ignore[no-untyped-def]
        decoded.append(name)
        return real(src, name, source, size)

    monkeypatch.setattr(lazy, "open_rgb", counting)
    out = tmp_path / "sweep"
    code = main(["mask-ratio-sweep", "--data", str(folder), "--pairs", "10", "--views", "2", "--ratios", "0:0.5:0.25",
                 "--label-images", "6", "--label-train", "9", "--graph-images", "6", "--bootstrap", "20",
                 "--device", "cpu", "--out", str(out)])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert res["settings"]["data"]["data_mode"] == "lazy"
    assert res["settings"]["data"]["n_train_used_for_class_means"] == 9
    train_decoded = {n for n in decoded if n.startswith("train/")}
    assert len(train_decoded) == 9  # the class means' sample, not the 60 train images
    assert len(decoded) <= 2 * 2 * 10 + 6 + 6 + 9


def test_probe_and_sweep_on_webdataset_shards(ckpt: Path, tmp_path: Path) -> None:
    """Shards written by webdataset's own ShardWriter: labels from .cls, names from classes.txt."""
    import io

    import webdataset as wds

    root = tmp_path / "shards"
    root.mkdir()
    rng = np.random.default_rng(3)
    labels = {"train": [], "val": []}
    for split, n in (("train", 30), ("val", 12)):
        with wds.ShardWriter(str(root / f"{split}-%06d.tar"), maxcount=10) as sink:
            for i in range(n):
                k = i % 3
                x = rng.integers(0, 90, (32, 32, 3)).astype(np.uint8)
                x[..., k] += 150
                buf = io.BytesIO()
                Image.fromarray(x).save(buf, "PNG")
                sink.write({"__key__": f"{split}{i:05d}", "png": buf.getvalue(), "cls": k})
                labels[split].append(k)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    assert len(list(root.glob("train-*.tar"))) == 3
    res = _probe(ckpt, root, tmp_path / "p", "--workers", "0")
    data = res["settings"]["data"]
    assert data["format"] == "webdataset" and data["data_mode"] == "lazy"
    assert data["class_names"] == CLASSES and (data["n_train"], data["n_test"]) == (30, 12)
    acc = res["results"]["checkpoints"]["mae_pretrain_vit_tiny"]["accuracies"]
    assert acc["mean_classifier_accuracy"] > 50  # colour classes: chance is 33%
    out = tmp_path / "sweep"
    assert main(["mask-ratio-sweep", "--data", str(root / "train-{000000..000002}.tar"), "--pairs", "6",
                 "--views", "2", "--ratios", "0:0.5:0.25", "--label-images", "6", "--label-train", "6",
                 "--graph-images", "6", "--bootstrap", "10", "--device", "cpu", "--out", str(out)]) == 0
    sweep = json.loads((out / "results.json").read_text())["settings"]["data"]
    assert sweep["format"] == "webdataset" and sweep["class_names"] == CLASSES


@pytest.mark.slow  # two commands with the layer-wise stage: about 40 s on the shared cores
def test_lazy_layers_fill_one_store_per_split_and_equal_memory(folder: Path, ckpt: Path, tmp_path: Path,
                                                               _own_cache: Path) -> None:
    """--layers all on the lazy path: one store per split holds every block (one pass), keyed by
    the spec, and the per-block accuracies equal the in-memory path's."""
    spec = ("--layers", "all", "--pool", "cls+avg", "--final-norm", "off", "--methods", "mean,knn")
    memory = _probe(ckpt, folder, tmp_path / "m", "--data-mode", "memory", *spec)
    lazy = _probe(ckpt, folder, tmp_path / "l", "--data-mode", "lazy", "--workers", "0", *spec)
    lay_m = memory["results"]["checkpoints"]["mae_pretrain_vit_tiny"]["layers"]
    lay_l = lazy["results"]["checkpoints"]["mae_pretrain_vit_tiny"]["layers"]
    assert [b["accuracies"] for b in lay_l] == [b["accuracies"] for b in lay_m] and len(lay_l) == 2
    manifests = [json.loads(p.read_text()) for p in (_own_cache / "features").glob("*/manifest.json")]
    assert len(manifests) == 2  # train and test, each with both blocks side by side
    for m in manifests:
        assert m["key"]["blocks"] == [0, 1] and m["key"]["final_norm"] is False and m["key"]["pool"] == "cls+avg"
        assert m["dim"] == 2 * 2 * 192
