"""A checkpoint's training recipe, read from the metadata its loader exposes.

umae checkpoints carry a ``umae`` dict (method, lam, unif_form, epoch, preset, mask_ratio, ...);
MAE / U-MAE training files carry ``args`` (epochs, mask_ratio, and U-MAE's ``lamb``); timm files
and bare encoders carry nothing, and the recipe says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: The recipe's fields, in table order, with the words shown as column headers.
RECIPE_COLUMNS: dict[str, str] = {
    "method": "method",
    "lam": "λ (uniformity weight)",
    "unif_form": "uniformity form",
    "epochs": "epochs",
    "preset": "preset",
    "mask_ratio": "training mask ratio",
}


@dataclass(frozen=True)
class Recipe:
    """How a checkpoint was trained, as far as its file says (None = not recorded).

    ``method`` is the display name of the objective (``MAE``, ``U-MAE``, ``SimMIM``,
    ``U-SimMIM``, ``untrained``), ``base_method`` the family (``mae`` / ``simmim``) and ``source``
    where the values came from (``umae metadata``, ``training args``, ``none``).
    """

    method: str | None = None
    base_method: str | None = None
    lam: float | None = None
    unif_form: str | None = None
    epochs: int | None = None
    preset: str | None = None
    mask_ratio: float | None = None
    source: str = "none"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        """A short name from the recipe, e.g. ``'U-MAE λ=0.01 e200'``; '' when nothing is known."""
        if self.method is None:
            return ""
        parts = [self.method]
        if self.lam:
            parts.append(f"λ={self.lam:g}")
        if self.epochs is not None and self.method != "untrained":
            parts.append(f"e{self.epochs}")
        return " ".join(parts)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _method_name(base: str, lam: float | None) -> str:
    b = base.lower()
    uniform = b.startswith("u-") or b.startswith("u_")
    b = b[2:] if uniform else b
    base_name = {"mae": "MAE", "simmim": "SimMIM"}.get(b, base)
    return f"U-{base_name}" if (lam or uniform) else base_name


def recipe_of(layout: str, metadata: dict[str, Any] | None) -> Recipe:
    """The recipe of a checkpoint from its loader's ``layout`` and ``metadata``.

    >>> recipe_of("umae", {"method": "mae", "lam": 0.01, "unif_form": "code", "epoch": 200,
    ...                    "preset": "cifar10-vit-tiny-p2", "mask_ratio": 0.75}).label()
    'U-MAE λ=0.01 e200'
    """
    meta = dict(metadata or {})
    if layout == "random-init":
        return Recipe(method="untrained", epochs=0, source="random init")
    if layout == "umae":
        fields = dict(meta.get("preset_fields") or {})
        base = str(meta.get("method") or fields.get("method") or "mae").lower()
        base = base[2:] if base.startswith(("u-", "u_")) else base
        lam = _num(meta.get("lam", fields.get("lam")))
        epoch = _num(meta.get("epoch"))
        ratio = _num(meta.get("mask_ratio", fields.get("mask_ratio")))
        return Recipe(method=_method_name(base, lam), base_method=base, lam=lam,
                      # a form means nothing without the term (λ = 0: plain MAE / SimMIM)
                      unif_form=str(meta["unif_form"]) if meta.get("unif_form") and lam else None,
                      epochs=int(epoch) if epoch is not None else None,
                      preset=str(meta["preset"]) if meta.get("preset") else None,
                      mask_ratio=ratio, source="umae metadata")
    if meta and layout in ("official-full", "u-mae", "official-encoder"):
        # MAE / U-MAE main_pretrain.py args; U-MAE names its weight `lamb`
        lam = _num(meta.get("lamb", meta.get("lam")))
        if lam is None:
            lam = 0.01 if layout == "u-mae" else 0.0
        epochs = _num(meta.get("epochs"))
        return Recipe(method=_method_name("mae", lam), base_method="mae", lam=lam,
                      unif_form="code" if lam else None,
                      epochs=int(epochs) if epochs is not None else None,
                      preset=str(meta["model"]) if meta.get("model") else None,
                      mask_ratio=_num(meta.get("mask_ratio")), source="training args")
    if layout == "u-mae":
        return Recipe(method="U-MAE", base_method="mae", source="layout")
    return Recipe()
