"""The extraction loop shared by the store and its in-memory fallback.

Images come from any map-style ``torch.utils.data.Dataset`` whose item ``i`` is ``(image, ok)``
(``image``: uint8 ``(H, W, 3)`` at the encoder's input side, ``ok``: False for an undecodable file
replaced by zeros). A ``DataLoader`` with ``num_workers`` decodes them in parallel, in order; each
batch then goes through :func:`umae_eval.features.encode_batch`, the one code path of every
extractor, so the stored features equal :func:`umae_eval.features.extract_features` bit for bit
when the batches are the same (they are whenever ``chunk_rows`` is a multiple of ``batch_size``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from umae_eval.checkpoints import LoadedEncoder
from umae_eval.errors import UmaeError
from umae_eval.features import encode_batch
from umae_eval.featurestore.prepare import drop_inherited_locks
from umae_eval.progress import ProgressFactory
from umae_eval.readout import Readout

#: Default chunk size in bytes of float32 features (16 MiB). The chunk is the unit of lost work
#: after a kill and carries a fixed cost (one flush, a sha256 of the chunk, one fsynced manifest
#: rewrite: tens of ms). Sizing by bytes gives wide (slow) encoders fewer rows per chunk, so a
#: chunk takes roughly the same time whatever the model: ~5.5k rows for ViT-B (D=768), about a
#: second of forward passes on a current GPU and a few minutes on a CPU.
DEFAULT_CHUNK_BYTES = 16 * 2**20

#: ``write(chunk, features (rows, D) stored dtype, valid (rows,), seconds)``
ChunkWriter = Callable[[int, np.ndarray, np.ndarray, float], None]


class ArrayImages(Dataset):
    """An in-memory ``(N, H, W, 3)`` uint8 array as the ``(image, ok)`` dataset the store reads.

    Parameters
    ----------
    images : ndarray, shape (N, H, W, 3), uint8
        E.g. ``ImageSet.x_test`` (a memory map works too).
    """

    def __init__(self, images: np.ndarray) -> None:
        if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3 \
                or images.dtype != np.uint8:
            raise UmaeError(f"images must be a (N, H, W, 3) uint8 array, got "
                            f"{type(images).__name__} {getattr(images, 'dtype', '')} "
                            f"{getattr(images, 'shape', '')}")
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:
        return torch.from_numpy(np.array(self.images[i], dtype=np.uint8, copy=True)), True


def default_chunk_rows(dim: int, batch_size: int) -> int:
    """Rows per chunk: :data:`DEFAULT_CHUNK_BYTES` of float32 features, rounded up to whole
    batches (so that batches never straddle chunks and match an unchunked extraction)."""
    rows = max(1, DEFAULT_CHUNK_BYTES // (4 * dim))
    return -(-rows // batch_size) * batch_size


def _unpack(item: Any, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    name = type(dataset).__name__
    if not (isinstance(item, (list, tuple)) and len(item) == 2):
        raise UmaeError(f"items of {name} must be (image, ok) pairs; wrap a plain uint8 array in "
                        "umae_eval.featurestore.ArrayImages")
    imgs, ok = item
    if not isinstance(imgs, torch.Tensor) or imgs.dtype != torch.uint8 or imgs.ndim != 4 \
            or imgs.shape[-1] != 3:
        what = f"{imgs.dtype} {tuple(imgs.shape[1:])}" if isinstance(imgs, torch.Tensor) \
            else type(imgs).__name__
        raise UmaeError(f"images of {name} must be uint8 (H, W, 3) tensors, got {what}")
    ok = torch.as_tensor(ok, dtype=torch.bool).reshape(-1)
    if len(ok) != len(imgs):
        raise UmaeError(f"{name} gave {len(ok)} ok flags for {len(imgs)} images")
    return imgs, ok


def _to_storage(feats: np.ndarray, dtype: np.dtype, chunk: int) -> np.ndarray:
    if dtype == np.float32:
        return feats
    with np.errstate(over="ignore"):  # overflow is detected and explained below
        stored = feats.astype(dtype)
    if not np.isfinite(stored).all() and np.isfinite(feats).all():
        raise UmaeError(f"features of chunk {chunk} exceed float16's range (max |x| = "
                        f"{float(np.abs(feats).max()):.4g} > 65504); use --feature-dtype float32")
    return stored


class _Writer:
    """Runs ``write`` for finished chunks in one background thread, in order.

    Hashing (hashlib), copying into the map and msync release the GIL, so a chunk is stored
    while the next one is encoded instead of stalling the device. At most ``depth`` chunks wait
    (16 MiB each by default). After a failed write no later chunk is written, so the store
    never records a chunk past a failure; the error is raised in the caller's thread.
    """

    def __init__(self, write: ChunkWriter, depth: int = 2) -> None:
        self._write = write
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="umae-store-writer")
        self._pending: deque[Future[None]] = deque()
        self._depth = depth
        self._failed = False

    def _run(self, *args: Any) -> None:
        if self._failed:
            return
        try:
            self._write(*args)
        except BaseException:
            self._failed = True
            raise

    def submit(self, *args: Any) -> None:
        while self._pending and (self._pending[0].done() or len(self._pending) >= self._depth):
            self._pending.popleft().result()  # re-raises a failed write here
        self._pending.append(self._pool.submit(self._run, *args))

    def close(self, *, raise_errors: bool = True) -> None:
        """Wait for every pending write; re-raise the first failure unless told not to."""
        try:
            while self._pending:
                future = self._pending.popleft()
                if raise_errors:
                    future.result()
                else:
                    wait([future])
        finally:
            self._pool.shutdown(wait=True)


def encode_chunks(encoder: LoadedEncoder, images: Dataset, chunks: Sequence[tuple[int, int, int]],
                  write: ChunkWriter, *, device: torch.device, pool: str, batch_size: int,
                  workers: int, dtype: str, progress: ProgressFactory,
                  readout: Readout | None = None, dim: int | None = None) -> int:
    """Encode the rows of ``chunks`` (``(index, start, stop)``) and hand each finished chunk
    to ``write`` (in a background thread, in order; see :class:`_Writer`). Returns the number
    of rows encoded, once every write has finished.

    One ``DataLoader`` serves all the chunks (workers start once); its batches are cut at
    ``start + k * batch_size`` inside each chunk and are yielded in order.
    """
    batches: list[list[int]] = []
    owner: list[tuple[int, int, int]] = []  # (chunk, offset in chunk, chunk rows)
    for i, a, b in chunks:
        for s in range(a, b, batch_size):
            batches.append(list(range(s, min(s + batch_size, b))))
            owner.append((i, s - a, b - a))
    total = sum(len(x) for x in batches)
    if not batches:
        return 0
    np_dtype = np.dtype(dtype)
    dim = dim or encoder.info.arch.embed_dim  # several blocks / cls+avg: the key's width
    loader = DataLoader(images, batch_sampler=batches, num_workers=workers,
                        pin_memory=device.type == "cuda", worker_init_fn=drop_inherited_locks)
    encoder.model.to(device).eval()
    feats_buf = valid_buf = None
    t_chunk = time.perf_counter()
    writer = _Writer(write)
    batches_in = iter(loader)
    try:
        with torch.inference_mode(), progress("extracting features", total=total) as advance:
            for i, off, rows in owner:
                imgs, ok = _unpack(next(batches_in), images)
                if off == 0:  # a fresh buffer per chunk: the writer thread owns the last one
                    feats_buf = np.empty((rows, dim), dtype=np_dtype)
                    valid_buf = np.empty(rows, dtype=bool)
                assert feats_buf is not None and valid_buf is not None
                feats = encode_batch(encoder, imgs, device, pool, readout).cpu().numpy()  # type: ignore[arg-type]
                feats_buf[off:off + len(imgs)] = _to_storage(feats, np_dtype, i)
                valid_buf[off:off + len(imgs)] = ok.numpy()
                advance(len(imgs))
                if off + len(imgs) == rows:
                    writer.submit(i, feats_buf, valid_buf, time.perf_counter() - t_chunk)
                    t_chunk = time.perf_counter()
    except BaseException:
        writer.close(raise_errors=False)  # let recorded chunks finish; the first error wins
        raise
    finally:
        # Stop the workers now, not when a traceback that holds this frame is collected.
        shutdown = getattr(batches_in, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        del batches_in
    writer.close()
    return total
