"""Features from your own pipeline (`--features PATH`): one checked :class:`FeatureInput`.

:func:`load_features` opens ``PATH`` in any format :mod:`umae_eval.feature_formats` reads
(``.npz``, a folder of ``.npy`` files, ``.safetensors``, a pair of umae feature stores), checks
what it holds and records where it came from. The arrays stay as the file holds them: memory-mapped
where the format allows and float16 kept float16, so a consumer converts per row block
(:func:`row_blocks`) and nothing holds a float32 copy of N x D unless it asks for one.

Checks (each a one-line :class:`UmaeError`, exit 2, naming the file and the fix): the four arrays
present, features 2-D floating point with the same width in train and test, one label per row,
labels whole numbers in ``[0, C)`` (C = the class names' count when given), no row with NaN or
inf (the count and the first row named), and no pickled objects anywhere.

Example::

    fi = load_features(Path("my_features.npz"))
    fi.train_x.dtype          # float16 if saved so; a read-only np.memmap for np.savez files
    for start, block in row_blocks(fi.train_x, 65536):
        ...                   # (rows, D) float32
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from umae_eval.errors import UmaeError
from umae_eval.feature_formats import KEYS, RawFeatures, fail, read_features

#: Rows per block when features are scanned (NaN check, sha256 is per file): 64k x 768 float16 = 96 MiB.
BLOCK_ROWS = 65536


@dataclass
class FeatureInput:
    """Train and test features with labels, read from files (no encoder behind them).

    Attributes
    ----------
    train_x, test_x : (N, D), (M, D) array
        float16, float32 or float64 as saved; often a read-only ``np.memmap``.
    train_y, test_y : (N,), (M,) int64
        Class indices in ``[0, C)``, in memory.
    class_names : list of str
        C names (``'0' .. 'C-1'`` when the file has none; ``provenance['class_names_given']`` says).
    provenance : dict
        JSON-safe: path, format, files (path, sha256, bytes), shapes, dtype, memory_mapped, notes.
    """

    train_x: Any
    train_y: np.ndarray
    test_x: Any
    test_y: np.ndarray
    class_names: list[str]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def dim(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.train_x.dtype)


def row_blocks(x: Any, rows: int = BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, x[start:start + rows] as float32)`` over an (N, D) array-like, in order."""
    for start in range(0, int(x.shape[0]), rows):
        yield start, np.asarray(x[start:start + rows], dtype=np.float32)


def load_features(path: str | Path, *, hash_files: bool = True) -> FeatureInput:
    """Read, check and describe the features at ``path`` (see the module docstring).

    ``hash_files`` False skips the sha256 of the files (tests of big inputs); results.json then
    records ``sha256: null``.
    """
    path = Path(path)
    raw = read_features(path)
    a = raw.arrays
    for split in ("train", "test"):
        _check_features(a[f"{split}_features"], f"{split}_features", path)
    tr, te = a["train_features"], a["test_features"]
    if tr.shape[1] != te.shape[1]:
        raise fail(path, f"train_features are {tr.shape[1]} wide but test_features are {te.shape[1]} wide; "
                         "save both splits' features from the same encoder and readout")
    if tr.dtype != te.dtype:
        raise fail(path, f"train_features are {tr.dtype} but test_features are {te.dtype}; save both "
                         "in one dtype (float16 or float32)")
    labels = {s: _labels(a[f"{s}_labels"], len(a[f"{s}_features"]), s, path) for s in ("train", "test")}
    top = max(int(labels["train"].max()), int(labels["test"].max()))
    names = raw.class_names
    if names is not None:
        if len(names) < top + 1:
            split = "train" if int(labels["train"].max()) == top else "test"
            row = int(np.argmax(labels[split] == top))
            raise fail(path, f"{split}_labels hold {top} at row {row} but class_names lists {len(names)} "
                             f"classes; labels must be 0..{len(names) - 1}, or list every class name")
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise fail(path, f"class_names lists {dup!r} twice; give each class one unique name")
    for split, x in (("train", tr), ("test", te)):
        _check_finite(x, f"{split}_features", path)
    provenance = _provenance(path, raw, names is not None, hash_files)
    return FeatureInput(tr, labels["train"], te, labels["test"],
                        names if names is not None else [str(i) for i in range(top + 1)], provenance)


def _check_features(x: np.ndarray, key: str, path: Path) -> None:
    if x.ndim != 2:
        raise fail(path, f"{key} must be 2-D (rows, features), got shape {tuple(x.shape)}; "
                         "pool or flatten each image's feature to one row")
    if x.dtype.kind != "f":
        raise fail(path, f"{key} are {x.dtype}; save floating-point features (float16 or float32)")
    if x.shape[0] < 2 or x.shape[1] < 1:
        raise fail(path, f"{key} has shape {tuple(x.shape)}; each split needs at least 2 rows and 1 column")


def _labels(y: np.ndarray, n: int, split: str, path: Path) -> np.ndarray:
    """Labels as int64 (N,), checked: one per row, whole numbers, not negative."""
    key = f"{split}_labels"
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise fail(path, f"{key} has shape {tuple(y.shape)} but {split}_features has {n} rows; "
                         "give one class index per row")
    if y.dtype.kind == "b" or y.dtype.kind not in "iuf":
        raise fail(path, f"{key} are {y.dtype}; save class indices 0..C-1 as integers, e.g. y.astype(np.int64)")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            row = int(np.argmax(bad))
            raise fail(path, f"{key} are not integers (row {row} holds {float(y[row]):g}); save class indices "
                             "0..C-1 as integers, e.g. y.astype(np.int64)")
    if y.dtype.kind == "u" and y.dtype.itemsize == 8 and int(y.max()) > np.iinfo(np.int64).max:
        raise fail(path, f"{key} hold {int(y.max())}; labels must be class indices 0..C-1")
    out = y.astype(np.int64)
    if (out < 0).any():
        row = int(np.argmax(out < 0))
        raise fail(path, f"{key} hold {int(out[row])} at row {row}; labels must be class indices 0..C-1")
    return out


def _check_finite(x: Any, key: str, path: Path, rows: int = BLOCK_ROWS) -> None:
    """No row with NaN or inf: scanned in row blocks (a memmap is read once, never held)."""
    count, first = 0, -1
    for start, block in _native_blocks(x, rows):
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            if first < 0:
                first = start + int(np.argmax(bad))
            count += int(bad.sum())
    if count:
        raise fail(path, f"{key} has {count} row(s) with NaN or inf (first: row {first}); drop or fix them "
                         "before saving, e.g. keep = np.isfinite(x).all(axis=1); x, y = x[keep], y[keep]")


def _native_blocks(x: Any, rows: int = BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """Row blocks in the stored dtype. A C-ordered memmap is read with plain file reads, so the
    scan does not leave the whole file mapped in (and counted in) the process's resident memory."""
    n = int(x.shape[0])
    name = getattr(x, "filename", None)
    if isinstance(x, np.memmap) and name and x.flags.c_contiguous and x.ndim == 2:
        width = int(x.shape[1])
        with open(name, "rb") as fh:
            for start in range(0, n, rows):
                count = min(rows, n - start) * width
                fh.seek(int(x.offset) + start * width * x.dtype.itemsize)
                yield start, np.fromfile(fh, dtype=x.dtype, count=count).reshape(-1, width)
        return
    for start in range(0, n, rows):
        yield start, np.asarray(x[start:start + rows])


def _provenance(path: Path, raw: RawFeatures, names_given: bool, hash_files: bool) -> dict[str, Any]:
    from umae_eval.provenance import sha256_file

    a = raw.arrays
    files = [{"path": str(f), "bytes": int(f.stat().st_size), "sha256": sha256_file(f) if hash_files else None}
             for f in raw.files]
    out: dict[str, Any] = {
        "path": str(path),
        "resolved_path": str(path.resolve()),
        "format": raw.format,
        "files": files,
        "shapes": {k: list(a[k].shape) for k in KEYS},
        "dtype": str(a["train_features"].dtype),
        "label_dtype": {k: str(a[k].dtype) for k in ("train_labels", "test_labels")},
        "memory_mapped": bool(raw.memory_mapped),
        "class_names_given": bool(names_given),
    }
    if raw.notes:
        out["notes"] = list(raw.notes)
    out.update(raw.extra)
    return out


def check_same_labels(inputs: list[tuple[str, FeatureInput]]) -> list[str]:
    """Several inputs compared (``umae compare --features A --features B``): the same images.

    The paired intervals resample test images, so every input must hold the same labels in the
    same order; class names must agree where given. Returns the class names to use.
    """
    (first_path, first), rest = inputs[0], inputs[1:]
    names = first.class_names
    given = first.provenance.get("class_names_given")
    for p, fi in rest:
        for split in ("train", "test"):
            a, b = getattr(first, f"{split}_y"), getattr(fi, f"{split}_y")
            if len(a) != len(b) or not np.array_equal(a, b):
                detail = (f"{len(b)} rows against {len(a)}" if len(a) != len(b)
                          else f"first difference at row {int(np.argmax(a != b))}")
                raise UmaeError(f"--features {p}: its {split}_labels differ from {first_path}'s ({detail}); "
                                "compared features must be of the same images in the same order")
        if fi.provenance.get("class_names_given"):
            if given and fi.class_names != names:
                raise UmaeError(f"--features {p}: its class_names differ from {first_path}'s; give the "
                                "same class names (or none) in every file")
            if not given:
                names, given = fi.class_names, True
    return names
