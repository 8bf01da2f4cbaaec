"""Turn a dataset spec into uint8 train/test images, int64 labels and class names.

One entry point, :func:`load_dataset`, detects the format of what the user points at:

``'demo'``
    The class-balanced CIFAR-10 sample shipped in ``umae_eval/demo/`` (see its README).
``cifar-python``
    A ``cifar-10-batches-py`` folder (``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
    ``batches.meta``) or a ``cifar-100-python`` folder (``train``, ``test``, ``meta``; fine
    labels), or the folder that holds one of them, or the ``.tar.gz`` that packs one
    (``cifar-10-python.tar.gz`` as downloaded by torchvision).
``imagefolder``
    A folder with ``train/<class>/<image>`` and ``test/<class>/<image>`` (or ``val/``) files,
    JPEG/PNG/... of any size and mode (grayscale, RGBA and palette images become RGB; alpha
    is dropped, as torchvision's loader does).
``imagefolder-tar``
    The same tree packed as ``.tar``, ``.tar.gz`` or ``.tgz`` (any common top-level folder is
    allowed), read by streaming through the archive without extracting it.
``npz``
    An ``.npz`` with ``x_train, y_train, x_test, y_test`` and optionally ``class_names`` (a str
    array; default ``'0' .. 'K-1'``). Images are ``(N, H, W, 3)`` uint8; ``(N, 3, H, W)`` is
    transposed, grayscale ``(N, H, W)`` / ``(N, H, W, 1)`` repeated to 3 channels, floats in
    [0, 1] scaled by 255 and rounded, other integers in 0..255 cast. Labels ``(N,)`` or
    ``(N, 1)``. Object arrays (pickles) are refused.

Decoded images (ImageFolder, tar, demo) are cached as ``.npy`` files under
``umae_eval.cache.cache_root() / 'images'``, keyed by the source's resolved path, size and
modification time (every file's, for a folder) and the decode size, so a second command on
the same 60,000 JPEGs loads in a fraction of a second instead of decoding again.

Example
-------
>>> from umae_eval.data import load_dataset
>>> data = load_dataset("demo")
>>> data.x_train.shape, data.num_classes
((3000, 32, 32, 3), 10)
"""

from __future__ import annotations

import codecs
import hashlib
import importlib
import io
import json
import lzma
import os
import pickle
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from umae_eval.cache import cache_root
from umae_eval.errors import UmaeError
from umae_eval.progress import ProgressFactory, null_progress

#: The values ``ImageSet.format`` takes.
FORMATS: tuple[str, ...] = ("cifar-python", "imagefolder", "imagefolder-tar", "npz", "demo")

#: File suffixes read as images in an ImageFolder tree (others, e.g. README files, are ignored).
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)

#: Archive suffixes read as a packed ImageFolder (or packed CIFAR python folder).
TAR_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")

#: The side images are resized to when an ImageFolder's images differ in size and no
#: ``decode_size`` is given (ImageNet's evaluation size).
DEFAULT_DECODE_SIZE = 224

#: The embedded sample, relative to the ``umae_eval`` package.
DEMO_FILE = "demo/cifar10-sample.npz"

_TEST_SPLITS = ("test", "val")
_CACHE_VERSION = 1
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_FILES = (*_CIFAR10_TRAIN, "test_batch", "batches.meta")
_CIFAR100_FILES = ("train", "test", "meta")
_ACCEPTED = (
    "accepted: 'demo', a cifar-10-batches-py or cifar-100-python folder (or its parent), "
    "an ImageFolder folder with train/ and test/ (or val/) class folders, the same packed as "
    ".tar/.tar.gz/.tgz, or an .npz with x_train, y_train, x_test, y_test"
)
_ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    OSError,
)


# --------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Train and test images with their labels, ready for any umae stage.

    Attributes
    ----------
    x_train, x_test : np.ndarray
        uint8 images, shape ``(N, H, W, 3)``, RGB, C-contiguous; both splits share ``H, W``.
    y_train, y_test : np.ndarray
        int64 labels, shape ``(N,)``, each in ``0 .. num_classes - 1``.
    class_names : list[str]
        ``class_names[k]`` names label ``k``.
    source : str
        What the user asked for: the path as given, or ``'demo'``.
    format : str
        One of :data:`FORMATS`.
    fingerprint : str
        Hex sha256 of the pixels, labels, shapes and class names (not of ``source``), so two
        copies of the same data in different formats or places have the same fingerprint.
        Leave it empty to have it computed (about 0.1 s per 60,000 CIFAR images).
    decode_size : int or None
        The side every image was resized (shorter side, then centre crop) to while loading,
        or None when the images kept their native size.

    Raises
    ------
    UmaeError
        If the arrays do not have the shapes, dtypes or label ranges above (a split is
        empty, the two splits differ in image size, a label has no class name, ...).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    source: str
    format: str
    fingerprint: str = ""
    decode_size: int | None = None

    def __post_init__(self) -> None:
        names = [str(n) for n in self.class_names]
        object.__setattr__(self, "class_names", names)
        for split in ("train", "test"):
            x = _check_images(getattr(self, f"x_{split}"), split, self.source)
            y = _check_labels(getattr(self, f"y_{split}"), len(x), len(names), split, self.source)
            object.__setattr__(self, f"x_{split}", x)
            object.__setattr__(self, f"y_{split}", y)
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise UmaeError(
                f"{self.source}: train images are {_hw(self.x_train)} but test images are "
                f"{_hw(self.x_test)}; store both splits at one size (or load with decode_size)"
            )
        if self.format not in FORMATS:
            raise UmaeError(f"{self.source}: unknown format {self.format!r}; use one of {', '.join(FORMATS)}")
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", compute_fingerprint(
                self.x_train, self.y_train, self.x_test, self.y_test, names))

    @property
    def num_classes(self) -> int:
        """The number of classes, ``len(class_names)``."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(H, W)`` of every image."""
        return int(self.x_train.shape[1]), int(self.x_train.shape[2])

    @property
    def image_size(self) -> int:
        """The side of the (square) images; the shorter side if they are not square."""
        return min(self.image_shape)

    def describe(self) -> str:
        """One line for logs and reports, e.g. ``'demo (demo): 3000 train / 1000 test, ...'``."""
        h, w = self.image_shape
        resized = f", resized to {self.decode_size}" if self.decode_size else ""
        return (f"{self.source} ({self.format}): {len(self.y_train)} train / {len(self.y_test)} test "
                f"images, {self.num_classes} classes, {h}x{w}{resized}")


def compute_fingerprint(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                        y_test: np.ndarray, class_names: Sequence[str]) -> str:
    """Hex sha256 of a dataset's content.

    Parameters
    ----------
    x_train, x_test : np.ndarray
        uint8 images, shape ``(N, H, W, 3)``.
    y_train, y_test : np.ndarray
        int64 labels, shape ``(N,)``.
    class_names : sequence of str
        The class names, in label order.

    Returns
    -------
    str
        64 hex digits; equal for equal pixels, labels, shapes and class names.
    """
    h = hashlib.sha256(b"umae-imageset-v1\n")
    for arr in (x_train, y_train, x_test, y_test):
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype.str}{arr.shape}\n".encode())
        h.update(memoryview(arr).cast("B"))
    h.update("\n".join(class_names).encode("utf-8"))
    return h.hexdigest()


def _hw(x: np.ndarray) -> str:
    return f"{x.shape[1]}x{x.shape[2]}"


def _check_images(x: Any, split: str, source: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise UmaeError(
            f"{source}: x_{split} must be uint8 of shape (N, H, W, 3), got {x.dtype} {x.shape}; "
            "convert the images to RGB uint8"
        )
    if len(x) == 0:
        raise UmaeError(f"{source}: the {split} split has no images; provide at least one {split} image")
    return np.ascontiguousarray(x)


def _check_labels(y: Any, n: int, num_classes: int, split: str, source: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise UmaeError(f"{source}: y_{split} must be integer labels of shape (N,), got {y.dtype} {y.shape}")
    if len(y) != n:
        raise UmaeError(f"{source}: {n} {split} images but {len(y)} {split} labels; give one label per image")
    if num_classes < 1:
        raise UmaeError(f"{source}: no class names; give at least one class")
    y = np.ascontiguousarray(y, dtype=np.int64)
    bad = y[(y < 0) | (y >= num_classes)]
    if bad.size:
        raise UmaeError(
            f"{source}: {split} label {int(bad[0])} is outside 0..{num_classes - 1} "
            f"({num_classes} class names); fix the labels or the class names"
        )
    return y


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def load_dataset(spec: str | Path, *, cache: bool = True, decode_size: int | None = None,
                 progress: ProgressFactory = null_progress) -> ImageSet:
    """Load train/test images, labels and class names from a dataset spec.

    Parameters
    ----------
    spec : str or Path
        ``'demo'`` (the embedded CIFAR-10 sample), or a path to a CIFAR python folder (or
        its parent, or its ``.tar.gz``), an ImageFolder folder, an ImageFolder packed as
        ``.tar``/``.tar.gz``/``.tgz``, or an ``.npz`` (see the module docstring).
        A folder literally named ``demo`` is reached as ``./demo``.
    cache : bool
        Read and write decoded images under ``cache_root()/images`` (ImageFolder, tar and
        demo sources; CIFAR pickles and .npz files load fast without it).
    decode_size : int, optional
        Resize every image to ``decode_size x decode_size`` (shorter side, bicubic, then
        centre crop); JPEGs at least twice that size are first decoded at a reduced scale
        (PIL draft mode), which is much faster. By default images keep their native size
        when they all share one, and are brought to :data:`DEFAULT_DECODE_SIZE` when an
        ImageFolder's images differ.
    progress : ProgressFactory
        Reports reading and decoding; silent by default.

    Returns
    -------
    ImageSet
        ``x_train (N, H, W, 3)`` uint8, ``y_train (N,)`` int64, the same for test, the class
        names, the format detected and the content fingerprint.

    Raises
    ------
    UmaeError
        One line naming the file and the fix: missing path, unknown format, missing .npz
        keys, corrupt pickle/archive, ImageFolder without classes or images, an unreadable
        image, test classes that train lacks, labels out of range.
    """
    if decode_size is not None and (int(decode_size) != decode_size or decode_size < 1):
        raise UmaeError(f"decode_size must be a positive integer, got {decode_size!r}")
    if isinstance(spec, str) and spec.strip().lower() == "demo":
        return _load_demo(cache, decode_size, progress)
    path = Path(spec).expanduser()
    source = str(spec)
    if not path.exists():
        raise UmaeError(f"{source}: no such file or folder; pass an existing dataset path or 'demo'")
    if path.is_dir():
        cifar = _find_cifar_dir(path)
        if cifar is not None:
            arrays = _read_cifar(lambda name: (cifar / name).read_bytes(),
                                 lambda name: (cifar / name).is_file(), str(cifar))
            return arrays.resized(decode_size).to_imageset(source)
        if (path / "train").is_dir():
            return _cached(path, source, "imagefolder", decode_size, cache,
                           lambda: _decode_listing(_list_imagefolder(path, source), source, "imagefolder",
                                                   decode_size, progress, path.name or source))
        raise UmaeError(f"{source}: not a dataset umae can read (it holds {_seen(path)}); {_ACCEPTED}")
    lower = path.name.lower()
    if lower.endswith(".npz"):
        return _read_npz(path, source).resized(decode_size).to_imageset(source)
    if lower.endswith(TAR_SUFFIXES) or _is_tarfile(path):
        return _cached(path, source, "tar", decode_size, cache,
                       lambda: _load_tar(path, source, decode_size, progress))
    raise UmaeError(f"{source}: not a dataset umae can read (a file of {path.stat().st_size} bytes "
                    f"with suffix {path.suffix or '(none)'!r}); {_ACCEPTED}")


class _Arrays(NamedTuple):
    """What a reader returns, before :class:`ImageSet` validates it."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    format: str
    decode_size: int | None = None

    def resized(self, size: int | None) -> _Arrays:
        """Array formats: bring every image to ``size x size`` on request."""
        if size is None:
            return self
        return self._replace(x_train=_resize_array(self.x_train, size),
                             x_test=_resize_array(self.x_test, size), decode_size=size)

    def to_imageset(self, source: str, fingerprint: str = "") -> ImageSet:
        return ImageSet(self.x_train, self.y_train, self.x_test, self.y_test, self.class_names,
                        source, self.format, fingerprint=fingerprint, decode_size=self.decode_size)


def _seen(path: Path, limit: int = 8) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    if not names:
        return "nothing"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _is_tarfile(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# CIFAR python pickles
# --------------------------------------------------------------------------------------------


def _cifar_kind(folder: Path) -> str | None:
    if any((folder / n).is_file() for n in ("batches.meta", "data_batch_1", "test_batch")):
        return "cifar-10"
    if (folder / "meta").is_file() and (folder / "train").is_file():
        return "cifar-100"
    return None


def _find_cifar_dir(path: Path) -> Path | None:
    """``path`` itself if it holds CIFAR batches, else its one child folder that does."""
    if _cifar_kind(path):
        return path
    for name in ("cifar-10-batches-py", "cifar-100-python"):
        if (path / name).is_dir() and _cifar_kind(path / name):
            return path / name
    return None


_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle names a callable that CIFAR batches never contain."""


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only: a dataset file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):  # bytes pickled by Python 3 at protocol < 3
            return codecs.encode
        if module in ("builtins", "__builtin__") and name == "bytes":  # b"" at protocol < 3
            return bytes
        if (module, name) not in _PICKLE_ALLOWED:
            raise _RefusedGlobal(f"{module}.{name}")
        # numpy 2 moved numpy.core to numpy._core; files name either (CIFAR's own: numpy.core).
        for candidate in (module.replace("numpy.core", "numpy._core"), module.replace("numpy._core", "numpy.core")):
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"this numpy has no {module}.{name}")


def _unpickle(data: bytes, where: str) -> dict[Any, Any]:
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _RefusedGlobal as exc:
        raise UmaeError(f"{where}: the pickle calls {exc}, which a CIFAR batch never does; umae refuses "
                        "to load it (use the files from the official cifar-*-python.tar.gz)") from None
    except Exception as exc:  # pickle raises many types on damaged input
        raise UmaeError(f"{where}: corrupt or truncated CIFAR pickle ({type(exc).__name__}: {exc}); "
                        "re-extract it from cifar-10-python.tar.gz / cifar-100-python.tar.gz") from None
    if not isinstance(obj, dict):
        raise UmaeError(f"{where}: expected a pickled dict, found {type(obj).__name__}; "
                        "this is not a CIFAR python batch")
    return obj


def _key(d: dict[Any, Any], key: str, where: str) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    seen = ", ".join(sorted(k.decode() if isinstance(k, bytes) else str(k) for k in d))
    raise UmaeError(f"{where}: no {key!r} entry (found {seen}); this is not a CIFAR python batch")


def _cifar_batch(data: bytes, where: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(data, where)
    pixels = np.asarray(_key(d, "data", where))
    labels = np.asarray(_key(d, label_key, where))
    if pixels.ndim != 2 or pixels.shape[1] != 3072 or pixels.dtype != np.uint8:
        raise UmaeError(f"{where}: 'data' must be N x 3072 uint8, got {pixels.dtype} {pixels.shape}; "
                        "this is not a CIFAR python batch")
    if labels.shape != (len(pixels),):
        raise UmaeError(f"{where}: {len(pixels)} images but {labels.size} labels; the batch is damaged")
    # Rows are RRR..GGG..BBB (1024 values per channel, row-major) -> (N, 32, 32, 3).
    images = pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


def _read_cifar(read: Callable[[str], bytes], exists: Callable[[str], bool], where: str) -> _Arrays:
    """Parse CIFAR-10 or CIFAR-100 python files, fetched by name through ``read``."""
    if any(exists(n) for n in ("batches.meta", "data_batch_1", "test_batch")):
        train_files, test_file, meta_file = _CIFAR10_TRAIN, "test_batch", "batches.meta"
        label_key, names_key = "labels", "label_names"
    else:
        train_files, test_file, meta_file = ("train",), "test", "meta"
        label_key, names_key = "fine_labels", "fine_label_names"
    missing = [n for n in (*train_files, test_file, meta_file) if not exists(n)]
    if missing:
        raise UmaeError(f"{where}: CIFAR python folder lacks {', '.join(missing)}; "
                        "re-extract the complete cifar-*-python.tar.gz")
    parts = [_cifar_batch(read(n), f"{where}/{n}", label_key) for n in train_files]
    x_test, y_test = _cifar_batch(read(test_file), f"{where}/{test_file}", label_key)
    meta = _unpickle(read(meta_file), f"{where}/{meta_file}")
    names = [n.decode("utf-8") if isinstance(n, bytes) else str(n)
             for n in _key(meta, names_key, f"{where}/{meta_file}")]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return _Arrays(x_train, y_train, np.ascontiguousarray(x_test), y_test, names, "cifar-python")


# --------------------------------------------------------------------------------------------
# .npz
# --------------------------------------------------------------------------------------------


def _read_npz(path: Path, source: str) -> _Arrays:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _NPZ_KEYS if k not in z.files]
            if missing:
                raise UmaeError(
                    f"{source}: the .npz lacks {', '.join(missing)} (it holds {', '.join(z.files) or 'nothing'}); "
                    "save it with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=..., "
                    "class_names=...)"
                )
            arrays = {k: _npz_array(z, k, source) for k in z.files if k in (*_NPZ_KEYS, "class_names")}
    except UmaeError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise UmaeError(f"{source}: corrupt or truncated .npz ({type(exc).__name__}: {exc}); "
                        "write it again with np.savez") from None
    x_train = _as_nhwc_uint8(arrays["x_train"], "x_train", source)
    x_test = _as_nhwc_uint8(arrays["x_test"], "x_test", source)
    y_train, y_test = arrays["y_train"], arrays["y_test"]
    if "class_names" in arrays:
        names = [n.decode("utf-8") if isinstance(n, bytes) else str(n)
                 for n in arrays["class_names"].reshape(-1).tolist()]
    else:
        top = max(int(np.max(y)) if np.size(y) and np.issubdtype(np.asarray(y).dtype, np.integer) else -1
                  for y in (y_train, y_test))
        names = [str(k) for k in range(top + 1)]
    return _Arrays(x_train, y_train, x_test, y_test, names, "npz")


def _npz_array(z: Any, key: str, source: str) -> np.ndarray:
    try:
        return np.asarray(z[key])
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise UmaeError(f"{source}: '{key}' holds pickled Python objects, which umae does not load; "
                            f"save it as a plain array (e.g. np.array(class_names, dtype=str))") from None
        raise


def _as_nhwc_uint8(x: np.ndarray, key: str, source: str) -> np.ndarray:
    """Bring (N,H,W,3), (N,3,H,W), (N,H,W[,1]) uint8 / 0..255 ints / [0,1] floats to (N,H,W,3) uint8."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim == 4 and x.shape[-1] not in (1, 3) and x.shape[1] in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise UmaeError(f"{source}: '{key}' has shape {x.shape}; store images as (N, H, W, 3) "
                        "(or (N, 3, H, W), or grayscale (N, H, W))")
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating):
            if x.size and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
                raise UmaeError(f"{source}: float '{key}' must lie in [0, 1]; "
                                "store uint8 pixels or divide by 255")
            x = np.rint(x * 255.0).astype(np.uint8)
        elif np.issubdtype(x.dtype, np.integer) and not np.issubdtype(x.dtype, np.bool_):
            if x.size and (x.min() < 0 or x.max() > 255):
                raise UmaeError(f"{source}: integer '{key}' must lie in 0..255; store uint8 pixels")
            x = x.astype(np.uint8)
        else:
            raise UmaeError(f"{source}: '{key}' has dtype {x.dtype}; store uint8 pixels")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x)


# --------------------------------------------------------------------------------------------
# ImageFolder: listing (folder or tar), decoding
# --------------------------------------------------------------------------------------------

# One image to decode: (name shown in errors, label, the file's path or bytes).
_Entry = tuple[str, int, "Path | bytes"]


@dataclass
class _Listing:
    class_names: list[str]
    train: list[_Entry]
    test: list[_Entry]


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_SUFFIXES


def _label_entries(where: str, train: dict[str, list[tuple[str, Path | bytes]]],
                   test: dict[str, list[tuple[str, Path | bytes]]], test_split: str) -> _Listing:
    """Check the class layout of both splits and number the classes by sorted train name."""
    classes = sorted(train)
    if not classes:
        raise UmaeError(f"{where}/train has no class folders; put images in {where}/train/<class>/<image>.jpg")
    empty = [c for c in classes if not train[c]]
    if empty:
        raise UmaeError(f"{where}/train/{empty[0]} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                        "add images or remove the folder")
    extra = sorted(set(test) - set(classes))
    if extra:
        raise UmaeError(f"{where}/{test_split} has classes that train/ lacks: {', '.join(extra)}; "
                        "test classes must also be train classes (rename or remove them)")
    if not any(test.values()):
        raise UmaeError(f"{where}/{test_split} holds no images; put images in {where}/{test_split}/<class>/<image>.jpg")
    index = {c: k for k, c in enumerate(classes)}

    def entries(split: dict[str, list[tuple[str, Path | bytes]]]) -> list[_Entry]:
        return [(name, index[c], src) for c in sorted(split) for name, src in sorted(split[c], key=lambda t: t[0])]

    return _Listing(classes, entries(train), entries(test))


def _list_imagefolder(root: Path, source: str) -> _Listing:
    test_split = next((s for s in _TEST_SPLITS if (root / s).is_dir()), None)
    if test_split is None:
        raise UmaeError(f"{source}: ImageFolder has train/ but no test/ or val/ folder; "
                        "add test/<class>/<image> files")
    splits: dict[str, dict[str, list[tuple[str, Path | bytes]]]] = {}
    for split in ("train", test_split):
        classes: dict[str, list[tuple[str, Path | bytes]]] = {}
        for d in sorted((root / split).iterdir()):
            if not d.is_dir() or d.name.startswith("."):
                continue
            files = []
            for dirpath, dirnames, filenames in os.walk(d, followlinks=True):
                dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
                for fn in filenames:
                    if _is_image_name(fn):
                        p = Path(dirpath) / fn
                        files.append((p.relative_to(root).as_posix(), p))
            classes[d.name] = files
        splits[split] = classes
    return _label_entries(source, splits["train"], splits[test_split], test_split)


def _open_rgb(src: Path | bytes, name: str, source: str, size: int | None) -> Image.Image:
    """Open one image as RGB, using JPEG draft mode when it will be shrunk to ``size``."""
    hint = {".jpg": ("JPEG",), ".jpeg": ("JPEG",), ".png": ("PNG",)}.get(os.path.splitext(name)[1].lower())
    fh = io.BytesIO(src) if isinstance(src, bytes) else src
    try:
        try:
            im = Image.open(fh, formats=hint)
        except UnidentifiedImageError:
            if hint is None:
                raise
            if isinstance(fh, io.BytesIO):
                fh.seek(0)
            im = Image.open(fh)  # the suffix lied (e.g. a PNG named .jpg)
        if size is not None and im.format == "JPEG" and min(im.size) >= 2 * size:
            im.draft("RGB", (size, size))
        if im.mode == "P":
            im = im.convert("RGBA")
        if im.mode != "RGB":
            im = im.convert("RGB")
        im.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UmaeError(f"{source}: cannot read image {name} ({type(exc).__name__}: {exc}); "
                        "replace or remove that file") from None
    return im


def _fit(im: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (bicubic, antialiased) and take the centre square."""
    w, h = im.size
    if (w, h) == (size, size):
        return im
    m = min(w, h)
    left, top = (w - m) / 2, (h - m) / 2
    return im.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + m, top + m))


def _decode_image(src: Path | bytes, name: str, source: str, size: int | None) -> np.ndarray:
    """One image as uint8 ``(H, W, 3)``; ``(size, size, 3)`` when ``size`` is given."""
    im = _open_rgb(src, name, source, size)
    if size is not None:
        im = _fit(im, size)
    return np.asarray(im)


def _resize_array(x: np.ndarray, size: int) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 -> ``(N, size, size, 3)`` with the same rule as decoding."""
    if x.shape[1:3] == (size, size):
        return x
    out = np.empty((len(x), size, size, 3), np.uint8)
    for i, img in enumerate(x):
        out[i] = np.asarray(_fit(Image.fromarray(np.ascontiguousarray(img)), size))
    return out


def _decode_entries(entries: Sequence[_Entry], source: str, decode_size: int | None,
                    progress: ProgressFactory, what: str) -> tuple[np.ndarray, int | None]:
    """Decode every entry into one ``(N, S, S, 3)`` / ``(N, H, W, 3)`` uint8 array.

    Without ``decode_size`` images keep their native size while they all share it; at the
    first image of another size everything is brought to :data:`DEFAULT_DECODE_SIZE`.
    Returns the array and the size images were resized to (None for native).
    """
    n = len(entries)
    target = decode_size
    out: np.ndarray | None = None
    with progress(f"decoding {n} images from {what}", total=n) as advance:
        for i, (name, _, src) in enumerate(entries):
            img = _decode_image(src, name, source, target)
            if out is None:
                out = np.empty((n, *img.shape), np.uint8)
            elif img.shape != out.shape[1:]:  # only possible while target is None
                target = DEFAULT_DECODE_SIZE
                resized = np.empty((n, target, target, 3), np.uint8)
                resized[:i] = _resize_array(out[:i], target)
                out = resized
                img = _decode_image(src, name, source, target)
            out[i] = img
            if i % 512 == 511:
                advance(512)
        advance(n % 512)
    assert out is not None
    return out, target


def _decode_listing(listing: _Listing, source: str, fmt: str, decode_size: int | None,
                    progress: ProgressFactory, what: str) -> _Arrays:
    entries = listing.train + listing.test
    x, size = _decode_entries(entries, source, decode_size, progress, what)
    k = len(listing.train)
    y = np.array([label for _, label, _ in entries], dtype=np.int64)
    return _Arrays(x[:k], y[:k], x[k:], y[k:], listing.class_names, fmt, size)


def _load_tar(path: Path, source: str, decode_size: int | None, progress: ProgressFactory) -> _Arrays:
    """Stream an archive once: ImageFolder members are decoded, CIFAR python members parsed."""
    by_prefix: dict[tuple[str, ...], dict[str, dict[str, list[tuple[str, Path | bytes]]]]] = {}
    cifar: dict[str, bytes] = {}
    folders: list[list[str]] = []  # directory members: they carry classes that hold no image
    seen: list[str] = []
    cifar_names = set(_CIFAR10_FILES) | set(_CIFAR100_FILES)
    try:
        with tarfile.open(path, mode="r|*") as tf, progress(f"reading {path.name}") as advance:
            for member in tf:
                name = member.name
                while name.startswith(("./", "/")):
                    name = name[2:] if name.startswith("./") else name[1:]
                parts = name.rstrip("/").split("/")
                if member.isdir():
                    folders.append(parts)
                if not member.isfile():
                    continue
                if len(seen) < 8:
                    seen.append(name)
                if any(p.startswith(".") or p == "__MACOSX" for p in parts):
                    continue
                if parts[-1] in cifar_names and len(parts) >= 2 and parts[-2].startswith("cifar-"):
                    cifar[parts[-1]] = _read_member(tf, member)
                    continue
                if not _is_image_name(name):
                    continue
                split_at = next((i for i, p in enumerate(parts[:-2]) if p in ("train", *_TEST_SPLITS)), None)
                if split_at is None:
                    continue
                prefix = tuple(parts[:split_at])
                tree = by_prefix.setdefault(prefix, {})
                tree.setdefault(parts[split_at], {}).setdefault(parts[split_at + 1], []).append(
                    (name, _read_member(tf, member)))
                advance(1)
    except _ARCHIVE_ERRORS as exc:
        raise UmaeError(f"{source}: corrupt or truncated archive ({type(exc).__name__}: {exc}); "
                        "download or pack it again") from None
    if not by_prefix:
        if cifar:
            return _read_cifar(cifar.__getitem__, cifar.__contains__, source).resized(decode_size)
        listed = ", ".join(seen) if seen else "no files"
        raise UmaeError(f"{source}: the archive holds no train/<class>/<image> files (first entries: "
                        f"{listed}); {_ACCEPTED}")
    if len(by_prefix) > 1:
        tops = ", ".join("/".join(p) + "/" if p else "(archive root)" for p in sorted(by_prefix))
        raise UmaeError(f"{source}: the archive holds images under several folders ({tops}); "
                        "pack a single ImageFolder per archive")
    (prefix, tree), = by_prefix.items()
    for parts in folders:
        rest = parts[len(prefix):]
        if (tuple(parts[:len(prefix)]) == prefix and rest and rest[0] in ("train", *_TEST_SPLITS)
                and not any(p.startswith(".") for p in rest)):
            classes = tree.setdefault(rest[0], {})
            if len(rest) >= 2:
                classes.setdefault(rest[1], [])
    where = "/".join((source, *prefix))
    if "train" not in tree:
        raise UmaeError(f"{where}: the archive has no train/<class>/<image> files; "
                        "an ImageFolder needs train/ and test/ (or val/)")
    test_split = next((s for s in _TEST_SPLITS if s in tree), None)
    if test_split is None:
        raise UmaeError(f"{where}: the archive has train/ but no test/ or val/ images; "
                        "add test/<class>/<image> files")
    listing = _label_entries(where, tree["train"], tree[test_split], test_split)
    return _decode_listing(listing, source, "imagefolder-tar", decode_size, progress, path.name)


def _read_member(tf: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    fh = tf.extractfile(member)
    assert fh is not None  # regular files always have a file object
    return fh.read()


# --------------------------------------------------------------------------------------------
# Demo sample
# --------------------------------------------------------------------------------------------


def demo_path() -> Path:
    """Path of the embedded CIFAR-10 sample (``umae_eval/demo/cifar10-sample.npz``)."""
    return Path(str(resources.files("umae_eval").joinpath(DEMO_FILE)))


def _load_demo(cache: bool, decode_size: int | None, progress: ProgressFactory) -> ImageSet:
    path = demo_path()
    if not path.is_file():
        raise UmaeError(f"{path}: the embedded demo sample is missing; reinstall umae or run "
                        "scripts/make_demo_sample.py")
    return _cached(path, "demo", "demo", decode_size, cache,
                   lambda: _decode_demo(path, decode_size, progress))


def _decode_demo(path: Path, decode_size: int | None, progress: ProgressFactory) -> _Arrays:
    """The sample stores each split's JPEG files back to back: ``<split>_jpeg`` + offsets."""
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        entries: dict[str, list[_Entry]] = {}
        for split in ("train", "test"):
            blob, offsets = d[f"{split}_jpeg"], d[f"{split}_offsets"]
            labels, files = d[f"y_{split}"], d[f"{split}_files"]
            entries[split] = [(str(files[i]), int(labels[i]), blob[offsets[i]:offsets[i + 1]].tobytes())
                              for i in range(len(labels))]
        names = [str(n) for n in d["class_names"]]
    except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise UmaeError(f"{path}: the embedded demo sample is damaged ({type(exc).__name__}: {exc}); "
                        "reinstall umae or run scripts/make_demo_sample.py") from None
    listing = _Listing(names, entries["train"], entries["test"])
    return _decode_listing(listing, "demo", "demo", decode_size, progress, "the demo sample")


# --------------------------------------------------------------------------------------------
# Decode cache
# --------------------------------------------------------------------------------------------


def _source_state(path: Path) -> list[Any]:
    """What invalidates the cache: size and mtime of the file, or of every file in a folder."""
    if path.is_file():
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    state: list[Any] = []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        dirnames.sort()
        for fn in sorted(filenames):
            st = os.stat(os.path.join(dirpath, fn))
            state.append([os.path.relpath(os.path.join(dirpath, fn), path), st.st_size, st.st_mtime_ns])
    return state


def cache_key(path: str | Path, fmt: str, decode_size: int | None) -> str:
    """The decode-cache key of a source: 32 hex digits.

    Parameters
    ----------
    path : str or Path
        The dataset file or folder.
    fmt : str
        How it is read (``'imagefolder'``, ``'tar'``, ``'demo'``).
    decode_size : int or None
        The requested decode size.

    Returns
    -------
    str
        Changes when the resolved path, a size or a modification time, the format, the decode
        size or the cache layout changes.
    """
    p = Path(path).resolve()
    payload = json.dumps({"v": _CACHE_VERSION, "path": str(p), "format": fmt,
                          "decode_size": decode_size, "state": _source_state(p)})
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _cached(path: Path, source: str, fmt: str, decode_size: int | None, cache: bool,
            decode: Callable[[], _Arrays]) -> ImageSet:
    """Return the cached decode of ``path`` if there is one, else decode (and store)."""
    if not cache:
        return decode().to_imageset(source)
    folder = cache_root() / "images" / cache_key(path, fmt, decode_size)
    hit = _read_cache(folder, source)
    if hit is not None:
        return hit
    data = decode().to_imageset(source)
    _write_cache(folder, data)
    return data


def _read_cache(folder: Path, source: str) -> ImageSet | None:
    meta_file = folder / "meta.json"
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text("utf-8"))
        arrays = {k: np.load(folder / f"{k}.npy", allow_pickle=False)
                  for k in ("x_train", "y_train", "x_test", "y_test")}
        return ImageSet(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                        list(meta["class_names"]), source, str(meta["format"]), fingerprint=str(meta["fingerprint"]),
                        decode_size=meta["decode_size"])
    except (OSError, ValueError, KeyError, TypeError, UmaeError):
        return None  # a damaged entry is a miss; it is replaced below


def _write_cache(folder: Path, data: ImageSet) -> None:
    """Write the arrays into a temporary folder, then rename it into place (atomic)."""
    tmp: str | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent)
        for k in ("x_train", "y_train", "x_test", "y_test"):
            np.save(os.path.join(tmp, f"{k}.npy"), getattr(data, k), allow_pickle=False)
        meta = {"class_names": data.class_names, "fingerprint": data.fingerprint,
                "decode_size": data.decode_size, "format": data.format, "cache_version": _CACHE_VERSION}
        Path(tmp, "meta.json").write_text(json.dumps(meta), "utf-8")
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a damaged entry
        os.replace(tmp, folder)
        tmp = None
    except OSError:
        pass  # the cache only saves time; a full or read-only disk must not fail the load
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
