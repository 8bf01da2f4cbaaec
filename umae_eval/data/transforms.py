"""The image transforms of the lazy path, run per item in DataLoader workers.

Two evaluation rules, both ending in a square uint8 ``(S, S, 3)`` image:

``'fit'``
    Shorter side to ``S`` (bicubic, antialiased), centre square. The in-memory path's rule
    (:func:`umae_eval.data.decode.fit_square`), used for small (CIFAR-size) checkpoints.
``'crop'``
    Shorter side to ``round(S / 0.875)`` (bicubic), then the centre ``S x S`` crop: MAE's
    linear-probe evaluation transform (``Resize(256, interpolation=3)`` +
    ``CenterCrop(224)`` for a 224-px checkpoint; He et al. 2022, appendix A.2), used for
    ImageNet-size checkpoints.

:func:`eval_rule` picks between them from the checkpoint's input side. The training transform
of the ImageNet presets (RandomResizedCrop(0.2-1, bicubic) + horizontal flip, from the original
image) is :func:`random_resized_crop_flip`.

Example
-------
>>> from PIL import Image
>>> im = Image.new("RGB", (500, 375))
>>> apply_eval_rule(im, 224, "crop").size
(224, 224)
>>> eval_rule(224), eval_rule(32)
('crop', 'fit')
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from PIL import Image

from umae_eval.data.decode import fit_square
from umae_eval.errors import UmaeError

EvalRule = Literal["fit", "crop"]
EVAL_RULES: tuple[str, ...] = ("fit", "crop")

#: MAE's evaluation crop fraction: 224 / 256.
CROP_FRACTION = 0.875

#: Checkpoints at least this large are ImageNet-style and get the 'crop' rule.
CROP_MIN_SIZE = 128


def eval_rule(img_size: int) -> EvalRule:
    """'crop' for ImageNet-size checkpoints (``img_size >= 128``), 'fit' for CIFAR-size ones."""
    return "crop" if img_size >= CROP_MIN_SIZE else "fit"


def resize_side(size: int, rule: EvalRule) -> int:
    """The shorter side an image is resized to before the centre crop (256 for 'crop' at 224)."""
    return int(round(size / CROP_FRACTION)) if rule == "crop" else size


def describe_rule(size: int, rule: EvalRule) -> str:
    """A short, stable description for manifests and results.json, e.g. ``'resize256-crop224-bicubic'``."""
    if rule == "crop":
        return f"resize{resize_side(size, rule)}-crop{size}-bicubic"
    return f"fit{size}-bicubic"


def apply_eval_rule(im: Image.Image, size: int, rule: EvalRule) -> Image.Image:
    """Apply an evaluation rule to an RGB PIL image; the result is ``size x size``.

    Parameters
    ----------
    im : PIL.Image.Image
        RGB, any size.
    size : int
        Output side ``S``.
    rule : {'fit', 'crop'}
    """
    if rule not in EVAL_RULES:
        raise UmaeError(f"unknown evaluation transform {rule!r}; use one of {', '.join(EVAL_RULES)}")
    if rule == "fit":
        return fit_square(im, size)
    side = resize_side(size, rule)
    w, h = im.size
    # torchvision's Resize(side): the shorter side becomes `side`, the longer int(side * long / short)
    nw, nh = (side, int(side * h / w)) if w <= h else (int(side * w / h), side)
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


def random_resized_crop_flip(im: Image.Image, size: int, rng: np.random.Generator,
                             scale: tuple[float, float] = (0.2, 1.0),
                             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Image.Image:
    """RandomResizedCrop(size, scale, ratio, bicubic) + horizontal flip with probability 1/2.

    The official MAE pre-training augmentation, drawn with ``rng`` (10 tries at a crop of
    the sampled area and aspect ratio, then the centre crop of the clamped ratio, as
    torchvision does), from the original image.
    """
    w, h = im.size
    area = w * h
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    box = None
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            box = (left, top, left + cw, top + ch)
            break
    if box is None:
        in_ratio = w / h
        if in_ratio < ratio[0]:
            cw, ch = w, int(round(w / ratio[0]))
        elif in_ratio > ratio[1]:
            ch, cw = h, int(round(h * ratio[1]))
        else:
            cw, ch = w, h
        left, top = (w - cw) // 2, (h - ch) // 2
        box = (left, top, left + cw, top + ch)
    out = im.resize((size, size), Image.Resampling.BICUBIC, box=box)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return out
