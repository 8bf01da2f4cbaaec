"""The encoder every layout is loaded into: :class:`ViTArch`, :func:`infer_arch`, :func:`build_vit`.

Each layout reader turns its file into timm ``VisionTransformer`` key names; this module infers
the architecture from those weights (plus what a config file states), builds the timm model
with MAE's conventions and loads the weights strictly.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import nn

from umae_eval.compat import ensure_timm_importable
from umae_eval.errors import UmaeError

ensure_timm_importable()  # before timm: lets it import on CPU torch beside a CUDA torchvision
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")


@dataclass(frozen=True)
class ViTArch:
    """The shape of a plain ViT encoder (class token, learned/fixed absolute positions).

    Attributes
    ----------
    img_size : int
        Side of the square input image in pixels (``sqrt(L) * patch_size``).
    patch_size : int
        Side of a square patch in pixels; ``L = (img_size / patch_size) ** 2`` patches.
    embed_dim : int
        Token width ``D``.
    depth : int
        Number of transformer blocks.
    num_heads : int
        Attention heads. Not visible in the weights: taken from a config file or metadata when
        the layout has one, else inferred as ``D / 64`` (16 for D = 1280), so pass it through
        ``arch_overrides`` for anything else.
    mlp_ratio : float
        Hidden width of the MLP over ``D``.
    has_fc_norm : bool
        The checkpoint carries ``fc_norm.*`` (U-MAE, official fine-tuned files): a LayerNorm that
        is applied after average pooling, never to the [CLS] token.
    has_final_norm : bool
        The checkpoint carries the final ``norm.*`` applied to every token after the last block
        (all pre-training layouts; official fine-tuned files with global pooling lack it).
    norm_eps : float
        Epsilon of every LayerNorm: 1e-6 in MAE and timm, 1e-12 in Hugging Face's ViTMAEConfig,
        1e-5 in torch's default (lightly, IcarusWizard/MAE).
    qkv_bias : bool
        The attention's q/k/v projection has a bias (always in MAE; a config option in HF).
    """

    img_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    has_fc_norm: bool = False
    has_final_norm: bool = True
    norm_eps: float = 1e-6
    qkv_bias: bool = True

    @property
    def num_patches(self) -> int:
        """``L``, the number of patch tokens (without [CLS])."""
        return (self.img_size // self.patch_size) ** 2

    def describe(self) -> str:
        """Short text such as ``'ViT dim192 depth12 heads3 p2 32px'``."""
        text = (f"ViT dim{self.embed_dim} depth{self.depth} heads{self.num_heads} "
                f"p{self.patch_size} {self.img_size}px")
        if self.mlp_ratio != 4.0:
            text += f" mlp{self.mlp_ratio:g}"
        if self.has_fc_norm:
            text += " +fc_norm"
        if not self.has_final_norm:
            text += " no-final-norm"
        if self.norm_eps != 1e-6:
            text += f" eps{self.norm_eps:g}"
        if not self.qkv_bias:
            text += " no-qkv-bias"
        return text


class MAEEncoderViT(VisionTransformer):
    """timm's ``VisionTransformer`` whose ``fc_norm`` never touches the [CLS] token.

    timm applies ``fc_norm`` after any pooling; MAE and U-MAE apply it only to the average of the
    patch tokens. With ``global_pool='token'`` this class skips it, so ``model(x)`` is MAE's
    linear-probe feature (the [CLS] token after the final norm), shape ``(B, D)``, for every
    layout. ``umae_eval.features.pool_tokens`` does the pooling for both modes.
    """

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool ``(B, 1 + L, D)`` tokens to ``(B, D)``; ``fc_norm`` only for non-token pooling."""
        x = self.pool(x)
        if self.global_pool != "token":
            x = self.fc_norm(x)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)


def default_heads(embed_dim: int) -> int | None:
    """Heads of the published ViTs for a width: ``D / 64``, 16 for ViT-H (D = 1280)."""
    if embed_dim == 1280:  # ViT-H/14: 16 heads of 80
        return 16
    if embed_dim % 64 == 0:
        return embed_dim // 64
    return None


def shape(t: Any) -> tuple[int, ...]:
    """``tuple(t.shape)``, or ``()`` for anything without a shape (a missing key)."""
    return tuple(t.shape) if hasattr(t, "shape") else ()


#: A parser's hint that the head count is not in the file (its value says why); see :func:`infer_arch`.
HEADS_UNKNOWN = "heads_unknown"


def infer_arch(state: Mapping[str, torch.Tensor], *, source: str = "checkpoint",
               overrides: Mapping[str, Any] | None = None) -> ViTArch:
    """Infer a :class:`ViTArch` from encoder weights.

    Parameters
    ----------
    state : Mapping[str, Tensor]
        Encoder state dict under timm names: ``cls_token`` (1, 1, D), ``pos_embed``
        (1, L + 1, D), ``patch_embed.proj.weight`` (D, 3, p, p), ``blocks.{i}.mlp.fc1.weight``
        (H, D), ...
    source : str
        The file name used in error messages.
    overrides : Mapping[str, Any], optional
        Fields of :class:`ViTArch` to set instead of inferring them (e.g. ``{'num_heads': 6}``).

    Returns
    -------
    ViTArch
        ``D`` from ``cls_token``, depth from the block count, ``p`` from the patch projection,
        ``img_size = sqrt(L) * p``, heads ``D / 64`` (16 for ``D = 1280``), MLP ratio
        ``H / D``, which of ``fc_norm`` / ``norm`` are present; ``norm_eps`` 1e-6 and a qkv bias
        unless overridden (a layout with a config file states both; a missing bias in a file
        that should have one stays an error).

    Raises
    ------
    UmaeError
        If a needed tensor is missing or odd-shaped and no override supplies the value, or an
        override names no field.
    """
    overrides = dict(overrides or {})
    # a layout whose head count cannot be read from the file (a solo-learn checkpoint without its
    # args.json) puts the reason here: guessing D/64 would give other features without a word
    heads_unknown = overrides.pop(HEADS_UNKNOWN, None)
    if heads_unknown and "num_heads" not in overrides:
        raise UmaeError(f"{source}: {heads_unknown}, or pass --num-heads N (arch_overrides={{'num_heads': N}} "
                        "from Python)")
    valid = {f.name for f in fields(ViTArch)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise UmaeError(f"{source}: unknown architecture override(s) {', '.join(unknown)}; "
                        f"valid names are {', '.join(sorted(valid))}")

    cls = shape(state.get("cls_token"))
    if len(cls) != 3 or cls[:2] != (1, 1):
        raise UmaeError(f"{source}: cls_token has shape {cls}, expected (1, 1, D); "
                        "only ViTs with one class token are supported")
    dim = cls[2]
    proj = shape(state.get("patch_embed.proj.weight"))
    if len(proj) != 4 or proj[0] != dim or proj[2] != proj[3]:
        raise UmaeError(f"{source}: patch_embed.proj.weight has shape {proj}, expected "
                        f"({dim}, 3, p, p) for square patches")
    if proj[1] != 3:
        raise UmaeError(f"{source}: patch_embed.proj.weight takes {proj[1]} input channels; "
                        "only RGB (3-channel) encoders are supported")
    patch = proj[2]
    pos = shape(state.get("pos_embed"))
    if len(pos) != 3 or pos[0] != 1 or pos[2] != dim:
        raise UmaeError(f"{source}: pos_embed has shape {pos}, expected (1, L + 1, {dim})")
    grid = math.isqrt(max(pos[1] - 1, 0))
    if "img_size" in overrides:
        img_size = int(overrides["img_size"])
    elif grid * grid == pos[1] - 1 and grid > 0:
        img_size = grid * patch
    else:
        raise UmaeError(f"{source}: pos_embed holds {pos[1] - 1} patch positions, not a square "
                        "grid; pass arch_overrides={'img_size': N}")
    block_ids = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))}
    depth = max(block_ids) + 1 if block_ids else 0
    if depth == 0 and "depth" not in overrides:
        raise UmaeError(f"{source}: no transformer blocks (blocks.0.*) in the encoder weights")
    fc1 = shape(state.get("blocks.0.mlp.fc1.weight"))
    if len(fc1) == 2 and fc1[1] == dim:
        mlp_ratio = fc1[0] / dim
    elif "mlp_ratio" not in overrides:
        raise UmaeError(f"{source}: blocks.0.mlp.fc1.weight has shape {fc1}, expected "
                        f"(hidden, {dim}); pass arch_overrides={{'mlp_ratio': r}}")
    else:
        mlp_ratio = 4.0
    heads = default_heads(dim)
    if heads is None and "num_heads" not in overrides:
        raise UmaeError(f"{source}: cannot infer the number of attention heads for embed dim "
                        f"{dim} (not a multiple of 64); pass --num-heads N "
                        "(arch_overrides={'num_heads': N} from Python)")
    arch = ViTArch(img_size=img_size, patch_size=patch, embed_dim=dim, depth=depth,
                   num_heads=heads or 1, mlp_ratio=float(mlp_ratio),
                   has_fc_norm="fc_norm.weight" in state,
                   has_final_norm="norm.weight" in state)
    arch = replace(arch, **overrides)
    if arch.embed_dim % arch.num_heads != 0:
        raise UmaeError(f"{source}: embed dim {arch.embed_dim} is not divisible by "
                        f"num_heads={arch.num_heads}; pass a divisor through arch_overrides")
    return arch


def build_vit(arch: ViTArch) -> MAEEncoderViT:
    """An untrained timm ViT encoder with MAE's conventions.

    ``num_classes=0`` (no head), ``global_pool='token'``, one class token, qkv bias unless
    ``arch.qkv_bias`` is False, ``LayerNorm(eps=arch.norm_eps)``; a final ``norm`` unless
    ``arch.has_final_norm`` is False, and an ``fc_norm`` LayerNorm only if ``arch.has_fc_norm``.
    Weights follow timm's default init (uses torch's global RNG).

    Parameters
    ----------
    arch : ViTArch
        The architecture.

    Returns
    -------
    MAEEncoderViT
        In eval mode; ``model(x)`` maps (B, 3, img_size, img_size) to (B, D).
    """
    norm_layer = functools.partial(nn.LayerNorm, eps=arch.norm_eps)
    model = MAEEncoderViT(
        img_size=arch.img_size, patch_size=arch.patch_size, in_chans=3, num_classes=0,
        global_pool="token", embed_dim=arch.embed_dim, depth=arch.depth,
        num_heads=arch.num_heads, mlp_ratio=arch.mlp_ratio, qkv_bias=arch.qkv_bias,
        class_token=True, fc_norm=False, final_norm=arch.has_final_norm, norm_layer=norm_layer,
    )
    if arch.has_fc_norm:
        model.fc_norm = norm_layer(arch.embed_dim)
    return model.eval()


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str,
                what: str = "encoder keys do not match a plain MAE ViT") -> None:
    """``model.load_state_dict(state, strict=True)`` with one-line errors naming the keys.

    Raises
    ------
    UmaeError
        A key whose shape differs (names both shapes), or missing / unexpected keys.
    """
    expected = model.state_dict()
    for key, value in state.items():
        if key in expected and shape(value) != tuple(expected[key].shape):
            raise UmaeError(
                f"{source}: shape mismatch for '{key}': checkpoint {shape(value)} vs model "
                f"{tuple(expected[key].shape)}; the file is inconsistent or an arch override "
                "does not fit it")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:6])}" + (" ..." if len(missing) > 6 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:6])}"
                         + (" ..." if len(unexpected) > 6 else ""))
        raise UmaeError(f"{source}: {what} ({'; '.join(parts)}); "
                        "only class-token ViTs without layer scale or registers are supported")
    model.load_state_dict(state, strict=True)
