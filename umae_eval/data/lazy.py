"""Datasets too large for memory: a listing of files, decoded per item when used.

A :class:`LazyImageSet` holds, per split, the file names, the labels and a reader that gives
an item's bytes (a path in a folder, an offset in a tar, a sample in a WebDataset shard); no
image is decoded when it is opened. Images are decoded

- per item in DataLoader workers, through :meth:`LazyArray.dataset` (feature extraction), or
- for a subset only, by indexing a :class:`LazyArray` (``view[idx]``), which is what the
  mask-ratio sweep, the label-error subset, the graph sample and the masked-view measures do.

A :class:`LazyArray` behaves like the ``(N, S, S, 3)`` uint8 array of the in-memory path
(``shape``, ``len``, integer / slice / index-array / boolean indexing), so code written for
arrays takes it unchanged and decodes only the rows it asks for.

Example
-------
>>> ds = open_dataset("/data/imagenet", mode="lazy")                 # doctest: +SKIP
>>> view = ds.view("test", 224, "crop")                              # doctest: +SKIP
>>> view[np.array([0, 5])].shape                                     # doctest: +SKIP
(2, 224, 224, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from umae_eval.data.decode import open_rgb
from umae_eval.data.transforms import (
    EvalRule,
    apply_eval_rule,
    describe_rule,
    resize_side,
)
from umae_eval.errors import UmaeError

#: ``reader(i) -> bytes or Path`` of item ``i`` of a split.
Reader = Callable[[int], "bytes | Path"]


@dataclass(frozen=True, eq=False)
class LazySplit:
    """One split of a lazy dataset.

    Attributes
    ----------
    names : list[str]
        Each item's name (relative path, tar member or shard key), shown in errors.
    labels : np.ndarray
        int64 ``(N,)``.
    reader : object
        ``reader(i)`` returns the item's encoded bytes or its file path; it must be
        picklable (DataLoader workers receive it).
    """

    names: list[str]
    labels: np.ndarray
    reader: Any

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class LazyImageSet:
    """Train and test splits of files, decoded on use. Mirrors :class:`ImageSet`'s metadata.

    Attributes
    ----------
    train, test : LazySplit
    class_names : list[str]
        Human-readable names (from ``words.txt`` / ``LOC_synset_mapping.txt`` when present).
    class_ids : list[str]
        Folder names / wnids / label ids, ``class_ids[k]`` for label ``k``.
    source, format : str
        What the user gave, and the detected format (``'imagefolder'``, ``'imagefolder-tar'``,
        ``'webdataset'``).
    fingerprint : str
        See :mod:`umae_eval.data.fingerprint` (listing + sizes + mtimes + a seeded sample of bytes).
    fingerprint_method : str
        How ``fingerprint`` was computed, for results.json.
    layout : str
        ``'imagefolder'``, ``'tiny-imagenet'``, ``'imagenet-kaggle'``, ``'webdataset'``, ...
    notes : list[str]
        One line each: what was skipped or assumed while listing.
    """

    train: LazySplit
    test: LazySplit
    class_names: list[str]
    class_ids: list[str]
    source: str
    format: str
    fingerprint: str
    fingerprint_method: str
    layout: str = "imagefolder"
    notes: list[str] = field(default_factory=list)
    skip_bad: bool = False

    lazy = True
    decode_size = None

    @property
    def y_train(self) -> np.ndarray:
        return self.train.labels

    @property
    def y_test(self) -> np.ndarray:
        return self.test.labels

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> LazySplit:
        if name not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {name!r}")
        return self.train if name == "train" else self.test

    def view(self, split: str, size: int, rule: EvalRule = "fit") -> LazyArray:
        """The split as an ``(N, size, size, 3)`` uint8 array-like, decoded on indexing."""
        return LazyArray(self.split(split), size, rule, self.source, self.skip_bad)

    def describe(self) -> str:
        layout = "" if self.layout == self.format else f", {self.layout}"
        return (f"{self.source} ({self.format}{layout}, lazy): {len(self.train)} train / "
                f"{len(self.test)} test images, {self.num_classes} classes, decoded on use")


class LazyArray:
    """An ``(N, S, S, 3)`` uint8 array-like over a :class:`LazySplit`; rows decode on indexing.

    Parameters
    ----------
    split : LazySplit
    size : int
        Side ``S`` of every decoded image.
    rule : {'fit', 'crop'}
        The evaluation transform (:mod:`umae_eval.data.transforms`).
    source : str
        Dataset name for error messages.
    skip_bad : bool
        An undecodable image becomes zeros (and ``ok=False`` in :meth:`dataset`) instead of an error.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, split: LazySplit, size: int, rule: EvalRule, source: str, skip_bad: bool = False,
                 rows: np.ndarray | None = None) -> None:
        self.split, self.size, self.rule, self.source, self.skip_bad = split, int(size), rule, source, skip_bad
        self.rows = rows  # this view's row j is the split's item rows[j] (None: all, in order)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), self.size, self.size, 3)

    def take(self, rows: np.ndarray | None) -> LazyArray:
        """A view of some rows (still lazy): ``view.take(idx)[j] == view[idx[j]]``."""
        if rows is None:
            return self
        rows = np.asarray(rows, dtype=np.int64)
        base = rows if self.rows is None else self.rows[rows]
        return LazyArray(self.split, self.size, self.rule, self.source, self.skip_bad, base)

    def resized(self, size: int, rule: EvalRule) -> LazyArray:
        """The same rows decoded at another side or rule."""
        return LazyArray(self.split, size, rule, self.source, self.skip_bad, self.rows)

    def item(self, j: int) -> int:
        """The split's item number of this view's row ``j``."""
        return int(j if self.rows is None else self.rows[j])

    @property
    def transform(self) -> str:
        """E.g. ``'resize256-crop224-bicubic'``; part of every feature-store key."""
        return describe_rule(self.size, self.rule)

    def __len__(self) -> int:
        return len(self.split) if self.rows is None else len(self.rows)

    def decode(self, j: int) -> tuple[np.ndarray, bool]:
        """Row ``j``: ``(uint8 (S, S, 3), ok)``."""
        i = self.item(j)
        name = self.split.names[i]
        try:
            im = open_rgb(self.split.reader(i), name, self.source, resize_side(self.size, self.rule))
        except UmaeError:
            if not self.skip_bad:
                raise
            return np.zeros((self.size, self.size, 3), np.uint8), False
        return np.array(apply_eval_rule(im, self.size, self.rule), dtype=np.uint8), True

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.decode(int(key) % len(self))[0]
        if isinstance(key, tuple):
            raise IndexError("a lazy image array takes one index (rows); decode the rows, then slice pixels")
        if isinstance(key, slice):
            rows = np.arange(len(self))[key]
        else:
            rows = np.asarray(key)
            if rows.dtype == bool:
                if rows.shape != (len(self),):
                    raise IndexError(f"boolean index of shape {rows.shape} for {len(self)} rows")
                rows = np.flatnonzero(rows)
        out = np.empty((len(rows), self.size, self.size, 3), np.uint8)
        for j, i in enumerate(rows.tolist()):
            out[j] = self.decode(int(i))[0]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise UmaeError(f"{self.source}: refusing to decode all {len(self)} images of a lazy split into "
                        "memory; index the rows you need (or pass --data-mode memory)")

    def labels(self) -> np.ndarray:
        """int64 ``(len(self),)``: the label of each row."""
        return self.split.labels if self.rows is None else self.split.labels[self.rows]

    def dataset(self, indices: Sequence[int] | np.ndarray | None = None) -> DecodedItems:
        """A map-style torch Dataset: item ``j`` is ``(uint8 tensor (S, S, 3), ok)`` of row ``indices[j]``."""
        return DecodedItems(self, None if indices is None else np.asarray(indices, dtype=np.int64))


class DecodedItems(torch.utils.data.Dataset):
    """Decodes one row of a :class:`LazyArray` per item (in a DataLoader worker)."""

    def __init__(self, view: LazyArray, indices: np.ndarray | None) -> None:
        self.view, self.indices = view, indices

    def __len__(self) -> int:
        return len(self.view) if self.indices is None else len(self.indices)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, bool]:
        i = int(j if self.indices is None else self.indices[j])
        img, ok = self.view.decode(i)
        return torch.from_numpy(np.ascontiguousarray(img)), ok


# --------------------------------------------------------------------------------------------
# Readers (picklable, so DataLoader workers can use them)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FolderReader:
    """Item ``i`` is the file ``root / names[i]``."""

    root: Path
    names: list[str]

    def __call__(self, i: int) -> Path:
        return self.root / self.names[i]


@dataclass(frozen=True, eq=False)
class OffsetReader:
    """Item ``i`` is ``sizes[i]`` bytes at ``offsets[i]`` of the uncompressed tar ``path``."""

    path: Path
    offsets: np.ndarray
    sizes: np.ndarray

    def __call__(self, i: int) -> bytes:
        from umae_eval.data.tarindex import read_member

        return read_member(self.path, int(self.offsets[i]), int(self.sizes[i]))


def native_size(split: LazySplit, source: str, sample: int = 8) -> tuple[int, int] | None:
    """``(H, W)`` when the first ``sample`` images share one size (read from headers only), else None."""
    sizes = set()
    for i in range(min(sample, len(split))):
        src = split.reader(i)
        try:
            with Image.open(src if isinstance(src, Path) else __import__("io").BytesIO(src)) as im:
                sizes.add((im.size[1], im.size[0]))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # a bomb: decode refuses it
            return None
    return sizes.pop() if len(sizes) == 1 else None
