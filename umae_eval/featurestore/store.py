"""The store on disk: a folder with ``features.npy``, ``valid.npy`` and ``manifest.json``.

Layout (all written by numpy's own ``.npy`` format, so ``np.load(mmap_mode='r')`` reads it)::

    <store>/features.npy           (N, D) float32 or float16, C order
    <store>/valid.npy              (N,) bool: False = the image could not be decoded (skipped)
    <store>/manifest.json          key, N, D, dtype, chunk size, one sha256 per complete chunk,
                                   versions, timings of every extraction run
    <store>/manifest.rank<R>.json  during a multi-process run: rank R's chunk records, merged
                                   into manifest.json by rank 0 at the end (or on the next open)

Rows are grouped in fixed chunks ``[i * chunk_rows, min((i + 1) * chunk_rows, N))``. A chunk
counts as done only once its checksum is in a manifest, and the manifest is only rewritten (by
an atomic rename) after the chunk's rows were written and flushed, so a process killed at any
moment leaves a store whose recorded chunks are complete: the rest is recomputed on resume.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from umae_eval.errors import UmaeError
from umae_eval.featurestore.key import StoreKey
from umae_eval.provenance import atomic_write_json, now_iso, versions

MANIFEST = "manifest.json"
FEATURES = "features.npy"
VALID = "valid.npy"
FORMAT = "umae-feature-store"
FORMAT_VERSION = 1


class StoreWriteError(OSError):
    """The store's folder cannot be written (disk full, read-only, no permission, ...)."""


def part_path(store_dir: Path, rank: int) -> Path:
    """Where rank ``rank`` records its chunks during a multi-process extraction."""
    return store_dir / f"manifest.rank{rank}.json"


def chunk_checksum(features: np.ndarray, valid: np.ndarray) -> str:
    """sha256 of a chunk's feature bytes (stored dtype, C order) followed by its valid bytes."""
    # Hash the arrays' buffers directly: no 16 MiB tobytes() copy per chunk.
    h = hashlib.sha256(np.ascontiguousarray(features))
    h.update(np.ascontiguousarray(valid, dtype=np.bool_))
    return h.hexdigest()


def _npy_offset(path: Path) -> tuple[int, tuple[int, ...], np.dtype]:
    """Header length, shape and dtype of an ``.npy`` file (raises ValueError/OSError)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        if fortran:
            raise ValueError(f"{path} is Fortran-ordered")
        return fh.tell(), tuple(shape), dtype


@dataclass
class FeatureStore:
    """An on-disk ``(N, D)`` feature matrix, complete or partly extracted.

    Attributes
    ----------
    path : Path
        The store folder.
    key : StoreKey
    chunk_rows : int
        Rows per chunk (the last chunk may be shorter).
    chunks : dict[int, dict]
        Recorded (complete) chunks: ``{'sha256', 'rows': [start, stop], 'n_valid', 'seconds',
        'rank'}``.
    manifest : dict
        The manifest as last read or written.
    warnings : list of str
        One line per problem met while opening or extracting (a damaged chunk recomputed, a
        manifest rebuilt); the caller shows them.
    """

    path: Path
    key: StoreKey
    chunk_rows: int
    chunks: dict[int, dict[str, Any]]
    manifest: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    _mine: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)
    _part_runs: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def n_chunks(self) -> int:
        return -(-self.key.n // self.chunk_rows)

    @property
    def complete(self) -> bool:
        """Every chunk has a recorded checksum."""
        return not self.missing_chunks()

    def chunk_range(self, i: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` of chunk ``i``."""
        return i * self.chunk_rows, min((i + 1) * self.chunk_rows, self.key.n)

    def missing_chunks(self) -> list[int]:
        """Chunks without a recorded checksum, in order."""
        return [i for i in range(self.n_chunks) if i not in self.chunks]

    def read(self, verify: bool = False) -> np.ndarray:
        """The features, memory-mapped read-only: shape ``(N, D)``, the stored dtype.

        Raises
        ------
        UmaeError
            The store is incomplete, or (``verify=True``) a chunk's bytes do not match its
            checksum; extracting again recomputes the damaged chunks.
        """
        if not self.complete:
            raise UmaeError(f"feature store {self.path} is incomplete ({len(self.missing_chunks())} "
                            f"of {self.n_chunks} chunks missing); run the extraction again to finish it")
        if verify and (bad := self.damaged_chunks()):
            raise UmaeError(f"feature store {self.path}: chunk(s) {bad} do not match their checksum; "
                            "run the extraction again to recompute them")
        return np.load(self.path / FEATURES, mmap_mode="r", allow_pickle=False)

    def valid(self) -> np.ndarray:
        """``(N,)`` bool, in memory: False where the image could not be decoded."""
        return np.array(np.load(self.path / VALID, mmap_mode="r", allow_pickle=False), dtype=bool)

    def as_float32(self) -> np.ndarray:
        """``(N, D)`` float32 for probes.

        A float32 store comes back as a *copy-on-write* memory map (``mmap_mode='c'``): writable,
        so ``torch.from_numpy`` takes it without copying the file into memory, while writes stay
        in this process and never reach the store. A float16 store is converted into memory,
        chunk by chunk (no float16-sized temporary of the whole matrix).
        """
        feats = self.read()
        if feats.dtype == np.float32:
            return np.load(self.path / FEATURES, mmap_mode="c", allow_pickle=False)
        out = np.empty(feats.shape, dtype=np.float32)
        for i in range(self.n_chunks):
            a, b = self.chunk_range(i)
            out[a:b] = feats[a:b]
        return out

    def damaged_chunks(self) -> list[int]:
        """Recorded chunks whose bytes on disk do not match their checksum."""
        if not self.chunks:
            return []
        feats = np.load(self.path / FEATURES, mmap_mode="r", allow_pickle=False)
        valid = np.load(self.path / VALID, mmap_mode="r", allow_pickle=False)
        bad = []
        for i in sorted(self.chunks):
            a, b = self.chunk_range(i)
            if chunk_checksum(feats[a:b], valid[a:b]) != self.chunks[i]["sha256"]:
                bad.append(i)
        return bad

    # ----------------------------------------------------------------------------- writing

    def write_chunk(self, i: int, features: np.ndarray, valid: np.ndarray, *, seconds: float,
                    rank: int = 0, part: Path | None = None) -> None:
        """Write chunk ``i``'s rows, flush them, then record its checksum.

        The record goes into ``manifest.json`` (one process) or into ``part``, this rank's part
        file (several processes; rank 0 merges the parts at the end). The
        rows go through a memory map of just this chunk's window, so the process never maps
        (nor counts in its RSS) more than one chunk of the file.

        Raises
        ------
        StoreWriteError
            On any OS error (disk full, read-only, ...).
        """
        a, b = self.chunk_range(i)
        if features.shape != (b - a, self.key.dim) or len(valid) != b - a:
            raise ValueError(f"chunk {i} needs {(b - a, self.key.dim)} rows, got {features.shape}")
        try:
            for name, rows, width in ((FEATURES, features, self.key.dim), (VALID, valid, 0)):
                offset, _, dtype = _npy_offset(self.path / name)
                itemsize = dtype.itemsize * max(width, 1)
                shape = (b - a, width) if width else (b - a,)
                window = np.memmap(self.path / name, dtype=dtype, mode="r+",
                                   offset=offset + a * itemsize, shape=shape)
                window[...] = rows
                window.flush()
                del window
            self.chunks[i] = {"sha256": chunk_checksum(features, valid), "rows": [a, b],
                              "n_valid": int(np.count_nonzero(valid)), "seconds": round(seconds, 4),
                              "rank": rank}
            if part is None:
                self.save_manifest()
            else:
                self._mine[i] = self.chunks[i]
                self.write_part(part, rank)
        except OSError as exc:
            raise StoreWriteError(exc.errno, exc.strerror or str(exc), str(self.path)) from exc

    def has_parts(self) -> bool:
        """Rank part files are waiting to be merged into manifest.json."""
        return bool(self._part_runs) or any(self.path.glob("manifest.rank*.json"))

    def write_part(self, part: Path, rank: int, run: dict[str, Any] | None = None) -> None:
        """(Re)write this rank's part file: its chunks of this run, and the run's timings."""
        try:
            atomic_write_json(part, {"format": FORMAT, "key_digest": self.key.digest(),
                                     "rank": rank, "run": run,
                                     "chunks": {str(k): v for k, v in self._mine.items()}})
        except OSError as exc:
            raise StoreWriteError(exc.errno, exc.strerror or str(exc), str(self.path)) from exc

    def absorb_parts(self, runs: list[dict[str, Any]] | None = None) -> None:
        """Persist the part files' chunks and timings (plus ``runs``) in manifest.json, then
        delete the parts. Only one process (rank 0) may call this."""
        pending, self._part_runs = self._part_runs + list(runs or []), []
        self.save_manifest(runs=pending)
        for part in self.path.glob("manifest.rank*.json"):
            try:
                part.unlink()
            except OSError as exc:
                raise StoreWriteError(exc.errno, exc.strerror or str(exc), str(part)) from exc

    def save_manifest(self, runs: list[dict[str, Any]] | None = None) -> None:
        """Rewrite ``manifest.json`` atomically from :attr:`chunks` (plus ``runs`` appended)."""
        m = self.manifest
        m.update(format=FORMAT, format_version=FORMAT_VERSION, key=self.key.to_json(),
                 key_digest=self.key.digest(), n=self.key.n, dim=self.key.dim,
                 dtype=self.key.dtype, chunk_rows=self.chunk_rows, n_chunks=self.n_chunks,
                 files={"features": FEATURES, "valid": VALID},
                 chunks={str(k): v for k, v in sorted(self.chunks.items())},
                 complete=self.complete, updated=now_iso())
        m.setdefault("created", m["updated"])
        m["versions"] = versions()
        m.setdefault("runs", [])
        if runs:
            m["runs"].extend(runs)
        try:
            atomic_write_json(self.path / MANIFEST, m)
        except OSError as exc:
            raise StoreWriteError(exc.errno, exc.strerror or str(exc), str(self.path)) from exc


# --------------------------------------------------------------------------------- opening


def _chunk_records(raw: Any, n: int) -> dict[int, dict[str, Any]] | None:
    """A manifest's ``chunks`` checked field by field, or None if any record is malformed.

    A hand-edited or bit-flipped manifest must never reach ``int()`` or an array slice: each
    record needs a decimal index, a hex ``sha256`` and ``rows`` ``[a, b]`` with 0 <= a < b <= n.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        return None
    out: dict[int, dict[str, Any]] = {}
    for k, v in raw.items():
        if not (isinstance(k, str) and k.isascii() and k.isdigit() and isinstance(v, dict)):
            return None
        rows, digest = v.get("rows"), v.get("sha256")
        if not (isinstance(digest, str) and isinstance(rows, list) and len(rows) == 2
                and all(type(r) is int for r in rows) and 0 <= rows[0] < rows[1] <= n):
            return None
        out[int(k)] = dict(v)
    return out


def open_store(path: Path, key: StoreKey) -> FeatureStore | None:
    """The store at ``path`` if it holds ``key``'s features, else None (absent or unusable).

    Chunk records left in rank part files by an interrupted multi-process run are merged in
    (in memory; :meth:`FeatureStore.save_manifest` persists them).

    Raises
    ------
    UmaeError
        ``path`` holds a valid store of *another* key: it is never overwritten silently.
    """
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # a torn or unreadable manifest: the store is rebuilt
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    if manifest.get("key_digest") != key.digest():
        other = manifest.get("key") or {}
        if not isinstance(other, dict):
            return None  # a damaged manifest: rebuilt, like a torn one
        raise UmaeError(f"{path} holds another feature store (checkpoint "
                        f"{str(other.get('checkpoint_sha256'))[:12]}, split {other.get('split')}, "
                        f"pool {other.get('pool')}); delete that folder (it is a cache and is rebuilt) "
                        "or point $UMAE_CACHE_DIR at another cache")
    chunk_rows = manifest.get("chunk_rows", 0)
    chunks = _chunk_records(manifest.get("chunks"), key.n)
    if (type(chunk_rows) is not int or chunk_rows < 1 or chunks is None
            or not isinstance(manifest.get("runs", []), list)
            or any(v["rows"] != [i * chunk_rows, min((i + 1) * chunk_rows, key.n)] for i, v in chunks.items())):
        return None  # non-numeric or out-of-range fields: a damaged manifest is rebuilt too
    try:
        f_off, f_shape, f_dtype = _npy_offset(path / FEATURES)
        v_off, v_shape, v_dtype = _npy_offset(path / VALID)
        sizes_ok = ((path / FEATURES).stat().st_size >= f_off + key.n * key.dim * f_dtype.itemsize
                    and (path / VALID).stat().st_size >= v_off + key.n)
    except (OSError, ValueError):
        return None
    if (chunk_rows < 1 or f_shape != (key.n, key.dim) or f_dtype != np.dtype(key.dtype)
            or v_shape != (key.n,) or v_dtype != np.bool_ or not sizes_ok):
        return None
    store = FeatureStore(path, key, chunk_rows, chunks, manifest)
    for part in sorted(path.glob("manifest.rank*.json")):
        try:
            data = json.loads(part.read_text())
        except (OSError, ValueError):
            continue  # torn by a kill: its chunks are recomputed
        if isinstance(data, dict) and data.get("key_digest") == key.digest():
            for k, v in (_chunk_records(data.get("chunks"), key.n) or {}).items():
                chunks.setdefault(k, v)
            if data.get("run"):
                store._part_runs.append(data["run"])
    return store


def create_store(path: Path, key: StoreKey, chunk_rows: int) -> FeatureStore:
    """Create empty ``features.npy`` / ``valid.npy`` and a manifest with no chunks.

    The files' blocks are reserved up front (``posix_fallocate``): a disk too small for the
    store fails here, as an ``OSError``, instead of as a SIGBUS when a mapped page is written.

    Raises
    ------
    StoreWriteError
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        for stale in (MANIFEST, FEATURES, VALID, *[p.name for p in path.glob("manifest.rank*.json")]):
            (path / stale).unlink(missing_ok=True)
        for name, shape, dtype in ((FEATURES, (key.n, key.dim), key.dtype), (VALID, (key.n,), "bool")):
            target = path / name
            if key.n == 0:
                np.save(target, np.zeros(shape, dtype=dtype), allow_pickle=False)
                continue
            mm = np.lib.format.open_memmap(target, mode="w+", dtype=dtype, shape=shape)
            del mm
            _reserve(target)
        store = FeatureStore(path, key, chunk_rows, {}, {})
        store.save_manifest()
        return store
    except OSError as exc:
        for name in (FEATURES, VALID):  # do not leave a half-made store filling the disk
            try:
                (path / name).unlink(missing_ok=True)
            except OSError:
                pass
        if isinstance(exc, StoreWriteError):
            raise
        raise StoreWriteError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def _reserve(path: Path) -> None:
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
    finally:
        os.close(fd)
