"""An MAE (encoder + decoder) from a :class:`~umae_eval.checkpoints.ParsedCheckpoint`.

The encoder is the loader's own timm ViT (:func:`umae_eval.checkpoints.build_encoder`: heads,
LayerNorm eps and qkv bias as the file states them); the decoder is built here under the
official MAE names (``mask_token``, ``decoder_embed``, ``decoder_pos_embed``,
``decoder_blocks.{i}``, ``decoder_norm``, ``decoder_pred``), which every layout with a decoder
is renamed to (umae, official full / visualize, U-MAE, Hugging Face ``ViTMAEForPreTraining``),
and loaded strictly. The forward pass is MAE's (He et al. 2022, ``models_mae.py``): positions
added before masking, [CLS] with its position prepended after, mask tokens appended and
unshuffled with ``ids_restore``, the decoder's positions added, the [CLS] slot dropped.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from umae_eval.checkpoints import ParsedCheckpoint, build_encoder
from umae_eval.checkpoints.arch import MAEEncoderViT, ViTArch, load_strict
from umae_eval.compat import ensure_timm_importable
from umae_eval.errors import UmaeError

ensure_timm_importable()
from timm.models.vision_transformer import Block  # noqa: E402

#: Width and heads of the official ImageNet MAE decoder.
OFFICIAL_DECODER = (512, 16)
#: Where published MAE files with a decoder come from (for the encoder-only message).
DECODER_SOURCES = ("official MAE 'visualize' files (mae_visualize_vit_{base,large,huge}.pth: pixel target) "
                   "or 'full' files (mae_pretrain_vit_*_full.pth: normalised-pixel target); a umae "
                   "training checkpoint (runs/<name>/last.pth or checkpoint-N.pth); U-MAE's "
                   "main_pretrain.py checkpoints; Hugging Face facebook/vit-mae-* (ViTMAEForPreTraining)")
_BLOCK = re.compile(r"^decoder_blocks\.(\d+)\.")


@dataclass(frozen=True)
class DecoderArch:
    """The decoder's shape: width, depth, heads, MLP ratio, LayerNorm eps, qkv bias, output size."""

    width: int
    depth: int
    num_heads: int
    mlp_ratio: float
    norm_eps: float
    qkv_bias: bool
    out_dim: int

    def describe(self) -> str:
        """e.g. ``'decoder dim96 depth2 heads3'``."""
        return f"decoder dim{self.width} depth{self.depth} heads{self.num_heads}"


def encoder_only_message(parsed: ParsedCheckpoint) -> str:
    """The one line for a file without a decoder."""
    return (f"{parsed.path}: reconstruction needs the MAE decoder, and this {parsed.layout} file holds the "
            f"encoder only; use a file that carries it: {DECODER_SOURCES}")


def infer_decoder(parsed: ParsedCheckpoint, arch: ViTArch, decoder_num_heads: int | None = None) -> DecoderArch:
    """The decoder's architecture from its weights and what the file states.

    Heads: ``decoder_num_heads`` if given, else the file's (umae metadata, a Hugging Face config,
    an official ``args.model``), else 16 for the official 512-wide decoder.

    Raises
    ------
    UmaeError
        No decoder (the encoder-only line), missing tensors, or heads that cannot be told.
    """
    dec = parsed.decoder
    if not dec:
        raise UmaeError(encoder_only_message(parsed))
    source = str(parsed.path)
    for key in ("decoder_embed.weight", "decoder_pred.weight", "mask_token", "decoder_pos_embed"):
        if key not in dec:
            raise UmaeError(f"{source}: the decoder lacks '{key}'; the file's decoder is incomplete")
    width, in_dim = (int(s) for s in dec["decoder_embed.weight"].shape)
    if in_dim != arch.embed_dim:
        raise UmaeError(f"{source}: decoder_embed takes {in_dim} features but the encoder is {arch.embed_dim} wide")
    depth = len({int(m.group(1)) for k in dec if (m := _BLOCK.match(k))})
    if depth == 0:
        raise UmaeError(f"{source}: the decoder has no blocks (decoder_blocks.0.*)")
    out_dim = int(dec["decoder_pred.weight"].shape[0])
    if out_dim != arch.patch_size ** 2 * 3:
        raise UmaeError(f"{source}: decoder_pred gives {out_dim} values per patch, not patch_size^2 * 3 = "
                        f"{arch.patch_size ** 2 * 3}; only pixel-predicting MAE decoders are supported")
    heads = decoder_num_heads or parsed.decoder_hints.get("decoder_num_heads")
    if heads is None and width == OFFICIAL_DECODER[0]:
        heads = OFFICIAL_DECODER[1]
    if heads is None:
        raise UmaeError(f"{source}: the file does not say how many heads its {width}-wide decoder has; "
                        "pass --decoder-num-heads N")
    if width % int(heads):
        raise UmaeError(f"{source}: decoder width {width} is not divisible by {heads} heads; "
                        "pass the right --decoder-num-heads")
    fc1 = dec.get("decoder_blocks.0.mlp.fc1.weight")
    mlp_ratio = float(fc1.shape[0]) / width if fc1 is not None else 4.0
    return DecoderArch(width=width, depth=depth, num_heads=int(heads), mlp_ratio=mlp_ratio,
                       norm_eps=arch.norm_eps, qkv_bias="decoder_blocks.0.attn.qkv.bias" in dec,
                       out_dim=out_dim)


class MAEDecoder(nn.Module):
    """MAE's decoder under the official names; ``forward(latent, ids_restore) -> (B, L, p*p*3)``."""

    def __init__(self, encoder_dim: int, num_patches: int, arch: DecoderArch) -> None:
        super().__init__()
        norm = functools.partial(nn.LayerNorm, eps=arch.norm_eps)
        self.decoder_embed = nn.Linear(encoder_dim, arch.width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, arch.width))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, arch.width), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            [Block(arch.width, arch.num_heads, arch.mlp_ratio, qkv_bias=arch.qkv_bias, norm_layer=norm)
             for _ in range(arch.depth)])
        self.decoder_norm = norm(arch.width)
        self.decoder_pred = nn.Linear(arch.width, arch.out_dim)

    def forward(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """latent (B, 1 + len_keep, D), ids_restore (B, L) -> predicted patches (B, L, p*p*3)."""
        x = self.decoder_embed(latent)
        b, t, w = x.shape
        n = ids_restore.shape[1]
        tokens = torch.cat([x[:, 1:], self.mask_token.expand(b, n + 1 - t, -1)], dim=1)
        tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, w))
        x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]


class MAEModel(nn.Module):
    """Encoder (timm ViT of the loader) + :class:`MAEDecoder`, in eval mode."""

    def __init__(self, encoder: MAEEncoderViT, decoder: MAEDecoder, arch: ViTArch) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.arch = arch

    def encode_visible(self, x: Tensor, ids_keep: Tensor) -> Tensor:
        """Normalised images (B, 3, H, W) seen through ``ids_keep`` (B, len_keep) -> latent (B, 1 + len_keep, D)."""
        enc = self.encoder
        tokens = enc.patch_embed(x) + enc.pos_embed[:, 1:]
        tokens = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        h = torch.cat([cls, tokens], dim=1)
        for blk in enc.blocks:
            h = blk(h)
        return enc.norm(h)

    def forward(self, x: Tensor, ids_keep: Tensor, ids_restore: Tensor) -> Tensor:
        """Predicted patches (B, L, p*p*3) in the checkpoint's target space (see :mod:`.normpix`)."""
        return self.decoder(self.encode_visible(x, ids_keep), ids_restore)


@dataclass
class LoadedMAE:
    """A ready MAE: the model, both architectures, and what the file stated."""

    model: MAEModel
    arch: ViTArch
    decoder_arch: DecoderArch
    decoder_hints: dict[str, Any]


def build_mae(parsed: ParsedCheckpoint, *, arch_overrides: Mapping[str, Any] | None = None,
              decoder_num_heads: int | None = None) -> LoadedMAE:
    """Build the MAE of a parsed checkpoint, weights loaded strictly, eval mode, on CPU.

    Raises
    ------
    UmaeError
        Encoder-only file (one line naming the files that carry a decoder), or weights that do
        not fit (the key and both shapes).
    """
    if not parsed.decoder:
        raise UmaeError(encoder_only_message(parsed))
    encoder, arch = build_encoder(parsed, arch_overrides)
    darch = infer_decoder(parsed, arch, decoder_num_heads)
    decoder = MAEDecoder(arch.embed_dim, arch.num_patches, darch)
    state = {k: v.float() for k, v in parsed.decoder.items()}
    load_strict(decoder, state, str(parsed.path), what="decoder keys do not match an MAE decoder")
    model = MAEModel(encoder.float(), decoder, arch).eval()
    return LoadedMAE(model=model, arch=arch, decoder_arch=darch, decoder_hints=dict(parsed.decoder_hints))
