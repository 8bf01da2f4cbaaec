"""Fine-tuning batches: MAE's train transform per item (timm) or batched on the device, mixup.

Two train paths deliver one optimiser step's images for this rank, both seeded by position
only (seed, epoch, image or step), so a run resumed mid-epoch sees the batches an uninterrupted
run would:

- ``host`` (:class:`TrainItems`): MAE's ``build_transform(is_train=True)``: timm's
  ``create_transform`` (RandomResizedCrop bicubic + flip, RandAugment, ToTensor, Normalize,
  RandomErasing 'pixel') per PIL image in DataLoader workers; in-memory arrays and lazy
  (file-backed) datasets alike. Every RandAugment preset uses it.
- ``device`` (:func:`device_batch`): the uint8 train split stays on the device; batched
  RandomResizedCrop + flip (:func:`trainer.batches.augment_batch`, bilinear) and timm's
  RandomErasing on the batch. No RandAugment (PIL-only); chosen when the preset has none.

Mixup / CutMix / label smoothing: timm's ``Mixup`` on the step's batch (numpy's global RNG,
seeded per step and restored afterwards), with ``SoftTargetCrossEntropy`` (MAE's choice).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from trainer.batches import augment_batch, augment_seed, rank_indices
from trainer.finetune_presets import FinetunePreset
from umae_eval.compat import ensure_timm_importable

ensure_timm_importable()
from timm.data import Mixup, create_transform  # noqa: E402
from timm.data.random_erasing import RandomErasing  # noqa: E402
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy  # noqa: E402

_ITEM_SALT = 0x17E3
_MIX_SALT = 0x313C


@contextlib.contextmanager
def seeded_global_rngs(seed: int, cuda: bool = False) -> Iterator[None]:
    """Seed python's, numpy's and torch's global RNGs for a block, then put them back.

    timm's transforms and Mixup draw from the global generators; this keeps them a function of
    ``seed`` alone without disturbing the run's own streams (drop path, init).
    """
    py, npst = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if cuda and torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npst)


def train_transform(preset: FinetunePreset, img_size: int, mean: tuple[float, ...],
                    std: tuple[float, ...]) -> Any:
    """MAE's train transform for PIL images -> (3, S, S) float tensors.

    ``crop='rrc'``: timm ``create_transform(is_training=True)`` exactly as main_finetune.py calls
    it (bicubic, no colour jitter, ``re_mode='pixel'``, ``re_count=1``) with the preset's crop
    scale and flip. ``crop='none'``: resize to ``img_size`` if needed, ToTensor, Normalize
    (IcarusWizard's classifier: no augmentation).
    """
    if preset.crop == "rrc":
        return _zero_bit_posterize(create_transform(
            input_size=img_size, is_training=True, scale=preset.crop_scale, hflip=preset.hflip,
            color_jitter=None, auto_augment=None if preset.rand_augment == "none" else preset.rand_augment,
            interpolation="bicubic", re_prob=preset.reprob, re_mode="pixel", re_count=1,
            mean=tuple(mean), std=tuple(std)))
    from torchvision import transforms as T

    steps: list[Any] = [T.Resize((img_size, img_size), interpolation=T.InterpolationMode.BICUBIC)]
    if preset.hflip > 0:
        steps.append(T.RandomHorizontalFlip(preset.hflip))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    if preset.reprob > 0:
        steps.append(RandomErasing(preset.reprob, mode="pixel", max_count=1, device="cpu"))
    return T.Compose(steps)


def _posterize(img: Any, bits_to_keep: int, **_: Any) -> Any:
    """timm's posterize with Pillow < 11's answer for 0 bits kept (a black image)."""
    from PIL import Image, ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _zero_bit_posterize(transform: Any) -> Any:
    """Let RandAugment's 'PosterizeIncreasing' keep 0 bits again.

    At magnitude 10 (m9 plus mstd noise) timm asks ``ImageOps.posterize(img, 0)``: old Pillow
    (MAE's environment) returned a black image, Pillow >= 11 raises ValueError. The ops' function
    is swapped for :func:`_posterize`, which gives the old result.
    """
    for t in getattr(transform, "transforms", []):
        for op in getattr(t, "ops", []):
            if op.name.startswith("Posterize"):
                op.aug_fn = _posterize
    return transform


class TrainItems(torch.utils.data.Dataset):
    """Train images through :func:`train_transform`, each seeded by (seed, epoch, index).

    Parameters
    ----------
    images : np.ndarray (N, H, W, 3) uint8, or a lazy view (:class:`umae_eval.data.lazy.LazyArray`)
    transform : callable
        PIL image -> Tensor (3, S, S).
    seed : int
    """

    def __init__(self, images: Any, transform: Any, seed: int) -> None:
        self.images, self.transform, self.seed = images, transform, seed
        self.lazy = not isinstance(images, np.ndarray)
        self.epoch = 0  # set before each epoch's DataLoader is made (workers copy it)

    def __len__(self) -> int:
        return len(self.images)

    def _image(self, j: int) -> Any:
        from PIL import Image

        if not self.lazy:
            return Image.fromarray(np.ascontiguousarray(self.images[j]))
        from umae_eval.data.decode import open_rgb

        v = self.images
        i = v.item(j)
        return open_rgb(v.split.reader(i), v.split.names[i], v.source, None)

    def __getitem__(self, j: int) -> tuple[Tensor, int]:
        im = self._image(j)
        item_seed = (self.seed * 1_000_003 + self.epoch * 100_003 + j * 7 + _ITEM_SALT) % (2**63)
        with seeded_global_rngs(item_seed):
            x = self.transform(im)
        return x, j


def host_epoch(items: TrainItems, perm: Tensor, steps: range, batch_size: int, rank: int, world: int,
               workers: int, device: torch.device) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Yield ``(step, images (B/W, 3, S, S) float, indices (B/W,))`` on ``device`` for ``steps``."""
    per_rank = batch_size // world
    order = (torch.cat([rank_indices(perm, s, batch_size, rank, world) for s in steps])
             if len(steps) else torch.empty(0, dtype=torch.long))
    loader = torch.utils.data.DataLoader(
        items, batch_size=per_rank, sampler=order.tolist(), num_workers=workers,
        pin_memory=device.type == "cuda", drop_last=True, generator=torch.Generator())
    for step, (x, idx) in zip(steps, loader):
        yield step, x.to(device, non_blocking=True), idx.to(device)


def device_batch(raw: Tensor, preset: FinetunePreset, img_size: int, mean: tuple[float, ...],
                 std: tuple[float, ...], seed: int) -> Tensor:
    """Batched on-device augmentation of uint8 images (B, H, W, 3) -> (B, 3, S, S) float.

    RandomResizedCrop (preset scale, bilinear) + flip 1/2 when ``crop='rrc'``, then timm's
    RandomErasing ('pixel', one box) with ``preset.reprob``. All draws depend on ``seed`` only.
    """
    gen = torch.Generator(device=raw.device).manual_seed(seed)
    augment = "rrc-flip" if preset.crop == "rrc" else "none"
    x = augment_batch(raw, img_size, mean, std, augment, gen, scale=preset.crop_scale)  # type: ignore[arg-type]
    if preset.reprob > 0:
        erase = RandomErasing(preset.reprob, mode="pixel", max_count=1, device=str(raw.device))
        with seeded_global_rngs(seed, cuda=raw.device.type == "cuda"):
            x = erase(x)
    return x


def make_mixup(preset: FinetunePreset, num_classes: int) -> Mixup | None:
    """timm's ``Mixup`` with the preset's mixup / cutmix / smoothing, or None when off."""
    if not preset.mixing:
        return None
    return Mixup(mixup_alpha=preset.mixup, cutmix_alpha=preset.cutmix, prob=preset.mixup_prob,
                 switch_prob=preset.switch_prob, mode="batch", label_smoothing=preset.smoothing,
                 num_classes=num_classes)


def mix(mixup: Mixup | None, x: Tensor, y: Tensor, seed: int, epoch: int, step: int,
        rank: int) -> tuple[Tensor, Tensor]:
    """Apply ``mixup`` to a batch with its draws seeded by position; identity when None.

    Returns
    -------
    (Tensor (B, 3, S, S), Tensor)
        Mixed images and soft targets (B, C) (each row sums to 1), or the inputs unchanged.
    """
    if mixup is None:
        return x, y
    with seeded_global_rngs(augment_seed(seed, epoch, step, rank) ^ _MIX_SALT):
        return mixup(x, y)


def train_criterion(preset: FinetunePreset) -> nn.Module:
    """MAE's choice: soft-target CE with mixup, label-smoothing CE without, else plain CE."""
    if preset.mixing:
        return SoftTargetCrossEntropy()
    if preset.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=preset.smoothing)
    return nn.CrossEntropyLoss()


@torch.no_grad()
def evaluate(model: nn.Module, images: Any, labels: np.ndarray, img_size: int, mean: tuple[float, ...],
             std: tuple[float, ...], device: torch.device, batch: int = 256,
             amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Test top-1, top-5 (percent) and cross-entropy of ``model`` on uint8 images at ``img_size``.

    Parameters
    ----------
    images : np.ndarray (N, H, W, 3) uint8 or a lazy view at ``img_size``
    labels : np.ndarray, shape (N,)
    """
    was = model.training
    model.eval()
    correct1 = correct5 = 0
    loss = 0.0
    n = len(labels)
    try:
        for start in range(0, n, batch):
            rows = np.arange(start, min(start + batch, n))
            raw = torch.from_numpy(np.ascontiguousarray(images[rows])).to(device)
            x = augment_batch(raw, img_size, mean, std, "none")
            y = torch.from_numpy(np.asarray(labels[rows], dtype=np.int64)).to(device)
            ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
            with ctx:
                logits = model(x)
            logits = logits.float()
            loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            correct1 += int((top[:, 0] == y).sum())
            correct5 += int((top == y[:, None]).any(dim=1).sum())
    finally:
        model.train(was)
    return {"test_top1": 100.0 * correct1 / n, "test_top5": 100.0 * correct5 / n, "test_loss": loss / n}
