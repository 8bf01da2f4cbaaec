"""Named training recipes: the model shape and the optimisation schedule in one frozen record.

A :class:`Preset` is everything a pre-training run needs besides the data and the output
folder. The CIFAR-10 presets follow the recipe behind Table 1 of "How Mask Matters"
(NeurIPS 2022; the public IcarusWizard/MAE defaults), the ImageNet ones the official MAE
recipe (He et al. 2022). ``tiny-test`` exists only so that tests run in seconds.

Example
-------
>>> p = get_preset("cifar10-vit-tiny-p2")
>>> p.patch_size, p.batch_size, p.micro_batch
(2, 4096, 512)
>>> get_preset("tiny-test", lam=0.01).lam
0.01
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from umae_eval.errors import UmaeError

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_HALF = (0.5, 0.5, 0.5)

METHODS = ("mae", "simmim")
AUGMENTS = ("none", "rrc-flip")
UNIF_FORMS = ("code", "paper", "released")


@dataclass(frozen=True)
class Preset:
    """One pre-training recipe.

    Attributes
    ----------
    name : str
        The preset's name (a key of :data:`PRESETS`).
    method : {'mae', 'simmim'}
        Masked-image-modelling method; see :func:`method_defaults`.
    img_size, patch_size : int
        Input side in pixels and patch side in pixels; ``img_size % patch_size == 0``.
    embed_dim, depth, num_heads : int
        Encoder width, number of blocks, attention heads (``embed_dim % num_heads == 0``).
    mlp_ratio : float
        MLP hidden width / embed_dim, encoder and decoder.
    decoder_embed_dim, decoder_depth, decoder_num_heads : int
        MAE decoder shape (ignored by SimMIM, whose decoder is linear).
    mask_ratio : float
        Fraction rho of patches removed, ``0 <= rho < 1``.
    norm_pix_loss : bool
        Normalise each target patch by its own mean and variance (official MAE option).
    batch_size : int
        Effective (optimiser-step) batch, summed over ranks and accumulation steps.
    micro_batch : int or None
        Images per forward/backward step; gradient accumulation reaches ``batch_size``.
        None means the whole batch in one step.
    blr : float
        Base learning rate; the actual lr is ``blr * batch_size / 256``.
    betas : tuple of float
        AdamW betas.
    weight_decay : float
        AdamW weight decay.
    epochs, warmup_epochs : int
        Total epochs and linear warm-up epochs (cosine decay after).
    augment : {'none', 'rrc-flip'}
        'rrc-flip' = RandomResizedCrop(scale 0.2-1) + horizontal flip.
    mean, std : tuple of float
        Per-channel normalisation of pixels in [0, 1].
    lam : float
        Uniformity weight lambda of U-MAE (Eq. 10); 0 gives plain MAE / SimMIM.
    unif_form : {'code', 'paper', 'released'}
        Which uniformity loss (see :data:`trainer.losses.UNIF_FORM_DESCRIPTIONS`).
    """

    name: str
    method: str
    img_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    decoder_embed_dim: int
    decoder_depth: int
    decoder_num_heads: int
    mask_ratio: float
    norm_pix_loss: bool
    batch_size: int
    micro_batch: int | None
    blr: float
    betas: tuple[float, float]
    weight_decay: float
    epochs: int
    warmup_epochs: int
    augment: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    lam: float
    unif_form: str

    @property
    def num_patches(self) -> int:
        """L = (img_size / patch_size)^2."""
        return (self.img_size // self.patch_size) ** 2

    @property
    def lr(self) -> float:
        """Absolute learning rate, ``blr * batch_size / 256`` (the MAE scaling rule)."""
        return self.blr * self.batch_size / 256

    @property
    def accum_steps(self) -> int:
        """Micro-steps per optimiser step (on one process): ``batch_size // micro_batch``."""
        return 1 if self.micro_batch is None else self.batch_size // self.micro_batch

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preset:
        """Inverse of :meth:`to_dict` (unknown keys raise UmaeError); the result is validated."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UmaeError(f"unknown preset field(s) {unknown}; valid fields: {sorted(names)}")
        missing = sorted(names - set(d))
        if missing:
            raise UmaeError(f"preset dict lacks field(s) {missing}")
        kw = {k: (tuple(v) if k in ("betas", "mean", "std") else v) for k, v in d.items()}
        p = cls(**kw)
        _validate(p)
        return p


_CIFAR_P2 = Preset(
    name="cifar10-vit-tiny-p2",
    method="mae",
    img_size=32,
    patch_size=2,
    embed_dim=192,
    depth=12,
    num_heads=3,
    mlp_ratio=4.0,
    decoder_embed_dim=192,
    decoder_depth=4,
    decoder_num_heads=3,
    mask_ratio=0.75,
    norm_pix_loss=False,
    batch_size=4096,
    micro_batch=512,
    blr=1.5e-4,
    betas=(0.9, 0.95),
    weight_decay=0.05,
    epochs=2000,
    warmup_epochs=200,
    augment="none",
    mean=_HALF,
    std=_HALF,
    lam=0.0,
    unif_form="code",
)

_VIT_B = Preset(
    name="vit-base-p16",
    method="mae",
    img_size=224,
    patch_size=16,
    embed_dim=768,
    depth=12,
    num_heads=12,
    mlp_ratio=4.0,
    decoder_embed_dim=512,
    decoder_depth=8,
    decoder_num_heads=16,
    mask_ratio=0.75,
    norm_pix_loss=True,
    batch_size=4096,
    micro_batch=None,
    blr=1.5e-4,
    betas=(0.9, 0.95),
    weight_decay=0.05,
    epochs=800,
    warmup_epochs=40,
    augment="rrc-flip",
    mean=_IMAGENET_MEAN,
    std=_IMAGENET_STD,
    lam=0.0,
    unif_form="code",
)

#: Every named recipe. ``cifar10-vit-tiny-p2`` is the Table 1 CIFAR-10 recipe;
#: ``-p4`` the same at patch 4 (16x cheaper attention, 4x fewer tokens).
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _CIFAR_P2,
        dataclasses.replace(_CIFAR_P2, name="cifar10-vit-tiny-p4", patch_size=4),
        _VIT_B,
        dataclasses.replace(_VIT_B, name="vit-large-p16", embed_dim=1024, depth=24, num_heads=16),
        dataclasses.replace(
            _CIFAR_P2,
            name="tiny-test",
            patch_size=8,
            embed_dim=32,
            depth=2,
            num_heads=2,
            decoder_embed_dim=32,
            decoder_depth=1,
            decoder_num_heads=2,
            batch_size=16,
            micro_batch=8,
            epochs=2,
            warmup_epochs=1,
        ),
    )
}

#: Per-method overrides applied by :func:`method_defaults` (SimMIM: mask ratio 0.6, Table 2).
_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "mae": {},
    "simmim": {"mask_ratio": 0.6},
}


def method_defaults(method: str) -> dict[str, Any]:
    """Overrides a method implies on top of a preset, unless the user gives them explicitly.

    The presets are MAE recipes. For SimMIM (``--method simmim``) the caller applies
    ``{'method': 'simmim', 'mask_ratio': 0.6}`` (SimMIM's default, used by Table 2's
    U-SimMIM), then the user's own overrides on top::

        get_preset(name, **{**method_defaults("simmim"), **user_overrides})

    Parameters
    ----------
    method : {'mae', 'simmim'}

    Returns
    -------
    dict
        Field overrides, always including ``method``.
    """
    if method not in _METHOD_DEFAULTS:
        raise UmaeError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    return {"method": method, **_METHOD_DEFAULTS[method]}


def get_preset(name: str, **overrides: Any) -> Preset:
    """Look up a preset by name and apply field overrides.

    Overrides whose value is None are ignored (so CLI options left unset pass straight
    through). For SimMIM, pass :func:`method_defaults` ('simmim') first, see there.

    Parameters
    ----------
    name : str
        A key of :data:`PRESETS`.
    **overrides
        Field values replacing the preset's (e.g. ``lam=0.01, mask_ratio=0.6``).

    Returns
    -------
    Preset
        Validated: embed_dim % num_heads == 0, decoder_embed_dim % decoder_num_heads == 0,
        img_size % patch_size == 0, 0 <= mask_ratio < 1, batch_size % micro_batch == 0,
        method/augment/unif_form among their choices.

    Raises
    ------
    UmaeError
        Unknown name (lists the valid names), unknown field, or an invalid combination.
    """
    if name not in PRESETS:
        raise UmaeError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(Preset)}
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - fields)
    if unknown:
        raise UmaeError(f"unknown preset field(s) {unknown}; valid fields: {sorted(fields - {'name'})}")
    for key in ("betas", "mean", "std"):
        if key in given:
            try:
                given[key] = tuple(float(v) for v in given[key])
            except (TypeError, ValueError):
                raise _field_error(key, given[key], "expected numbers, comma-separated") from None
    preset = dataclasses.replace(PRESETS[name], **given)
    _validate(preset)
    return preset


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


def _validate_fields(p: Preset) -> None:
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


def _validate(p: Preset) -> None:
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
