"""Everything ``umae reconstruct`` shows for one checkpoint: panels, attention maps, attention statistics.

Data flows one way: uint8 images -> the checkpoint's normalisation -> seeded masks (the same
for every checkpoint of the same patch grid) -> predictions -> panels; whole images -> attention
-> maps and per-image statistics -> bootstrap summaries. Nothing is printed or written here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from umae_eval.preprocess import to_model_input
from umae_eval.progress import ProgressFactory, null_progress
from umae_eval.visual.attention import attention_maps
from umae_eval.visual.attention_stats import STAT_NAMES, PerImageStats, StatSummary, bootstrap_summary, per_image_stats
from umae_eval.visual.mae_model import LoadedMAE
from umae_eval.visual.masks import mask_from_noise, mask_noise
from umae_eval.visual.normpix import NormPixVerdict, norm_pix_from_outputs, stated_norm_pix
from umae_eval.visual.reconstruct import Panels, panels, patchify, predict

#: Images per forward pass while collecting attention statistics (bounds the weights held).
STAT_BATCH = 8


@dataclass
class VisualConfig:
    """Settings of one visualisation run.

    Attributes
    ----------
    mask_ratios : tuple of float
        Each in (0, 1); masks are nested across them.
    seed : int
        Mask seed (the trainer's noise stream for ``torch.manual_seed(seed)``).
    modes : tuple of str or None
        Display modes for norm-pix checkpoints (None: 'visible' only); ignored for pixel targets.
    batch_size : int
    n_boot : int
        Bootstrap resamples over images for the attention statistics.
    """

    mask_ratios: tuple[float, ...] = (0.75,)
    seed: int = 0
    modes: tuple[str, ...] | None = None
    batch_size: int = 64
    n_boot: int = 1000


@dataclass
class CheckpointVisual:
    """What one checkpoint shows.

    Attributes
    ----------
    norm_pix : NormPixVerdict
    panels : list of Panels
        One per (mask ratio, display mode), ratios outer.
    cls_attention : np.ndarray, shape (N, H, grid, grid)
        Last block's [CLS] -> patch attention per head (rows renormalised over patches).
    rollout : np.ndarray, shape (N, grid, grid)
    stats : dict of name -> StatSummary
        ``distance`` (pixels), ``cls_entropy``, ``patch_entropy`` (nats), ``nmi``; each (depth, H).
    block_stats : dict of name -> StatSummary
        The same statistics averaged over heads per image first, then bootstrapped: each (depth,).
    n_stat_images : int
    """

    norm_pix: NormPixVerdict
    panels: list[Panels]
    cls_attention: np.ndarray
    rollout: np.ndarray
    stats: dict[str, StatSummary]
    block_stats: dict[str, StatSummary]
    n_stat_images: int
    per_image: PerImageStats | None = field(default=None, repr=False)


def norm_pix_verdict(loaded: LoadedMAE, path: str, images: np.ndarray, mean: Any, std: Any,
                     config: VisualConfig) -> NormPixVerdict:
    """The detection rule of :mod:`umae_eval.visual.normpix` for this checkpoint and these images."""
    stated = stated_norm_pix(loaded.decoder_hints, path)
    if stated is not None:
        return stated
    arch = loaded.arch
    x = to_model_input(images, arch.img_size, mean, std)
    masks = mask_from_noise(mask_noise(len(x), arch.num_patches, config.seed), max(config.mask_ratios))
    pred = predict(loaded.model, x, masks, config.batch_size)
    return norm_pix_from_outputs(pred, patchify(x, arch.patch_size), masks.mask)


@torch.no_grad()
def visualise(loaded: LoadedMAE, path: str, images: np.ndarray, stat_images: np.ndarray, *, mean: Any, std: Any,
              config: VisualConfig, progress: ProgressFactory = null_progress) -> CheckpointVisual:
    """Panels for ``images`` (N, H, W, 3) uint8, attention maps of the same images, and
    attention statistics over ``stat_images`` (M, H, W, 3) uint8."""
    arch = loaded.arch
    verdict = norm_pix_verdict(loaded, path, images, mean, std, config)
    norm_pix = bool(verdict.norm_pix)
    modes = (config.modes or ("visible",)) if norm_pix else ("pixels",)
    x = to_model_input(images, arch.img_size, mean, std)
    noise = mask_noise(len(x), arch.num_patches, config.seed)
    out: list[Panels] = []
    with progress("reconstructions", total=len(config.mask_ratios)) as advance:
        for ratio in config.mask_ratios:
            masks = mask_from_noise(noise, ratio)
            pred = predict(loaded.model, x, masks, config.batch_size)
            for mode in modes:
                out.append(panels(images, pred, masks, img_size=arch.img_size, patch_size=arch.patch_size,
                                  mean=mean, std=std, norm_pix=norm_pix, mode=mode))
            advance(1)
    encoder = loaded.model.encoder
    maps = attention_maps(encoder, x, config.batch_size)
    stats, block_stats, per_image = attention_statistics(
        encoder, stat_images, img_size=arch.img_size, patch_size=arch.patch_size, mean=mean, std=std,
        n_boot=config.n_boot, seed=config.seed, progress=progress)
    return CheckpointVisual(norm_pix=verdict, panels=out, cls_attention=maps.cls_last_block().numpy(),
                            rollout=maps.rollout().numpy(), stats=stats, block_stats=block_stats, n_stat_images=len(stat_images),
                            per_image=per_image)


@torch.no_grad()
def attention_statistics(encoder: torch.nn.Module, images: np.ndarray, *, img_size: int, patch_size: int,
                         mean: Any, std: Any, n_boot: int = 1000, seed: int = 0,
                         progress: ProgressFactory = null_progress, device: torch.device | str | None = None
                         ) -> tuple[dict[str, StatSummary], dict[str, StatSummary], PerImageStats]:
    """Attention statistics of a timm ViT ``encoder`` over uint8 ``images`` (N, H, W, 3), whole images.

    Returns the per-head summaries (each (depth, H)), the head-averaged ones (each (depth,)),
    both with percentile-bootstrap intervals over images, and the per-image values. Usable by
    any command that holds an encoder (no decoder needed). ``device``: where ``encoder`` lives
    (None: the images stay on the CPU); the weights come back to the CPU batch by batch.
    """
    parts: list[PerImageStats] = []
    # (depth, B, H, T, T) weights are held per batch: ViT-B/16 needs 0.18 GB per 8 images
    with progress("attention statistics", total=len(images)) as advance:
        for i in range(0, len(images), STAT_BATCH):
            xb = to_model_input(images[i:i + STAT_BATCH], img_size, mean, std, device=device)
            att = attention_maps(encoder, xb, STAT_BATCH)
            parts.append(per_image_stats(att.attentions, att.grid, patch_size))
            advance(len(xb))
    per_image = PerImageStats.concat(parts)
    stats = {name: bootstrap_summary(getattr(per_image, name), n_boot=n_boot, seed=seed) for name in STAT_NAMES}
    block_stats = {name: bootstrap_summary(getattr(per_image, name).mean(2), n_boot=n_boot, seed=seed)
                   for name in STAT_NAMES}
    return stats, block_stats, per_image
