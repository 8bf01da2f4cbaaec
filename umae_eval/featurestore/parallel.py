"""Several processes (torchrun) extracting one store: rank r encodes chunks i % W == r.

Protocol: rank 0 locks and prepares the store (create, or open + merge + verify) and broadcasts
the outcome; every rank opens the same files (``r+``) and writes its chunks' rows, recording each
checksum in its own ``manifest.rank<r>.json`` (so ranks never rewrite the same file); the ranks
exchange their outcome (a failure on one is raised on all instead of leaving the others at a
barrier); rank 0 merges the parts into ``manifest.json``; everyone re-opens the merged store.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset

from umae_eval.checkpoints import LoadedEncoder
from umae_eval.errors import UmaeError
from umae_eval.featurestore.encode import encode_chunks
from umae_eval.featurestore.key import StoreKey, key_readout
from umae_eval.featurestore.prepare import locked, prepare, run_record, write_error
from umae_eval.featurestore.ranks import Ranks
from umae_eval.featurestore.store import (
    FeatureStore,
    StoreWriteError,
    open_store,
    part_path,
)
from umae_eval.progress import ProgressFactory
from umae_eval.provenance import now_iso


def extract_ranks(encoder: LoadedEncoder, images: Dataset, store_dir: Path, key: StoreKey,
                  ranks: Ranks, *, pool: str, dev: torch.device, batch_size: int,
                  chunk_rows: int, workers: int, verify: bool,
                  progress: ProgressFactory) -> FeatureStore:
    """Rank r of W encodes missing chunks i with i % W == r into the shared files."""
    started, t0 = now_iso(), time.perf_counter()
    with contextlib.ExitStack() as stack:
        status: tuple[str | None, list[str]] = (None, [])
        if ranks.is_main:
            try:
                stack.enter_context(locked(store_dir))
                prepared = prepare(store_dir, key, chunk_rows, verify)
                status = (None, prepared.warnings)
            except StoreWriteError as exc:
                status = (str(write_error(store_dir, exc)), [])
            except UmaeError as exc:
                status = (str(exc), [])
        error, warnings = ranks.broadcast(status)
        if error:
            raise UmaeError(error)
        store = open_store(store_dir, key)
        if store is None:
            raise UmaeError(f"rank {ranks.rank} cannot open the feature store {store_dir} that "
                            "rank 0 prepared: is the folder on a disk every rank shares?")
        todo = [i for i in store.missing_chunks() if i % ranks.world_size == ranks.rank]
        part = part_path(store_dir, ranks.rank)
        failure: str | None = None
        mine: BaseException | None = None
        try:
            ranges = [(i, *store.chunk_range(i)) for i in todo]
            rows = encode_chunks(
                encoder, images, ranges,
                lambda i, f, v, s: store.write_chunk(i, f, v, seconds=s, rank=ranks.rank, part=part),
                device=dev, pool=pool, batch_size=batch_size, workers=workers, dtype=key.dtype,
                progress=progress, readout=key_readout(key), dim=key.dim)
            run = run_record(ranks, dev, batch_size, workers, todo, rows,
                             time.perf_counter() - t0, started)
            if rows:
                store.write_part(part, ranks.rank, run)
        except StoreWriteError as exc:
            mine = write_error(store_dir, exc)
            failure = f"rank {ranks.rank}: {mine}"
        except Exception as exc:  # noqa: BLE001 - every rank must hear of it, not wait at a barrier
            mine, failure = exc, f"rank {ranks.rank}: {exc}"
        failures = [f for f in ranks.gather(failure) if f]
        if mine is not None:
            raise mine
        if failures:
            raise UmaeError(f"{failures[0]} (so this rank stopped too)")
        if ranks.is_main:
            try:
                merged = open_store(store_dir, key)
                assert merged is not None
                if merged.has_parts():
                    merged.absorb_parts()
                status = (None, [])
            except StoreWriteError as exc:
                status = (str(write_error(store_dir, exc)), [])
        error, _ = ranks.broadcast(status)
        if error:
            raise UmaeError(error)
    final = open_store(store_dir, key)
    assert final is not None
    final.warnings = list(warnings)
    return final
