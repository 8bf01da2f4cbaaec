"""IcarusWizard/MAE, the CIFAR-10 code behind Table 1 (layout ``icarus-mae``).

``mae_pretrain.py`` saves the whole ``MAE_ViT`` with ``torch.save(model)`` (so it needs
``--trust-pickle``; :mod:`.pickles` recovers the tensors without its code). Its encoder
(``MAE_Encoder``, under ``encoder.``; ``ViT_Classifier`` from ``train_classifier.py`` has the
same names without the prefix, plus ``head.*``):

- ``cls_token`` (1, 1, D); ``pos_embedding`` (L, 1, D): sequence-first and *without* a slot for
  [CLS], which gets no position;
- ``patchify`` = Conv2d(3, D, p, p); ``transformer.{i}`` = timm ``Block(D, heads)`` with timm's
  defaults of its time: no qkv bias, ``nn.LayerNorm`` (eps 1e-5); ``layer_norm`` (eps 1e-5);
- patches are flattened row-major (``b c h w -> (h w) b c``), as timm does.

So timm's ``pos_embed`` is ``[0, pos_embedding^T]`` and the rest renames one to one. Its decoder
has no projection, no final norm and predicts channels first, so it has no official-layout
equivalent and is not carried over. Pixels are normalised with mean = std = 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from umae_eval.checkpoints.info import ParsedCheckpoint
from umae_eval.errors import UmaeError

_HALF = (0.5, 0.5, 0.5)


def _prefix(state: Mapping[str, Any]) -> str | None:
    for p in ("encoder.", ""):
        if f"{p}pos_embedding" in state and f"{p}patchify.weight" in state and f"{p}cls_token" in state:
            return p
    return None


def detect(obj: Any) -> bool:
    """True for IcarusWizard/MAE's encoder names (``pos_embedding``, ``patchify``, ``transformer``)."""
    return isinstance(obj, Mapping) and _prefix(obj) is not None


def parse(state: Mapping[str, torch.Tensor], source: str) -> ParsedCheckpoint:
    """Rename an IcarusWizard/MAE state dict to timm's encoder names."""
    prefix = _prefix(state)
    assert prefix is not None
    encoder: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        if not key.startswith(prefix) or (prefix and key.startswith("decoder.")):
            dropped.append(key)
            continue
        name = key[len(prefix):]
        if name == "cls_token":
            encoder["cls_token"] = value
        elif name == "pos_embedding":
            if value.ndim != 3 or value.shape[1] != 1:
                raise UmaeError(f"{source}: pos_embedding has shape {tuple(value.shape)}, expected (L, 1, D)")
            patches = value.permute(1, 0, 2)
            encoder["pos_embed"] = torch.cat([torch.zeros_like(patches[:, :1]), patches], dim=1).contiguous()
        elif name.startswith("patchify."):
            encoder["patch_embed.proj." + name[len("patchify."):]] = value
        elif name.startswith("transformer."):
            encoder["blocks." + name[len("transformer."):]] = value
        elif name.startswith("layer_norm."):
            encoder["norm." + name[len("layer_norm."):]] = value
        elif name.startswith("head."):
            dropped.append(key)
        else:
            raise UmaeError(f"{source}: unexpected key '{key}' for an IcarusWizard/MAE encoder")
    note = "IcarusWizard/MAE: [CLS] without a position"
    if any(k.startswith("decoder.") for k in dropped):
        note += "; its decoder (no projection, no final norm) is not carried over"
    return ParsedCheckpoint(layout="icarus-mae", encoder=encoder,
                            hints={"norm_eps": 1e-5, "qkv_bias": "blocks.0.attn.qkv.bias" in encoder},
                            note=note, norm=(_HALF, _HALF))
