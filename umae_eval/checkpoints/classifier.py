"""The trained classifier a ``umae finetune`` checkpoint carries, rebuilt exactly as it was trained.

The encoder loaders drop every head (features are read from the encoder). A ``umae finetune``
file (``'umae'`` metadata with ``kind='finetune'``) also records how its head was trained:
``finetune.pool`` ('avg': mean of the patch tokens -> ``fc_norm`` -> head, no final norm, MAE's
``global_pool``; 'cls': the [CLS] token after the final norm -> head), the number and names of
the classes and the data it was tuned on. :func:`finetune_record` reads that record and
:func:`load_classifier` rebuilds timm's ``VisionTransformer`` with that pooling, the file's
architecture (heads, LayerNorm eps, qkv bias, MLP ratio) and ``num_classes``, and loads the
file's whole state dict strictly (encoder, ``fc_norm``, ``head``): what ``trainer.finetune``
evaluated, without importing the trainer.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umae_eval.checkpoints.arch import ViTArch, load_strict
from umae_eval.compat import ensure_timm_importable
from umae_eval.errors import UmaeError

ensure_timm_importable()
from timm.models.vision_transformer import VisionTransformer  # noqa: E402


@dataclass(frozen=True)
class FinetuneRecord:
    """What a ``umae finetune`` file says about its head (the ``finetune`` dict of its metadata)."""

    tuned_on: str
    data_fingerprint: str | None
    num_classes: int
    class_names: tuple[str, ...]
    pool: str
    freeze_blocks: int
    source_name: str
    epoch: int | None

    def to_json(self) -> dict[str, Any]:
        return {"tuned_on": self.tuned_on, "data_fingerprint": self.data_fingerprint,
                "num_classes": self.num_classes, "class_names": list(self.class_names), "pool": self.pool,
                "freeze_blocks": self.freeze_blocks, "source": self.source_name, "epoch": self.epoch}


def finetune_record(metadata: Mapping[str, Any] | None) -> FinetuneRecord | None:
    """The head's record of a ``umae finetune`` file's metadata; None for any other checkpoint."""
    if not isinstance(metadata, Mapping) or metadata.get("kind") != "finetune":
        return None
    ft = metadata.get("finetune")
    if not isinstance(ft, Mapping) or not isinstance(ft.get("num_classes"), int):
        return None
    epoch = metadata.get("epoch")
    return FinetuneRecord(
        tuned_on=str(ft.get("tuned_on", metadata.get("data_spec", "not recorded"))),
        data_fingerprint=str(ft["data_fingerprint"]) if ft.get("data_fingerprint") else None,
        num_classes=int(ft["num_classes"]), class_names=tuple(str(c) for c in ft.get("class_names") or ()),
        pool=str(ft.get("pool", "avg")), freeze_blocks=int(ft.get("freeze_blocks") or 0),
        source_name=str(ft.get("source_name", "not recorded")), epoch=int(epoch) if isinstance(epoch, int) else None)


def build_classifier(arch: ViTArch, pool: str, num_classes: int) -> VisionTransformer:
    """timm's ViT with ``num_classes`` outputs and MAE fine-tuning's pooling (``'avg'`` or ``'cls'``).

    ``forward(x)``: (B, 3, S, S) -> logits (B, num_classes).
    """
    if pool not in ("avg", "cls"):
        raise UmaeError(f"a fine-tuned head with pool {pool!r}: expected 'avg' or 'cls'")
    return VisionTransformer(
        img_size=arch.img_size, patch_size=arch.patch_size, num_classes=num_classes,
        global_pool="avg" if pool == "avg" else "token", embed_dim=arch.embed_dim, depth=arch.depth,
        num_heads=arch.num_heads, mlp_ratio=arch.mlp_ratio, qkv_bias=arch.qkv_bias, class_token=True,
        norm_layer=functools.partial(nn.LayerNorm, eps=arch.norm_eps))


def load_classifier(path: str | Path, arch: ViTArch, record: FinetuneRecord) -> VisionTransformer:
    """The fine-tuned classifier of ``path`` in eval mode, every tensor loaded strictly (float32).

    Raises
    ------
    UmaeError
        The file's weights do not fit the classifier its metadata describes (names the keys).
    """
    from umae_eval.checkpoints.files import read_torch
    from umae_eval.checkpoints.official import strip_module_prefix

    obj = read_torch(Path(path), trust_pickle=False)
    state = strip_module_prefix(obj["model"]) if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping) else {}
    if "head.weight" not in state:
        raise UmaeError(f"{path}: a `umae finetune` file without its trained head (head.weight); "
                        "re-run umae finetune or compare it as an encoder only")
    model = build_classifier(arch, record.pool, record.num_classes)
    load_strict(model, {k: v.float() for k, v in state.items()}, str(path),
                what=f"weights do not fit the {record.pool}-pool classifier with {record.num_classes} classes "
                     "its metadata describes")
    return model.eval()
