"""Recognise which tool wrote a checkpoint object and rename it to one vocabulary.

Each layout family lives in its own module with a ``detect(obj)`` and a ``parse``; this module
asks them in a fixed order (the official family first: its keys are the most specific) and
refuses anything none of them claims, listing the keys it saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from umae_eval.checkpoints import hf, icarus, lightning, mmpretrain, official
from umae_eval.checkpoints.info import ParsedCheckpoint
from umae_eval.errors import UmaeError


def _keys_preview(obj: Any, n: int = 10) -> str:
    if not isinstance(obj, Mapping):
        return f"a {type(obj).__name__}, not a dict"
    keys = [str(k) for k in obj]
    shown = ", ".join(keys[:n])
    more = f", ... ({len(keys)} keys)" if len(keys) > n else ""
    return f"keys: {shown}{more}" if keys else "an empty dict"


def detect_layout(obj: Any) -> str:
    """Name the layout of a loaded checkpoint object.

    Parameters
    ----------
    obj : Any
        What ``torch.load`` (or ``safetensors.torch.load_file``) returned.

    Returns
    -------
    str
        ``'umae'`` (has ``'umae'`` metadata and ``'model'``), ``'u-mae'`` (``'model'`` with the
        online head ``fc.*``), ``'official-full'`` (``'model'`` with decoder keys),
        ``'official-encoder'`` (``'model'`` with encoder keys only), ``'timm'`` (a bare ViT
        state dict), ``'hf-vitmae'`` (Hugging Face ViTMAE names), ``'mmpretrain'``
        (``backbone.layers.*`` / ``neck.*``), ``'lightly'`` (``backbone.vit.*``), ``'solo-learn'``
        (``backbone.*`` timm names) or ``'icarus-mae'`` (IcarusWizard/MAE's ``encoder.*``).

    Raises
    ------
    UmaeError
        If ``obj`` is none of these; the message lists the first keys seen.
    """
    layout = official.detect(obj)
    if layout is not None:
        return layout
    if hf.detect(obj):
        return "hf-vitmae"
    if mmpretrain.detect(obj):
        return "mmpretrain"
    family = lightning.detect(obj)
    if family is not None:
        return family
    if icarus.detect(obj):
        return "icarus-mae"
    where = _keys_preview(obj)
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        where = f"'model' {_keys_preview(obj['model'])}"
    raise UmaeError(
        f"unknown checkpoint layout ({where}); expected an official MAE, U-MAE or umae file "
        "({'model': ViT state dict}), a bare timm ViT state dict with cls_token, pos_embed "
        "and patch_embed.proj.weight, a Hugging Face ViTMAE file or folder, or an mmpretrain, "
        "solo-learn, lightly or IcarusWizard/MAE checkpoint (README: Checkpoints)")


def parse_object(obj: Any, layout: str, source: str,
                 config: Mapping[str, Any] | None = None) -> ParsedCheckpoint:
    """Split an object of a known ``layout`` into canonical encoder / decoder tensors.

    ``config`` is a Hugging Face ``config.json`` found beside the weights (used by
    ``'hf-vitmae'`` only); ``source`` is the file (solo-learn's ``args.json`` sits beside it).
    """
    if layout in official.OFFICIAL_LAYOUTS:
        return official.parse(obj, layout)
    if layout == "hf-vitmae":
        return hf.parse(obj, config, source)
    if layout == "mmpretrain":
        return mmpretrain.parse(obj, source)
    if layout in ("lightly", "solo-learn"):
        return lightning.parse(obj, layout, Path(source))
    if layout == "icarus-mae":
        return icarus.parse(obj, source)
    raise UmaeError(f"{source}: no reader for layout {layout!r}")  # pragma: no cover - programming error
