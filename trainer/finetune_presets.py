"""Named fine-tuning recipes (``umae finetune --preset``) and ``--set FIELD=VALUE`` parsing.

Sources of the values:

- ``vit-base-in1k`` / ``vit-large-in1k``: the official recipe, facebookresearch/mae
  ``FINETUNE.md`` (the README values reproduce the published 83.6 / 85.9; mae issue 130) on top of
  ``main_finetune.py``'s defaults (5 warm-up epochs, min lr 1e-6, label smoothing 0.1,
  RandAugment ``rand-m9-mstd0.5-inc1``, RandomErasing 0.25 in 'pixel' mode, mixup prob 1.0,
  switch prob 0.5, AdamW betas (0.9, 0.999), global-pool head, no gradient clipping).
- ``cifar10-vit-tiny``: IcarusWizard/MAE ``train_classifier.py`` (commit 11c21fc), the
  classifier behind Table 1's CIFAR-10 fine-tuning numbers: batch 128, blr 1e-3 (lr 5e-4),
  AdamW betas (0.9, 0.999), wd 0.05 on every parameter, 100 epochs, 5 warm-up epochs then cosine,
  no augmentation at all (ToTensor + Normalize(0.5, 0.5)), plain cross-entropy, [CLS] token after
  the final LayerNorm into a Linear head, no layer decay, no drop path. Differences here: the
  schedule is per step (the script steps it per epoch), biases/norms/tokens get no weight decay
  (MAE's rule), and the last epoch is reported (the script keeps the best test accuracy).
- ``cpu-demo``: MAE's recipe shrunk for the 96 x 6 demo encoders at 32 px on a CPU: batch 128,
  4 epochs (1 warm-up), blr 1e-3, layer decay 0.75 (6 blocks), drop path 0.1, mixup/cutmix/
  smoothing/RandAugment/RandomErasing as MAE, RandomResizedCrop scale (0.2, 1) (MAE's
  pre-training crop: 0.08 is harsh at 32 px). 4 epochs of full CIFAR-10 are 200,000 images:
  about 40 minutes at 80 img/s. Measured here: the model's training step alone ran 51 img/s on
  one thread at load 6 (one demo epoch in about a minute), 13 img/s at load 15 on the shared
  2-core machine, where one demo epoch took 192 s.

Example
-------
>>> get_finetune_preset("vit-base-in1k").layer_decay
0.65
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from umae_eval.errors import UmaeError

POOLS = ("avg", "cls")
#: Preset fields a resumed run may change (the schedule is recomputed from them).
SCHEDULE_FIELDS = ("epochs", "warmup_epochs", "blr", "min_lr")
CROPS = ("rrc", "none")


@dataclass(frozen=True)
class FinetunePreset:
    """One fine-tuning recipe.

    Attributes
    ----------
    name : str
    epochs, warmup_epochs : int
        Total and linear warm-up epochs (per-step warm-up, then half-cycle cosine to ``min_lr``).
    batch_size : int
        Effective batch per optimiser step (all processes and ``accum_iter`` micro-steps).
    accum_iter : int
        Micro-steps whose gradients accumulate into one optimiser step (MAE's ``--accum_iter``).
    blr, min_lr : float
        ``lr = blr * batch_size / 256``; floor of the cosine.
    layer_decay : float
        Layer-wise lr decay (:mod:`trainer.lrd`); 1.0 = none.
    weight_decay : float
        AdamW decay of matrices (biases, norms, tokens: 0).
    betas : tuple of float
        AdamW betas.
    drop_path : float
        Stochastic depth rate of the last block (linear from 0, timm's rule).
    mixup, cutmix : float
        Beta(alpha, alpha) parameters of timm's ``Mixup`` (0 = off).
    mixup_prob, switch_prob : float
        Probability to mix a batch; probability of cutmix when both are on.
    smoothing : float
        Label smoothing (in the soft targets with mixup, else in the cross-entropy).
    rand_augment : str
        timm RandAugment spec (``'rand-m9-mstd0.5-inc1'``) or ``'none'``.
    reprob : float
        RandomErasing probability (timm, 'pixel' mode, one box).
    crop : {'rrc', 'none'}
        RandomResizedCrop (bicubic) or none; ``crop_scale`` its area range.
    crop_scale : tuple of float
    hflip : float
        Horizontal-flip probability.
    pool : {'avg', 'cls'}
        'avg': mean of patch tokens -> fc_norm -> head (MAE's global pool; the final norm is
        dropped); 'cls': [CLS] after the final norm -> head.
    clip_grad : float
        Max gradient norm (0 = no clipping, MAE's default).
    source : str
        Where the values come from.
    """

    name: str
    epochs: int
    warmup_epochs: int
    batch_size: int
    blr: float
    layer_decay: float
    weight_decay: float = 0.05
    accum_iter: int = 1
    min_lr: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    drop_path: float = 0.1
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    switch_prob: float = 0.5
    smoothing: float = 0.1
    rand_augment: str = "rand-m9-mstd0.5-inc1"
    reprob: float = 0.25
    crop: str = "rrc"
    crop_scale: tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    pool: str = "avg"
    clip_grad: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        where = f"fine-tune preset {self.name!r}"
        if self.epochs < 1 or not 0 <= self.warmup_epochs <= self.epochs:
            raise UmaeError(f"{where}: need epochs >= 1 and 0 <= warmup_epochs <= epochs "
                            f"(got {self.epochs}, {self.warmup_epochs})")
        if self.batch_size < 1 or self.accum_iter < 1 or self.batch_size % self.accum_iter:
            raise UmaeError(f"{where}: --batch-size {self.batch_size} must be a positive multiple of "
                            f"--accum-iter {self.accum_iter}")
        if not 0 < self.layer_decay <= 1:
            raise UmaeError(f"{where}: layer_decay must be in (0, 1], got {self.layer_decay}")
        for name in ("drop_path", "mixup_prob", "switch_prob", "smoothing", "reprob", "hflip"):
            if not 0 <= getattr(self, name) <= 1:
                raise UmaeError(f"{where}: {name} must be in [0, 1], got {getattr(self, name)}")
        if self.pool not in POOLS:
            raise UmaeError(f"{where}: pool {self.pool!r}: choose one of {', '.join(POOLS)}")
        if self.crop not in CROPS:
            raise UmaeError(f"{where}: crop {self.crop!r}: choose one of {', '.join(CROPS)}")
        if min(self.blr, self.min_lr, self.weight_decay, self.mixup, self.cutmix, self.clip_grad) < 0:
            raise UmaeError(f"{where}: blr, min_lr, weight_decay, mixup, cutmix, clip_grad must be >= 0")

    @property
    def mixing(self) -> bool:
        """True when timm's Mixup runs (mixup or cutmix on)."""
        return (self.mixup > 0 or self.cutmix > 0) and self.mixup_prob > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}


_MAE = "facebookresearch/mae FINETUNE.md + main_finetune.py defaults"
_VIT_B = FinetunePreset(name="vit-base-in1k", epochs=100, warmup_epochs=5, batch_size=1024, blr=5e-4,
                        layer_decay=0.65, drop_path=0.1, source=_MAE)

FINETUNE_PRESETS: dict[str, FinetunePreset] = {p.name: p for p in (
    _VIT_B,
    dataclasses.replace(_VIT_B, name="vit-large-in1k", epochs=50, blr=1e-3, layer_decay=0.75, drop_path=0.2),
    FinetunePreset(name="cifar10-vit-tiny", epochs=100, warmup_epochs=5, batch_size=128, blr=1e-3,
                   layer_decay=1.0, min_lr=0.0, drop_path=0.0, mixup=0.0, cutmix=0.0, smoothing=0.0,
                   rand_augment="none", reprob=0.0, crop="none", hflip=0.0, pool="cls",
                   source="IcarusWizard/MAE train_classifier.py (Table 1 CIFAR-10 fine-tuning)"),
    FinetunePreset(name="cpu-demo", epochs=4, warmup_epochs=1, batch_size=128, blr=1e-3, layer_decay=0.75,
                   crop_scale=(0.2, 1.0),
                   source="MAE's recipe shrunk for the 96x6 demo encoders at 32 px on a CPU"),
)}


def get_finetune_preset(name: str, **overrides: Any) -> FinetunePreset:
    """A fine-tuning preset by name with field overrides (None values are ignored).

    Raises
    ------
    UmaeError
        Unknown name (lists the valid ones) or an invalid combination of values.
    """
    if name not in FINETUNE_PRESETS:
        raise UmaeError(f"--preset {name!r} is not a fine-tuning preset; choose one of "
                        f"{', '.join(FINETUNE_PRESETS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in given and "warmup_epochs" not in given:  # keep the preset's warm-up share
        base = FINETUNE_PRESETS[name]
        given["warmup_epochs"] = min(int(round(base.warmup_epochs / base.epochs * given["epochs"])),
                                     given["epochs"])
    return dataclasses.replace(FINETUNE_PRESETS[name], **given)


def parse_finetune_set(preset: str, items: list[str]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` items as overrides of a fine-tuning preset, parsed by field type.

    bool fields take true/false; tuples comma-separated numbers; strings as given.
    """
    current = get_finetune_preset(preset).to_dict()
    out: dict[str, Any] = {}
    for item in items:
        field, sep, text = (s.strip() for s in item.partition("="))
        if not sep or not field:
            raise UmaeError(f"--set {item!r}: write FIELD=VALUE, e.g. --set drop_path=0.2")
        if field in ("name", "source") or field not in current:
            fields = ", ".join(k for k in current if k not in ("name", "source"))
            raise UmaeError(f"--set {field}: not a fine-tuning preset field; fields: {fields}")
        old = current[field]
        try:
            if isinstance(old, int) and not isinstance(old, bool):
                value: Any = int(text)
            elif isinstance(old, float):
                value = float(text)
            elif isinstance(old, list):
                value = tuple(float(v) for v in text.split(","))
            else:
                value = text
        except ValueError:
            kind = "comma-separated numbers" if isinstance(old, list) else type(old).__name__
            raise UmaeError(f"--set {field}={text}: expected {kind} (the preset has {old!r})") from None
        out[field] = value
    return out
