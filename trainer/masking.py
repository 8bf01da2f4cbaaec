"""Patches, random patch masking and fixed 2-D sin-cos positions, as in the official MAE code.

Conventions (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners"):

- A patch vector lists its pixels row-major, channels last: element ``(i*p + j)*C + c`` is
  pixel ``(i, j)`` of channel ``c`` ('nchpwq->nhwpqc'); patches are numbered row-major.
- Masking draws noise ~ U[0, 1] per patch and keeps the ``int(L * (1 - rho))`` patches with
  the smallest noise; ``mask`` is 1 on removed patches.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from umae_eval.errors import UmaeError


def patchify(imgs: Tensor, p: int) -> Tensor:
    """Cut images into non-overlapping ``p x p`` patches, one vector per patch.

    Parameters
    ----------
    imgs : Tensor, shape (B, C, H, W)
        H and W multiples of ``p``.
    p : int
        Patch side in pixels.

    Returns
    -------
    Tensor, shape (B, L, p*p*C)
        ``L = (H/p) * (W/p)``, patches row-major; within a patch
        ``out[b, h*(W/p) + w, (i*p + j)*C + c] = imgs[b, c, h*p + i, w*p + j]``.

    Examples
    --------
    >>> patchify(torch.zeros(2, 3, 32, 32), 4).shape
    torch.Size([2, 64, 48])
    """
    if imgs.ndim != 4:
        raise UmaeError(f"patchify expects (B, C, H, W) images, got shape {tuple(imgs.shape)}")
    b, c, hh, ww = imgs.shape
    if hh % p or ww % p:
        raise UmaeError(f"image size {hh}x{ww} is not a multiple of patch size {p}")
    h, w = hh // p, ww // p
    x = imgs.reshape(b, c, h, p, w, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(b, h * w, p * p * c)


def unpatchify(x: Tensor, p: int, c: int = 3) -> Tensor:
    """Inverse of :func:`patchify` for square images.

    Parameters
    ----------
    x : Tensor, shape (B, L, p*p*c)
        L a perfect square.
    p : int
        Patch side in pixels.
    c : int
        Channels.

    Returns
    -------
    Tensor, shape (B, c, sqrt(L)*p, sqrt(L)*p)
    """
    b, n, d = x.shape
    h = math.isqrt(n)
    if h * h != n or d != p * p * c:
        raise UmaeError(f"unpatchify expects (B, L=h*h, {p * p * c}), got shape {tuple(x.shape)}")
    x = x.reshape(b, h, h, p, p, c)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(b, c, h * p, h * p)


def num_kept(num_patches: int, mask_ratio: float) -> int:
    """``len_keep = int(L * (1 - mask_ratio))``, the official rule (truncation, not rounding)."""
    if not 0.0 <= mask_ratio < 1.0:
        raise UmaeError(f"mask_ratio must satisfy 0 <= mask_ratio < 1, got {mask_ratio}")
    return int(num_patches * (1 - mask_ratio))


def mask_from_noise(noise: Tensor, mask_ratio: float) -> tuple[Tensor, Tensor, Tensor]:
    """The official masking rule applied to given per-patch noise.

    Parameters
    ----------
    noise : Tensor, shape (B, L)
        One score per patch; the ``len_keep`` smallest are kept (ties: argsort order).
    mask_ratio : float
        rho in [0, 1).

    Returns
    -------
    ids_keep : LongTensor, shape (B, len_keep)
        Indices of the kept patches, in increasing noise order.
    mask : Tensor, shape (B, L)
        1.0 on removed patches, 0.0 on kept ones (dtype of ``noise`` if floating, else float32).
    ids_restore : LongTensor, shape (B, L)
        ``argsort(argsort(noise))``: position of each patch in the noise-sorted order, so
        ``gather(sorted_tokens, 1, ids_restore)`` puts tokens back in patch order.
    """
    if noise.ndim != 2:
        raise UmaeError(f"noise must have shape (B, L), got {tuple(noise.shape)}")
    b, n = noise.shape
    len_keep = num_kept(n, mask_ratio)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    dtype = noise.dtype if noise.is_floating_point() else torch.float32
    mask = torch.ones(b, n, device=noise.device, dtype=dtype)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, dim=1, index=ids_restore)
    return ids_keep, mask, ids_restore


def random_masking(
    x: Tensor,
    mask_ratio: float,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image random masking by sorting uniform noise (MAE's ``random_masking``).

    Parameters
    ----------
    x : Tensor, shape (B, L, D)
        Patch tokens (positions already added).
    mask_ratio : float
        rho in [0, 1); ``len_keep = int(L * (1 - rho))`` tokens survive.
    noise : Tensor, shape (B, L), optional
        Noise to sort; drawn as ``torch.rand(B, L)`` (using ``generator``) when None.
        Passing it makes the mask reproducible (tests, DDP equivalence checks).
    generator : torch.Generator, optional
        Generator for the noise draw; must live on ``x``'s device.

    Returns
    -------
    x_kept : Tensor, shape (B, len_keep, D)
        The kept tokens, in increasing noise order.
    mask : Tensor, shape (B, L)
        1 = removed, 0 = kept, in the original patch order.
    ids_restore : LongTensor, shape (B, L)
        ``argsort(argsort(noise))``.
    """
    if x.ndim != 3:
        raise UmaeError(f"random_masking expects tokens (B, L, D), got shape {tuple(x.shape)}")
    b, n, d = x.shape
    if noise is None:
        noise = torch.rand(b, n, device=x.device, generator=generator)
    elif noise.shape != (b, n):
        raise UmaeError(f"noise shape {tuple(noise.shape)} does not match tokens (B, L) = ({b}, {n})")
    ids_keep, mask, ids_restore = mask_from_noise(noise.to(x.device), mask_ratio)
    x_kept = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).expand(-1, -1, d))
    return x_kept, mask.to(x.dtype), ids_restore


def sincos_pos_embed_1d(dim: int, pos: Tensor) -> Tensor:
    """1-D sin-cos embedding of positions (Vaswani et al. 2017, as in MAE).

    ``out[m, i] = sin(pos_m * w_i)`` and ``out[m, dim/2 + i] = cos(pos_m * w_i)`` with
    ``w_i = 1 / 10000^(2i/dim)``, ``i = 0 .. dim/2 - 1``.

    Parameters
    ----------
    dim : int
        Even output width.
    pos : Tensor, shape (M,)
        Positions.

    Returns
    -------
    Tensor, shape (M, dim), float64
    """
    if dim % 2:
        raise UmaeError(f"sin-cos embedding width must be even, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = pos.to(torch.float64).reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_pos_embed_2d(dim: int, grid: int, cls_token: bool) -> Tensor:
    """Fixed 2-D sin-cos positional embedding of a ``grid x grid`` patch grid (official MAE).

    The first ``dim/2`` channels embed the patch's column (x) with :func:`sincos_pos_embed_1d`,
    the last ``dim/2`` its row (y), the same layout as MAE's ``get_2d_sincos_pos_embed``. Patch
    ``k = row*grid + col`` (row-major, as :func:`patchify`).

    Parameters
    ----------
    dim : int
        Embedding width, a multiple of 4.
    grid : int
        Patches per side.
    cls_token : bool
        Prepend an all-zero slot for the [CLS] token.

    Returns
    -------
    Tensor, shape (1, grid*grid (+1), dim), float32
    """
    if dim % 4:
        raise UmaeError(f"2-D sin-cos embedding width must be a multiple of 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    emb_x = sincos_pos_embed_1d(dim // 2, cols.reshape(-1))
    emb_y = sincos_pos_embed_1d(dim // 2, rows.reshape(-1))
    emb = torch.cat([emb_x, emb_y], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb], dim=0)
    return emb.to(torch.float32).unsqueeze(0)
