"""Mask ratios, patches and MAE-style random masks: the shared vocabulary of the mask-ratio sweep.

MAE's masking rule (He et al. 2022, ``random_masking``): draw ``noise ~ U[0, 1]`` over the
``L`` patches of an image and keep the ``int(L * (1 - rho))`` patches with the smallest noise,
so that every subset of that size is equally likely. Everything here follows that rule exactly,
so a mask drawn here for pixels and a mask drawn by the encoder from the same noise agree.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from umae_eval.errors import UmaeError

__all__ = [
    "num_visible",
    "parse_ratios",
    "validate_ratios",
    "patchify",
    "keep_mask_from_noise",
    "noise_ranks",
    "keep_mask_from_ranks",
]


def num_visible(num_patches: int, mask_ratio: float) -> int:
    """Number of patches MAE keeps visible: ``int(L * (1 - rho))`` (the official rounding).

    Parameters
    ----------
    num_patches : int
        ``L``, patches per image.
    mask_ratio : float
        ``rho`` in ``[0, 1)``.

    Examples
    --------
    >>> num_visible(64, 0.75), num_visible(64, 0.95), num_visible(256, 0.75)
    (16, 3, 64)
    """
    return int(num_patches * (1.0 - mask_ratio))


def parse_ratios(text: str) -> list[float]:
    """Parse ``--ratios``: ``START:STOP:STEP`` (STOP included) or a comma list ``0,0.5,0.75``.

    Values are rounded to 6 decimals (so ``0:0.95:0.05`` gives exactly 0.0, 0.05, ..., 0.95),
    sorted and de-duplicated. Range checks live in :func:`validate_ratios`.

    Raises
    ------
    UmaeError
        When the text is not a range or a list of numbers.

    Examples
    --------
    >>> parse_ratios("0:0.95:0.05")[:3], len(parse_ratios("0:0.95:0.05"))
    ([0.0, 0.05, 0.1], 20)
    >>> parse_ratios("0.75, 0.5")
    [0.5, 0.75]
    """
    raw = text.strip()
    hint = "use START:STOP:STEP (e.g. 0:0.95:0.05) or a comma list (e.g. 0,0.5,0.75)"
    try:
        if ":" in raw:
            parts = [float(p) for p in raw.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if not step > 0 or stop < start:
                raise UmaeError(f"--ratios {text!r}: STEP must be > 0 and STOP >= START; {hint}")
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
            values = [start + i * step for i in range(count)]
        else:
            values = [float(p) for p in raw.split(",") if p.strip()]
    except ValueError:
        raise UmaeError(f"--ratios {text!r} is not a range or a list of numbers; {hint}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise UmaeError(f"--ratios {text!r} gives no finite mask ratio; {hint}")
    return sorted({round(v, 6) for v in values})


def validate_ratios(ratios: list[float], num_patches: int | None, *, what: str = "--ratios") -> None:
    """Check every ratio lies in ``[0, 1)`` and keeps at least one of the ``L`` patches visible.

    ``num_patches=None`` checks the range only (before the image size is known).

    With no visible patch every view of every image is the same empty view, so distances are
    0/0; such ratios are refused rather than reported as NaN. At ``L = 64`` (32 px, patch 4)
    ratios up to ``1 - 1/64 = 0.984`` keep a patch (``0.95`` keeps 3).

    Raises
    ------
    UmaeError
        Naming the first offending ratio and the largest allowed one.
    """
    if not ratios:
        raise UmaeError(f"{what}: no mask ratio given")
    for r in ratios:
        if not (0.0 <= r < 1.0):
            raise UmaeError(f"{what}: mask ratio {r:g} is outside [0, 1)")
        if num_patches is not None and num_visible(num_patches, r) < 1:
            raise UmaeError(
                f"{what}: mask ratio {r:g} keeps int({num_patches} * (1 - {r:g})) = 0 of "
                f"{num_patches} patches visible (distances undefined); use ratios <= "
                f"{1 - 1 / num_patches:.4f} or a smaller patch size"
            )


def patchify(images: Tensor | np.ndarray, patch_size: int) -> Tensor:
    """Cut images into non-overlapping square patches, pixels scaled to ``[0, 1]``.

    Parameters
    ----------
    images : Tensor or ndarray, uint8, shape (N, H, W, 3)
        Raw images (0..255). Float input is taken as already in ``[0, 1]``.
    patch_size : int
        ``p``; must divide ``H`` and ``W``.

    Returns
    -------
    Tensor, float32, shape (N, L, p * p * 3)
        ``L = (H / p) * (W / p)`` patches in row-major grid order (MAE's order), each
        flattened as (row, column, channel).
    """
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise UmaeError(f"expected images of shape (N, H, W, 3), got {tuple(x.shape)}")
    n, h, w, c = x.shape
    if patch_size < 1 or h % patch_size or w % patch_size:
        raise UmaeError(f"--patch-size {patch_size} does not divide the {h}x{w} images")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    gh, gw = h // patch_size, w // patch_size
    x = x.reshape(n, gh, patch_size, gw, patch_size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, gh * gw, patch_size * patch_size * c)


def keep_mask_from_noise(noise: Tensor, mask_ratio: float) -> Tensor:
    """MAE's rule: keep the ``int(L (1 - rho))`` patches with the smallest noise.

    Parameters
    ----------
    noise : Tensor, float, shape (..., L)
        One noise value per patch, typically ``U[0, 1]``.
    mask_ratio : float
        ``rho`` in ``[0, 1)``.

    Returns
    -------
    Tensor, bool, shape (..., L)
        ``True`` on visible (kept) patches; exactly ``int(L (1 - rho))`` per row. This is the
        complement of MAE's ``mask`` (1 on removed patches).
    """
    n_keep = num_visible(noise.shape[-1], mask_ratio)
    keep = torch.zeros(noise.shape, dtype=torch.bool, device=noise.device)
    ids_keep = torch.argsort(noise, dim=-1)[..., :n_keep]
    return keep.scatter_(-1, ids_keep, True)


def noise_ranks(noise: Tensor) -> Tensor:
    """Rank of each patch's noise within its row: ``argsort(argsort(noise))`` (MAE's ids_restore).

    Parameters
    ----------
    noise : Tensor, float, shape (..., L)

    Returns
    -------
    Tensor, int64, shape (..., L)
        ``ranks < int(L (1 - rho))`` is :func:`keep_mask_from_noise` ``(noise, rho)`` for every
        rho at once (ties have probability 0 under continuous noise).
    """
    return torch.argsort(torch.argsort(noise, dim=-1), dim=-1)


def keep_mask_from_ranks(ranks: Tensor, mask_ratio: float) -> Tensor:
    """Keep mask of ratio ``rho`` from :func:`noise_ranks`: ``ranks < int(L (1 - rho))``, bool (..., L).

    Thresholding one noise draw at every rho gives nested masks (the views of a larger rho are
    sub-views of those of a smaller one), each of which follows MAE's rule exactly.
    """
    return ranks < num_visible(ranks.shape[-1], mask_ratio)
