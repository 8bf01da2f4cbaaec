"""The MAE model (He et al. 2022) with timm's ViT parameter names, and ``build_model``.

The encoder's parameters are named exactly as in ``timm.models.vision_transformer.
VisionTransformer`` (``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.{i}.*``,
``norm``), so :meth:`MaskedAutoencoderViT.encoder_state_dict` loads strictly into
``timm.create_model('vit_tiny_patch16_224', img_size=32, patch_size=p, num_classes=0)`` (for
width 192) and the whole state dict is the official MAE "full" checkpoint layout
(``mask_token``, ``decoder_embed``, ``decoder_pos_embed``, ``decoder_blocks.{i}.*``,
``decoder_norm``, ``decoder_pred``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trainer.masking import patchify, random_masking, sincos_pos_embed_2d
from trainer.presets import Preset
from trainer.vit_base import (  # noqa: F401  (re-exported: trainer.model is where callers look)
    ENCODER_PREFIXES,
    ENCODER_TENSORS,
    Block,
    MAEOutput,
    PatchEmbed,
    ViTEncoderMixin,
    _check_shape,
    _init_weights,
    is_encoder_key,
    norm_layer,
)
from umae_eval.errors import UmaeError

class MaskedAutoencoderViT(ViTEncoderMixin, nn.Module):
    """Masked autoencoder with a ViT encoder and a ViT decoder (official MAE architecture).

    Parameters
    ----------
    img_size, patch_size : int
        Input side and patch side in pixels; ``L = (img_size/patch_size)^2``.
    embed_dim, depth, num_heads : int
        Encoder width D, blocks, heads.
    decoder_embed_dim, decoder_depth, decoder_num_heads : int
        Decoder width Dd, blocks, heads.
    mlp_ratio : float
        MLP hidden width / token width (encoder and decoder).
    norm_pix_loss : bool
        Stored for the loss (:func:`trainer.losses.loss_terms`): normalise each target patch.

    Notes
    -----
    ``loss_kind = 'mse'``: the reconstruction loss is per-patch MSE on removed patches.
    Positions are fixed 2-D sin-cos (``requires_grad=False``, but kept in the state dict).
    """

    loss_kind = "mse"

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        decoder_embed_dim: int,
        decoder_depth: int,
        decoder_num_heads: int,
        mlp_ratio: float = 4.0,
        norm_pix_loss: bool = False,
    ) -> None:
        super().__init__()
        _check_shape(img_size, patch_size, decoder_embed_dim, decoder_num_heads, "decoder")
        self.norm_pix_loss = norm_pix_loss
        n = self._build_encoder(img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio)
        # ---- decoder (official MAE names) ----
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, n + 1, decoder_embed_dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            [
                Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
                for _ in range(decoder_depth)
            ]
        )
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size * patch_size * 3, bias=True)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Official MAE init: sin-cos positions, xavier patch embedding and Linears, tokens N(0, 0.02)."""
        self._init_encoder()
        grid = self.patch_embed.grid_size[0]
        with torch.no_grad():
            self.decoder_pos_embed.copy_(sincos_pos_embed_2d(self.decoder_pos_embed.shape[-1], grid, cls_token=True))
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(_init_weights)

    def forward_encoder(
        self, imgs: Tensor, mask_ratio: float, noise: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Embed, add positions, mask, prepend [CLS], run the blocks and the final norm.

        Parameters
        ----------
        imgs : Tensor, shape (B, 3, H, W)
        mask_ratio : float
            rho in [0, 1).
        noise : Tensor, shape (B, L), optional
            Masking noise (see :func:`trainer.masking.random_masking`).

        Returns
        -------
        latent : Tensor, shape (B, 1 + len_keep, D)
            After the final LayerNorm; index 0 is [CLS].
        mask : Tensor, shape (B, L)
            1 = removed.
        ids_restore : LongTensor, shape (B, L)
        """
        x = self.patch_embed(imgs)
        x = x + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = random_masking(x, mask_ratio, noise)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """Project, fill removed slots with the mask token, unshuffle, decode every patch.

        Parameters
        ----------
        latent : Tensor, shape (B, 1 + len_keep, D)
        ids_restore : LongTensor, shape (B, L)

        Returns
        -------
        Tensor, shape (B, L, p*p*3)
            Predicted pixels per patch ([CLS] slot dropped).
        """
        x = self.decoder_embed(latent)
        b, t, dd = x.shape
        n = ids_restore.shape[1]
        mask_tokens = self.mask_token.expand(b, n + 1 - t, -1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).expand(-1, -1, dd))
        x = torch.cat([x[:, :1, :], x_], dim=1)
        x = x + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        return self.decoder_pred(x)[:, 1:, :]

    def forward(self, imgs: Tensor, mask_ratio: float, noise: Tensor | None = None) -> MAEOutput:
        """Encode a masked view and reconstruct every patch.

        Parameters
        ----------
        imgs : Tensor, shape (B, 3, H, W)
            Normalised images.
        mask_ratio : float
            rho in [0, 1).
        noise : Tensor, shape (B, L), optional
            Fixed masking noise.

        Returns
        -------
        MAEOutput
            ``pred`` (B, L, p*p*3), ``mask`` (B, L), ``cls`` (B, D).
        """
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        return MAEOutput(pred=pred, mask=mask, cls=latent[:, 0])


def build_model(preset: Preset) -> nn.Module:
    """Build the model a preset names: :class:`MaskedAutoencoderViT` ('mae') or
    :class:`trainer.simmim.SimMIMViT` ('simmim').

    Both return :class:`MAEOutput` from ``forward(imgs, mask_ratio, noise=None)`` and carry
    ``patch_size``, ``norm_pix_loss`` and ``loss_kind`` for :func:`trainer.losses.loss_terms`.
    """
    if preset.method == "mae":
        return MaskedAutoencoderViT(
            img_size=preset.img_size,
            patch_size=preset.patch_size,
            embed_dim=preset.embed_dim,
            depth=preset.depth,
            num_heads=preset.num_heads,
            decoder_embed_dim=preset.decoder_embed_dim,
            decoder_depth=preset.decoder_depth,
            decoder_num_heads=preset.decoder_num_heads,
            mlp_ratio=preset.mlp_ratio,
            norm_pix_loss=preset.norm_pix_loss,
        )
    if preset.method == "simmim":
        from trainer.simmim import SimMIMViT

        return SimMIMViT(
            img_size=preset.img_size,
            patch_size=preset.patch_size,
            embed_dim=preset.embed_dim,
            depth=preset.depth,
            num_heads=preset.num_heads,
            mlp_ratio=preset.mlp_ratio,
            norm_pix_loss=preset.norm_pix_loss,
        )
    raise UmaeError(f"unknown method {preset.method!r}; valid methods: mae, simmim")
