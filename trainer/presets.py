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
from dataclasses import dataclass
from typing import Any

from trainer.preset_checks import (  # noqa: F401  (AUGMENTS, UNIF_FORMS re-exported)
    AUGMENTS,
    METHODS,
    UNIF_FORMS,
    _field_error,
    _validate,
)
from umae_eval.errors import UmaeError

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_HALF = (0.5, 0.5, 0.5)


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
