"""Small ViT encoders written here, under the parameter names of other MAE code bases.

Each class uses exactly the module names of the tool it imitates (read in its repository), and
its own plain forward (no timm), so a test can check that umae's features for a file of that
layout equal a direct forward of the model that produced it:

- :class:`MMPreViT` / :class:`MMPreNeck`: mmpretrain's ``MAEViT`` / ``MAEPretrainDecoder`` names;
- :class:`TimmNamedViT`: timm's names (solo-learn's ``backbone``, lightly's ``backbone.vit``);
- :func:`icarus_module_source`: a ``model.py`` with IcarusWizard/MAE's ``MAE_ViT`` names, for a
  whole-model ``torch.save``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ckpt_factory import _randomise


def attention(x: torch.Tensor, qkv: nn.Linear, proj: nn.Linear, heads: int) -> torch.Tensor:
    """Multi-head self-attention written out: (B, N, D) -> (B, N, D)."""
    b, n, d = x.shape
    q, k, v = qkv(x).reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    w = torch.softmax((q @ k.transpose(-2, -1)) * (d // heads) ** -0.5, dim=-1)
    return proj((w @ v).transpose(1, 2).reshape(b, n, d))


# ------------------------------------------------------------------------ timm names (solo, lightly)

class _Attn(nn.Module):
    def __init__(self, dim: int, bias: bool) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim)


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, eps: float, qkv_bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = _Attn(dim, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = _Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + attention(self.norm1(x), self.attn.qkv, self.attn.proj, self.heads)
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class _PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)


class TimmNamedViT(nn.Module):
    """A ViT with timm's names: ``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks``, ``norm``."""

    def __init__(self, img: int = 32, patch: int = 4, dim: int = 192, depth: int = 2, heads: int = 12,
                 eps: float = 1e-6, seed: int = 0) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (img // patch) ** 2 + 1, dim))
        self.blocks = nn.Sequential(*[_Block(dim, heads, eps, True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=eps)
        _randomise(self, seed)

    @torch.no_grad()
    def cls(self, x: torch.Tensor) -> torch.Tensor:
        """[CLS] after the final norm, every patch kept: (B, D)."""
        t = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(len(x), -1, -1), t], dim=1) + self.pos_embed
        return self.norm(self.blocks(t))[:, 0]


class OfficialNamedDecoder(nn.Module):
    """An MAE decoder under the official names (solo-learn's MAEDecoder, lightly's MAEDecoderTIMM)."""

    def __init__(self, dim: int = 192, width: int = 32, patch: int = 4, patches: int = 64,
                 heads: int = 2, eps: float = 1e-6, seed: int = 1) -> None:
        super().__init__()
        self.decoder_embed = nn.Linear(dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, patches + 1, width))
        self.decoder_blocks = nn.Sequential(_Block(width, heads, eps, True))
        self.decoder_norm = nn.LayerNorm(width, eps=eps)
        self.decoder_pred = nn.Linear(width, patch * patch * 3)
        _randomise(self, seed)


# ------------------------------------------------------------------------ mmpretrain names

class _MMAttn(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)


class _MMFFN(nn.Module):
    """mmcv's FFN: ``layers = Sequential(Sequential(Linear, GELU, Dropout), Linear, Dropout)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0)),
                                    nn.Linear(hidden, dim), nn.Dropout(0.0))


class _MMLayer(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _MMAttn(dim)
        self.ln2 = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = _MMFFN(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + attention(self.ln1(x), self.attn.qkv, self.attn.proj, self.heads)
        return x + self.ffn.layers(self.ln2(x))


class _MMPatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(3, dim, patch, patch)


class MMPreViT(nn.Module):
    """mmpretrain's MAEViT names: ``patch_embed.projection``, ``layers.{i}.ln1/attn/ln2/ffn``, ``ln1``."""

    def __init__(self, img: int = 32, patch: int = 4, dim: int = 64, depth: int = 2, heads: int = 2,
                 seed: int = 0) -> None:
        super().__init__()
        self.patch_embed = _MMPatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (img // patch) ** 2 + 1, dim))
        self.layers = nn.ModuleList([_MMLayer(dim, heads) for _ in range(depth)])
        self.ln1 = nn.LayerNorm(dim, eps=1e-6)
        _randomise(self, seed)

    @torch.no_grad()
    def cls(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch_embed.projection(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(len(x), -1, -1), t], dim=1) + self.pos_embed
        for layer in self.layers:
            t = layer(t)
        return self.ln1(t)[:, 0]


class MMPreNeck(nn.Module):
    """mmpretrain's MAEPretrainDecoder names (decoder norm registered as ``ln1``)."""

    def __init__(self, dim: int = 64, width: int = 32, patch: int = 4, patches: int = 64, heads: int = 2,
                 seed: int = 1) -> None:
        super().__init__()
        self.decoder_embed = nn.Linear(dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, patches + 1, width))
        self.decoder_blocks = nn.ModuleList([_MMLayer(width, heads)])
        self.ln1 = nn.LayerNorm(width, eps=1e-6)
        self.decoder_pred = nn.Linear(width, patch * patch * 3)
        _randomise(self, seed)


# ------------------------------------------------------------------------ IcarusWizard/MAE

def icarus_module_source() -> str:
    """A ``model.py`` whose classes carry IcarusWizard/MAE's names (``MAE_ViT.encoder`` /
    ``.decoder``; ``cls_token``, ``pos_embedding`` (L, 1, D), ``patchify``, ``transformer`` of
    timm Blocks with timm's defaults: no qkv bias, LayerNorm eps 1e-5; ``layer_norm``), written
    here; ``torch.save(MAE_ViT(...))`` then pickles ``model.MAE_ViT`` as the real script does."""
    return '''
import torch
from torch import nn
from timm.models.vision_transformer import Block


class PatchShuffle(nn.Module):
    def __init__(self, ratio):
        super().__init__()
        self.ratio = ratio


class MAE_Encoder(nn.Module):
    def __init__(self, image_size=32, patch_size=2, emb_dim=192, num_layer=12, num_head=3, mask_ratio=0.75):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, emb_dim))
        self.pos_embedding = nn.Parameter(torch.zeros((image_size // patch_size) ** 2, 1, emb_dim))
        self.shuffle = PatchShuffle(mask_ratio)
        self.patchify = nn.Conv2d(3, emb_dim, patch_size, patch_size)
        # The original calls Block(emb_dim, num_head) with the timm of its time (< 0.9), whose
        # defaults were no qkv bias and torch's nn.LayerNorm (eps 1e-5): spelled out here.
        self.transformer = nn.Sequential(*[Block(emb_dim, num_head, qkv_bias=False, norm_layer=nn.LayerNorm)
                                           for _ in range(num_layer)])
        self.layer_norm = nn.LayerNorm(emb_dim)

    @torch.no_grad()
    def cls_all_patches(self, img):
        """Sequence-first as the original: (L, B, D) patches + positions, [CLS] without one."""
        patches = self.patchify(img).flatten(2).permute(2, 0, 1) + self.pos_embedding
        tokens = torch.cat([self.cls_token.expand(-1, patches.shape[1], -1), patches], dim=0)
        return self.layer_norm(self.transformer(tokens.transpose(0, 1)))[:, 0]


class MAE_Decoder(nn.Module):
    def __init__(self, image_size=32, patch_size=2, emb_dim=192, num_layer=4, num_head=3):
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, emb_dim))
        self.pos_embedding = nn.Parameter(torch.zeros((image_size // patch_size) ** 2 + 1, 1, emb_dim))
        self.transformer = nn.Sequential(*[Block(emb_dim, num_head, qkv_bias=False, norm_layer=nn.LayerNorm)
                                           for _ in range(num_layer)])
        self.head = nn.Linear(emb_dim, 3 * patch_size ** 2)


class MAE_ViT(nn.Module):
    def __init__(self, image_size=32, patch_size=2, emb_dim=192, encoder_layer=12, encoder_head=3,
                 decoder_layer=4, decoder_head=3, mask_ratio=0.75):
        super().__init__()
        self.encoder = MAE_Encoder(image_size, patch_size, emb_dim, encoder_layer, encoder_head, mask_ratio)
        self.decoder = MAE_Decoder(image_size, patch_size, emb_dim, decoder_layer, decoder_head)
'''
