"""Masked views: each image encoded exactly as MAE's encoder sees it during pre-training.

Kept apart from :mod:`umae_eval.features` because only the collapse measures (masked-view
alignment and uniformity, LiDAR's view stacks, the mask-ratio sweep) need it, and it drives the
encoder's parts itself (patch embedding, masking, blocks) instead of ``forward_features``.
:mod:`umae_eval.features` re-exports both names, so old imports keep working.

Example
-------
>>> z = encode_masked_views(enc.model, x, 0.75, generator=gen)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from umae_eval.errors import UmaeError
from umae_eval.readout import check_pool, pool_block

if TYPE_CHECKING:
    from umae_eval.features import Pool

__all__ = ["encode_masked_views", "keep_indices"]


def keep_indices(noise: torch.Tensor, mask_ratio: float) -> torch.Tensor:
    """Indices of the patches a masked view keeps, as in MAE's ``random_masking``.

    Parameters
    ----------
    noise : Tensor, shape (B, L)
        Per-patch scores (MAE: ``U[0, 1)``); the smallest are kept.
    mask_ratio : float
        Fraction of patches removed, ``0 <= mask_ratio < 1``.

    Returns
    -------
    Tensor, shape (B, len_keep), int64
        ``argsort(noise)[:, :len_keep]`` with ``len_keep = int(L * (1 - mask_ratio))``.
    """
    if not 0.0 <= float(mask_ratio) < 1.0:
        raise UmaeError(f"mask ratio must be in [0, 1), got {mask_ratio}")
    len_keep = int(noise.shape[1] * (1 - mask_ratio))
    return torch.argsort(noise, dim=1)[:, :len_keep]


def encode_masked_views(model: torch.nn.Module, x: torch.Tensor, mask_ratio: float, *,
                        generator: torch.Generator | None = None,
                        noise: torch.Tensor | None = None, pool: Pool = "cls",
                        block: int | None = None, final_norm: bool = True) -> torch.Tensor:
    """Encode a random masked view of each image exactly as MAE's encoder sees it.

    Patches are embedded and get their positional embeddings; per image, ``noise ~ U[0, 1)``
    over the ``L`` patches keeps the ``len_keep = int(L * (1 - mask_ratio))`` smallest; the
    [CLS] token plus its positional slot is prepended; then the blocks and the final norm run
    (MAE's ``forward_encoder``). Gradients flow unless the caller disables them.

    Parameters
    ----------
    model : MAEEncoderViT
        A timm ViT with a class token (``LoadedEncoder.model``).
    x : Tensor, shape (B, 3, img_size, img_size)
        Already normalised images (``umae_eval.preprocess.to_model_input``).
    mask_ratio : float
        Fraction of patches removed, ``0 <= mask_ratio < 1``; 0 gives the unmasked feature.
    generator : torch.Generator, optional
        Source of the noise (seeded for reproducible views); torch's global RNG if None.
    noise : Tensor, shape (B, L), optional
        Use these scores instead of drawing them (e.g. to share views across encoders).
    pool : {'cls', 'avg', 'cls+avg'}
        As in :func:`umae_eval.features.pool_tokens`; ``'avg'`` averages the visible patch tokens only.
    block : int, optional
        Read this block's output (0-based) instead of the last block's.
    final_norm : bool
        Apply the final norm to the tokens read (MAE's encoder does).

    Returns
    -------
    Tensor, shape (B, D)
    """
    check_pool(pool)
    if x.ndim != 4 or x.shape[1] != 3:
        raise UmaeError(f"expected normalised images of shape (B, 3, H, W), got {tuple(x.shape)}")
    tokens = model.patch_embed(x)  # (B, L, D)
    b, n_patches, _ = tokens.shape
    pos = model.pos_embed  # (1, 1 + L, D): [CLS] slot first
    tokens = tokens + pos[:, 1:, :]
    if noise is None:
        gen_device = generator.device if generator is not None else x.device
        noise = torch.rand(b, n_patches, generator=generator, device=gen_device)
    if tuple(noise.shape) != (b, n_patches):
        raise UmaeError(f"noise must have shape (B, L) = ({b}, {n_patches}), got "
                        f"{tuple(noise.shape)}")
    ids_keep = keep_indices(noise.to(x.device), mask_ratio)  # (B, len_keep)
    tokens = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
    cls = (model.cls_token + pos[:, :1, :]).expand(b, -1, -1)
    seq = model.pos_drop(torch.cat([cls, tokens], dim=1))
    seq = model.norm_pre(seq)
    depth = len(model.blocks)
    if block is None or block % depth == depth - 1:
        seq = model.blocks(seq)
    else:
        for blk in model.blocks[:block % depth + 1]:
            seq = blk(seq)
    if final_norm:
        seq = model.norm(seq)  # (B, 1 + len_keep, D)
    return pool_block(model, seq, pool)
