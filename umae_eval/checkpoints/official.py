"""The layouts that already use timm / official MAE names: official, U-MAE, umae, timm.

- ``official-encoder``: ``{'model': encoder}`` (``mae_pretrain_vit_*.pth``; also official
  fine-tuned files, whose ``head.*`` is dropped).
- ``official-full``: ``{'model': encoder + decoder}`` (visualize files; ``main_pretrain.py``
  checkpoints with ``optimizer``/``scaler``/``epoch``/``args``).
- ``u-mae``: U-MAE's ``main_pretrain.py``: the official layout plus ``fc_norm.*`` (kept) and the
  online head ``fc.*`` (dropped), with ``args`` a pickled ``argparse.Namespace``.
- ``timm``: a bare state dict (``.pth``, ``.bin`` or ``.safetensors``); ``head.*`` dropped.
- ``umae``: umae's trainer: ``{'model': encoder + decoder, 'umae': metadata, ...}``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import Any

import torch

from umae_eval.checkpoints.files import json_safe
from umae_eval.checkpoints.info import ParsedCheckpoint

#: Key prefixes that belong to MAE's decoder (official, U-MAE and umae checkpoints).
DECODER_PREFIXES = ("mask_token", "decoder_embed.", "decoder_pos_embed", "decoder_blocks.",
                    "decoder_norm.", "decoder_pred.")
#: Key prefixes of classifier heads: timm/fine-tuned ``head.*``, U-MAE's online head ``fc.*``.
HEAD_PREFIXES = ("head.", "fc.")
#: The official model names of ``main_pretrain.py --model`` and their decoder heads.
_OFFICIAL_DECODER_HEADS = re.compile(r"^mae_vit_(base|large|huge)_patch\d+")

OFFICIAL_LAYOUTS = ("official-encoder", "official-full", "u-mae", "timm", "umae")


def is_vit_state_dict(obj: Any) -> bool:
    """A mapping with timm's ``cls_token``, ``pos_embed`` and ``patch_embed.proj.weight``."""
    return (isinstance(obj, Mapping) and "cls_token" in obj and "pos_embed" in obj
            and "patch_embed.proj.weight" in obj)


def strip_module_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop DDP's ``module.`` prefix when every key has it."""
    keys = [k for k in state if isinstance(k, str)]
    if keys and len(keys) == len(state) and all(k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def encoder_state_dict(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The encoder's tensors of an MAE-family state dict.

    Drops the decoder (``mask_token``, ``decoder_*``), classifier heads (``head.*``, U-MAE's
    ``fc.*``) and DDP's ``module.`` prefix; keeps ``fc_norm.*``.

    Parameters
    ----------
    state : Mapping[str, Tensor]
        A full state dict (e.g. ``ckpt['model']``).

    Returns
    -------
    dict[str, Tensor]
        The same tensors (not copies), encoder keys only, in the original order.
    """
    state = strip_module_prefix(state)
    return {k: v for k, v in state.items()
            if not k.startswith(DECODER_PREFIXES) and not k.startswith(HEAD_PREFIXES)}


def decoder_state_dict(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The MAE decoder's tensors (official names) of a full state dict; empty when none."""
    state = strip_module_prefix(state)
    return {k: v for k, v in state.items() if k.startswith(DECODER_PREFIXES)}


def detect(obj: Any) -> str | None:
    """The official-family layout of ``obj``, or None when it is none of them."""
    if not isinstance(obj, Mapping):
        return None
    model = obj.get("model")
    if isinstance(model, Mapping):
        model = strip_module_prefix(model)
        if is_vit_state_dict(model):
            if isinstance(obj.get("umae"), Mapping):
                return "umae"
            if "fc.weight" in model:
                return "u-mae"
            if any(k.startswith(DECODER_PREFIXES) for k in model):
                return "official-full"
            return "official-encoder"
    if is_vit_state_dict(strip_module_prefix(obj)):
        return "timm"
    return None


def parse(obj: Mapping[str, Any], layout: str) -> ParsedCheckpoint:
    """Split an official-family object into encoder, decoder, hints and metadata."""
    inner = obj if layout == "timm" else obj["model"]
    metadata: dict[str, Any] = {}
    hints: dict[str, Any] = {}
    decoder_hints: dict[str, Any] = {}
    note = ""
    if layout == "umae":
        metadata = json_safe(obj["umae"])
        if isinstance(metadata.get("num_heads"), int):
            hints["num_heads"] = metadata["num_heads"]
        # `umae finetune` files record the source's LayerNorm eps and qkv bias (HF: 1e-12, ...)
        if isinstance(metadata.get("norm_eps"), float):
            hints["norm_eps"] = metadata["norm_eps"]
        if isinstance(metadata.get("qkv_bias"), bool):
            hints["qkv_bias"] = metadata["qkv_bias"]
        for key in ("decoder_num_heads", "norm_pix_loss"):
            if key in metadata:
                decoder_hints[key] = metadata[key]
    elif isinstance(obj.get("args"), argparse.Namespace):
        metadata = json_safe(vars(obj["args"]))
        if isinstance(obj.get("epoch"), int):  # main_pretrain.py's 0-based epoch of the save
            metadata["saved_epoch"] = obj["epoch"]
        if isinstance(metadata.get("norm_pix_loss"), bool):
            decoder_hints["norm_pix_loss"] = metadata["norm_pix_loss"]
        if _OFFICIAL_DECODER_HEADS.match(str(metadata.get("model", ""))):
            decoder_hints["decoder_num_heads"] = 16  # every official ImageNet MAE: 512 wide, 16 heads
    return ParsedCheckpoint(layout=layout, encoder=encoder_state_dict(inner),
                            decoder=decoder_state_dict(inner), hints=hints,
                            decoder_hints=decoder_hints, metadata=metadata, note=note)
