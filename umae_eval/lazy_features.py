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
                  feature_dtype: str = "float32", progress: ProgressFactory = null_progress) -> LazyFeatures:
    """Encode every row of ``view`` (a LazyArray at the encoder's input side)."""
    import torch

    from umae_eval.features import pool_tokens, resolve_device
    from umae_eval.preprocess import to_model_input

    dev = resolve_device(device)
    model = encoder.model.to(dev).eval()
    n = len(view)
    out = np.empty((n, encoder.info.arch.embed_dim), np.float32)
    ok = np.ones(n, bool)
    loader = torch.utils.data.DataLoader(view.dataset(), batch_size=batch_size, shuffle=False,
                                         num_workers=workers, persistent_workers=False)
    start = 0
    with torch.inference_mode(), progress("extracting features", total=n) as advance:
        for batch, good in loader:
            x = to_model_input(batch.to(dev, non_blocking=True), encoder.info.arch.img_size,
                               encoder.info.mean, encoder.info.std, dev)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                f = pool_tokens(model, model.forward_features(x), pool)  # type: ignore[arg-type]
            out[start:start + len(batch)] = f.float().cpu().numpy()
            ok[start:start + len(batch)] = good.numpy()
            start += len(batch)
            advance(len(batch))
    return LazyFeatures(out, ok, None)
