"""Sanity checks of a loaded encoder that the loader itself does not make.

- :func:`nonfinite_tensors`: weights holding NaN or inf (a diverged run saved anyway, a corrupted
  file) would otherwise surface much later as "features contain NaN", naming no file.
- :func:`metadata_conflicts`: a file whose own metadata (umae's ``'umae'`` dict, MAE's ``args``)
  disagrees with the shapes of its weights was edited or mislabelled; the weights decide the
  model, but the user should hear about it.

Both return plain lists of strings; the caller decides whether to refuse or to warn.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

#: Widths of the official MAE model names (``mae_vit_base_patch16``).
_WIDTHS = {"tiny": 192, "small": 384, "base": 768, "large": 1024, "huge": 1280}
_OFFICIAL_NAME = re.compile(r"vit_(tiny|small|base|large|huge)_patch(\d+)")
_ARCH_KEYS = ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio")
#: A Hugging Face config.json's fields -> the architecture the weights give.
_HF_KEYS = {"patch_size": "patch_size", "image_size": "img_size", "num_hidden_layers": "depth"}


def nonfinite_tensors(model: nn.Module) -> list[str]:
    """Names of the parameters and buffers of ``model`` that hold a NaN or an infinity."""
    bad = []
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad.append(name)
    return bad


def _same(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return a == b


def metadata_conflicts(layout: str, metadata: Mapping[str, Any], arch: Any) -> list[str]:
    """Where a checkpoint's metadata contradicts its weights (or itself): ``'key: a vs b'`` each.

    Parameters
    ----------
    layout : str
        ``EncoderInfo.layout`` ('umae', 'official-*', 'u-mae', ...).
    metadata : Mapping
        ``EncoderInfo.metadata``: the umae dict, or the official ``args`` as a dict.
    arch : ViTArch
        The architecture inferred from the weights.
    """
    out: list[str] = []
    if layout == "umae":
        fields = metadata.get("preset_fields") if isinstance(metadata.get("preset_fields"), Mapping) else {}
        for key in _ARCH_KEYS:
            if key in metadata and hasattr(arch, key) and not _same(metadata[key], getattr(arch, key)):
                out.append(f"{key}: metadata {metadata[key]!r}, weights {getattr(arch, key)!r}")
            if key in metadata and key in fields and not _same(metadata[key], fields[key]):
                out.append(f"{key}: metadata {metadata[key]!r}, preset_fields {fields[key]!r}")
        return out
    if layout == "hf-vitmae":  # metadata is config.json
        for key, field in _HF_KEYS.items():
            if key in metadata and not _same(metadata[key], getattr(arch, field)):
                out.append(f"{field}: config.json {key} {metadata[key]!r}, weights {getattr(arch, field)!r}")
        return out
    if layout == "solo-learn":  # metadata['args'] is the args.json solo-learn wrote beside the file
        args = metadata.get("args") if isinstance(metadata.get("args"), Mapping) else {}
        backbone = args.get("backbone") if isinstance(args.get("backbone"), Mapping) else {}
        kwargs = backbone.get("kwargs") if isinstance(backbone.get("kwargs"), Mapping) else {}
        for key in ("img_size", "patch_size"):
            if key in kwargs and not _same(kwargs[key], getattr(arch, key)):
                out.append(f"{key}: args.json backbone.kwargs.{key} {kwargs[key]!r}, weights {getattr(arch, key)!r}")
        return out
    if layout == "mmpretrain":  # the backbone's sizes read from meta['cfg'] (mmpretrain.parse)
        for key in ("img_size", "patch_size"):
            stated = metadata.get(f"cfg_backbone_{key}")
            if stated is not None and not _same(stated, getattr(arch, key)):
                out.append(f"{key}: meta['cfg'] backbone {key}={stated!r}, weights {getattr(arch, key)!r}")
        return out
    if "input_size" in metadata and not _same(metadata["input_size"], arch.img_size):
        out.append(f"img_size: args.input_size {metadata['input_size']!r}, weights {arch.img_size!r}")
    match = _OFFICIAL_NAME.search(str(metadata.get("model", "")))
    if match:
        width, patch = _WIDTHS[match.group(1)], int(match.group(2))
        if width != arch.embed_dim:
            out.append(f"embed_dim: args.model {metadata['model']!r} ({width}), weights {arch.embed_dim}")
        if patch != arch.patch_size:
            out.append(f"patch_size: args.model {metadata['model']!r} ({patch}), weights {arch.patch_size}")
    return out
