"""Layer-wise learning-rate decay for ViT fine-tuning: MAE's ``param_groups_lrd`` rule.

Rule (facebookresearch/mae ``util/lr_decay.py``, BEiT before it), for a ViT of ``L`` blocks:

- layer id 0: ``cls_token``, ``pos_embed`` and everything under ``patch_embed``;
- layer id ``i + 1``: everything under ``blocks.i`` (0-based);
- layer id ``L + 1``: everything else (final ``norm`` / ``fc_norm``, ``head``);
- lr scale of layer id ``j``: ``layer_decay ** (L + 1 - j)`` (the head trains at the full lr);
- no weight decay for 1-D tensors (biases, LayerNorm weights) and for the names in
  ``no_weight_decay`` (timm's ViT: ``pos_embed``, ``cls_token``, ``dist_token``);
- parameters with ``requires_grad=False`` (frozen blocks) are left out.

The learning rate of a group at step ``s`` is ``schedule(s) * lr_scale`` (:func:`set_scaled_lr`).

Example
-------
>>> layer_id_for_vit("blocks.3.attn.qkv.weight", depth=12), layer_id_for_vit("head.weight", depth=12)
(4, 13)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

#: The names timm's ``VisionTransformer.no_weight_decay()`` returns.
VIT_NO_WEIGHT_DECAY = frozenset({"pos_embed", "cls_token", "dist_token"})


def layer_id_for_vit(name: str, depth: int) -> int:
    """MAE's layer id of a parameter name of a ViT with ``depth`` blocks (0 .. depth + 1)."""
    if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def param_groups_lrd(model: nn.Module, weight_decay: float, layer_decay: float, depth: int,
                     no_weight_decay: Iterable[str] = VIT_NO_WEIGHT_DECAY) -> list[dict[str, Any]]:
    """AdamW parameter groups with per-layer ``lr_scale`` and MAE's weight-decay exemptions.

    Parameters
    ----------
    model : nn.Module
        A ViT under timm names (``cls_token``, ``pos_embed``, ``patch_embed.*``, ``blocks.{i}.*``,
        ``norm`` / ``fc_norm``, ``head``), unwrapped.
    weight_decay : float
        Decay of the matrices; 1-D tensors and ``no_weight_decay`` names get 0.
    layer_decay : float
        Per-layer factor (0.65 for ViT-B, 0.75 for ViT-L in MAE; 1.0 = no decay).
    depth : int
        Number of blocks ``L``.
    no_weight_decay : iterable of str
        Full parameter names exempt from weight decay.

    Returns
    -------
    list of dict
        One group per (layer id, decay/no_decay) that has parameters, in MAE's order of first
        appearance: ``{'params', 'names', 'weight_decay', 'lr_scale', 'layer_id'}``.
    """
    skip = set(no_weight_decay)
    scales = [layer_decay ** (depth + 1 - i) for i in range(depth + 2)]
    groups: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = not (param.ndim == 1 or name in skip)
        layer = layer_id_for_vit(name, depth)
        key = f"layer_{layer}_{'decay' if decay else 'no_decay'}"
        if key not in groups:
            groups[key] = {"params": [], "names": [], "weight_decay": weight_decay if decay else 0.0,
                           "lr_scale": scales[layer], "layer_id": layer}
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    return list(groups.values())


def build_lrd_optimizer(model: nn.Module, weight_decay: float, layer_decay: float, depth: int,
                        betas: tuple[float, float], device: torch.device) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups_lrd` (fused on CUDA, foreach elsewhere)."""
    groups = param_groups_lrd(model, weight_decay, layer_decay, depth)
    kwargs: dict[str, Any] = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(groups, lr=0.0, betas=betas, **kwargs)


def set_scaled_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr to ``lr * group['lr_scale']`` (MAE's ``adjust_learning_rate``)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
