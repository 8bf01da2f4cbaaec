"""Seeded MAE masks: the trainer's rule and the trainer's noise for the same seed.

The trainer draws ``noise = torch.rand(B, L)`` from torch's generator after
``torch.manual_seed(seed)`` and keeps the ``int(L (1 - rho))`` patches with the smallest
noise (:func:`trainer.masking.random_masking`). Here the noise comes from a private
``torch.Generator`` seeded the same way (the same stream), so a batch of images gets the masks
the trainer would have drawn for it, and the global RNG is left alone. One noise draw serves
every mask ratio, so the masks are nested (a patch hidden at 0.75 stays hidden at 0.9) and are
the same for every checkpoint compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from umae_eval.errors import UmaeError


@dataclass
class PatchMask:
    """One mask per image at one ratio.

    Attributes
    ----------
    mask_ratio : float
    mask : Tensor, float32, shape (B, L)
        1 on removed (masked) patches, 0 on visible ones (MAE's convention).
    ids_keep : LongTensor, shape (B, len_keep)
        Visible patches in increasing noise order (the encoder's token order).
    ids_restore : LongTensor, shape (B, L)
        ``argsort(argsort(noise))``: puts decoder tokens back in patch order.
    """

    mask_ratio: float
    mask: Tensor
    ids_keep: Tensor
    ids_restore: Tensor


def mask_noise(n_images: int, num_patches: int, seed: int) -> Tensor:
    """``torch.rand(n_images, num_patches)`` after ``manual_seed(seed)``, without touching the global RNG.

    Returns
    -------
    Tensor, float32, shape (n_images, num_patches)
    """
    gen = torch.Generator().manual_seed(int(seed))
    return torch.rand(n_images, num_patches, generator=gen)


def mask_from_noise(noise: Tensor, mask_ratio: float) -> PatchMask:
    """MAE's rule on given noise: keep the ``int(L (1 - rho))`` smallest.

    Parameters
    ----------
    noise : Tensor, shape (B, L)
    mask_ratio : float
        rho in [0, 1).
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise UmaeError(f"--mask-ratio {mask_ratio:g}: every ratio must satisfy 0 <= ratio < 1")
    b, n = noise.shape
    keep = int(n * (1 - mask_ratio))
    if keep < 1:
        raise UmaeError(f"--mask-ratio {mask_ratio:g} leaves no visible patch of {n}; choose a smaller ratio")
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(b, n)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return PatchMask(mask_ratio=float(mask_ratio), mask=mask, ids_keep=ids_shuffle[:, :keep].contiguous(),
                     ids_restore=ids_restore)
