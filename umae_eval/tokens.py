"""Patch tokens of one block, for probes that read tokens rather than pooled features (attentive).

:func:`extract_tokens` runs the frozen encoder (eval mode, no gradients, bf16 autocast on CUDA,
as :func:`umae_eval.features.encode_batch`) and keeps the ``L`` patch tokens of one block, with
the final norm or not, as float16 ``(N, L, D)``. :func:`token_source` gives what
:func:`umae_eval.probes.attentive.attentive_probe` takes: the cached array when it fits the
memory budget (:data:`umae_eval.probes.attentive.DEFAULT_TOKEN_CACHE_BYTES`, float16), else a
callable that re-runs the encoder on the rows each batch asks for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from umae_eval.checkpoints import LoadedEncoder
from umae_eval.features import resolve_device
from umae_eval.preprocess import to_model_input
from umae_eval.progress import ProgressFactory, null_progress
from umae_eval.readout import block_tokens


def extract_tokens(encoder: LoadedEncoder, images: Any, *, block: int, final_norm: bool = True,
                   device: str | torch.device = "auto", batch_size: int = 256,
                   progress: ProgressFactory = null_progress) -> np.ndarray:
    """The patch tokens of ``block`` (0-based) for every image: ``(N, L, D)`` float16.

    ``images``: uint8 ``(N, H, W, 3)``, an ndarray or any array-like indexable by row slices
    (a lazy set's view decodes the rows asked for). The [CLS] token is left out.
    """
    dev = resolve_device(device)
    model = encoder.model.to(dev).eval()
    info = encoder.info
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    n = len(images)
    out = np.empty((n, info.arch.num_patches, info.arch.embed_dim), dtype=np.float16)
    with torch.inference_mode(), progress("patch tokens", total=n) as advance:
        for start in range(0, n, batch_size):
            chunk = torch.from_numpy(np.array(images[start:start + batch_size], dtype=np.uint8, copy=True))
            x = to_model_input(chunk.to(dev), info.arch.img_size, info.mean, info.std, dev)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                tok = block_tokens(model, x, (block,))[0]
                if final_norm:
                    tok = model.norm(tok)
            out[start:start + len(chunk)] = tok[:, prefix:].float().cpu().numpy().astype(np.float16)
            advance(len(chunk))
    return out


def token_source(encoder: LoadedEncoder, images: Any, *, block: int, final_norm: bool, device: str,
                 batch_size: int, budget_bytes: int, progress: ProgressFactory = null_progress
                 ) -> tuple[np.ndarray | Callable[[np.ndarray], np.ndarray], str]:
    """The tokens of ``images`` for the attentive probe, and how they are served.

    Returns ``(tokens, mode)``: the cached float16 array and ``'cached'`` when ``N x L x D x 2``
    bytes fit ``budget_bytes``; else ``f(indices) -> (len(indices), L, D)`` re-running the
    encoder on those images, and ``'re-encoded per batch'``.
    """
    from umae_eval.probes.attentive import token_cache_bytes

    arch = encoder.info.arch
    if token_cache_bytes(len(images), arch.num_patches, arch.embed_dim) <= budget_bytes:
        return extract_tokens(encoder, images, block=block, final_norm=final_norm, device=device,
                              batch_size=batch_size, progress=progress), "cached"

    def tokens(indices: np.ndarray) -> np.ndarray:
        rows = np.asarray(indices, dtype=np.int64)
        order = np.argsort(rows)  # read the rows in order (a lazy set decodes them one by one)
        picked = images[rows[order]] if isinstance(images, np.ndarray) else images.take(rows[order])
        got = extract_tokens(encoder, picked, block=block, final_norm=final_norm, device=device,
                             batch_size=batch_size)
        back = np.empty_like(got)
        back[order] = got
        return back

    return tokens, "re-encoded per batch"
