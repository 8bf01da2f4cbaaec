"""Per-pair distances between masked views at every mask ratio, in pixel space and in an
encoder's feature space (the sweep's main loop; seeds and nesting: :mod:`umae_eval.maskratio.sweep`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from umae_eval.maskratio.estimators import (
    FEATURE_ESTIMATORS,
    FEATURE_METRICS,
    PIXEL_ESTIMATORS,
    feature_distance,
    patch_pair_stats,
    pixel_view_distances,
    reduce_draws,
)
from umae_eval.maskratio.masks import noise_ranks, num_visible, patchify
from umae_eval.maskratio.streams import _MASKS, _batches, _torch_gen
from umae_eval.progress import ProgressFactory, null_progress


class ViewEncoder(Protocol):
    """Encodes masked views of images; the feature-space sweep's only view of a model.

    ``num_patches`` is the model's ``L``. ``prepare`` turns uint8 images ``(B, H, W, 3)`` into
    model inputs (done once per image batch); ``encode`` maps inputs, MAE noise ``(B, L)`` and a
    mask ratio to features ``(B, D)`` on the CPU, computed from the visible patches only (the
    ``int(L (1 - rho))`` patches with the smallest noise); calling the encoder does both.
    """

    num_patches: int

    def prepare(self, images: np.ndarray) -> Tensor: ...

    def encode(self, inputs: Tensor, noise: Tensor, mask_ratio: float) -> Tensor: ...

    def __call__(self, images: np.ndarray, noise: Tensor, mask_ratio: float) -> Tensor: ...


def pixel_distance_curves(x_a: np.ndarray, x_b: np.ndarray, ratios: Sequence[float], *,
                          patch_size: int, views: int, estimators: Sequence[str],
                          seed: int, stream: int = 0, batch_size: int = 250,
                          device: torch.device | str = "cpu",
                          progress: ProgressFactory = null_progress,
                          description: str = "pixel distances") -> dict[str, np.ndarray]:
    """Per-pair view distances of each pixel estimator at each mask ratio.

    Parameters
    ----------
    x_a, x_b : ndarray, uint8, shape (P, H, W, 3)
        The two images of each pair.
    ratios : sequence of float, length R
    patch_size : int
    views : int
        ``K`` mask draws per pair and ratio.
    estimators : names from ``PIXEL_ESTIMATORS``
    seed, stream : int
        Two noise tensors ``(P, K, L)`` come from ``SeedSequence(seed, spawn_key=(2, stream))``
        (first view / shared mask, then the second view's own mask) and are thresholded at every
        rho (:func:`~umae_eval.maskratio.masks.keep_mask_from_ranks`: nested masks).
    batch_size : int
        Pairs per step; each step evaluates every ratio and draw at once (memory: about
        ``batch * (L^2 + 3 R K L)`` floats).

    Returns
    -------
    dict[str, ndarray float64 of shape (R, P)]
    """
    n_pairs = len(x_a)
    slices = _batches(n_pairs, batch_size)
    need_cross = "all-pairs" in estimators
    dev = torch.device(device)
    num_patches = (x_a.shape[1] // patch_size) * (x_a.shape[2] // patch_size)
    gen = _torch_gen(seed, _MASKS, stream)
    rank_a = noise_ranks(torch.rand((n_pairs, views, num_patches), generator=gen))
    rank_b = noise_ranks(torch.rand((n_pairs, views, num_patches), generator=gen))
    # Visible counts per ratio, broadcast against ranks (P, 1, K, L): all ratios in one go.
    n_vis = torch.tensor([num_visible(num_patches, r) for r in ratios], device=dev).view(1, -1, 1, 1)
    n_r = len(ratios)
    out = {name: np.empty((n_r, n_pairs)) for name in estimators}
    with progress(description, total=n_pairs) as advance:
        for sl in slices:
            b = sl.stop - sl.start
            stats = patch_pair_stats(patchify(x_a[sl], patch_size).to(dev),
                                     patchify(x_b[sl], patch_size).to(dev), cross=need_cross)
            # (B, R, K, L) keep weights, flattened to (B, R*K, L) for the estimators
            ka = (rank_a[sl].to(dev).unsqueeze(1) < n_vis).to(stats.sq_diff.dtype).flatten(1, 2)
            kb = (rank_b[sl].to(dev).unsqueeze(1) < n_vis).to(stats.sq_diff.dtype).flatten(1, 2)
            per_draw: dict[str, Tensor] = {}
            for name in estimators:
                key = "aligned" if name == "closest-view" else name
                if key not in per_draw:
                    per_draw[key] = pixel_view_distances(key, stats, ka, kb).view(b, n_r, views)
                value = reduce_draws(per_draw[key], PIXEL_ESTIMATORS[name].reduce)  # (B, R)
                out[name][:, sl] = value.double().cpu().numpy().T
            advance(b)
    return out


def feature_distance_curves(x_a: np.ndarray, x_b: np.ndarray, ratios: Sequence[float],
                            encoder: ViewEncoder, *, views: int, estimators: Sequence[str],
                            metrics: Sequence[str] = FEATURE_METRICS, seed: int, stream: int = 0,
                            batch_size: int = 256, progress: ProgressFactory = null_progress,
                            description: str = "feature distances") -> dict[str, np.ndarray]:
    """Per-pair distances between encoder features of masked views, per estimator and metric.

    For each pair, ratio and draw ``k``: ``f(a, V_a^k)``, ``f(b, V_a^k)`` (shared mask) and, if
    ``own-masks`` is asked for, ``f(b, V_b^k)``; the noise comes from the same stream as in
    :func:`pixel_distance_curves` (on the encoder's ``L`` patches) and is reused at every rho,
    so the masks are nested across ratios as in pixel space. Each step takes
    ``batch_size // K`` pairs, prepares their images once and encodes all their views at every
    ratio (``encoder.encode`` splits them into forward passes).

    Returns
    -------
    dict[str, ndarray float64 of shape (R, P)]
        Keys ``f"{estimator}/{metric}"``.
    """
    n_pairs = len(x_a)
    step = max(1, batch_size // views)  # pairs per step: about batch_size images per kind
    num_patches = encoder.num_patches
    keys = [f"{e}/{m}" for e in estimators for m in metrics]
    out = {k: np.empty((len(ratios), n_pairs)) for k in keys}
    own = "own-masks" in estimators
    gen = _torch_gen(seed, _MASKS, stream)
    noise_a = torch.rand((n_pairs, views, num_patches), generator=gen)
    noise_b = torch.rand((n_pairs, views, num_patches), generator=gen)
    with progress(description, total=n_pairs) as advance:
        for sl in _batches(n_pairs, step):
            b = sl.stop - sl.start
            # Images are prepared once per batch and repeated K times (pair-major order).
            xa = encoder.prepare(x_a[sl]).repeat_interleave(views, dim=0)
            xb = encoder.prepare(x_b[sl]).repeat_interleave(views, dim=0)
            na = noise_a[sl].reshape(b * views, num_patches)
            parts = [(xa, na), (xb, na)] + ([(xb, noise_b[sl].reshape(b * views, num_patches))] if own else [])
            inputs = torch.cat([p[0] for p in parts])
            noise = torch.cat([p[1] for p in parts])
            for r, rho in enumerate(ratios):
                feats = encoder.encode(inputs, noise, rho).reshape(len(parts), b, views, -1)
                fa, fb_shared = feats[0], feats[1]
                for m in metrics:
                    shared = feature_distance(fa, fb_shared, m)  # (B, K)
                    for e in estimators:
                        per_draw = feature_distance(fa, feats[2], m) if e == "own-masks" else shared
                        value = reduce_draws(per_draw, FEATURE_ESTIMATORS[e].reduce)
                        out[f"{e}/{m}"][r, sl] = value.double().cpu().numpy()
            advance(b)
    return out
