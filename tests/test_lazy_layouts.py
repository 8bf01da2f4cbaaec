"""The layouts people download (miniature Tiny ImageNet-200, ImageNet's Kaggle layout) on the
lazy path: right labels image by image, and every command runs on them with the right classes."""

from __future__ import annotations

import importlib.util
import json
import tarfile
from pathlib import Path

import ckpt_factory as CF
import numpy as np
import pytest

from umae_eval.cli import main
from umae_eval.data.choose import open_dataset
from umae_eval.data.lazy import LazyImageSet

_spec = importlib.util.spec_from_file_location("layout_trees", Path(__file__).parent / "data" / "test_layouts.py")
assert _spec is not None and _spec.loader is not None
trees = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(trees)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("UMAE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _tar_gz(folder: Path, out: Path, arcname: str) -> Path:
    with tarfile.open(out, "w:gz") as tf:
        tf.add(folder, arcname=arcname)
    return out


def _check(t: object, ds: LazyImageSet, split: str, prefix: str) -> None:
    view = ds.view(split, 32, "fit")
    x = view[np.arange(len(view))]
    trees._check_labels(t, x, ds.split(split).labels, ds.class_ids, prefix)


def test_tiny_imagenet_lazy_folder_and_tarball(tmp_path: Path) -> None:
    t = trees.make_tiny(tmp_path / "dl")
    archive = _tar_gz(t.root, tmp_path / "tiny-imagenet-200.tar.gz", "tiny-imagenet-200")
    for spec in (t.root, archive):
        ds = open_dataset(spec, mode="lazy")
        assert isinstance(ds, LazyImageSet) and ds.layout == "tiny-imagenet"
        assert ds.class_ids == sorted(trees.TINY_WNIDS)
        assert ds.class_names == ["goldfish", "European fire salamander", "Egyptian cat"]
        assert (len(ds.train), len(ds.test)) == (12, 9)
        _check(t, ds, "train", "train/")
        _check(t, ds, "test", "val/images/")
        assert any(n.startswith("skipped the unlabeled test/ (4 images)") for n in ds.notes), ds.notes


def test_kaggle_lazy_tarball_reads_val_labels_from_the_solution_file(tmp_path: Path) -> None:
    t = trees.make_kaggle(tmp_path / "dl")
    archive = _tar_gz(t.root, tmp_path / "kaggle.tar.gz", trees.KAGGLE_TOP)
    ds = open_dataset(archive, mode="lazy")
    assert isinstance(ds, LazyImageSet) and ds.layout == "imagenet-kaggle"
    assert ds.class_ids == sorted(trees.KAGGLE_SYNSETS)
    assert ds.class_names[0] == "tench" and (len(ds.train), len(ds.test)) == (12, 9)
    _check(t, ds, "test", "ILSVRC/Data/CLS-LOC/val/")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ck") / "mae_pretrain_vit_tiny.pth"
    CF.make_official_encoder(path, seed=5)
    return path


def test_every_command_runs_lazily_on_tiny_imagenet(tmp_path: Path, ckpt: Path) -> None:
    t = trees.make_tiny(tmp_path / "dl")
    data = str(t.root)
    names = ["goldfish", "European fire salamander", "Egyptian cat"]
    common = ["--data", data, "--device", "cpu", "--data-mode", "lazy", "--workers", "0"]
    assert main(["probe", str(ckpt), *common, "--k", "3", "--out", str(tmp_path / "probe")]) == 0
    assert main(["collapse-report", str(ckpt), *common, "--embed", "tsne", "--out", str(tmp_path / "collapse")]) == 0
    assert main(["compare", str(ckpt), str(ckpt), "--label", "a", "--label", "b", *common, "--k", "3",
                 "--embed", "tsne", "--out", str(tmp_path / "compare")]) == 0
    for name in ("probe", "collapse", "compare"):
        s = json.loads((tmp_path / name / "results.json").read_text())["settings"]["data"]
        assert s["class_names"] == names and s["class_ids"] == sorted(trees.TINY_WNIDS)
        assert s["data_mode"] == "lazy" and s["n_test"] == 9, name
    assert main(["mask-ratio-sweep", "--data", data, "--pairs", "6", "--views", "2", "--ratios", "0:0.5:0.25",
                 "--label-images", "6", "--label-train", "6", "--graph-images", "6", "--bootstrap", "10",
                 "--patch-size", "8", "--device", "cpu", "--out", str(tmp_path / "sweep")]) == 0
    sweep = json.loads((tmp_path / "sweep" / "results.json").read_text())["settings"]["data"]
    assert sweep["class_names"] == names and sweep["image_size"] == "64x64"
    run = tmp_path / "run"
    assert main(["train", "--data", data, "--data-mode", "lazy", "--preset", "tiny-test", "--set", "augment=rrc-flip",
                 "--batch-size", "4", "--micro-batch", "4", "--epochs", "1", "--workers", "0", "--eval-images", "4",
                 "--knn-train-images", "8", "--device", "cpu", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["class_names"] == names and config["data"]["data_mode"] == "lazy"
    assert config["data"]["train_images"] == 12


def test_lazy_training_augmentation_is_seeded_per_image_and_epoch(tmp_path: Path) -> None:
    from trainer.batches import LazyTrainImages

    t = trees.make_tiny(tmp_path / "dl")
    ds = open_dataset(t.root, mode="lazy")
    view = ds.view("train", 32, "fit")
    items = LazyTrainImages(view, 32, "rrc-flip", seed=3)
    a, b = items[5], items[5]
    assert a.shape == (32, 32, 3) and a.dtype.is_floating_point is False
    assert np.array_equal(a.numpy(), b.numpy())  # deterministic: a resumed run sees the same crop
    # epochs draw different crops: on a noise image (the trees' images are flat colours)
    from PIL import Image

    from umae_eval.data.transforms import random_resized_crop_flip

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.uint8))
    crops = [np.asarray(random_resized_crop_flip(noise, 32, np.random.default_rng([3, e, 5]))) for e in (0, 0, 1)]
    assert np.array_equal(crops[0], crops[1]) and not np.array_equal(crops[0], crops[2])
    # scale 1 and the image's own ratio: the crop is the whole image, resized, maybe mirrored
    whole = np.asarray(random_resized_crop_flip(noise, 64, np.random.default_rng(1), scale=(1, 1), ratio=(1, 1)))
    assert np.array_equal(whole, np.asarray(noise)) or np.array_equal(whole, np.asarray(noise)[:, ::-1])
    plain = LazyTrainImages(view, 32, "none", seed=3)
    np.testing.assert_array_equal(plain[2].numpy(), view[2])
