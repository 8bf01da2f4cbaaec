"""The decode cache: decoded arrays of file-based datasets under ``cache_root()/images``."""

from __future__ import annotations

import hashlib
import json
import warnings
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from umae_eval.cache import cache_root
from umae_eval.data.formats import CACHE_VERSION
from umae_eval.data.imageset import Arrays, ImageSet
from umae_eval.data.walk import walk_tree
from umae_eval.errors import UmaeError

# --------------------------------------------------------------------------------------------
# Decode cache
# --------------------------------------------------------------------------------------------


def _source_state(path: Path) -> list[Any]:
    """What invalidates the cache: size and mtime of the file, or of every file in a folder.

    A single file (a tar) adds its inode and ctime: a file replaced by another of the same size,
    with its mtime set back (``cp -p``, ``touch -r``, ``tar --mtime``), still gets a new ctime,
    which no user call can set. (Inside a folder only size and mtime count, for speed.)
    """
    if path.is_file():
        st = path.stat()
        return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
    state: list[Any] = []
    for rel in walk_tree(path).files:  # follows symlinks, but not around a symlink loop
        try:
            st = os.stat(path / rel)
        except OSError:  # a broken link: reading it later names it
            state.append([rel, None, None])
            continue
        state.append([rel, st.st_size, st.st_mtime_ns])
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
    payload = json.dumps({"v": CACHE_VERSION, "path": str(p), "format": fmt,
                          "decode_size": decode_size, "state": _source_state(p)})
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def cached_decode(path: Path, source: str, fmt: str, decode_size: int | None, cache: bool,
            decode: Callable[[], Arrays]) -> ImageSet:
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
        # The fingerprint hashes every pixel (0.1 s for CIFAR): recomputing it verifies the
        # entry, so altered or zeroed data behind a valid .npy header is caught, not used.
        data = ImageSet(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                        list(meta["class_names"]), source, str(meta["format"]),
                        decode_size=meta["decode_size"], class_ids=list(meta.get("class_ids", [])),
                        notes=tuple(meta.get("notes", [])))
    except (OSError, ValueError, KeyError, TypeError, UmaeError):
        return None  # a damaged entry is a miss; it is replaced below
    if data.fingerprint != str(meta.get("fingerprint")):
        warnings.warn(f"decode cache entry {folder} is damaged (its pixels do not match the recorded "
                      "checksum); decoding the images again", stacklevel=3)
        return None
    return data


def _write_cache(folder: Path, data: ImageSet) -> None:
    """Write the arrays into a temporary folder, then rename it into place (atomic)."""
    tmp: str | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent)
        for k in ("x_train", "y_train", "x_test", "y_test"):
            np.save(os.path.join(tmp, f"{k}.npy"), getattr(data, k), allow_pickle=False)
        meta = {"class_names": data.class_names, "fingerprint": data.fingerprint,
                "decode_size": data.decode_size, "format": data.format, "cache_version": CACHE_VERSION,
                "class_ids": data.class_ids, "notes": list(data.notes)}
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
