"""Features of a lazy split: decode per item in DataLoader workers, encode, keep on disk.

The images of a :class:`~umae_eval.data.lazy.LazyArray` are decoded and transformed (the
encoder's evaluation transform) in ``workers`` processes, sent to the device as uint8, and
encoded by the same code as :func:`umae_eval.features.extract_features`; the features go to a
resumable on-disk store (:mod:`umae_eval.featurestore`) keyed by the checkpoint, the data
fingerprint, the subset, the transform and the pooling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from umae_eval.checkpoints import LoadedEncoder
from umae_eval.errors import UmaeError
from umae_eval.progress import ProgressFactory, null_progress


@dataclass
class LazyFeatures:
    """``features`` float32 ``(N, D)`` (possibly memory-mapped), ``ok`` bool ``(N,)`` (False:
    the image could not be decoded and was skipped), ``store``: the store folder or None."""

    features: np.ndarray
    ok: np.ndarray
    store: str | None
    warning: str | None = None


def lazy_features(encoder: LoadedEncoder, view: Any, *, images_key: str, pool: str = "cls",
                  device: str = "auto", batch_size: int = 256, workers: int = 0,
                  feature_dtype: str = "float32", progress: ProgressFactory = null_progress,
                  readout: Any = None) -> LazyFeatures:
    """Encode every row of ``view`` (a LazyArray at the encoder's input side) into the store.

    ``images_key`` is ``'<fingerprint>-<split>-<subset tag>'`` (``DataSubset.key``); the store
    key adds the checkpoint, the transform (``view.transform``), the pooling, the precision and
    the dtype, so a second command on the same data and checkpoint reads the features back.
    ``readout`` (a :class:`umae_eval.readout.Readout`: blocks read, final norm) is part of the
    key; all its blocks are filled by one pass, side by side in one store.
    """
    from umae_eval.featurestore import store_key, stored_features

    fingerprint, split, subset = images_key.split("-", 2)
    key = store_key(encoder, data_fingerprint=fingerprint, split=split, n=len(view), subset=subset,
                    transform=view.transform, pool=pool, device=device, dtype=feature_dtype, readout=readout)
    try:
        got = stored_features(encoder, view.dataset(), key, pool=pool, device=device, batch_size=batch_size,
                              workers=workers, progress=progress)
    except UmaeError as exc:
        raise UmaeError(worker_message(str(exc))) from None
    store = None if got.store is None else str(got.store.path)
    feats = got.float32()
    if not feats.flags.writeable:  # a read-only memory map: torch wants writable arrays
        feats = np.array(feats)
    return LazyFeatures(feats, np.asarray(got.valid, bool), store,
                        "; ".join(got.warnings) or None)


def worker_message(text: str) -> str:
    """The one-line message of a UmaeError raised in a DataLoader worker.

    torch re-raises a worker's exception as the same type with the worker's traceback as its
    message ("Caught UmaeError in DataLoader worker process 0. Original Traceback ..."); the
    user's line is the last ``UmaeError: ...`` line of it.
    """
    if "Original Traceback" not in text:
        return text
    lines = [ln for ln in text.splitlines() if "UmaeError: " in ln]
    return lines[-1].split("UmaeError: ", 1)[1].strip() if lines else text.splitlines()[0]
