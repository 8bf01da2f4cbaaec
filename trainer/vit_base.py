"""The parts every masked-image model of the trainer shares: timm's ViT encoder names, the
encoder's construction and initialisation, and the output type.

Split out of :mod:`trainer.model` so that :mod:`trainer.simmim` can build on them without
importing the MAE module that dispatches to it (no import circle).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from trainer.masking import patchify, sincos_pos_embed_2d
from umae_eval.compat import ensure_timm_importable
from umae_eval.errors import UmaeError

ensure_timm_importable()  # before timm: lets it import on CPU torch beside a CUDA torchvision
from timm.layers import PatchEmbed  # noqa: E402
from timm.models.vision_transformer import Block  # noqa: E402

#: LayerNorm of the official MAE / timm ViT.
norm_layer = partial(nn.LayerNorm, eps=1e-6)

#: The encoder's state-dict keys: these two tensors and everything under these prefixes
#: (timm's VisionTransformer names).
ENCODER_TENSORS = ("cls_token", "pos_embed")
ENCODER_PREFIXES = ("patch_embed.", "blocks.", "norm.")


def is_encoder_key(key: str) -> bool:
    """True for a state-dict key of the ViT encoder (timm names), False for decoder/mask keys."""
    return key in ENCODER_TENSORS or key.startswith(ENCODER_PREFIXES)


@dataclass
class MAEOutput:
    """What a masked-image model's forward returns.

    Attributes
    ----------
    pred : Tensor, shape (B, L, p*p*3)
        Predicted pixels of every patch, in :func:`trainer.masking.patchify` order.
    mask : Tensor, shape (B, L)
        1 on removed (masked) patches, 0 on visible ones.
    cls : Tensor, shape (B, D)
        The encoder's [CLS] token after the final LayerNorm, for this masked view
        (feeds the uniformity term of U-MAE).
    """

    pred: Tensor
    mask: Tensor
    cls: Tensor


def _init_weights(m: nn.Module) -> None:
    """Official MAE init: xavier-uniform Linear (bias 0), LayerNorm weight 1 bias 0."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _check_shape(img_size: int, patch_size: int, dim: int, heads: int, what: str) -> None:
    if img_size % patch_size:
        raise UmaeError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
    if dim % heads:
        raise UmaeError(f"{what} width {dim} is not divisible by its {heads} heads")
    if dim % 4:
        raise UmaeError(f"{what} width {dim} must be a multiple of 4 (2-D sin-cos positions)")


class ViTEncoderMixin:
    """Shared helpers of models whose encoder uses timm ViT names."""

    patch_embed: PatchEmbed

    def encoder_state_dict(self) -> dict[str, Tensor]:
        """The encoder's tensors only, under timm's VisionTransformer names (detached)."""
        sd = self.state_dict()  # type: ignore[attr-defined]
        return {k: v for k, v in sd.items() if is_encoder_key(k)}

    @property
    def patch_size(self) -> int:
        """Patch side p in pixels."""
        return int(self.patch_embed.patch_size[0])

    @property
    def num_patches(self) -> int:
        """L = number of patches."""
        return int(self.patch_embed.num_patches)

    def target_patches(self, imgs: Tensor) -> Tensor:
        """Reconstruction target ``patchify(imgs, p)``, shape (B, L, p*p*3)."""
        return patchify(imgs, self.patch_size)

    def _build_encoder(self, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int,
                       mlp_ratio: float) -> int:
        """Create the encoder under timm's names (patch_embed, cls_token, pos_embed, blocks, norm); return L.

        ``pos_embed`` (1, L+1, D) is fixed (``requires_grad=False``) but kept in the state dict, as
        timm's VisionTransformer expects it there.
        """
        _check_shape(img_size, patch_size, embed_dim, num_heads, "encoder")
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim)
        n = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer) for _ in range(depth)]
        )
        self.norm = norm_layer(embed_dim)
        return n

    def _init_encoder(self) -> None:
        """Official init of the encoder's own tensors: sin-cos positions, xavier patch embedding, [CLS] N(0, 0.02).

        Linears and LayerNorms are initialised afterwards by ``self.apply(_init_weights)``.
        """
        grid = self.patch_embed.grid_size[0]
        with torch.no_grad():
            self.pos_embed.copy_(sincos_pos_embed_2d(self.pos_embed.shape[-1], grid, cls_token=True))
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)


