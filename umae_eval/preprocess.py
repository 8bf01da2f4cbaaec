"""The one place images are resized to a model's input size and normalised.

Every stage that feeds images to a network (feature extraction, training, probes) calls
:func:`to_model_input`, so a model sees the same pixels whichever command runs it.

Example
-------
>>> import numpy as np
>>> from umae_eval.preprocess import NORMALISATIONS, to_model_input
>>> images = np.zeros((8, 32, 32, 3), dtype=np.uint8)
>>> mean, std = NORMALISATIONS["cifar-recipe"]
>>> to_model_input(images, 32, mean, std).shape
torch.Size([8, 3, 32, 32])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from umae_eval.errors import UmaeError

#: Per-channel (mean, std) of pixel values in [0, 1].
#: ``imagenet``: the statistics the official MAE / timm ViTs were trained with.
#: ``cifar-recipe``: mean 0.5, std 0.5, the CIFAR-10 recipe behind the paper's Table 1
#: (IcarusWizard/MAE defaults), mapping pixels to [-1, 1].
NORMALISATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar-recipe": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def to_model_input(images: np.ndarray | torch.Tensor, img_size: int, mean: Sequence[float],
                   std: Sequence[float], device: torch.device | str | None = None) -> torch.Tensor:
    """Turn a batch of uint8 RGB images into a normalised float32 model input.

    Steps, in this order: move the uint8 batch to ``device`` (4x fewer bytes than float32),
    scale to [0, 1], resize to ``img_size x img_size`` (bicubic with antialiasing, as PIL
    does, clamped back to [0, 1]; skipped when the images already have that size), then
    ``(x - mean) / std`` per channel.

    Parameters
    ----------
    images : np.ndarray or torch.Tensor
        uint8 RGB images, shape ``(B, H, W, 3)`` (e.g. a slice of ``ImageSet.x_train``).
    img_size : int
        The model's input side; the output is ``img_size x img_size`` (non-square images
        are stretched, so crop them to a square beforehand if that matters).
    mean, std : sequence of 3 floats
        Per-channel statistics of [0, 1] pixels, e.g. ``NORMALISATIONS['imagenet']``.
    device : torch.device or str, optional
        Where the result lives; by default where ``images`` are (CPU for numpy arrays).

    Returns
    -------
    torch.Tensor
        float32, shape ``(B, 3, img_size, img_size)``, contiguous, on ``device``.

    Raises
    ------
    UmaeError
        If ``images`` is not uint8 ``(B, H, W, 3)``, ``img_size`` is not positive, or
        ``mean``/``std`` do not hold 3 values with ``std > 0``.
    """
    x = _as_uint8_tensor(images)
    if int(img_size) != img_size or img_size < 1:
        raise UmaeError(f"img_size must be a positive integer, got {img_size!r}")
    mean_t = _channel_stats(mean, "mean")
    std_t = _channel_stats(std, "std")
    if (std_t <= 0).any():
        raise UmaeError(f"std must be positive per channel, got {tuple(std)}")
    if device is not None:
        x = x.to(device, non_blocking=True)
    out = x.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    if out.shape[0] == 0:
        out = out.new_empty((0, 3, int(img_size), int(img_size)))
    elif out.shape[-2:] != (img_size, img_size):
        out = F.interpolate(out, size=(int(img_size), int(img_size)), mode="bicubic",
                            align_corners=False, antialias=True).clamp_(0.0, 1.0)
    mean_t = mean_t.to(out.device).view(1, 3, 1, 1)
    std_t = std_t.to(out.device).view(1, 3, 1, 1)
    return out.sub_(mean_t).div_(std_t).contiguous()


def _as_uint8_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise UmaeError(f"images must be uint8 of shape (B, H, W, 3), got {images.dtype} {images.shape}")
        if not (images.flags.c_contiguous and images.flags.writeable):
            images = np.array(images, order="C")  # torch.from_numpy wants writable memory
        return torch.from_numpy(images)
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise UmaeError(f"images must be uint8 of shape (B, H, W, 3), got {images.dtype} "
                            f"{tuple(images.shape)}")
        return images
    raise UmaeError(f"images must be a numpy array or a torch tensor, got {type(images).__name__}")


def _channel_stats(values: Sequence[float], name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
    except (TypeError, ValueError):
        raise UmaeError(f"{name} must be 3 numbers (one per RGB channel), got {values!r}") from None
    if t.numel() != 3:
        raise UmaeError(f"{name} must be 3 numbers (one per RGB channel), got {len(t)}")
    return t
