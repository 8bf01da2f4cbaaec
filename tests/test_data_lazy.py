"""The lazy path: ImageFolder folders and tars, WebDataset shards; decoding per item; the choice.

Each source is built in its real layout (JPEG/PNG files, tar members, shards written by the
``webdataset`` package's own TarWriter) and checked image by image against the in-memory path
or the arrays it was written from.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from umae_eval.data import load_dataset
from umae_eval.data.choose import decoded_bytes, memory_limit, open_dataset
from umae_eval.data.lazy import LazyImageSet
from umae_eval.errors import UmaeError

CLASSES = ["cat", "dog", "emu"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("UMAE_CACHE_DIR", str(root))
    return root


def _img(rng: np.random.Generator, label: int, h: int = 32, w: int = 32) -> np.ndarray:
    """A class-coloured noisy image: class k is brightest in channel k."""
    x = rng.integers(0, 90, (h, w, 3)).astype(np.uint8)
    x[..., label] += 150
    return x


def _make_folder(root: Path, n_train: int = 5, n_test: int = 3, size: tuple[int, int] = (32, 32),
                 fmt: str = "PNG", seed: int = 0) -> dict[str, list[tuple[str, int, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    made: dict[str, list[tuple[str, int, np.ndarray]]] = {"train": [], "val": []}
    for split, n in (("train", n_train), ("val", n_test)):
        for k, c in enumerate(CLASSES):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                x = _img(rng, k, *size)
                name = f"{split}/{c}/{i:03d}.{'png' if fmt == 'PNG' else 'jpg'}"
                Image.fromarray(x).save(root / name, fmt)
                made[split].append((name, k, x))
    return made


def _lazy(spec: Path | str, **kw: object) -> LazyImageSet:
    ds = open_dataset(spec, mode="lazy", **kw)  # type: ignore[arg-type]
    assert isinstance(ds, LazyImageSet)
    return ds


# --------------------------------------------------------------------------------------------
# ImageFolder folder
# --------------------------------------------------------------------------------------------


def test_lazy_folder_lists_without_decoding_and_decodes_like_the_memory_path(tmp_path: Path) -> None:
    made = _make_folder(tmp_path / "tree")
    lazy = _lazy(tmp_path / "tree")
    memory = load_dataset(tmp_path / "tree")
    assert lazy.class_names == memory.class_names == CLASSES
    np.testing.assert_array_equal(lazy.y_train, memory.y_train)
    np.testing.assert_array_equal(lazy.y_test, memory.y_test)
    view = lazy.view("test", 32, "fit")
    assert view.shape == memory.x_test.shape and len(view) == len(memory.x_test)
    # PNG is lossless: every lazily decoded image equals the array it was written from
    by_name = {n: x for n, _, x in made["val"]}
    for j, name in enumerate(lazy.test.names):
        np.testing.assert_array_equal(view[j], by_name[name])
    np.testing.assert_array_equal(view[np.arange(len(view))], memory.x_test)
    assert "lazy" in lazy.describe() and lazy.format == "imagefolder"


def test_lazy_array_indexing_matches_numpy(tmp_path: Path) -> None:
    _make_folder(tmp_path / "tree")
    view = _lazy(tmp_path / "tree").view("train", 32, "fit")
    full = view[np.arange(len(view))]
    np.testing.assert_array_equal(view[3], full[3])
    np.testing.assert_array_equal(view[-1], full[-1])
    np.testing.assert_array_equal(view[2:9:3], full[2:9:3])
    idx = np.array([7, 0, 7, 4])
    np.testing.assert_array_equal(view[idx], full[idx])
    mask = view.labels() == 1
    np.testing.assert_array_equal(view[mask], full[mask])
    sub = view.take(np.array([5, 1, 9]))
    assert len(sub) == 3 and sub.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(sub[np.arange(3)], full[[5, 1, 9]])
    np.testing.assert_array_equal(sub.take(np.array([2]))[0], full[9])
    np.testing.assert_array_equal(sub.labels(), view.labels()[[5, 1, 9]])
    with pytest.raises(UmaeError, match="refusing to decode all 15 images"):
        np.asarray(view)


def test_dataloader_workers_decode_the_same_pixels(tmp_path: Path) -> None:
    _make_folder(tmp_path / "tree", fmt="JPEG", size=(40, 52))
    view = _lazy(tmp_path / "tree").view("test", 24, "crop")
    direct = view[np.arange(len(view))]
    loader = torch.utils.data.DataLoader(view.dataset(), batch_size=4, num_workers=2)
    batches = [(x.numpy(), ok.numpy()) for x, ok in loader]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), direct)
    assert all(b[1].all() for b in batches)


def test_crop_rule_is_resize_to_side_over_0875_then_centre_crop(tmp_path: Path) -> None:
    """MAE's eval transform at 224: shorter side to 256 (bicubic), centre 224 crop."""
    root = tmp_path / "tree"
    (root / "train" / "a").mkdir(parents=True)
    (root / "val" / "a").mkdir(parents=True)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (300, 400, 3)).astype(np.uint8)
    Image.fromarray(x).save(root / "train" / "a" / "0.png")
    Image.fromarray(x).save(root / "val" / "a" / "0.png")
    got = _lazy(root).view("test", 224, "crop")[0]
    # independently: torchvision's Resize(256) keeps the aspect ratio: 300x400 -> 256x341
    ref = Image.fromarray(x).resize((341, 256), Image.Resampling.BICUBIC)
    top, left = (256 - 224) // 2, (341 - 224) // 2
    np.testing.assert_array_equal(got, np.asarray(ref)[top:top + 224, left:left + 224])


def test_fingerprint_is_stable_and_changes_with_the_files(tmp_path: Path) -> None:
    made = _make_folder(tmp_path / "tree")
    a, b = _lazy(tmp_path / "tree").fingerprint, _lazy(tmp_path / "tree").fingerprint
    assert a == b and len(a) == 64
    target = tmp_path / "tree" / made["train"][0][0]
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    c = _lazy(tmp_path / "tree").fingerprint
    assert c != a
    target.rename(target.with_name("zzz.png"))
    assert _lazy(tmp_path / "tree").fingerprint not in (a, c)


def test_bad_image_is_named_or_skipped(tmp_path: Path) -> None:
    _make_folder(tmp_path / "tree")
    bad = tmp_path / "tree" / "val" / "dog" / "bad.png"
    bad.write_bytes(b"not an image at all")
    view = _lazy(tmp_path / "tree").view("test", 32, "fit")
    j = _lazy(tmp_path / "tree").test.names.index("val/dog/bad.png")
    with pytest.raises(UmaeError, match=r"cannot read image val/dog/bad\.png"):
        view[j]
    skipping = _lazy(tmp_path / "tree", skip_bad=True).view("test", 32, "fit")
    img, ok = skipping.decode(j)
    assert not ok and img.shape == (32, 32, 3) and not img.any()
    assert skipping.decode(0)[1]


# --------------------------------------------------------------------------------------------
# The choice between the two paths
# --------------------------------------------------------------------------------------------


def test_auto_keeps_small_sets_in_memory_and_streams_large_ones(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _make_folder(tmp_path / "tree")
    lazy = _lazy(tmp_path / "tree")
    assert decoded_bytes(lazy, None) == (15 + 9) * 32 * 32 * 3
    assert type(open_dataset(tmp_path / "tree")).__name__ == "ImageSet"
    monkeypatch.setenv("UMAE_MEMORY_LIMIT_GB", str(1000 / (1 << 30)))  # 1000 bytes
    assert memory_limit() == 1000
    assert isinstance(open_dataset(tmp_path / "tree"), LazyImageSet)
    assert type(open_dataset(tmp_path / "tree", mode="memory")).__name__ == "ImageSet"
    monkeypatch.setenv("UMAE_MEMORY_LIMIT_GB", "lots")
    with pytest.raises(UmaeError, match="UMAE_MEMORY_LIMIT_GB='lots' is not a number"):
        open_dataset(tmp_path / "tree")
    with pytest.raises(UmaeError, match="--data-mode 'fast': choose one of auto, memory, lazy"):
        open_dataset(tmp_path / "tree", mode="fast")


def test_array_formats_stay_in_memory_even_when_lazy_is_asked(tmp_path: Path) -> None:
    assert type(open_dataset("demo", mode="lazy")).__name__ == "ImageSet"


# --------------------------------------------------------------------------------------------
# WebDataset shards, written by the webdataset package itself
# --------------------------------------------------------------------------------------------


def _make_shards(root: Path, per_shard: int = 4, shards: int = 3, seed: int = 0,
                 names: bool = True) -> dict[str, list[tuple[int, np.ndarray]]]:
    import webdataset as wds

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[tuple[int, np.ndarray]]] = {"train": [], "val": []}
    for split, count in (("train", shards), ("val", 1)):
        for s in range(count):
            with wds.TarWriter(str(root / f"{split}-{s:06d}.tar")) as sink:
                for i in range(per_shard):
                    label = int(rng.integers(0, 3))
                    x = _img(rng, label)
                    buf = io.BytesIO()
                    Image.fromarray(x).save(buf, "PNG")
                    # a key with dots in the folder part, as ShardWriter users write them
                    sink.write({"__key__": f"img.v1/{split}_{s}_{i:04d}", "png": buf.getvalue(), "cls": label})
                    made[split].append((label, x))
    if names:
        (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return made


def test_webdataset_folder_reads_back_every_sample(tmp_path: Path) -> None:
    made = _make_shards(tmp_path / "shards")
    ds = open_dataset(tmp_path / "shards")
    assert isinstance(ds, LazyImageSet) and ds.format == "webdataset"
    assert ds.class_names == CLASSES and len(ds.train) == 12 and len(ds.test) == 4
    assert ds.y_train.tolist() == [y for y, _ in made["train"]]
    view = ds.view("train", 32, "fit")
    for j, (_, x) in enumerate(made["train"]):
        np.testing.assert_array_equal(view[j], x)
    assert ds.train.names[0] == "train-000000.tar:img.v1/train_0_0000.png"


def test_webdataset_brace_pattern_finds_the_val_shards(tmp_path: Path) -> None:
    made = _make_shards(tmp_path / "shards", names=False)
    ds = open_dataset(str(tmp_path / "shards" / "train-{000000..000002}.tar"))
    assert isinstance(ds, LazyImageSet)
    assert ds.class_names == ["0", "1", "2"][: len(ds.class_names)]
    assert any("classes are named by their label numbers" in n for n in ds.notes)
    assert ds.y_test.tolist() == [y for y, _ in made["val"]]
    np.testing.assert_array_equal(ds.view("test", 32, "fit")[3], made["val"][3][1])
    with pytest.raises(UmaeError, match=r"1 of 4 shards do not exist"):
        open_dataset(str(tmp_path / "shards" / "train-{000000..000003}.tar"))


def test_webdataset_sample_without_a_label_is_refused(tmp_path: Path) -> None:
    import webdataset as wds

    root = tmp_path / "shards"
    root.mkdir()
    for split in ("train", "val"):
        with wds.TarWriter(str(root / f"{split}-000000.tar")) as sink:
            buf = io.BytesIO()
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "PNG")
            sink.write({"__key__": "a", "png": buf.getvalue()})
    with pytest.raises(UmaeError, match=r"train-000000\.tar: sample 'a' has no a \.cls label"):
        open_dataset(root)


# --------------------------------------------------------------------------------------------
# ImageFolder tar archives, read by member offset
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_lazy_tar_equals_the_folder(tmp_path: Path, mode: str) -> None:
    pytest.importorskip("umae_eval.data.layouts")
    _make_folder(tmp_path / "tree")
    archive = tmp_path / ("tree.tar" if mode == "w" else "tree.tar.gz")
    with tarfile.open(archive, mode) as tf:
        tf.add(tmp_path / "tree", arcname="mydata")
    folder = _lazy(tmp_path / "tree")
    packed = _lazy(archive)
    assert packed.format == "imagefolder-tar" and packed.class_names == CLASSES
    np.testing.assert_array_equal(packed.y_test, folder.y_test)
    a, b = packed.view("test", 32, "fit"), folder.view("test", 32, "fit")
    np.testing.assert_array_equal(a[np.arange(len(a))], b[np.arange(len(b))])
    # the index is cached: a second open reads no member headers
    again = _lazy(archive)
    assert again.fingerprint == packed.fingerprint
