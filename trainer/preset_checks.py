"""The checks every :class:`trainer.presets.Preset` passes before a run writes anything: each
field's type, finiteness and range, then the combinations (widths divisible by heads, image size
by patch size, a mask ratio that leaves a patch, ...). Each refusal names the field and the flag
or ``--set`` that fixes it.

Split out of :mod:`trainer.presets` (code moved unchanged); it reads a preset's attributes only,
so it does not import the preset module (no import circle).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from umae_eval.errors import UmaeError

METHODS = ("mae", "simmim")
AUGMENTS = ("none", "rrc-flip")
UNIF_FORMS = ("code", "paper", "released")


#: Field -> (kind, lowest, highest, lowest allowed itself?): what each field may hold. Every
#: field is checked before a run writes anything, so NaN, inf, a negative weight decay or a
#: string for a number is refused here with its name instead of deep inside torch.
_INT_FIELDS = {
    "img_size": 1, "patch_size": 1, "embed_dim": 1, "depth": 1, "num_heads": 1,
    "decoder_embed_dim": 1, "decoder_depth": 0, "decoder_num_heads": 1, "batch_size": 1,
    "epochs": 1, "warmup_epochs": 0,
}
_FLOAT_FIELDS: dict[str, tuple[float, float | None, bool]] = {
    # name: (low, high, low allowed)
    "mlp_ratio": (0.0, None, False),
    "mask_ratio": (0.0, 1.0, True),
    "blr": (0.0, None, True),
    "weight_decay": (0.0, None, True),
    "lam": (0.0, None, True),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


#: Preset fields that `umae train` also takes as a flag of their own.
_FLAGS = ("lam", "unif_form", "method", "epochs", "warmup_epochs", "batch_size", "micro_batch", "blr",
          "mask_ratio", "img_size")


def _field_error(key: str, value: Any, want: str) -> UmaeError:
    how = f"--{key.replace('_', '-')} or --set {key}=..." if key in _FLAGS else f"--set {key}=..."
    return UmaeError(f"preset field {key}={value!r}: {want} (fix {how})")


def _validate_fields(p: Any) -> None:
    """Each field alone: the right type, finite, in its range."""
    for key in ("name", "method", "augment", "unif_form"):
        if not isinstance(getattr(p, key), str):
            raise _field_error(key, getattr(p, key), "expected a name")
    for key, low in _INT_FIELDS.items():
        v = getattr(p, key)
        if not _is_int(v):
            raise _field_error(key, v, "expected a whole number")
        if v < low:
            raise _field_error(key, v, f"must be >= {low}")
    if p.micro_batch is not None and not _is_int(p.micro_batch):
        raise _field_error("micro_batch", p.micro_batch, "expected a whole number or none")
    if not isinstance(p.norm_pix_loss, bool):
        raise _field_error("norm_pix_loss", p.norm_pix_loss, "expected true or false")
    for key, (low, high, low_ok) in _FLOAT_FIELDS.items():
        v = getattr(p, key)
        if not _is_real(v) or not math.isfinite(v):
            raise _field_error(key, v, "expected a finite number")
        if v < low or (v == low and not low_ok) or (high is not None and v >= high):
            rng = f"{'>=' if low_ok else '>'} {low:g}" + (f" and < {high:g}" if high is not None else "")
            raise _field_error(key, v, f"must be {rng}")
    for key in ("betas", "mean", "std"):
        v = getattr(p, key)
        if not isinstance(v, tuple) or not all(_is_real(x) and math.isfinite(x) for x in v):
            raise _field_error(key, v, "expected finite numbers, comma-separated")


def _validate(p: Any) -> None:
    """Raise UmaeError for the first invalid or inconsistent field of ``p``."""
    _validate_fields(p)
    if p.method not in METHODS:
        raise UmaeError(f"method must be one of {METHODS}, got {p.method!r}")
    if p.augment not in AUGMENTS:
        raise UmaeError(f"augment must be one of {AUGMENTS}, got {p.augment!r}")
    if p.unif_form not in UNIF_FORMS:
        raise UmaeError(f"unif_form must be one of {UNIF_FORMS}, got {p.unif_form!r}")
    positive = ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "batch_size", "epochs")
    for key in positive:
        if int(getattr(p, key)) <= 0:
            raise UmaeError(f"{key} must be positive, got {getattr(p, key)}")
    if p.embed_dim % p.num_heads:
        raise UmaeError(f"embed_dim {p.embed_dim} is not divisible by num_heads {p.num_heads}")
    # 2-D sin-cos positions split the width into sin/cos of rows and of columns
    if p.embed_dim % 4:
        raise UmaeError(f"embed_dim {p.embed_dim} is not a multiple of 4 (2-D sin-cos positions need it)")
    if p.method == "mae" and p.decoder_embed_dim % 4:
        raise UmaeError(f"decoder_embed_dim {p.decoder_embed_dim} is not a multiple of 4 "
                        "(2-D sin-cos positions need it)")
    if p.method == "mae":
        if p.decoder_embed_dim <= 0 or p.decoder_num_heads <= 0 or p.decoder_depth < 0:
            raise UmaeError("decoder_embed_dim and decoder_num_heads must be positive")
        if p.decoder_embed_dim % p.decoder_num_heads:
            raise UmaeError(
                f"decoder_embed_dim {p.decoder_embed_dim} is not divisible by "
                f"decoder_num_heads {p.decoder_num_heads}"
            )
    if p.img_size % p.patch_size:
        raise UmaeError(f"img_size {p.img_size} is not a multiple of patch_size {p.patch_size}")
    if not 0.0 <= p.mask_ratio < 1.0:
        raise UmaeError(f"mask_ratio must satisfy 0 < mask_ratio < 1, got {p.mask_ratio}")
    if p.mask_ratio == 0:  # the loss is taken on removed patches only: 0.0 at every step
        raise UmaeError("mask_ratio 0 (--mask-ratio) removes no patch, so the reconstruction loss is 0 and nothing is "
                        "learned; use e.g. 0.75 (MAE) or 0.6 (SimMIM)")
    if int(p.num_patches * (1 - p.mask_ratio)) < 1:  # the official len_keep rule (truncation)
        raise UmaeError(f"mask_ratio {p.mask_ratio} leaves no visible patch of the {p.num_patches} "
                        f"(img_size {p.img_size}, patch_size {p.patch_size}); use a mask_ratio of at most "
                        f"{math.floor((p.num_patches - 1) / p.num_patches * 1e4) / 1e4}")
    if int(p.embed_dim * p.mlp_ratio) < 1:
        raise UmaeError(f"mlp_ratio {p.mlp_ratio} gives an MLP of no units at embed_dim {p.embed_dim}")
    if p.micro_batch is not None:
        if p.micro_batch <= 0:
            raise UmaeError(f"micro_batch must be positive, got {p.micro_batch}")
        if p.batch_size % p.micro_batch:
            raise UmaeError(f"batch_size {p.batch_size} is not a multiple of micro_batch {p.micro_batch}")
    if p.warmup_epochs < 0 or p.warmup_epochs > p.epochs:
        raise UmaeError(f"warmup_epochs must be in [0, epochs={p.epochs}], got {p.warmup_epochs}")
    if p.lam < 0:
        raise UmaeError(f"lam must be >= 0, got {p.lam}")
    if len(p.mean) != 3 or len(p.std) != 3 or min(p.std) <= 0:
        raise UmaeError(f"mean and std need 3 channels and std > 0, got mean={p.mean} std={p.std}")
    if len(p.betas) != 2 or not all(0.0 <= b < 1.0 for b in p.betas):
        raise UmaeError(f"betas must be two numbers in [0, 1), got {p.betas}")
