"""The in-memory dataset: :class:`ImageSet` (uint8 images, labels, class names) and its checks."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from umae_eval.data.decode import resize_array
from umae_eval.data.formats import FORMATS
from umae_eval.errors import UmaeError

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
    class_ids : list[str]
        ``class_ids[k]`` is label ``k``'s id in the source (a wnid such as ``'n01443537'``
        beside the name ``'goldfish'``); empty at construction means ``class_names``. Not part
        of the fingerprint.
    notes : tuple[str, ...]
        One line each on what loading skipped or inferred (an unlabelled ``test/`` skipped,
        where labels and class names came from).

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
    class_ids: list[str] = field(default_factory=list)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [str(n) for n in self.class_names]
        object.__setattr__(self, "class_names", names)
        ids = [str(c) for c in self.class_ids] or list(names)
        if len(ids) != len(names):
            raise UmaeError(f"{self.source}: {len(ids)} class ids but {len(names)} class names; "
                            "give one id per class")
        object.__setattr__(self, "class_ids", ids)
        object.__setattr__(self, "notes", tuple(str(n) for n in self.notes))
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


class Arrays(NamedTuple):
    """What a reader returns, before :class:`ImageSet` validates it."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    format: str
    decode_size: int | None = None
    class_ids: list[str] | None = None
    notes: tuple[str, ...] = ()

    def resized(self, size: int | None) -> Arrays:
        """Array formats: bring every image to ``size x size`` on request."""
        if size is None:
            return self
        return self._replace(x_train=resize_array(self.x_train, size),
                             x_test=resize_array(self.x_test, size), decode_size=size)

    def to_imageset(self, source: str, fingerprint: str = "") -> ImageSet:
        return ImageSet(self.x_train, self.y_train, self.x_test, self.y_test, self.class_names,
                        source, self.format, fingerprint=fingerprint, decode_size=self.decode_size,
                        class_ids=list(self.class_ids or []), notes=self.notes)
