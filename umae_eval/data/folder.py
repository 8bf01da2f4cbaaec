"""ImageFolder listing (folder or tar) and decoding the listed images into arrays."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from umae_eval.data.cifar import read_cifar
from umae_eval.data.decode import decode_image, resize_array
from umae_eval.data.formats import (
    ACCEPTED,
    ARCHIVE_ERRORS,
    CIFAR10_FILES,
    CIFAR100_FILES,
    DEFAULT_DECODE_SIZE,
    IMAGE_SUFFIXES,
    TEST_SPLITS,
)
from umae_eval.data.imageset import Arrays
from umae_eval.errors import UmaeError
from umae_eval.progress import ProgressFactory

# --------------------------------------------------------------------------------------------
# ImageFolder: listing (folder or tar), decoding
# --------------------------------------------------------------------------------------------

# One image to decode: (name shown in errors, label, the file's path or bytes).
Entry = tuple[str, int, "Path | bytes"]


@dataclass
class Listing:
    class_names: list[str]
    train: list[Entry]
    test: list[Entry]


def is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_SUFFIXES


def label_entries(where: str, train: dict[str, list[tuple[str, Path | bytes]]],
                   test: dict[str, list[tuple[str, Path | bytes]]], test_split: str) -> Listing:
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

    def entries(split: dict[str, list[tuple[str, Path | bytes]]]) -> list[Entry]:
        return [(name, index[c], src) for c in sorted(split) for name, src in sorted(split[c], key=lambda t: t[0])]

    return Listing(classes, entries(train), entries(test))


def list_imagefolder(root: Path, source: str) -> Listing:
    test_split = next((s for s in TEST_SPLITS if (root / s).is_dir()), None)
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
                    if is_image_name(fn):
                        p = Path(dirpath) / fn
                        files.append((p.relative_to(root).as_posix(), p))
            classes[d.name] = files
        splits[split] = classes
    return label_entries(source, splits["train"], splits[test_split], test_split)


def decode_entries(entries: Sequence[Entry], source: str, decode_size: int | None,
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
            img = decode_image(src, name, source, target)
            if out is None:
                out = np.empty((n, *img.shape), np.uint8)
            elif img.shape != out.shape[1:]:  # only possible while target is None
                target = DEFAULT_DECODE_SIZE
                resized = np.empty((n, target, target, 3), np.uint8)
                resized[:i] = resize_array(out[:i], target)
                out = resized
                img = decode_image(src, name, source, target)
            out[i] = img
            if i % 512 == 511:
                advance(512)
        advance(n % 512)
    assert out is not None
    return out, target


def decode_listing(listing: Listing, source: str, fmt: str, decode_size: int | None,
                    progress: ProgressFactory, what: str) -> Arrays:
    entries = listing.train + listing.test
    x, size = decode_entries(entries, source, decode_size, progress, what)
    k = len(listing.train)
    y = np.array([label for _, label, _ in entries], dtype=np.int64)
    return Arrays(x[:k], y[:k], x[k:], y[k:], listing.class_names, fmt, size)


def load_tar(path: Path, source: str, decode_size: int | None, progress: ProgressFactory) -> Arrays:
    """Stream an archive once: ImageFolder members are decoded, CIFAR python members parsed."""
    by_prefix: dict[tuple[str, ...], dict[str, dict[str, list[tuple[str, Path | bytes]]]]] = {}
    cifar: dict[str, bytes] = {}
    folders: list[list[str]] = []  # directory members: they carry classes that hold no image
    seen: list[str] = []
    cifar_names = set(CIFAR10_FILES) | set(CIFAR100_FILES)
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
                if not is_image_name(name):
                    continue
                split_at = next((i for i, p in enumerate(parts[:-2]) if p in ("train", *TEST_SPLITS)), None)
                if split_at is None:
                    continue
                prefix = tuple(parts[:split_at])
                tree = by_prefix.setdefault(prefix, {})
                tree.setdefault(parts[split_at], {}).setdefault(parts[split_at + 1], []).append(
                    (name, _read_member(tf, member)))
                advance(1)
    except ARCHIVE_ERRORS as exc:
        raise UmaeError(f"{source}: corrupt or truncated archive ({type(exc).__name__}: {exc}); "
                        "download or pack it again") from None
    if not by_prefix:
        if cifar:
            return read_cifar(cifar.__getitem__, cifar.__contains__, source).resized(decode_size)
        listed = ", ".join(seen) if seen else "no files"
        raise UmaeError(f"{source}: the archive holds no train/<class>/<image> files (first entries: "
                        f"{listed}); {ACCEPTED}")
    if len(by_prefix) > 1:
        tops = ", ".join("/".join(p) + "/" if p else "(archive root)" for p in sorted(by_prefix))
        raise UmaeError(f"{source}: the archive holds images under several folders ({tops}); "
                        "pack a single ImageFolder per archive")
    (prefix, tree), = by_prefix.items()
    for parts in folders:
        rest = parts[len(prefix):]
        if (tuple(parts[:len(prefix)]) == prefix and rest and rest[0] in ("train", *TEST_SPLITS)
                and not any(p.startswith(".") for p in rest)):
            classes = tree.setdefault(rest[0], {})
            if len(rest) >= 2:
                classes.setdefault(rest[1], [])
    where = "/".join((source, *prefix))
    if "train" not in tree:
        raise UmaeError(f"{where}: the archive has no train/<class>/<image> files; "
                        "an ImageFolder needs train/ and test/ (or val/)")
    test_split = next((s for s in TEST_SPLITS if s in tree), None)
    if test_split is None:
        raise UmaeError(f"{where}: the archive has train/ but no test/ or val/ images; "
                        "add test/<class>/<image> files")
    listing = label_entries(where, tree["train"], tree[test_split], test_split)
    return decode_listing(listing, source, "imagefolder-tar", decode_size, progress, path.name)


def _read_member(tf: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    fh = tf.extractfile(member)
    assert fh is not None  # regular files always have a file object
    return fh.read()


