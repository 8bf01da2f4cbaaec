"""The fine-tuned network: a timm ViT with a new head built from any encoder umae loads.

MAE's ``models_vit.VisionTransformer`` is timm's ViT with ``global_pool``: the mean of the patch
tokens goes through a new ``fc_norm`` and the final ``norm`` is removed; with ``--pool cls`` the
[CLS] token after the final ``norm`` feeds the head. ``main_finetune.py`` loads the pre-trained
encoder non-strictly (only ``head.*`` and ``fc_norm.*`` may be missing), initialises the head
with trunc-normal std 2e-5 and trains everything; positions are a trainable parameter there,
and so here.

``freeze_blocks = K`` (MAE Sec. 4.3, partial fine-tuning) fixes the patch embedding, [CLS],
positions and blocks ``0 .. K-1``: they get ``requires_grad=False``, run in eval mode without
drop path and under ``torch.no_grad``; blocks ``K ..`` and the norm and head train.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn

from trainer.finetune_presets import FinetunePreset
from umae_eval.checkpoints.arch import ViTArch
from umae_eval.compat import ensure_timm_importable
from umae_eval.errors import UmaeError

ensure_timm_importable()
from timm.layers import trunc_normal_  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

#: Head init of MAE's main_finetune.py.
HEAD_INIT_STD = 2e-5


class FinetuneViT(VisionTransformer):
    """timm's ViT whose first ``frozen_blocks`` blocks (and embeddings) may be frozen.

    ``forward(x)``: (B, 3, S, S) -> logits (B, num_classes).
    """

    frozen_blocks: int = 0

    def forward_features(self, x: Tensor, attn_mask: Tensor | None = None,  # type: ignore[override]
                         is_causal: bool = False) -> Tensor:
        """Tokens (B, 1 + L, D); the frozen part runs without autograd."""
        k = self.frozen_blocks
        with torch.no_grad() if k > 0 else _null():
            x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
            for blk in self.blocks[:k]:
                x = blk(x)
        for blk in self.blocks[k:]:
            x = blk(x)
        return self.norm(x)

    def train(self, mode: bool = True) -> FinetuneViT:
        super().train(mode)
        for blk in self.blocks[: self.frozen_blocks]:
            blk.eval()  # frozen blocks: no drop path (they are a fixed feature extractor)
        return self


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def build_finetune_model(arch: ViTArch, preset: FinetunePreset, num_classes: int) -> FinetuneViT:
    """An untrained ViT of ``arch`` with a ``num_classes`` head, drop path and ``preset.pool``.

    Weights follow timm's default init (global torch RNG); the head gets MAE's trunc-normal
    std 2e-5 and zero bias.
    """
    norm_layer = functools.partial(nn.LayerNorm, eps=arch.norm_eps)
    model = FinetuneViT(
        img_size=arch.img_size, patch_size=arch.patch_size, num_classes=num_classes,
        global_pool="avg" if preset.pool == "avg" else "token", embed_dim=arch.embed_dim,
        depth=arch.depth, num_heads=arch.num_heads, mlp_ratio=arch.mlp_ratio, qkv_bias=arch.qkv_bias,
        class_token=True, drop_path_rate=preset.drop_path, norm_layer=norm_layer,
    )
    trunc_normal_(model.head.weight, std=HEAD_INIT_STD)
    nn.init.zeros_(model.head.bias)
    return model


def load_pretrained(model: FinetuneViT, encoder_state: dict[str, Tensor], source: str) -> list[str]:
    """Copy an encoder's tensors into ``model`` as main_finetune.py does.

    With the avg pool the encoder's final ``norm`` is dropped (MAE deletes it) and a ``fc_norm``
    the file carries is kept; with the cls pool ``fc_norm`` is dropped. Everything else must fit.

    Returns
    -------
    list of str
        The model keys that stay freshly initialised (``head.*``, and ``fc_norm.*`` when new).
    """
    own = model.state_dict()
    state = {k: v for k, v in encoder_state.items() if k in own}
    extra = sorted(set(encoder_state) - set(own) - {"norm.weight", "norm.bias", "fc_norm.weight",
                                                    "fc_norm.bias"})
    if extra:
        raise UmaeError(f"{source}: encoder keys that do not fit the fine-tuning ViT: {', '.join(extra[:6])}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise UmaeError(f"{source}: {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
    result = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    missing = sorted(result.missing_keys)
    allowed = {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    if set(missing) - allowed:
        raise UmaeError(f"{source}: the encoder lacks {', '.join(sorted(set(missing) - allowed)[:6])}")
    return missing


def freeze_blocks(model: FinetuneViT, k: int) -> list[str]:
    """Freeze the embeddings and the first ``k`` blocks; returns the frozen parameter names.

    Raises
    ------
    UmaeError
        ``k`` outside ``0 .. depth``.
    """
    depth = len(model.blocks)
    if not 0 <= k <= depth:
        raise UmaeError(f"--freeze-blocks {k}: the encoder has {depth} blocks; choose 0 to {depth}")
    model.frozen_blocks = k
    frozen: list[str] = []
    if k == 0:
        return frozen
    for name, param in model.named_parameters():
        first = name.split(".")[0]
        if first in ("cls_token", "pos_embed", "patch_embed", "reg_token") or (
                first == "blocks" and int(name.split(".")[1]) < k):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def finetuned_encoder_state(model: nn.Module) -> dict[str, Any]:
    """The tuned ViT's state dict under timm names (encoder + ``fc_norm`` + ``head``), detached."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def load_source_encoder(checkpoint: str, freeze: int, trust_pickle: bool = False) -> Any:
    """The encoder to fine-tune (:func:`umae_eval.checkpoints.load_encoder`), checked up front.

    Raises
    ------
    UmaeError
        The file has no loadable encoder (the loader's one-line reason), or ``freeze`` is outside
        ``0 .. depth``.
    """
    from umae_eval.checkpoints import load_encoder

    loaded = load_encoder(checkpoint, trust_pickle=trust_pickle)
    depth = loaded.info.arch.depth
    if not 0 <= freeze <= depth:
        raise UmaeError(f"--freeze-blocks {freeze}: {checkpoint} has {depth} blocks; choose 0 to {depth}")
    return loaded
