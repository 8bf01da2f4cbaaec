"""Training batches: seeded per-epoch order, device-resident or streamed images, batched augmentation.

Two ways to deliver the same batches:

- :class:`ResidentImages`: the whole train split lives on the device as uint8 ``(N, H, W, 3)``
  (CIFAR-10 is 150 MB); a batch is an index gather on the device. The default for small sets.
- :class:`StreamedImages`: a ``torch.utils.data.DataLoader`` with workers and pinned memory
  gathers the uint8 batches on the host and copies them over (large ImageFolder sets, ``--stream``).

Both follow one order: epoch ``e`` visits ``epoch_permutation(n, seed, e)`` in global batches
of ``batch_size`` (the last partial batch is dropped); rank ``r`` of ``W`` takes the ``r``-th
contiguous ``batch_size / W`` slice of each global batch. Augmentation (:func:`augment_batch`)
runs on the device on whole batches, with a generator seeded by ``(seed, epoch, step, rank)``, so
a batch depends only on its position -- which makes resuming mid-epoch exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from umae_eval.errors import UmaeError
from umae_eval.preprocess import to_model_input

Augment = Literal["none", "rrc-flip"]

#: Mixed into every seed so that batch order and augmentation never share a stream with masking.
_ORDER_SALT = 0x5EED_0BDE
_AUG_SALT = 0xA06_F11B


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The order in which epoch ``epoch`` visits ``n`` training images.

    Parameters
    ----------
    n : int
        Number of training images.
    seed : int
        Run seed.
    epoch : int
        0-based epoch.

    Returns
    -------
    Tensor, shape (n,), int64, on the CPU
        A permutation of ``range(n)`` that depends only on ``(n, seed, epoch)``.
    """
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7919 + _ORDER_SALT) % (2**63))
    return torch.randperm(n, generator=g)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps per epoch, ``n // batch_size`` (drop_last).

    Raises
    ------
    UmaeError
        When the train split is smaller than one batch.
    """
    if n < batch_size:
        raise UmaeError(
            f"the train split has {n} images, fewer than one batch of --batch-size {batch_size}; "
            "lower --batch-size"
        )
    return n // batch_size


def rank_indices(perm: Tensor, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> Tensor:
    """Indices of this rank's share of global batch ``step`` of an epoch.

    Parameters
    ----------
    perm : Tensor, shape (n,)
        The epoch's permutation.
    step : int
        0-based step within the epoch.
    batch_size : int
        Global (effective) batch; divisible by ``world_size``.
    rank, world_size : int
        This process and the number of processes.

    Returns
    -------
    Tensor, shape (batch_size / world_size,)
    """
    per_rank = batch_size // world_size
    start = step * batch_size + rank * per_rank
    return perm[start : start + per_rank]


def augment_seed(seed: int, epoch: int, step: int, rank: int = 0) -> int:
    """The seed of the augmentation generator for one batch."""
    return (seed * 1_000_003 + epoch * 100_003 + step * 131 + rank * 7 + _AUG_SALT) % (2**63)


def _rrc_params(b: int, scale: tuple[float, float], ratio: tuple[float, float], g: torch.Generator,
                device: torch.device) -> tuple[Tensor, Tensor]:
    """Crop width and height as fractions of the side (square images), torchvision's rejection rule.

    Returns
    -------
    (Tensor, Tensor), each shape (B,)
        Crop width and height in (0, 1]. Ten vectorised rounds of rejection sampling; images
        still rejected fall back to the full image (torchvision falls back to a centre crop).
    """
    w = torch.ones(b, device=device)
    h = torch.ones(b, device=device)
    todo = torch.ones(b, dtype=torch.bool, device=device)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        area = torch.empty(b, device=device).uniform_(scale[0], scale[1], generator=g)
        aspect = torch.exp(torch.empty(b, device=device).uniform_(log_lo, log_hi, generator=g))
        cw = torch.sqrt(area * aspect)
        ch = torch.sqrt(area / aspect)
        ok = todo & (cw <= 1.0) & (ch <= 1.0)
        w = torch.where(ok, cw, w)
        h = torch.where(ok, ch, h)
        todo = todo & ~ok
    return w, h


def augment_batch(
    images: Tensor,
    img_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    augment: Augment = "none",
    generator: torch.Generator | None = None,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Tensor:
    """uint8 images to normalised model input, with optional batched RandomResizedCrop + flip.

    ``'rrc-flip'`` is RandomResizedCrop(img_size, scale=(0.2, 1), ratio=(3/4, 4/3)) followed by a
    horizontal flip with probability 1/2 (the MAE pre-training augmentation), done for the whole
    batch at once with one affine grid and bilinear ``grid_sample`` (no antialiasing, unlike
    torchvision's PIL path). ``'none'`` is :func:`umae_eval.preprocess.to_model_input` (resize only
    when the stored size differs from ``img_size``).

    Parameters
    ----------
    images : Tensor, shape (B, H, W, 3), uint8
        On the device the model runs on.
    img_size : int
        Output side S.
    mean, std : tuple of float
        Per-channel normalisation of pixels scaled to [0, 1].
    augment : {'none', 'rrc-flip'}
    generator : torch.Generator, optional
        On ``images.device``; required for 'rrc-flip' to be reproducible.
    scale, ratio : tuple of float
        Crop area fraction and aspect-ratio ranges.

    Returns
    -------
    Tensor, shape (B, 3, S, S), float32
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
        raise UmaeError(f"expected uint8 images (B, H, W, 3), got {images.dtype} {tuple(images.shape)}")
    if augment == "none":
        return to_model_input(images, img_size, mean, std)
    if augment != "rrc-flip":
        raise UmaeError(f"unknown augment {augment!r}; valid: 'none', 'rrc-flip'")
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    b = x.shape[0]
    w, h = _rrc_params(b, scale, ratio, generator, x.device)
    # centres in normalised coordinates [-1, 1]: the crop stays inside the image
    cx = (torch.rand(b, device=x.device, generator=generator) * 2 - 1) * (1 - w)
    cy = (torch.rand(b, device=x.device, generator=generator) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(b, device=x.device, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [b, 3, img_size, img_size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


class ResidentImages:
    """The train split held on the device; batches are index gathers there.

    Parameters
    ----------
    images : np.ndarray, shape (N, H, W, 3), uint8
    device : torch.device
    """

    def __init__(self, images: np.ndarray, device: torch.device) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(device)
        self.device = device

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def epoch(self, perm: Tensor, steps: range, batch_size: int, rank: int = 0,
              world_size: int = 1) -> Iterator[tuple[int, Tensor]]:
        """Yield ``(step, uint8 batch (B/W, H, W, 3) on the device)`` for the given steps."""
        perm_dev = perm.to(self.device)
        for step in steps:
            yield step, self.images[rank_indices(perm_dev, step, batch_size, rank, world_size)]


class _IndexedImages(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.images[i]))


class StreamedImages:
    """The train split streamed through a DataLoader (workers, pinned memory).

    Parameters
    ----------
    images : np.ndarray, shape (N, H, W, 3), uint8
        Stays in host memory (a memory-mapped array works too).
    device : torch.device
    workers : int
        DataLoader worker processes (0 = load in the main process).
    """

    def __init__(self, images: np.ndarray, device: torch.device, workers: int = 4) -> None:
        self.dataset = _IndexedImages(images)
        self.device = device
        self.workers = workers

    def __len__(self) -> int:
        return len(self.dataset)

    def epoch(self, perm: Tensor, steps: range, batch_size: int, rank: int = 0,
              world_size: int = 1) -> Iterator[tuple[int, Tensor]]:
        """Yield ``(step, uint8 batch (B/W, H, W, 3) on the device)`` for the given steps."""
        per_rank = batch_size // world_size
        order = torch.cat([rank_indices(perm, s, batch_size, rank, world_size) for s in steps]) \
            if len(steps) else torch.empty(0, dtype=torch.long)
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=per_rank,
            sampler=order.tolist(),
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            persistent_workers=False,
            generator=torch.Generator(),  # else the loader draws its seed from the global RNG
        )
        for step, batch in zip(steps, loader):
            yield step, batch.to(self.device, non_blocking=True)


class LazyTrainImages(torch.utils.data.Dataset):
    """Train images of a lazy dataset, decoded and augmented per item in DataLoader workers.

    With ``augment='rrc-flip'`` each item is RandomResizedCrop(0.2-1, bicubic) + horizontal
    flip of the *original* image (the official MAE pre-training augmentation), drawn from
    ``np.random.default_rng([seed, epoch, i])``: the same image in the same epoch gets the same
    crop whatever the worker, batch or resume point, so a resumed run sees the batches an
    uninterrupted one would. With ``augment='none'`` the evaluation rule at ``img_size``.

    Parameters
    ----------
    view : umae_eval.data.lazy.LazyArray
        The (subset of the) train split; only its rows, reader and names are used.
    img_size : int
    augment : {'none', 'rrc-flip'}
    seed : int
    """

    def __init__(self, view: object, img_size: int, augment: str, seed: int) -> None:
        self.view, self.img_size, self.augment, self.seed = view, img_size, augment, seed
        self.epoch = 0  # set before each epoch's DataLoader is made (workers copy it)

    def __len__(self) -> int:
        return len(self.view)  # type: ignore[arg-type]

    def __getitem__(self, j: int) -> Tensor:
        from umae_eval.data.decode import open_rgb
        from umae_eval.data.transforms import (
            apply_eval_rule,
            eval_rule,
            random_resized_crop_flip,
        )

        v = self.view
        i = v.item(j)  # type: ignore[attr-defined]
        im = open_rgb(v.split.reader(i), v.split.names[i], v.source, None)  # type: ignore[attr-defined]
        if self.augment == "rrc-flip":
            out = random_resized_crop_flip(im, self.img_size, np.random.default_rng([self.seed, self.epoch, i]))
        else:
            out = apply_eval_rule(im, self.img_size, eval_rule(self.img_size))
        return torch.from_numpy(np.array(out, dtype=np.uint8))


class LazyStreamedImages(StreamedImages):
    """:class:`StreamedImages` over a :class:`LazyTrainImages` (decode + augment in workers)."""

    def __init__(self, dataset: LazyTrainImages, device: torch.device, workers: int = 4) -> None:
        self.dataset = dataset  # type: ignore[assignment]
        self.device = device
        self.workers = workers

    def set_epoch(self, epoch: int) -> None:
        self.dataset.epoch = epoch  # type: ignore[attr-defined]
