"""One entry for every command: :func:`open_dataset` picks the in-memory or the lazy path.

- CIFAR pickles, ``.npz`` and the demo are always in memory (they are small and stored as arrays).
- WebDataset shards are always lazy.
- An ImageFolder folder or tar is in memory while its decoded size (N x H x W x 3 bytes, the
  native size read from a few image headers, else the decode size) stays under
  :func:`memory_limit` (2 GiB unless ``UMAE_MEMORY_LIMIT_GB`` says otherwise): CIFAR-10 as JPEGs
  (0.18 GB) and Tiny ImageNet (110k x 64 x 64 x 3 = 1.35 GB) keep today's fast path with its
  decode cache; ImageNet-100 (~20 GB at 224 px) and ImageNet-1k are lazy. A compressed tar is
  not indexed just to decide: its decoded size is estimated as 12x the archive's bytes (JPEG's
  typical ratio), unless its decode is already cached.

``mode='memory'`` or ``'lazy'`` (``--data-mode``) forces the choice for folders and tars;
``skip_bad`` (``--skip-bad-images``) makes ``auto`` pick the lazy path, where bad files are skipped.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

from umae_eval.data.formats import DEFAULT_DECODE_SIZE, TAR_SUFFIXES
from umae_eval.data.imageset import ImageSet
from umae_eval.data.lazy import LazyImageSet, native_size
from umae_eval.data.load import load_dataset
from umae_eval.errors import UmaeError
from umae_eval.progress import ProgressFactory, null_progress

DataMode = Literal["auto", "memory", "lazy"]
DATA_MODES: tuple[str, ...] = ("auto", "memory", "lazy")

#: Decoded bytes per compressed byte assumed for an un-indexed compressed tar of JPEGs.
COMPRESSED_RATIO = 12


def memory_limit() -> int:
    """Bytes of decoded images above which ImageFolder sets go lazy (``UMAE_MEMORY_LIMIT_GB``, default 2;
    ``inf``: no limit)."""
    raw = os.environ.get("UMAE_MEMORY_LIMIT_GB", "2")
    try:
        gb = float(raw)
    except ValueError:
        raise UmaeError(f"UMAE_MEMORY_LIMIT_GB={raw!r} is not a number; set it to e.g. 2 (GiB)") from None
    if not gb >= 0:
        raise UmaeError(f"UMAE_MEMORY_LIMIT_GB={raw!r} must be a number >= 0 (GiB), e.g. 2")
    if gb == float("inf"):
        return sys.maxsize  # 'inf': no limit, every set is decoded into memory
    return int(gb * (1 << 30))


def decoded_bytes(lazy: LazyImageSet, decode_size: int | None) -> int:
    """What the in-memory path would hold for ``lazy``: N x H x W x 3 bytes."""
    n = len(lazy.train) + len(lazy.test)
    if decode_size is not None:
        return n * decode_size * decode_size * 3
    hw = native_size(lazy.train, lazy.source)
    if hw is None or hw != native_size(lazy.test, lazy.source):
        return n * DEFAULT_DECODE_SIZE * DEFAULT_DECODE_SIZE * 3
    return n * hw[0] * hw[1] * 3


def open_dataset(spec: str | Path, *, mode: str = "auto", decode_size: int | None = None, cache: bool = True,
                 skip_bad: bool = False, progress: ProgressFactory = null_progress) -> ImageSet | LazyImageSet:
    """Open ``spec`` in memory (:class:`ImageSet`) or lazily (:class:`LazyImageSet`).

    Parameters
    ----------
    spec : str or Path
        Anything :func:`load_dataset` reads, or WebDataset shards (:mod:`umae_eval.data.wds`).
    mode : {'auto', 'memory', 'lazy'}
        See the module docstring.
    decode_size : int, optional
        The in-memory path's decode size (see :func:`load_dataset`).
    skip_bad : bool
        Lazy path: an undecodable image is counted and left out instead of stopping the run.
    """
    from umae_eval.data.open_lazy import open_folder, open_shards, open_tar
    from umae_eval.data.wds import shard_splits

    if mode not in DATA_MODES:
        raise UmaeError(f"--data-mode {mode!r}: choose one of {', '.join(DATA_MODES)}")
    text = str(spec)
    if text.strip().lower() == "demo":
        return load_dataset(spec, cache=cache, decode_size=decode_size, progress=progress)
    shards = shard_splits(text)
    if shards is not None:
        if mode == "memory":
            raise UmaeError(f"{text}: WebDataset shards are read lazily only; drop --data-mode memory")
        return open_shards(shards, text, skip_bad, cache, progress)
    path = Path(text).expanduser()
    is_folder = path.is_dir() and ((path / "train").is_dir() or _has_layout_root(path))
    is_tar = path.is_file() and (path.name.lower().endswith(TAR_SUFFIXES))
    if skip_bad and mode == "auto" and (is_folder or is_tar):
        mode = "lazy"  # skipping happens per item on the lazy path; the in-memory decode stops at a bad file
    if mode == "memory" or not (is_folder or is_tar):
        return load_dataset(spec, cache=cache, decode_size=decode_size, progress=progress)
    if is_tar and mode == "auto":
        from umae_eval.cache import cache_root
        from umae_eval.data.decode_cache import cache_key
        from umae_eval.data.tarindex import is_compressed

        if (cache_root() / "images" / cache_key(path, "tar", decode_size) / "meta.json").is_file():
            return load_dataset(spec, cache=cache, decode_size=decode_size, progress=progress)
        if is_compressed(path) and path.stat().st_size * COMPRESSED_RATIO <= memory_limit():
            return load_dataset(spec, cache=cache, decode_size=decode_size, progress=progress)
    lazy = open_folder(path, text, skip_bad) if is_folder else open_tar(path, text, skip_bad, cache, progress)
    if mode == "auto" and decoded_bytes(lazy, decode_size) <= memory_limit():
        return load_dataset(spec, cache=cache, decode_size=decode_size, progress=progress)
    return lazy


def _has_layout_root(path: Path) -> bool:
    """ImageNet's Kaggle layout, whose images start at ``ILSVRC/Data/CLS-LOC``."""
    return (path / "ILSVRC" / "Data" / "CLS-LOC" / "train").is_dir()
