"""One process extracting into a store, or into memory when the store cannot be written."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from umae_eval.cache import cache_unwritable_message
from umae_eval.checkpoints import LoadedEncoder
from umae_eval.errors import UmaeError
from umae_eval.featurestore.encode import encode_chunks
from umae_eval.featurestore.key import StoreKey, key_readout
from umae_eval.featurestore.prepare import locked, prepare, run_record, write_error
from umae_eval.featurestore.ranks import Ranks
from umae_eval.featurestore.store import (
    FEATURES,
    VALID,
    FeatureStore,
    StoreWriteError,
    open_store,
)
from umae_eval.progress import ProgressFactory
from umae_eval.provenance import now_iso


@dataclass
class StoredFeatures:
    """Features of one key, from the store or (when it cannot be written) from memory.

    Attributes
    ----------
    features : ndarray, shape (N, D), the key's dtype
        A read-only memory map of the store, or an in-memory array when ``store`` is None.
    valid : ndarray, shape (N,), bool
        False where the image could not be decoded (its row holds the features of zeros).
    store : FeatureStore or None
    warnings : list of str
        One line each, for the caller to show (library code does not print).
    computed_rows : int
        Rows encoded by this call (0 when everything was already stored).
    seconds : float
        Wall time of this call's encoding.
    """

    features: np.ndarray
    valid: np.ndarray
    store: FeatureStore | None
    warnings: list[str] = field(default_factory=list)
    computed_rows: int = 0
    seconds: float = 0.0

    def float32(self) -> np.ndarray:
        """``(N, D)`` float32 (a copy only for float16 storage)."""
        if self.store is not None:
            return self.store.as_float32()
        return np.asarray(self.features, dtype=np.float32)


class Memory:
    """The fallback sink: the whole matrix in memory, seeded with the store's good chunks."""

    def __init__(self, key: StoreKey, store: FeatureStore | None, skip: int | None = None) -> None:
        self.features = np.zeros((key.n, key.dim), dtype=key.dtype)
        self.valid = np.zeros(key.n, dtype=bool)
        self.chunk_rows = store.chunk_rows if store is not None else 0
        if store is not None and store.chunks:
            feats, valid = np.load(store.path / FEATURES, mmap_mode="r"), \
                np.load(store.path / VALID, mmap_mode="r")
            for i in store.chunks:
                if i != skip:
                    a, b = store.chunk_range(i)
                    self.features[a:b], self.valid[a:b] = feats[a:b], valid[a:b]

    def write(self, a: int, features: np.ndarray, valid: np.ndarray) -> None:
        self.features[a:a + len(features)] = features
        self.valid[a:a + len(valid)] = valid


def extract_single(encoder: LoadedEncoder, images: Dataset, store_dir: Path | None, key: StoreKey, *,
            pool: str, dev: torch.device, batch_size: int, chunk_rows: int, workers: int,
            verify: bool, progress: ProgressFactory, fallback: bool,
            warnings: list[str] | None = None) -> StoredFeatures:
    """One process: lock, prepare, encode the missing chunks; memory if the disk refuses.

    ``store_dir=None`` (no cache folder at all) goes straight to memory.
    """
    ranks = Ranks()
    warnings = list(warnings or [])
    store: FeatureStore | None = None
    mem: Memory | None = None if store_dir is not None else Memory(key, None)
    started, t0 = now_iso(), time.perf_counter()
    with contextlib.ExitStack() as stack:
        if store_dir is not None:
            try:
                store = open_store(store_dir, key)
                if (store is None or store.missing_chunks() or store.has_parts()
                        or (verify and store.damaged_chunks())):
                    stack.enter_context(locked(store_dir))
                    store = prepare(store_dir, key, chunk_rows, verify)
                    warnings += store.warnings
            except StoreWriteError as exc:
                if not fallback:
                    raise write_error(store_dir, exc) from exc
                warnings.append(cache_unwritable_message(store_dir, exc))
                store = _readable(store_dir, key, store, verify)  # a read-only disk may hold chunks
                mem = Memory(key, store)
        rows_per_chunk = store.chunk_rows if store is not None else chunk_rows
        todo = (store.missing_chunks() if store is not None
                else list(range(-(-key.n // rows_per_chunk))))
        ranges = [(i, i * rows_per_chunk, min((i + 1) * rows_per_chunk, key.n)) for i in todo]

        def write(i: int, feats: np.ndarray, valid: np.ndarray, seconds: float) -> None:
            nonlocal mem
            if mem is None:
                assert store is not None and store_dir is not None
                try:
                    store.write_chunk(i, feats, valid, seconds=seconds)
                    return
                except StoreWriteError as exc:  # the disk filled up midway: keep what we have
                    if not fallback:
                        raise write_error(store_dir, exc) from exc
                    warnings.append(cache_unwritable_message(store_dir, exc))
                    store.chunks.pop(i, None)
                    mem = Memory(key, store, skip=i)
            mem.write(i * rows_per_chunk, feats, valid)

        rows = encode_chunks(encoder, images, ranges, write, device=dev, pool=pool,
                             batch_size=batch_size, workers=workers, dtype=key.dtype,
                             progress=progress, readout=key_readout(key), dim=key.dim)
        seconds = time.perf_counter() - t0
        if mem is None:
            assert store is not None and store_dir is not None
            if rows:
                try:
                    store.save_manifest(runs=[run_record(ranks, dev, batch_size, workers, todo,
                                                          rows, seconds, started)])
                except StoreWriteError as exc:  # the chunks are recorded; only timings are lost
                    if not fallback:
                        raise write_error(store_dir, exc) from exc
                    warnings.append(cache_unwritable_message(store_dir, exc))
            store.warnings = warnings
            return StoredFeatures(store.read(), store.valid(), store, warnings, rows, seconds)
    return StoredFeatures(mem.features, mem.valid, None, warnings, rows, seconds)


def _readable(store_dir: Path, key: StoreKey, store: FeatureStore | None,
              verify: bool) -> FeatureStore | None:
    """The chunks of a store that can be read but not written, verified; None if none."""
    try:
        store = store or open_store(store_dir, key)
        if store is not None and verify:
            for i in store.damaged_chunks():
                del store.chunks[i]
        return store
    except (OSError, ValueError, UmaeError):
        return None
