"""SimMIM (Xie et al. 2022) with timm's ViT parameter names: the second method of Table 2.

Differences from MAE: every patch goes through the encoder, removed patches having their
embedding replaced by a learned ``mask_token`` (1, 1, D); the decoder is linear (a 1x1
convolution to ``p*p*3`` channels followed by ``PixelShuffle(p)``); the loss is L1 on the
removed patches' pixels. Masking is at the model's patch granularity with the same rule as
MAE (keep the ``int(L(1-rho))`` patches of smallest noise), default rho = 0.6
(:func:`trainer.presets.method_defaults`). The [CLS] token after the final norm feeds the
uniformity term (U-SimMIM).

Positions are MAE's fixed 2-D sin-cos (not SimMIM's learned/relative ones) so the encoder
loads strictly into timm's VisionTransformer, like :class:`trainer.model.MaskedAutoencoderViT`.
State dict: the encoder keys, ``mask_token``, ``decoder_pred.0.{weight, bias}`` (the 1x1
conv; SimMIM itself calls it ``decoder.0``, renamed so that every decoder key starts with
MAE's ``mask_token`` / ``decoder_*`` prefixes, which the checkpoint loader strips).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trainer.masking import mask_from_noise, patchify
from trainer.vit_base import MAEOutput, ViTEncoderMixin, _init_weights
from umae_eval.errors import UmaeError


class SimMIMViT(ViTEncoderMixin, nn.Module):
    """SimMIM: ViT encoder over all tokens with masked ones replaced, linear pixel decoder.

    Parameters
    ----------
    img_size, patch_size : int
        Input side and patch side p in pixels.
    embed_dim, depth, num_heads : int
        Encoder width D, blocks, heads.
    mlp_ratio : float
        MLP hidden width / D.
    norm_pix_loss : bool
        Normalise each target patch by its own mean/var (MAE's per-patch rule).

    Notes
    -----
    ``loss_kind = 'l1'``. ``forward`` returns :class:`trainer.model.MAEOutput` with ``pred``
    in patch layout (B, L, p*p*3), so :func:`trainer.losses.loss_terms` serves both methods:
    per-patch mean absolute error averaged over removed patches equals SimMIM's mean L1 over
    removed pixels.
    """

    loss_kind = "l1"

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        norm_pix_loss: bool = False,
    ) -> None:
        super().__init__()
        self.norm_pix_loss = norm_pix_loss
        self._build_encoder(img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.decoder_pred = nn.Sequential(
            nn.Conv2d(embed_dim, patch_size * patch_size * 3, kernel_size=1),
            nn.PixelShuffle(patch_size),
        )
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """MAE-style init: sin-cos positions, xavier Linears and patch embedding, tokens N(0, 0.02)."""
        self._init_encoder()
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(_init_weights)

    def forward_encoder(
        self, imgs: Tensor, mask_ratio: float, noise: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Embed, replace removed patches by the mask token, add positions, prepend [CLS], encode.

        Parameters
        ----------
        imgs : Tensor, shape (B, 3, H, W)
        mask_ratio : float
            rho in [0, 1).
        noise : Tensor, shape (B, L), optional
            Masking noise; ``torch.rand`` when None.

        Returns
        -------
        latent : Tensor, shape (B, 1 + L, D)
            All tokens after the final norm, [CLS] first, patches in patch order.
        mask : Tensor, shape (B, L)
            1 = removed (replaced by the mask token).
        ids_restore : LongTensor, shape (B, L)
            As MAE's (identity use here: tokens are never shuffled).
        """
        x = self.patch_embed(imgs)
        b, n, _ = x.shape
        if noise is None:
            noise = torch.rand(b, n, device=x.device)
        elif noise.shape != (b, n):
            raise UmaeError(f"noise shape {tuple(noise.shape)} does not match (B, L) = ({b}, {n})")
        _, mask, ids_restore = mask_from_noise(noise.to(x.device), mask_ratio)
        w = mask.unsqueeze(-1).to(x.dtype)
        x = x * (1 - w) + self.mask_token.to(x.dtype) * w
        x = x + self.pos_embed[:, 1:, :]
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(b, -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask.to(x.dtype), ids_restore

    def forward(self, imgs: Tensor, mask_ratio: float, noise: Tensor | None = None) -> MAEOutput:
        """Encode the masked image and predict every pixel with the linear decoder.

        Parameters
        ----------
        imgs : Tensor, shape (B, 3, H, W)
        mask_ratio : float
        noise : Tensor, shape (B, L), optional

        Returns
        -------
        MAEOutput
            ``pred`` (B, L, p*p*3) = ``patchify(PixelShuffle(conv1x1(tokens)))``, ``mask`` (B, L),
            ``cls`` (B, D).
        """
        latent, mask, _ = self.forward_encoder(imgs, mask_ratio, noise)
        b, t, d = latent.shape
        g = self.patch_embed.grid_size[0]
        z = latent[:, 1:, :].transpose(1, 2).reshape(b, d, g, g)
        rec = self.decoder_pred(z)  # (B, 3, H, W)
        return MAEOutput(pred=patchify(rec, self.patch_size), mask=mask, cls=latent[:, 0])
