"""OpenMMLab mmpretrain (formerly mmselfsup) MAE checkpoints (layout ``mmpretrain``).

mmengine saves ``{'meta': {..., 'cfg': <config text>}, 'state_dict': ..., 'optimizer', ...}``
(published files keep ``meta`` and ``state_dict``). The encoder ``MAEViT`` sits under
``backbone.``, the decoder ``MAEPretrainDecoder`` under ``neck.``, with mmpretrain's names:

- ``patch_embed.projection`` (mmcv's PatchEmbed) -> timm ``patch_embed.proj``;
- ``layers.{i}.ln1 / attn.qkv / attn.proj / ln2 / ffn.layers.0.0 / ffn.layers.1`` -> timm
  ``blocks.{i}.norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2`` (its qkv packs q, k, v
  in timm's order);
- the final norm ``ln1`` -> ``norm``; ``ln2`` (average pooling only) -> ``fc_norm``;
- ``neck.decoder_blocks`` likewise, ``neck.ln1`` -> ``decoder_norm``; the rest of the neck
  (``mask_token``, ``decoder_embed``, ``decoder_pos_embed``, ``decoder_pred``) keeps its names.

LayerNorm eps is 1e-6 (mmpretrain's default for ViTs). Heads are not in the weights: they come
from the ``arch`` in the config text when it names one of mmpretrain's ViTs of that width, and
the decoder's from ``decoder_num_heads=``; the pixel mean/std from the data preprocessor (0-255
scale).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from umae_eval.checkpoints.info import ParsedCheckpoint
from umae_eval.errors import UmaeError

_BLOCK = {"ln1": "norm1", "attn.qkv": "attn.qkv", "attn.proj": "attn.proj", "ln2": "norm2",
          "ffn.layers.0.0": "mlp.fc1", "ffn.layers.1": "mlp.fc2"}
_LAYER = re.compile(r"^(layers|decoder_blocks)\.(\d+)\.(.+)\.(weight|bias)$")
#: mmpretrain's ViT arch zoo: name -> (width, heads).
_ARCHS = {"s": (768, 8), "small": (768, 8), "b": (768, 12), "base": (768, 12),
          "l": (1024, 16), "large": (1024, 16), "h": (1280, 16), "huge": (1280, 16),
          "deit-t": (192, 3), "deit-tiny": (192, 3), "deit-s": (384, 6), "deit-small": (384, 6),
          "deit-b": (768, 12), "deit-base": (768, 12)}
_DROPPED = ("head.", "data_preprocessor.", "target_generator.")


def _state(obj: Any) -> Mapping[str, Any] | None:
    inner = obj.get("state_dict") if isinstance(obj, Mapping) else None
    return inner if isinstance(inner, Mapping) else (obj if isinstance(obj, Mapping) else None)


def detect(obj: Any) -> bool:
    """True for mmpretrain's ``backbone.patch_embed.projection`` + ``backbone.layers.0.ln1``."""
    state = _state(obj)
    return (state is not None and "backbone.patch_embed.projection.weight" in state
            and "backbone.layers.0.ln1.weight" in state)


def _rename_layer(key: str, group: str, source: str) -> str:
    m = _LAYER.match(key)
    if m is None:
        raise UmaeError(f"{source}: unexpected key '{group}.{key}' for an mmpretrain MAE "
                        "(layer scale and other variants are not supported)")
    kind, i, module, leaf = m.groups()
    if module not in _BLOCK:
        raise UmaeError(f"{source}: unexpected module '{module}' in {group}.{kind}.{i} (layer "
                        "scale and other variants are not supported)")
    return f"{'blocks' if kind == 'layers' else 'decoder_blocks'}.{i}.{_BLOCK[module]}.{leaf}"


def _dict_body(cfg: str, name: str) -> str:
    """The text inside ``name=dict(...)`` (parentheses balanced), or '' when absent."""
    m = re.search(rf"\b{name}\s*=\s*dict\(", cfg)
    if m is None:
        return ""
    depth, i = 1, m.end()
    while i < len(cfg) and depth:
        depth += {"(": 1, ")": -1}.get(cfg[i], 0)
        i += 1
    return cfg[m.end(): i - 1]


def _cfg_hints(cfg: str, dim: int | None) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Heads, decoder heads, norm_pix and pixel mean/std from mmengine's config text."""
    hints: dict[str, Any] = {}
    decoder_hints: dict[str, Any] = {}
    norm = None
    backbone = _dict_body(cfg, "backbone")
    arch = re.search(r"arch\s*=\s*'([\w-]+)'", backbone)
    if arch and arch.group(1) in _ARCHS and _ARCHS[arch.group(1)][0] == dim:
        hints["num_heads"] = _ARCHS[arch.group(1)][1]
    heads = re.search(r"\bnum_heads\s*=\s*(\d+)", _dict_body(backbone, "arch"))
    if heads:
        hints["num_heads"] = int(heads.group(1))
    neck = _dict_body(cfg, "neck")
    heads = re.search(r"decoder_num_heads\s*=\s*(\d+)", neck)
    if heads:
        decoder_hints["decoder_num_heads"] = int(heads.group(1))
    pix = re.search(r"norm_pix\s*=\s*(True|False)", _dict_body(cfg, "head"))
    if pix:
        decoder_hints["norm_pix_loss"] = pix.group(1) == "True"
    pre = _dict_body(cfg, "data_preprocessor")
    mean = re.search(r"mean\s*=\s*\[([^\]]+)\]", pre)
    std = re.search(r"std\s*=\s*\[([^\]]+)\]", pre)
    try:
        if mean and std:
            m = tuple(float(v) / 255.0 for v in mean.group(1).split(","))
            sd = tuple(float(v) / 255.0 for v in std.group(1).split(","))
            norm = (m, sd) if len(m) == 3 and len(sd) == 3 else None
    except ValueError:
        norm = None
    return hints, decoder_hints, norm


def parse(obj: Mapping[str, Any], source: str) -> ParsedCheckpoint:
    """Rename an mmpretrain MAE checkpoint to timm (encoder) and official MAE (decoder) names."""
    state = _state(obj)
    assert state is not None
    encoder: dict[str, torch.Tensor] = {}
    decoder: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            name = key[len("backbone."):]
            if name in ("cls_token", "pos_embed"):
                encoder[name] = value
            elif name.startswith("patch_embed.projection."):
                encoder["patch_embed.proj." + name.rsplit(".", 1)[1]] = value
            elif name.startswith("ln1."):
                encoder["norm." + name[4:]] = value
            elif name.startswith("ln2."):
                encoder["fc_norm." + name[4:]] = value
            else:
                encoder[_rename_layer(name, "backbone", source)] = value
        elif key.startswith("neck."):
            name = key[len("neck."):]
            if name in ("mask_token", "decoder_pos_embed") or name.startswith(("decoder_embed.", "decoder_pred.")):
                decoder[name] = value
            elif name.startswith("ln1."):
                decoder["decoder_norm." + name[4:]] = value
            else:
                decoder[_rename_layer(name, "neck", source)] = value
        elif not key.startswith(_DROPPED):
            raise UmaeError(f"{source}: unexpected key '{key}' for an mmpretrain MAE checkpoint")
    meta = obj.get("meta") if isinstance(obj.get("meta"), Mapping) else {}
    cfg = meta.get("cfg") if isinstance(meta.get("cfg"), str) else ""
    dim = int(encoder["cls_token"].shape[-1]) if "cls_token" in encoder else None
    hints, decoder_hints, norm = _cfg_hints(cfg, dim)
    hints["norm_eps"] = 1e-6
    note = "mmpretrain MAEViT" + (" + MAEPretrainDecoder" if decoder else "")
    note += ", heads from the config's arch" if "num_heads" in hints else \
        ", heads D/64 (no arch in meta['cfg']; mmpretrain's 'small' ViT has 8: pass --num-heads 8)"
    metadata = {k: v for k, v in meta.items() if k != "cfg" and isinstance(v, (str, int, float, bool))}
    backbone = _dict_body(cfg, "backbone")
    for key in ("img_size", "patch_size"):  # compared with the weights (checkpoint_checks)
        stated = re.search(rf"\b{key}\s*=\s*(\d+)\b", backbone)
        if stated:
            metadata[f"cfg_backbone_{key}"] = int(stated.group(1))
    return ParsedCheckpoint(layout="mmpretrain", encoder=encoder, decoder=decoder, hints=hints,
                            decoder_hints=decoder_hints, metadata=metadata, note=note, norm=norm)
