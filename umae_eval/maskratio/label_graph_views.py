"""The sweep's label error and augmentation-graph spectrum over masked views, in pixel space
and in an encoder's feature space (the math: :mod:`~umae_eval.maskratio.label_error`,
:mod:`~umae_eval.maskratio.graph`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from umae_eval.maskratio.distance_curves import ViewEncoder
from umae_eval.maskratio.graph import GraphStats, graph_stats
from umae_eval.maskratio.label_error import class_means, nearest_mean_errors, patch_class_distances, view_errors
from umae_eval.maskratio.masks import keep_mask_from_ranks, noise_ranks, num_visible, patchify
from umae_eval.maskratio.streams import _GRAPH, _LABEL, _batches, _torch_gen
from umae_eval.progress import ProgressFactory, null_progress


def pixel_label_errors(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray,
                       y_eval: np.ndarray, ratios: Sequence[float], *, n_classes: int,
                       patch_size: int, views: int, seed: int, batch_size: int = 250,
                       device: torch.device | str = "cpu",
                       progress: ProgressFactory = null_progress) -> np.ndarray:
    """Per-image label error (share of its K views nearest another class's mean), pixel space.

    ``mu_c`` = mean of the unmasked ``x_train`` images of class ``c`` (pixels / 255), cut into
    patches; each eval image contributes ``K`` masked views (the rule:
    :mod:`umae_eval.maskratio.label_error`). The view noise comes from
    ``SeedSequence(seed, spawn_key=(4,))`` and is nested across rho.

    Returns
    -------
    ndarray, shape (R, N_eval)
        Values in ``{0, 1/K, ..., 1}``.
    """
    dev = torch.device(device)
    # The mean of patches is the patches of the mean image: average raw pixels per class.
    with progress("label error: class means", total=n_classes) as advance:
        mean_images = np.full((n_classes, *x_train.shape[1:]), np.nan)
        for c in range(n_classes):
            members = x_train[y_train == c]
            if len(members):
                mean_images[c] = members.mean(axis=0, dtype=np.float64) / 255.0
            advance(1)
    means = patchify(torch.from_numpy(mean_images), patch_size).to(dev)  # (C, L, d)
    labels = torch.as_tensor(y_eval, dtype=torch.int64)
    num_patches = means.shape[1]
    n_vis = torch.tensor([num_visible(num_patches, r) for r in ratios], device=dev).view(1, -1, 1, 1)
    out = np.empty((len(ratios), len(x_eval)))
    ranks = noise_ranks(torch.rand((len(x_eval), views, num_patches), generator=_torch_gen(seed, _LABEL)))
    with progress("label error: masked views", total=len(x_eval)) as advance:
        for sl in _batches(len(x_eval), batch_size):
            per_patch = patch_class_distances(patchify(x_eval[sl], patch_size).to(dev), means)  # (B, C, L)
            keep = (ranks[sl].to(dev).unsqueeze(1) < n_vis).flatten(1, 2)  # (B, R*K, L), every ratio
            err = view_errors(per_patch, labels[sl], keep).view(-1, len(ratios), views)
            out[:, sl] = err.double().mean(-1).cpu().numpy().T
            advance(sl.stop - sl.start)
    return out


def feature_label_errors(encoder: ViewEncoder, x_train: np.ndarray, y_train: np.ndarray,
                         x_eval: np.ndarray, y_eval: np.ndarray, ratios: Sequence[float], *,
                         n_classes: int, views: int, seed: int,
                         progress: ProgressFactory = null_progress) -> np.ndarray:
    """Per-image label error in feature space (nearest class mean of masked train features).

    At each rho: ``W_c`` = mean feature of one masked view of each train image of class ``c``;
    each eval image contributes ``K`` masked views. Returns ``(R, N_eval)`` error shares.
    """
    num_patches = encoder.num_patches
    labels = torch.as_tensor(y_eval, dtype=torch.int64)
    out = np.empty((len(ratios), len(x_eval)))
    gen = _torch_gen(seed, _LABEL)
    noise_train = torch.rand((len(x_train), num_patches), generator=gen)
    xe = np.repeat(x_eval, views, axis=0)
    noise_eval = torch.rand((len(xe), num_patches), generator=gen)
    with progress("label error: masked views", total=len(ratios)) as advance:
        for r, rho in enumerate(ratios):
            ft = encoder(x_train, noise_train, rho)
            means = class_means(ft, torch.as_tensor(y_train, dtype=torch.int64), n_classes)
            fe = encoder(xe, noise_eval, rho)
            err = nearest_mean_errors(fe, labels.repeat_interleave(views), means)
            out[r] = err.reshape(len(x_eval), views).double().mean(-1).numpy()
            advance(1)
    return out


def _views_graph(vectors: Callable[[float], Tensor], labels: np.ndarray,
                 ratios: Sequence[float], views: int, k: int, top: int,
                 progress: ProgressFactory) -> list[GraphStats]:
    y = torch.as_tensor(labels, dtype=torch.int64).repeat_interleave(views)
    ids = torch.arange(len(labels)).repeat_interleave(views)
    out = []
    with progress("augmentation graph spectrum", total=len(ratios)) as advance:
        for r, rho in enumerate(ratios):
            v = vectors(rho).to(torch.float32)
            dist = torch.cdist(v, v).clamp_min(0)
            dist.fill_diagonal_(0)
            out.append(graph_stats(dist, y, ids, k=k, top=top))
            advance(1)
    return out


def pixel_graph(x: np.ndarray, y: np.ndarray, ratios: Sequence[float], *, patch_size: int,
                views: int, k: int, seed: int, top: int = 20, device: torch.device | str = "cpu",
                progress: ProgressFactory = null_progress) -> list[GraphStats]:
    """Augmentation-graph spectrum per rho on ``n`` images x ``views`` pixel views.

    Node vectors: the zero-filled masked image ``x * M`` (own MAE mask per view), so the view
    distance is the ``masked-image`` l2. See :mod:`umae_eval.maskratio.graph`.
    """
    patches = patchify(x, patch_size).to(torch.device(device))
    n, num_patches, _ = patches.shape
    ranks = noise_ranks(torch.rand((n, views, num_patches), generator=_torch_gen(seed, _GRAPH)))

    def vectors(rho: float) -> Tensor:
        keep = keep_mask_from_ranks(ranks, rho)
        masked = patches[:, None] * keep.to(patches.device)[..., None]
        return masked.reshape(n * views, -1)

    return _views_graph(vectors, y, ratios, views, k, top, progress)


def feature_graph(encoder: ViewEncoder, x: np.ndarray, y: np.ndarray, ratios: Sequence[float], *,
                  views: int, k: int, seed: int, top: int = 20,
                  progress: ProgressFactory = null_progress) -> list[GraphStats]:
    """Augmentation-graph spectrum per rho with node vectors = encoder features of the views."""
    xr = np.repeat(x, views, axis=0)
    noise = torch.rand((len(xr), encoder.num_patches), generator=_torch_gen(seed, _GRAPH))

    def vectors(rho: float) -> Tensor:
        return encoder(xr, noise, rho)

    return _views_graph(vectors, y, ratios, views, k, top, progress)
