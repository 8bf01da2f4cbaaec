"""What every checkpoint analysis starts from: the checkpoints, the images, the features.

For one checkpoint (a :class:`Subject`: a display name + a ``LoadedEncoder``) and one
``ImageSet``: :func:`load_subjects`, :func:`load_data` (with seeded subsets) and
:func:`compute_features` (through the on-disk feature cache). The stages that use the features
(probes, spectrum, masked views, maps) live in :mod:`umae_eval.pipeline`. Nothing here prints,
writes files or builds figures; progress goes through the ``progress`` factory and user errors
are raised as :class:`UmaeError`. The checkpoints' side (:class:`Subject`, :func:`load_subjects`,
:func:`display_names`) lives in :mod:`umae_eval.subjects` and is re-exported here.

Example::

    images = load_data("demo", max_test=500)
    subject = load_subjects([Path("mae.pth")])[0]
    fs = compute_features(subject, images, pool="cls", device="cpu", batch_size=256)
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from umae_eval.errors import UmaeError
from umae_eval.progress import ProgressFactory, null_progress
from umae_eval.subjects import Subject, display_names, load_subjects

__all__ = [
    "LAZY_PIXEL_SIZE",
    "DataSubset",
    "FeatureSet",
    "Pool",
    "Subject",
    "compute_features",
    "default_workers",
    "display_names",
    "load_data",
    "load_subjects",
    "subset_indices",
]

Pool = Literal["cls", "avg", "cls+avg"]


# --------------------------------------------------------------------------- data and features


def subset_indices(n: int, max_n: int | None, seed: int) -> np.ndarray | None:
    """Sorted random indices of ``max_n`` of ``n`` items (seeded), or None to keep them all."""
    if max_n is None or max_n <= 0 or max_n >= n:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_n, replace=False))


#: Side of the pixels a lazy set hands to code that asks for plain images (``x_train``/``x_test``):
#: the in-memory path's size for ImageFolders of mixed sizes.
LAZY_PIXEL_SIZE = 224


@dataclass
class DataSubset:
    """The images a command analyses: an ``ImageSet`` or ``LazyImageSet`` and optional subsets.

    For a lazy set, ``x_train`` / ``x_test`` are :class:`~umae_eval.data.lazy.LazyArray` views
    (indexing decodes only the rows asked for) and :meth:`pixels` gives the rows at a model's
    input side with that model's evaluation transform.
    """

    images: Any  # umae_eval.data.ImageSet | umae_eval.data.lazy.LazyImageSet
    train_idx: np.ndarray | None = None
    test_idx: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    workers: int | None = None  # lazy path: DataLoader workers (None: default_workers())
    feature_dtype: str = "float32"  # lazy path: dtype of the on-disk feature store
    #: undecodable images left out per split (--skip-bad-images), set once features are computed
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def lazy(self) -> bool:
        return bool(getattr(self.images, "lazy", False))

    def pixels(self, split: str, size: int | None = None) -> Any:
        """The split's (subset) images: an ndarray (in memory) or a LazyArray decoded at ``size``
        with :func:`umae_eval.data.transforms.eval_rule` (lazy)."""
        idx = self.train_idx if split == "train" else self.test_idx
        if not self.lazy:
            x = self.images.x_train if split == "train" else self.images.x_test
            return x if idx is None else x[idx]
        from umae_eval.data.transforms import eval_rule

        side = LAZY_PIXEL_SIZE if size is None else int(size)
        rule = "fit" if size is None else eval_rule(side)
        return self.images.view(split, side, rule).take(idx)

    @property
    def x_train(self) -> Any:
        return self.pixels("train")

    @property
    def x_test(self) -> Any:
        return self.pixels("test")

    @property
    def y_train(self) -> np.ndarray:
        y = np.asarray(self.images.y_train)
        return y if self.train_idx is None else y[self.train_idx]

    @property
    def y_test(self) -> np.ndarray:
        y = np.asarray(self.images.y_test)
        return y if self.test_idx is None else y[self.test_idx]

    def key(self, split: str) -> str:
        """Cache key of a split's images: dataset fingerprint + which subset."""
        idx = self.train_idx if split == "train" else self.test_idx
        tag = "all" if idx is None else f"sub{len(idx)}-{_digest(idx)}"
        return f"{self.images.fingerprint}-{split}-{tag}"

    def settings(self, spec: str) -> dict[str, Any]:
        """JSON-safe description: spec, source, format, fingerprint, sizes, subsets, data mode."""
        im = self.images
        out = {
            "spec": spec,
            "source": str(getattr(im, "source", spec)),
            "format": str(getattr(im, "format", "")),
            "data_mode": "lazy" if self.lazy else "memory",
            "fingerprint": str(im.fingerprint),
            "fingerprint_method": str(getattr(im, "fingerprint_method", "sha256 of every pixel, label and class name")),
            "image_size": None if self.lazy else list(im.x_train.shape[1:3]),
            "n_classes": len(im.class_names),
            "class_names": list(im.class_names),
            **_ids_and_notes(im),
            "layout": str(getattr(im, "layout", getattr(im, "format", ""))),
            # the images the numbers were computed on: undecodable ones left out do not count
            "n_train": int(len(self.y_train)) - self.skipped.get("train", 0),
            "n_test": int(len(self.y_test)) - self.skipped.get("test", 0),
            **({"n_skipped": dict(self.skipped)} if self.skipped else {}),
            "n_train_available": int(len(im.y_train)),
            "n_test_available": int(len(im.y_test)),
        }
        if self.notes:
            out["notes"] = [*out.get("notes", []), *self.notes]
        return out


def _ids_and_notes(im: Any) -> dict[str, Any]:
    """The source's class ids (wnids) where they differ from the names, and the loader's notes."""
    out: dict[str, Any] = {}
    ids = list(getattr(im, "class_ids", None) or [])
    if ids and ids != list(im.class_names):
        out["class_ids"] = ids
    if getattr(im, "notes", ()):
        out["notes"] = list(im.notes)
    return out


def _digest(idx: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(idx, dtype=np.int64).tobytes()).hexdigest()[:12]


def load_data(spec: str, *, max_train: int | None = None, max_test: int | None = None, seed: int = 0,
              progress: ProgressFactory = null_progress, mode: str = "auto",
              max_train_per_class: int | None = None, skip_bad: bool = False,
              workers: int | None = None, feature_dtype: str = "float32") -> DataSubset:
    """Open ``spec`` with :func:`umae_eval.data.choose.open_dataset` (in memory or lazy) and
    draw the optional subsets: ``max_train`` / ``max_test`` images (seeded), or
    ``max_train_per_class`` train images of each class (seeded, class-balanced)."""
    from umae_eval.data.choose import open_dataset

    images = open_dataset(spec, mode=mode, skip_bad=skip_bad, progress=progress)
    if len(images.y_train) == 0 or len(images.y_test) == 0:
        raise UmaeError(f"--data {spec}: needs both a train and a test split with images")
    train_idx = subset_indices(len(images.y_train), max_train, seed)
    notes: list[str] = []
    if max_train_per_class is not None:
        from umae_eval.subsets import balanced_subset

        y = np.asarray(images.y_train)
        base = np.arange(len(y)) if train_idx is None else train_idx
        pick = balanced_subset(y[base], int(max_train_per_class), seed)
        train_idx = base[pick]
        notes.append(f"train subset: at most {max_train_per_class} images per class (seed {seed}), "
                     f"{len(train_idx)} of {len(y)}")
    if feature_dtype not in ("float32", "float16"):
        raise UmaeError(f"--feature-dtype {feature_dtype!r}: choose float32 or float16")
    return DataSubset(images, train_idx, subset_indices(len(images.y_test), max_test, seed + 1), notes,
                      workers, feature_dtype)


@dataclass
class FeatureSet:
    """Frozen-encoder features of the train and test images, float32 ``(N, D)``."""

    train: np.ndarray | None
    test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    pool: str
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # lazy path: transform, stores, skipped images
    #: blocks held side by side in the columns (None: one block, the last); see :meth:`block`
    blocks: tuple[int, ...] | None = None
    final_norm: bool = True

    def block(self, index: int) -> FeatureSet:
        """The features of block ``index`` alone (a contiguous copy of its columns)."""
        if self.blocks is None or len(self.blocks) == 1:
            if self.blocks is not None and index != self.blocks[0]:
                raise KeyError(f"block {index} was not read (blocks: {self.blocks})")
            return self
        j = self.blocks.index(index)
        width = self.test.shape[1] // len(self.blocks)

        def cols(x: np.ndarray | None) -> np.ndarray | None:
            return None if x is None else np.ascontiguousarray(x[:, j * width:(j + 1) * width])

        test = cols(self.test)
        assert test is not None
        return FeatureSet(cols(self.train), test, self.y_train, self.y_test, self.pool, self.seconds,
                          self.extra, (index,), self.final_norm)


def default_workers() -> int:
    """DataLoader workers for the lazy path: one per core, at most 8."""
    import os

    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def compute_features(
    subject: Subject,
    data: DataSubset,
    *,
    pool: Pool = "cls",
    device: str = "auto",
    batch_size: int = 256,
    with_train: bool = True,
    workers: int | None = None,
    feature_dtype: str | None = None,
    progress: ProgressFactory = null_progress,
    readout: Any = None,
) -> FeatureSet:
    """Train and test features of one encoder (through the on-disk feature cache / store).

    ``with_train=False`` skips the training split (``FeatureSet.train`` is then None): the
    collapse measures and maps use test features only. A lazy set is decoded per item in
    ``workers`` DataLoader processes (default :func:`default_workers`) with the encoder's
    evaluation transform, and its features go to a resumable on-disk store; images that could
    not be decoded (with ``skip_bad``) are left out of both features and labels.

    ``readout`` (:class:`umae_eval.readout.Readout`): the blocks read and the final norm; every
    block comes from one forward pass and the features hold them side by side
    (:meth:`FeatureSet.block` gives one block's columns).
    """
    from umae_eval.features import cached_features

    t0 = time.perf_counter()
    feats: dict[str, np.ndarray | None] = {"train": None}
    labels = {"train": data.y_train, "test": data.y_test}
    splits = ("train", "test") if with_train else ("test",)
    extra: dict[str, Any] = {}
    for split in splits:
        label = _labelled(progress, f"{subject.name}: {split} features")
        if data.lazy:
            from umae_eval.lazy_features import lazy_features

            view = data.pixels(split, subject.encoder.info.arch.img_size)
            n_workers = workers if workers is not None else data.workers
            out = lazy_features(subject.encoder, view, images_key=data.key(split), pool=pool, device=device,
                                batch_size=batch_size,
                                workers=default_workers() if n_workers is None else n_workers,
                                feature_dtype=feature_dtype or data.feature_dtype, progress=label,
                                readout=readout)
            feats[split] = out.features
            if not out.ok.all():
                labels[split] = labels[split][out.ok]
                feats[split] = out.features[out.ok]
                extra.setdefault("skipped_images", {})[split] = int((~out.ok).sum())
                data.skipped[split] = int((~out.ok).sum())
                _note(data, f"{split}: {int((~out.ok).sum())} undecodable images left out (--skip-bad-images)")
            _note(data, f"lazy path: images decoded per item with the transform {view.transform}")
            extra["transform"] = view.transform
            extra.setdefault("stores", {})[split] = out.store
            if out.warning:
                extra.setdefault("warnings", []).append(out.warning)
                _warn(data, out.warning)
        else:
            cache_warnings: list[str] = []
            feats[split] = np.asarray(cached_features(
                subject.encoder, data.pixels(split), images_key=data.key(split), pool=pool, device=device,
                batch_size=batch_size, progress=label, readout=readout, warnings=cache_warnings), dtype=np.float32)
            for line in cache_warnings:
                extra.setdefault("warnings", []).append(line)
                _warn(data, line)
    assert feats["test"] is not None
    blocks = None if readout is None else readout.resolved(subject.encoder.info.arch.depth)
    return FeatureSet(feats["train"], feats["test"], labels["train"], labels["test"], pool,
                      time.perf_counter() - t0, extra, blocks=blocks,
                      final_norm=True if readout is None else bool(readout.final_norm))


def _warn(data: DataSubset, line: str) -> None:
    """A feature-cache fallback (damaged store rebuilt, cache unwritable: features kept in
    memory): shown once as a warning line by the CLI, and kept in results.json's data notes."""
    if line not in data.notes:
        warnings.warn(line, stacklevel=3)
        data.notes.append(line)


def _note(data: DataSubset, line: str) -> None:
    if line not in data.notes:
        data.notes.append(line)


def _labelled(progress: ProgressFactory, prefix: str) -> ProgressFactory:
    """A progress factory whose task descriptions start with ``prefix``."""

    @contextmanager
    def wrapped(description: str, total: int | None = None) -> Iterator[Any]:
        with progress(f"{prefix} ({description})" if description else prefix, total) as adv:
            yield adv

    return wrapped
