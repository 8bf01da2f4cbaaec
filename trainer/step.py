"""One optimiser step's gradients over micro-batches (``accumulate_gradients``) and the running
sums of an epoch's step figures (``_Running``, restored on a mid-epoch resume).

Split out of :mod:`trainer.loop` (code moved unchanged); ``trainer.loop`` re-exports every name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import Tensor, nn

from trainer.losses import loss_terms
from trainer.run_config import _autocast


def accumulate_gradients(
    model: nn.Module,
    inputs: Tensor,
    *,
    mask_ratio: float,
    lam: float,
    unif_form: str,
    micro_batch: int | None,
    amp_dtype: torch.dtype | None = None,
    gather: Callable[[Tensor], Tensor] | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """Forward and backward one optimiser step's images, accumulating ``.grad`` over micro-batches.

    Each micro-batch's loss is divided by the number of micro-batches, so the accumulated
    gradient is the mean over the step (for the reconstruction term exactly the whole-batch
    gradient; the uniformity term spans one micro-batch per rank at a time). Under DDP the
    gradient all-reduce runs only on the last micro-batch (``no_sync``).

    Parameters
    ----------
    model : nn.Module
        The model, possibly DDP-wrapped or compiled, in train mode.
    inputs : Tensor, shape (B, 3, S, S)
        Normalised images of this rank.
    mask_ratio, lam, unif_form
        See :func:`trainer.losses.loss_terms`.
    micro_batch : int or None
        Images per forward/backward (None: all B at once).
    amp_dtype : torch.dtype or None
        Autocast dtype (bf16) or None for fp32.
    gather : callable, optional
        Feature all-gather for the uniformity term (DDP).
    noise : Tensor, shape (B, L), optional
        Fixed masking noise (tests); drawn from the global RNG when None.

    Returns
    -------
    Tensor, shape (3,)
        Detached ``[loss, loss_recon, loss_unif]``, the mean over micro-batches (this rank).
    """
    chunks = inputs.split(micro_batch) if micro_batch else (inputs,)
    noise_chunks = noise.split(micro_batch) if (noise is not None and micro_batch) else (noise,) * len(chunks)
    n = len(chunks)
    totals = torch.zeros(3, device=inputs.device)
    for i, (x, nz) in enumerate(zip(chunks, noise_chunks)):
        last = i == n - 1
        sync = contextlib.nullcontext() if (last or not hasattr(model, "no_sync")) else model.no_sync()
        with sync:
            with _autocast(inputs.device, amp_dtype):
                terms = loss_terms(model, x, mask_ratio, lam, unif_form, gather=gather, noise=nz)
            (terms["loss"] / n).backward()
        totals += torch.stack([terms["loss"].detach(), terms["loss_recon"].detach(),
                               terms["loss_unif"].detach()]).float()
    return totals / n


# --------------------------------------------------------------------------- evaluation


class _Running:
    """Sums of the current epoch's step figures (restored on a mid-epoch resume)."""

    def __init__(self, state: dict[str, float] | None = None) -> None:
        s = state or {}
        self.loss = float(s.get("loss", 0.0))
        self.loss_recon = float(s.get("loss_recon", 0.0))
        self.loss_unif = float(s.get("loss_unif", 0.0))
        self.steps = int(s.get("steps", 0))
        self.images = int(s.get("images", 0))
        self.train_s = float(s.get("train_s", 0.0))

    def add(self, terms: list[float], images: int, seconds: float) -> None:
        self.loss += terms[0]
        self.loss_recon += terms[1]
        self.loss_unif += terms[2]
        self.steps += 1
        self.images += images
        self.train_s += seconds

    def state(self) -> dict[str, float]:
        return {"loss": self.loss, "loss_recon": self.loss_recon, "loss_unif": self.loss_unif,
                "steps": self.steps, "images": self.images, "train_s": self.train_s}
