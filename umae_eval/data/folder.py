"""ImageFolder listing (folder or tar, any layout of :mod:`umae_eval.data.layouts`) and decoding into arrays."""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from umae_eval.data.cifar import read_cifar
from umae_eval.data.decode import decode_image, resize_array
from umae_eval.data.formats import (
    ARCHIVE_ERRORS,
    CIFAR10_FILES,
    CIFAR100_FILES,
    DEFAULT_DECODE_SIZE,
    MAX_MEMBER_BYTES,
)
from umae_eval.data.imageset import Arrays
from umae_eval.data.layouts import (
    KAGGLE_DATA,
    SPLITS,
    NoLayout,
    find_listing,
    is_image_name,
    is_metadata_name,
    wanted_dir,
)
from umae_eval.data.walk import walk_tree
from umae_eval.errors import UmaeError
from umae_eval.progress import ProgressFactory

# --------------------------------------------------------------------------------------------
# ImageFolder: listing (folder or tar), decoding
# --------------------------------------------------------------------------------------------

# One image to decode: (name shown in errors, label, the file's path or bytes).
Entry = tuple[str, int, "Path | bytes"]


@dataclass
class Listing:
    """Images to decode, with their labels; ``class_ids`` default to the names."""

    class_names: list[str]
    train: list[Entry]
    test: list[Entry]
    class_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    layout: str = "imagefolder"


def is_layout_folder(path: Path) -> bool:
    """Whether ``path`` holds a train/ tree directly or as Kaggle's ILSVRC/Data/CLS-LOC/train."""
    return (path / "train").is_dir() or (path / KAGGLE_DATA / "train").is_dir()


def list_imagefolder(root: Path, source: str) -> Listing:
    """List the labelled images of a folder in any layout of :mod:`umae_eval.data.layouts`."""
    walk = walk_tree(root, descend=wanted_dir)
    found = find_listing(walk.files, lambda name: (root / name).read_text("utf-8-sig"),
                         where=source, dirs=walk.dirs)
    return Listing(found.class_names, [(n, y, root / n) for n, y in found.train],
                   [(n, y, root / n) for n, y in found.test], found.class_ids, walk.notes + found.notes,
                   found.layout)


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
    return Arrays(x[:k], y[:k], x[k:], y[k:], listing.class_names, fmt, size,
                  class_ids=listing.class_ids or None, notes=tuple(listing.notes))


def load_tar(path: Path, source: str, decode_size: int | None, progress: ProgressFactory) -> Arrays:
    """Stream an archive once: images under train/ test/ val/ and the layout's metadata files are
    read, CIFAR python members parsed; :func:`find_listing` then says which images are labelled."""
    files: dict[str, None] = {}  # member order, each name once (a re-added member replaces the first)
    dirs: list[str] = []  # directory members: they carry classes that hold no image
    blobs: dict[str, bytes] = {}
    cifar: dict[str, bytes] = {}
    cifar_names = set(CIFAR10_FILES) | set(CIFAR100_FILES)
    try:
        with tarfile.open(path, mode="r|*") as tf, progress(f"reading {path.name}") as advance:
            for member in tf:
                name = member.name
                while name.startswith(("./", "/")):
                    name = name[2:] if name.startswith("./") else name[1:]
                name = name.rstrip("/")
                if member.isdir():
                    dirs.append(name)
                if not member.isfile():
                    continue
                files[name] = None
                parts = name.split("/")
                if any(p.startswith(".") or p == "__MACOSX" for p in parts):
                    continue
                if parts[-1] in cifar_names and len(parts) >= 2 and parts[-2].startswith("cifar-"):
                    cifar[parts[-1]] = _read_member(tf, member)
                elif is_image_name(name) and any(p in SPLITS for p in parts[:-1]):
                    blobs[name] = _read_member(tf, member)
                    advance(1)
                elif is_metadata_name(name):
                    blobs[name] = _read_member(tf, member)
    except ARCHIVE_ERRORS as exc:
        raise UmaeError(f"{source}: corrupt or truncated archive ({type(exc).__name__}: {exc}); "
                        "download or pack it again") from None
    try:
        found = find_listing(list(files), lambda name: blobs[name].decode("utf-8-sig"), where=source,
                             dirs=dirs, archive=True)
    except NoLayout:
        if cifar:
            return read_cifar(cifar.__getitem__, cifar.__contains__, source).resized(decode_size)
        raise
    listing = Listing(found.class_names, [(n, y, blobs[n]) for n, y in found.train],
                      [(n, y, blobs[n]) for n, y in found.test], found.class_ids, found.notes, found.layout)
    return decode_listing(listing, source, "imagefolder-tar", decode_size, progress, path.name)


def _read_member(tf: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    if member.size > MAX_MEMBER_BYTES:  # from the header: nothing of it read yet
        raise UmaeError(f"{tf.name}: member {member.name} is {member.size:,} bytes, more than the "
                        f"{MAX_MEMBER_BYTES >> 20} MiB any image or metadata file may have; remove it from the archive")
    fh = tf.extractfile(member)
    assert fh is not None  # regular files always have a file object
    return fh.read()


