"""Extract features into a store: resumable, multi-process, and never failing on a full disk.

:func:`extract_to_store` is the strict form (a store it cannot write is an error);
:func:`stored_features` is what an analysis calls: the same extraction, but a cache folder that
cannot be written (full, read-only, no permission) gives one warning and the features in memory.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.utils.data import Dataset

from umae_eval.cache import cache_unwritable_message
from umae_eval.checkpoints import LoadedEncoder
from umae_eval.errors import UmaeError
from umae_eval.features import feature_precision, feature_width, resolve_device
from umae_eval.featurestore.encode import default_chunk_rows
from umae_eval.featurestore.key import StoreKey, default_store_dir, key_readout
from umae_eval.featurestore.parallel import extract_ranks
from umae_eval.featurestore.prepare import write_error
from umae_eval.featurestore.ranks import Ranks, rank_device, resolve_ranks
from umae_eval.featurestore.single import StoredFeatures, extract_single
from umae_eval.featurestore.store import FeatureStore
from umae_eval.progress import ProgressFactory, null_progress


def _check(encoder: LoadedEncoder, images: Dataset, key: StoreKey, pool: str, batch_size: int,
           chunk_rows: int | None, workers: int) -> None:
    info = encoder.info
    n = len(images)  # type: ignore[arg-type]
    problems = [
        (key.n != n, f"n={key.n} but the dataset has {n} images"),
        (key.dim != feature_width(encoder, pool, key_readout(key)),
         f"dim={key.dim} but the encoder's features are {feature_width(encoder, pool, key_readout(key))} wide"),
        (key.pool != pool, f"pool={key.pool!r} but pool={pool!r} was asked for"),
        (key.checkpoint_sha256 != info.sha256, "checkpoint_sha256 is not this encoder's"),
        (key.img_size != info.arch.img_size,
         f"img_size={key.img_size} but the encoder takes {info.arch.img_size}"),
    ]
    for bad, why in problems:
        if bad:
            raise UmaeError(f"feature store key does not match the extraction: {why}")
    if batch_size < 1:
        raise UmaeError(f"batch size must be at least 1, got {batch_size}")
    if workers < 0:
        raise UmaeError(f"workers must be 0 or more, got {workers}")
    if chunk_rows is not None and (chunk_rows < 1 or chunk_rows % batch_size):
        raise UmaeError(f"chunk_rows must be a positive multiple of the batch size {batch_size}, "
                        f"got {chunk_rows}")


def _setup(encoder: LoadedEncoder, images: Dataset, store_dir: Path | None, key: StoreKey,
           pool: str, device: str | torch.device, batch_size: int, chunk_rows: int | None,
           workers: int, rank: int | None, world_size: int | None
           ) -> tuple[Ranks, torch.device, int]:
    _check(encoder, images, key, pool, batch_size, chunk_rows, workers)
    ranks = resolve_ranks(rank, world_size)
    dev = resolve_device(rank_device(device) if ranks.world_size > 1 else device)
    if feature_precision(dev) != key.precision:
        ranks.close()
        raise UmaeError(f"feature store key says precision {key.precision} but {dev} computes "
                        f"in {feature_precision(dev)}; build the key for this device")
    return ranks, dev, chunk_rows or default_chunk_rows(key.dim, batch_size)


def extract_to_store(encoder: LoadedEncoder, images: Dataset, store_dir: Path | None,
                     key: StoreKey, *, pool: str = "cls", device: str | torch.device = "auto",
                     batch_size: int = 256, chunk_rows: int | None = None, workers: int = 0,
                     verify: bool = True, progress: ProgressFactory = null_progress,
                     rank: int | None = None, world_size: int | None = None) -> FeatureStore:
    """Encode ``images`` into the store at ``store_dir``, resuming whatever is there.

    Parameters
    ----------
    encoder : LoadedEncoder
    images : Dataset
        Map-style; item ``i`` is ``(uint8 tensor (H, W, 3), ok: bool)``. Wrap an array in
        :class:`ArrayImages`.
    store_dir : Path or None
        The store folder; None = :func:`default_store_dir` (under ``$UMAE_CACHE_DIR``).
    key : StoreKey
        From :func:`store_key`; checked against the encoder, ``len(images)``, ``pool`` and the
        device's precision.
    pool, device, batch_size
        As for :func:`umae_eval.features.extract_features` (``device='auto'`` under torchrun is
        ``cuda:LOCAL_RANK``).
    chunk_rows : int, optional
        Rows per chunk of a new store, a multiple of ``batch_size``; default
        :func:`default_chunk_rows` (16 MiB of float32 features). An existing store keeps its own.
    workers : int
        DataLoader processes decoding images (0 = in this process).
    verify : bool
        Check every recorded chunk against its sha256 first; damaged ones are recomputed, with
        one line in ``FeatureStore.warnings``.
    progress : ProgressFactory
    rank, world_size : int, optional
        Default: the initialised process group, else torchrun's ``RANK``/``WORLD_SIZE`` (a gloo
        group is then created and destroyed here). Every rank must call this with the same
        arguments; rank ``r`` encodes the missing chunks ``i`` with ``i % world_size == r``.

    Returns
    -------
    FeatureStore
        Complete, on every rank. Its manifest records each run's seconds and img/s.

    Raises
    ------
    UmaeError
        A key that does not fit, a folder holding another store, or a store that cannot be
        written (disk full, read-only; see :func:`stored_features` for the forgiving form).
    """
    ranks, dev, rows = _setup(encoder, images, store_dir, key, pool, device, batch_size,
                              chunk_rows, workers, rank, world_size)
    try:
        try:
            target = Path(store_dir) if store_dir is not None else default_store_dir(key)
        except OSError as exc:  # the cache folder itself cannot be created
            raise write_error(Path(getattr(exc, "filename", None) or "the cache folder"),
                              exc) from exc
        if ranks.world_size > 1:
            return extract_ranks(encoder, images, target, key, ranks, pool=pool, dev=dev,
                                 batch_size=batch_size, chunk_rows=rows, workers=workers,
                                 verify=verify, progress=progress)
        result = extract_single(encoder, images, target, key, pool=pool, dev=dev,
                                batch_size=batch_size, chunk_rows=rows, workers=workers,
                                verify=verify, progress=progress, fallback=False)
        assert result.store is not None
        return result.store
    finally:
        ranks.close()


def stored_features(encoder: LoadedEncoder, images: Dataset, key: StoreKey, *,
                    store_dir: Path | None = None, pool: str = "cls",
                    device: str | torch.device = "auto", batch_size: int = 256,
                    chunk_rows: int | None = None, workers: int = 0, verify: bool = True,
                    progress: ProgressFactory = null_progress) -> StoredFeatures:
    """:func:`extract_to_store` for an analysis: the features, wherever they could be kept.

    Same parameters. When the store folder cannot be written (cache disk full or read-only,
    no permission) the call does not fail: it adds one line to ``warnings`` and finishes in
    memory, keeping the chunks it had already stored or encoded (nothing is encoded twice).
    Under torchrun it is :func:`extract_to_store` (ranks cannot fall back to their own memory).

    Returns
    -------
    StoredFeatures
    """
    ranks, dev, rows = _setup(encoder, images, store_dir, key, pool, device, batch_size,
                              chunk_rows, workers, None, None)
    try:
        if ranks.world_size > 1:
            t0 = time.perf_counter()
            store = extract_ranks(encoder, images, Path(store_dir or default_store_dir(key)), key,
                                  ranks, pool=pool, dev=dev, batch_size=batch_size,
                                  chunk_rows=rows, workers=workers, verify=verify,
                                  progress=progress)
            return StoredFeatures(store.read(), store.valid(), store, list(store.warnings),
                                  seconds=time.perf_counter() - t0)
        try:
            target: Path | None = (Path(store_dir) if store_dir is not None
                                   else default_store_dir(key))
            first: list[str] = []
        except OSError as exc:  # the cache folder itself cannot be created (read-only home)
            target = None
            first = [cache_unwritable_message(getattr(exc, "filename", None) or "the cache folder",
                                              exc)]
        return extract_single(encoder, images, target, key, pool=pool, dev=dev,
                              batch_size=batch_size, chunk_rows=rows, workers=workers,
                              verify=verify, progress=progress, fallback=True, warnings=first)
    finally:
        ranks.close()
