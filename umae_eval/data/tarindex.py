"""Random access to the members of a tar archive: index once, then read by offset.

An uncompressed ``.tar`` is read in place. A compressed one (``.tar.gz``, ``.tgz``, ``.tar.bz2``,
``.tar.xz``) cannot be read at an offset, so it is decompressed once, as a stream, into
``cache_root()/tars/<key>.tar`` (JPEGs do not compress, so this costs about the archive's own
size on disk) and that copy is indexed. The index (member names, data offsets, sizes, and the
directory members) is cached as ``cache_root()/tar-index/<key>.npz``; the key changes with the
archive's resolved path, size and modification time.

Workers of a DataLoader each open their own file descriptor (:func:`read_member` keeps one per
process and archive) and read with ``os.pread``, so no file position is shared between them.

Example
-------
>>> idx = tar_index(Path("imagenet-val.tar"))                     # doctest: +SKIP
>>> data = read_member(idx.path, idx.offsets[0], idx.sizes[0])    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from umae_eval.cache import cache_root
from umae_eval.data.formats import (
    ARCHIVE_ERRORS,
    MAX_COMPRESSION_RATIO,
    MAX_MEMBER_BYTES,
    MIN_DECOMPRESSED_ALLOWANCE,
)
from umae_eval.data.layouts import is_image_name
from umae_eval.errors import UmaeError
from umae_eval.progress import ProgressFactory, null_progress

_INDEX_VERSION = 1
_COMPRESSED = (".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz")


@dataclass(frozen=True, eq=False)
class TarIndex:
    """Where every regular member's bytes lie in an uncompressed tar file.

    Attributes
    ----------
    path : Path
        The uncompressed tar that offsets refer to (the archive itself, or its cached copy).
    archive : Path
        The archive the user named.
    names : list[str]
        Member names, ``./`` and ``/`` stripped, in archive order.
    offsets, sizes : np.ndarray
        int64 ``(M,)``: byte offset of each member's data in ``path``, and its size.
    dirs : list[str]
        Names of directory members (an empty class folder is still a class).
    """

    path: Path
    archive: Path
    names: list[str]
    offsets: np.ndarray
    sizes: np.ndarray
    dirs: list[str]

    def position(self) -> dict[str, int]:
        """``name -> member number``."""
        return {n: i for i, n in enumerate(self.names)}


def _clean(name: str) -> str:
    while name.startswith(("./", "/")):
        name = name[2:] if name.startswith("./") else name[1:]
    return name


def _key(path: Path) -> str:
    st = path.stat()
    # inode and ctime too: a tar replaced by one of equal size and mtime must not reuse the index
    payload = json.dumps({"v": _INDEX_VERSION, "path": str(path.resolve()), "size": st.st_size,
                          "mtime": st.st_mtime_ns, "ino": st.st_ino, "ctime": st.st_ctime_ns})
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def is_compressed(path: Path) -> bool:
    """True for ``.tar.gz`` / ``.tgz`` / ``.tar.bz2`` / ``.tar.xz`` (by suffix, then by magic bytes)."""
    if path.name.lower().endswith(_COMPRESSED):
        return True
    with open(path, "rb") as fh:
        head = fh.read(6)
    return head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ"))


def _decompress(archive: Path, target: Path, progress: ProgressFactory) -> None:
    """Stream a compressed archive into an uncompressed tar at ``target`` (atomically)."""
    import bz2
    import gzip
    import lzma

    with open(archive, "rb") as fh:
        head = fh.read(6)
    opener = (gzip.open if head.startswith(b"\x1f\x8b") else bz2.open if head.startswith(b"BZh")
              else lzma.open)
    target.parent.mkdir(parents=True, exist_ok=True)
    allowed = max(MIN_DECOMPRESSED_ALLOWANCE, MAX_COMPRESSION_RATIO * archive.stat().st_size)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, opener(archive, "rb") as src, \
                progress(f"decompressing {archive.name} once for random access") as advance:
            written = 0
            while True:
                block = src.read(1 << 22)
                if not block:
                    break
                written += len(block)
                if written > allowed:  # checked as it grows: a bomb stops here, not when the disk is full
                    raise UmaeError(f"{archive}: decompresses to more than {allowed >> 20:,} MiB, over "
                                    f"{MAX_COMPRESSION_RATIO} times its size (a decompression bomb?); "
                                    "extract it yourself and pass the folder")
                out.write(block)
                advance(1)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _scan(path: Path, archive: Path, progress: ProgressFactory) -> TarIndex:
    names: list[str] = []
    offsets: list[int] = []
    sizes: list[int] = []
    dirs: list[str] = []
    with tarfile.open(path, mode="r:") as tf, progress(f"indexing {archive.name}") as advance:
        for member in tf:
            name = _clean(member.name)
            if member.isdir():
                dirs.append(name.rstrip("/"))
            elif member.isfile():
                if member.size > MAX_MEMBER_BYTES and is_image_name(name):
                    raise UmaeError(f"{archive}: member {name} is {member.size:,} bytes, more than the "
                                    f"{MAX_MEMBER_BYTES >> 20} MiB an image may have; remove it from the archive")
                names.append(name)
                offsets.append(member.offset_data)
                sizes.append(member.size)
                if len(names) % 4096 == 0:
                    advance(4096)
            tf.members = []  # tarfile keeps every TarInfo otherwise: O(M) memory for nothing
    return TarIndex(path, archive, names, np.asarray(offsets, np.int64), np.asarray(sizes, np.int64), dirs)


def tar_index(archive: Path, *, cache: bool = True, progress: ProgressFactory = null_progress) -> TarIndex:
    """Index (and, for a compressed archive, first decompress) ``archive``; cached.

    Parameters
    ----------
    archive : Path
        A ``.tar`` (read in place) or a compressed tar.
    cache : bool
        Keep the index (and the decompressed copy) under :func:`cache_root`. Without it an
        uncompressed tar is indexed in memory; a compressed one still needs the disk copy.
    progress : ProgressFactory

    Raises
    ------
    UmaeError
        A corrupt or truncated archive, or no disk space for the decompressed copy.
    """
    archive = Path(archive)
    key = _key(archive)
    index_file = cache_root() / "tar-index" / f"{key}.npz"
    try:
        compressed = is_compressed(archive)
        plain = cache_root() / "tars" / f"{key}.tar" if compressed else archive
        if cache and index_file.is_file() and plain.is_file():
            try:
                with np.load(index_file, allow_pickle=False) as z:
                    return TarIndex(plain, archive, z["names"].tolist(), z["offsets"], z["sizes"],
                                    z["dirs"].tolist())
            except (OSError, ValueError, KeyError):
                pass  # a damaged index: scan again
        if compressed and not plain.is_file():
            _decompress(archive, plain, progress)
        index = _scan(plain, archive, progress)
    except ARCHIVE_ERRORS as exc:
        if isinstance(exc, OSError) and exc.errno == 28:
            raise UmaeError(f"{archive}: no space left to decompress it into {cache_root() / 'tars'}; "
                            "free space there, point UMAE_CACHE_DIR elsewhere, or extract the archive "
                            "and pass the folder") from None
        raise UmaeError(f"{archive}: corrupt or truncated archive ({type(exc).__name__}: {exc}); "
                        "download or pack it again") from None
    if cache:
        _save(index_file, index)
    _forget_descriptor(index.path)  # a file replaced since this process last read it: reopen
    return index


def _forget_descriptor(path: Path | str) -> None:
    fd = _FDS.pop((os.getpid(), str(path)), None)
    if fd is not None:
        os.close(fd)


def _save(index_file: Path, index: TarIndex) -> None:
    tmp: str | None = None
    try:
        index_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{index_file.stem}.", suffix=".npz", dir=index_file.parent)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, names=np.asarray(index.names, dtype=str), offsets=index.offsets,
                     sizes=index.sizes, dirs=np.asarray(index.dirs, dtype=str))
        os.replace(tmp, index_file)
        tmp = None
    except OSError:
        pass  # the index only saves time
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


_FDS: dict[tuple[int, str], int] = {}


def read_member(path: Path | str, offset: int, size: int) -> bytes:
    """The ``size`` bytes at ``offset`` of ``path``; one descriptor per process and file."""
    key = (os.getpid(), str(path))
    fd = _FDS.get(key)
    if fd is None:
        fd = os.open(path, os.O_RDONLY)
        _FDS[key] = fd
    data = os.pread(fd, int(size), int(offset))
    if len(data) != size:
        raise UmaeError(f"{path}: member at byte {offset} is truncated ({len(data)} of {size} bytes); "
                        "the archive changed after it was indexed: run the command again")
    return data


def remove_cached_copy(archive: Path) -> None:
    """Delete the decompressed copy and index of ``archive`` (tests and cleanup)."""
    key = _key(archive)
    shutil.rmtree(cache_root() / "tars" / f"{key}.tar", ignore_errors=True)
    (cache_root() / "tars" / f"{key}.tar").unlink(missing_ok=True)
    (cache_root() / "tar-index" / f"{key}.npz").unlink(missing_ok=True)
