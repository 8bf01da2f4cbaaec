"""Open or create a store for extraction: lock it, merge part files, drop damaged chunks."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from umae_eval.errors import UmaeError
from umae_eval.features import feature_precision
from umae_eval.featurestore.key import StoreKey
from umae_eval.featurestore.ranks import Ranks
from umae_eval.featurestore.store import (
    MANIFEST,
    FeatureStore,
    StoreWriteError,
    create_store,
    open_store,
)

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent runs then only waste work
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def locked(store_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the store so two commands extracting it take turns."""
    try:
        store_dir.mkdir(parents=True, exist_ok=True)
        fh = open(store_dir / ".lock", "a+b")  # noqa: SIM115 - held for the whole block below
    except OSError as exc:
        raise StoreWriteError(exc.errno, exc.strerror or str(exc), str(store_dir)) from exc
    with fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        HELD_LOCK_FDS.add(fh.fileno())
        try:
            yield
        finally:
            HELD_LOCK_FDS.discard(fh.fileno())


#: Descriptors of the store locks this process holds. A flock belongs to the open file, not the
#: process, so a forked DataLoader worker inherits the lock with the descriptor: if it outlived
#: its extraction (kept alive by an exception's traceback) the store would stay locked and the
#: next extraction in this process would wait forever. Workers drop them at start.
HELD_LOCK_FDS: set[int] = set()


def drop_inherited_locks(worker_id: int = 0) -> None:
    """``worker_init_fn`` of the extraction's DataLoader: let go of the parent's store locks.

    Each descriptor is pointed at ``/dev/null`` (``dup2``) rather than closed, so its number is
    not reused by the worker while the parent's file object still names it.
    """
    if not HELD_LOCK_FDS:
        return
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        for fd in list(HELD_LOCK_FDS):
            with contextlib.suppress(OSError):
                os.dup2(null, fd)
    finally:
        os.close(null)
    HELD_LOCK_FDS.clear()


def prepare(store_dir: Path, key: StoreKey, chunk_rows: int, verify: bool) -> FeatureStore:
    """Open (merging part files, dropping damaged chunks) or create the store.

    One process at a time (the caller holds :func:`locked`; under torchrun, rank 0 only).

    Raises
    ------
    StoreWriteError
        The folder cannot be written.
    UmaeError
        The folder holds another key's store.
    """
    store = open_store(store_dir, key)
    if store is None:
        rebuilt = (store_dir / MANIFEST).exists()
        store = create_store(store_dir, key, chunk_rows)
        if rebuilt:
            store.warnings.append(f"feature store {store_dir}: unreadable manifest or damaged "
                                  "files; rebuilt it")
        return store
    bad = store.damaged_chunks() if verify else []
    for i in bad:
        del store.chunks[i]
    if bad:
        store.warnings.append(f"feature store {store_dir}: chunk(s) {', '.join(map(str, bad))} did "
                              "not match their checksum; recomputing them")
    if bad or store.has_parts():
        store.absorb_parts()
    return store


def run_record(ranks: Ranks, dev: torch.device, batch_size: int, workers: int,
                chunks: list[int], rows: int, seconds: float, started: str) -> dict[str, Any]:
    """The timings of one extraction run, as the manifest's ``runs`` list records them."""
    return {"started": started, "rank": ranks.rank, "world_size": ranks.world_size,
            "device": str(dev), "precision": feature_precision(dev), "batch_size": batch_size,
            "workers": workers, "chunks": chunks, "rows": rows, "seconds": round(seconds, 3),
            "img_per_s": round(rows / seconds, 2) if rows and seconds > 0 else None}


def write_error(store_dir: Path, exc: OSError) -> UmaeError:
    """The strict form's error for a store that cannot be written (exit 2)."""
    return UmaeError(f"cannot write the feature store {store_dir}: {exc.strerror or exc}; free "
                     "space there or choose another store folder")


