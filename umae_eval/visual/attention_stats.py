"""Attention statistics per block and head (Park et al., ICLR 2023; Dosovitskiy et al. 2021, Fig. 7).

For attention weights ``A`` (rows: queries, columns: keys, T = 1 + L tokens, [CLS] first):

- **mean attention distance** (pixels): the [CLS] row and column are dropped and each patch
  row renormalised; per query q, ``sum_k A_qk * patch_size * ||pos_q - pos_k||`` (grid
  positions), averaged over the L queries.
- **entropy** (nats): ``-sum_k A_qk log A_qk`` of the [CLS] row over the patches (renormalised),
  and the mean over patch queries of their rows over the patches (renormalised).
- **NMI** between query and key with a uniform query prior p(q) = 1/L on the patch block:
  ``I(Q; K) = H(mean_q A_q.) - mean_q H(A_q.)``, normalised by ``sqrt(H(Q) H(K))`` with
  ``H(Q) = log L``: 0 when every query attends alike ("attention collapse"), up to 1 when each
  query has its own key.

Every statistic is computed per image; :func:`bootstrap_summary` gives the mean over images with
a percentile bootstrap interval (images resampled with replacement, seeded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

#: The statistics, in the order of reports and CSVs (umae reconstruct and compare both use it).
STAT_NAMES = ("distance", "cls_entropy", "patch_entropy", "nmi")

_TINY = 1e-12


def _entropy(p: Tensor) -> Tensor:
    """Entropy (nats) over the last axis of probability rows."""
    return -(p * torch.log(p.clamp_min(_TINY))).sum(-1)


def _patch_block(att: Tensor) -> Tensor:
    """Patch -> patch block of (..., T, T) with rows renormalised: (..., L, L)."""
    a = att[..., 1:, 1:]
    return a / a.sum(-1, keepdim=True).clamp_min(_TINY)


def grid_distances(grid: int, patch_size: int) -> Tensor:
    """Pixel distance between the centres of every pair of patches of a ``grid x grid`` grid: (L, L)."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    pos = torch.stack([rows.reshape(-1), cols.reshape(-1)], 1).double()
    return torch.cdist(pos, pos) * patch_size


def mean_attention_distance(att: Tensor, grid: int, patch_size: int) -> Tensor:
    """Mean attention distance in pixels: att (..., T, T) -> (...)."""
    a = _patch_block(att.double())
    return (a * grid_distances(grid, patch_size)).sum(-1).mean(-1)


def cls_entropy(att: Tensor) -> Tensor:
    """Entropy of the [CLS] query over the patches (renormalised): (..., T, T) -> (...)."""
    row = att[..., 0, 1:].double()
    return _entropy(row / row.sum(-1, keepdim=True).clamp_min(_TINY))


def patch_entropy(att: Tensor) -> Tensor:
    """Mean entropy of the patch queries over the patches: (..., T, T) -> (...)."""
    return _entropy(_patch_block(att.double())).mean(-1)


def attention_nmi(att: Tensor) -> Tensor:
    """Normalised mutual information between query and key (patch block, uniform query prior): (...)."""
    a = _patch_block(att.double())
    n = a.shape[-1]
    h_k = _entropy(a.mean(-2))
    mi = h_k - _entropy(a).mean(-1)
    denom = torch.sqrt(h_k.clamp_min(_TINY) * math.log(n))
    return (mi / denom).clamp_min(0.0)


@dataclass
class PerImageStats:
    """Statistics per image, block and head: each an array (N, depth, H)."""

    distance: np.ndarray
    cls_entropy: np.ndarray
    patch_entropy: np.ndarray
    nmi: np.ndarray

    @staticmethod
    def concat(parts: list[PerImageStats]) -> PerImageStats:
        return PerImageStats(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                               ("distance", "cls_entropy", "patch_entropy", "nmi")))


def per_image_stats(attentions: Tensor, grid: int, patch_size: int) -> PerImageStats:
    """attentions (depth, B, H, T, T) -> :class:`PerImageStats` with arrays (B, depth, H)."""
    def arr(t: Tensor) -> np.ndarray:
        return t.permute(1, 0, 2).numpy()

    return PerImageStats(distance=arr(mean_attention_distance(attentions, grid, patch_size)),
                         cls_entropy=arr(cls_entropy(attentions)), patch_entropy=arr(patch_entropy(attentions)),
                         nmi=arr(attention_nmi(attentions)))


@dataclass
class StatSummary:
    """Mean over images and the bootstrap interval: arrays (depth, H)."""

    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def bootstrap_summary(values: np.ndarray, *, n_boot: int = 1000, level: float = 0.95,
                      seed: int = 0) -> StatSummary:
    """Mean over images of ``values`` (N, ...) and its percentile bootstrap interval.

    Images are resampled with replacement ``n_boot`` times (``np.random.default_rng(seed)``);
    the interval is the (1 - level)/2 and (1 + level)/2 quantiles of the resampled means. With
    one image the interval collapses to the mean.
    """
    values = np.asarray(values, dtype=np.float64)
    mean = values.mean(0)
    n = values.shape[0]
    if n < 2:
        return StatSummary(mean, mean.copy(), mean.copy())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    # resampled means in chunks: (chunk, N, depth, H) float64 stays under ~64 MB for ViT-B at N = 256
    chunk = max(1, int(64e6 // max(1, values[0].size * n * 8)))
    boots = np.concatenate([values[idx[i:i + chunk]].mean(1) for i in range(0, n_boot, chunk)])
    q = (1 - level) / 2
    return StatSummary(mean, np.quantile(boots, q, axis=0), np.quantile(boots, 1 - q, axis=0))
