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

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from trainer.masking import patchify, random_masking, sincos_pos_embed_2d
from trainer.presets import Preset
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
