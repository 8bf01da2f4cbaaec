"""The four panels of MAE's visualisation (``demo/mae_visualize.ipynb``) and the masked-patch MSE.

Per image and mask ratio: the original (at the model's input size), the masked input (hidden
patches drawn in :data:`MASK_GREY`), the reconstruction (every patch as predicted) and the
reconstruction with the visible patches pasted back. All four are float images in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from umae_eval.preprocess import to_model_input
from umae_eval.visual.masks import PatchMask
from umae_eval.visual.normpix import normalise_patches, to_pixel_space

#: Grey of the hidden patches in the masked panel (dark, so grey predictions stay distinguishable).
MASK_GREY = 0.25

Predictor = Callable[[Tensor, Tensor, Tensor], Tensor]


def patchify(x: Tensor, p: int) -> Tensor:
    """(B, C, H, W) -> (B, L, p*p*C), MAE's order (``'nchpwq->nhwpqc'``, patches row-major)."""
    b, c, hh, ww = x.shape
    h, w = hh // p, ww // p
    return torch.einsum("nchpwq->nhwpqc", x.reshape(b, c, h, p, w, p)).reshape(b, h * w, p * p * c)


def unpatchify(x: Tensor, p: int) -> Tensor:
    """(B, L, p*p*3) -> (B, 3, sqrt(L) p, sqrt(L) p), the inverse of :func:`patchify`."""
    b, n, _ = x.shape
    h = int(round(n ** 0.5))
    return torch.einsum("nhwpqc->nchpwq", x.reshape(b, h, h, p, p, 3)).reshape(b, 3, h * p, h * p)


@dataclass
class Panels:
    """One checkpoint, one mask ratio, one display mode.

    Attributes
    ----------
    mask_ratio : float
    mode : str
        'pixels', 'visible', 'raw' or 'true' (:data:`umae_eval.visual.normpix.MODE_LABELS`).
    original, masked, reconstruction, pasted : np.ndarray, float32, shape (N, S, S, 3) in [0, 1]
    mask : np.ndarray, float32, shape (N, L)
        1 on hidden patches.
    mse_target : np.ndarray, shape (N,)
        Per image: mean over hidden patches of the squared error in the checkpoint's own target
        space (its training loss on this mask: norm-pix targets for norm-pix checkpoints).
    mse_pixels : np.ndarray, shape (N,)
        Per image: mean squared error of the shown reconstruction on hidden patches, pixels in
        [0, 1] (depends on ``mode``; with 'true' it uses the target's statistics).
    """

    mask_ratio: float
    mode: str
    original: np.ndarray
    masked: np.ndarray
    reconstruction: np.ndarray
    pasted: np.ndarray
    mask: np.ndarray
    mse_target: np.ndarray
    mse_pixels: np.ndarray


def _to_image(x: Tensor, mean: Tensor, std: Tensor) -> np.ndarray:
    """Normalised (B, 3, S, S) -> (B, S, S, 3) float32 in [0, 1]."""
    return (x * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy().astype(np.float32)


@torch.no_grad()
def predict(model: Predictor, x: Tensor, masks: PatchMask, batch_size: int = 64) -> Tensor:
    """``model(x, ids_keep, ids_restore)`` in batches: (B, L, p*p*3)."""
    outs = [model(x[i:i + batch_size], masks.ids_keep[i:i + batch_size], masks.ids_restore[i:i + batch_size])
            for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs).float()


@torch.no_grad()
def panels(images: np.ndarray, pred: Tensor, masks: PatchMask, *, img_size: int, patch_size: int,
           mean: Sequence[float], std: Sequence[float], norm_pix: bool, mode: str) -> Panels:
    """The four panels and both MSEs for predictions ``pred`` of ``images`` under ``masks``.

    Parameters
    ----------
    images : np.ndarray, uint8, shape (N, H, W, 3)
    pred : Tensor, shape (N, L, p*p*3)
        Decoder output in the checkpoint's target space.
    masks : PatchMask
    img_size, patch_size : int
        The model's input side and patch side.
    mean, std : 3 floats
        The checkpoint's input normalisation.
    norm_pix : bool
        Predictions are per-patch normalised.
    mode : str
        Display mode for norm-pix predictions (ignored otherwise: 'pixels').
    """
    x = to_model_input(images, img_size, mean, std)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    target = patchify(x, patch_size)
    mask = masks.mask.float()
    loss_target = normalise_patches(target) if norm_pix else target
    mse_target = (((pred - loss_target) ** 2).mean(-1) * mask).sum(1) / mask.sum(1)
    shown = to_pixel_space(pred, target, mask, norm_pix, mode)
    recon = unpatchify(shown, patch_size)
    pix_mask = unpatchify(mask.unsqueeze(-1).expand(-1, -1, patch_size ** 2 * 3), patch_size)
    pasted = x * (1 - pix_mask) + recon * pix_mask
    original = _to_image(x, m, s)
    recon_img = _to_image(recon, m, s)
    pasted_img = _to_image(pasted, m, s)
    pm = pix_mask.permute(0, 2, 3, 1).numpy()
    masked = original * (1 - pm) + MASK_GREY * pm
    sq = ((recon_img - original) ** 2 * pm).reshape(len(original), -1).sum(1)
    mse_pixels = sq / pm.reshape(len(original), -1).sum(1)
    return Panels(mask_ratio=masks.mask_ratio, mode=mode if norm_pix else "pixels", original=original,
                  masked=masked.astype(np.float32), reconstruction=recon_img, pasted=pasted_img,
                  mask=mask.numpy(), mse_target=mse_target.numpy(), mse_pixels=mse_pixels.astype(np.float64))
