"""Tiny Hugging Face ViTMAE models built with the real ``transformers`` package (a dev extra).

Every parameter is seeded (LayerNorm weights near 1, the rest small and non-zero, as in
``ckpt_factory``), so a loader that drops, swaps or mis-fuses any tensor changes the features.
Import this module only after ``pytest.importorskip("transformers")``.
"""

from __future__ import annotations

from typing import Any

import torch

from ckpt_factory import _randomise
from umae_eval.compat import ensure_timm_importable

ensure_timm_importable()  # transformers imports torchvision too
from transformers import ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel  # noqa: E402

#: 32 px, patch 4 (64 patches), width 64 with 2 heads (not D/64: only config.json knows it),
#: depth 2; decoder 32 wide, 1 block, 2 heads. mask_ratio 0 so the encoder sees every patch.
TINY_HF: dict[str, Any] = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
    image_size=32, patch_size=4, decoder_hidden_size=32, decoder_num_hidden_layers=1,
    decoder_num_attention_heads=2, decoder_intermediate_size=128, mask_ratio=0.0,
)


def hf_config(**changes: Any) -> ViTMAEConfig:
    """A ``ViTMAEConfig`` for :data:`TINY_HF` with ``changes`` (layer_norm_eps stays 1e-12)."""
    return ViTMAEConfig(**{**TINY_HF, **changes})


def hf_pretraining(seed: int = 0, **changes: Any) -> ViTMAEForPreTraining:
    """A seeded ``ViTMAEForPreTraining`` (encoder ``vit`` + ``decoder``) in eval mode."""
    model = ViTMAEForPreTraining(hf_config(**changes))
    _randomise(model, seed)
    return model.eval()


def hf_model(seed: int = 0, **changes: Any) -> ViTMAEModel:
    """A seeded ``ViTMAEModel`` (encoder only) in eval mode."""
    model = ViTMAEModel(hf_config(**changes))
    _randomise(model, seed)
    return model.eval()


def identity_noise(n: int, num_patches: int) -> torch.Tensor:
    """Noise whose argsort is the identity: ViTMAE always shuffles patches by sorting noise, so
    this keeps them in image order (with ``mask_ratio=0`` none is removed)."""
    return torch.arange(num_patches, dtype=torch.float32).expand(n, -1).contiguous()


@torch.no_grad()
def hf_cls(model: ViTMAEForPreTraining | ViTMAEModel, x: torch.Tensor) -> torch.Tensor:
    """transformers' own [CLS] after the final LayerNorm, all patches kept in order: (B, D)."""
    vit = model.vit if isinstance(model, ViTMAEForPreTraining) else model
    num_patches = vit.embeddings.patch_embeddings.num_patches
    out = vit(pixel_values=x, noise=identity_noise(x.shape[0], num_patches))
    return out.last_hidden_state[:, 0]
