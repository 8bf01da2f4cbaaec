"""Attention read out of timm ViT blocks without changing them, [CLS] maps and attention rollout.

timm's ``Attention`` computes softmax(q k^T / sqrt(d)) v inside ``scaled_dot_product_attention``
(fused) and never materialises the weights. :class:`AttentionRecorder` puts a forward hook on
each block's ``attn.qkv`` Linear: from its output it recomputes q and k (through the block's own
``q_norm`` / ``k_norm`` and ``scale``) and the softmax, and stores them; the hook returns nothing,
so the model's computation and output are exactly what they were (tests compare them).

Rollout (Abnar & Zuidema 2020, as jacobgil/vit-explain): per block the head-mean attention
plus the identity (the residual connection), rows renormalised, multiplied from the first block
to the last; the [CLS] row over the patches is the map.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class AttentionMaps:
    """Attention of one forward pass over whole images (no masking).

    Attributes
    ----------
    attentions : Tensor, shape (depth, B, H, T, T)
        Softmax weights per block and head, T = 1 + L ([CLS] first); each row sums to 1.
    grid : int
        Patches per side (L = grid^2).
    """

    attentions: Tensor
    grid: int

    def cls_last_block(self) -> Tensor:
        """[CLS] -> patch attention of the last block per head, rows renormalised over patches:
        (B, H, grid, grid) (DINO's ``visualize_attention.py``)."""
        a = self.attentions[-1][:, :, 0, 1:]
        a = a / a.sum(-1, keepdim=True)
        return a.reshape(a.shape[0], a.shape[1], self.grid, self.grid)

    def rollout(self) -> Tensor:
        """Attention rollout ([CLS] row over patches, renormalised): (B, grid, grid)."""
        return rollout_cls(self.attentions).reshape(-1, self.grid, self.grid)


def rollout_cls(attentions: Tensor) -> Tensor:
    """Rollout of ``attentions`` (depth, B, H, T, T) -> [CLS] row over the patches, (B, T - 1), rows sum to 1."""
    depth, b, _, t, _ = attentions.shape
    eye = torch.eye(t, dtype=attentions.dtype)
    joint = eye.expand(b, t, t).clone()
    for layer in range(depth):
        a = attentions[layer].mean(dim=1) + eye
        a = a / a.sum(-1, keepdim=True)
        joint = a @ joint
    row = joint[:, 0, 1:]
    return row / row.sum(-1, keepdim=True)


class AttentionRecorder:
    """Hooks on every ``blocks[i].attn.qkv`` of a timm ViT that record the attention weights.

    Example::

        with AttentionRecorder(model.blocks) as rec:
            out = model(x)
        maps = rec.stacked()   # (depth, B, H, T, T)
    """

    def __init__(self, blocks: nn.ModuleList) -> None:
        self.blocks = blocks
        self.records: list[list[Tensor]] = [[] for _ in blocks]
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, index: int, attn: nn.Module):  # noqa: ANN202 - a torch hook
        def hook(_module: nn.Module, _inputs: tuple[Tensor, ...], qkv: Tensor) -> None:
            b, n, _ = qkv.shape
            heads, head_dim = attn.num_heads, attn.head_dim
            q, k, _v = qkv.reshape(b, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            q, k = attn.q_norm(q), attn.k_norm(k)
            weights = ((q.float() * attn.scale) @ k.float().transpose(-2, -1)).softmax(dim=-1)
            self.records[index].append(weights.detach().cpu())
        return hook

    def __enter__(self) -> AttentionRecorder:
        for i, blk in enumerate(self.blocks):
            self._handles.append(blk.attn.qkv.register_forward_hook(self._hook(i, blk.attn)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def stacked(self) -> Tensor:
        """(depth, B, H, T, T): every batch seen, concatenated along B."""
        return torch.stack([torch.cat(r) for r in self.records])


@contextmanager
def recording(blocks: nn.ModuleList) -> Iterator[AttentionRecorder]:
    """``with recording(model.blocks) as rec: ...`` (the hooks are removed on exit)."""
    rec = AttentionRecorder(blocks)
    with rec:
        yield rec


@torch.no_grad()
def attention_maps(encoder: nn.Module, x: Tensor, batch_size: int = 64) -> AttentionMaps:
    """Attention of a timm ViT ``encoder`` on whole normalised images ``x`` (B, 3, S, S)."""
    with recording(encoder.blocks) as rec:
        for i in range(0, x.shape[0], batch_size):
            encoder.forward_features(x[i:i + batch_size])
    grid = int(encoder.patch_embed.grid_size[0])
    return AttentionMaps(attentions=rec.stacked(), grid=grid)
