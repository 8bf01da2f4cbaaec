"""Analytic FLOPs of one pre-training step, per image: matrix products and attention, exactly.

What is counted (a FLOP is one multiply or one add, so a multiply-accumulate is 2 FLOPs):

- every Linear / patch-embedding product: ``2 * tokens * fan_in * fan_out`` forward;
- attention: ``Q K^T`` and ``softmax(.) V``, ``2 * T^2 * D`` each, forward.

Backward is twice the forward for every product (gradient of the input and of the weight),
except the patch embedding, whose input (the image) needs no gradient: its backward is one
weight-gradient product. This is also what ``torch.utils.flop_counter.FlopCounterMode``
reports for the model, which the tests check. Element-wise work (LayerNorm, GELU, softmax,
the loss, AdamW) and the uniformity term's ``B x B`` similarity (``2 * B * D`` per image, a
rounding error at these sizes) are not counted.

MAE (He et al. 2022): the patch embedding runs on all ``L`` patches, the encoder on
``T_e = int(L (1 - rho)) + 1`` tokens (visible patches + [CLS]), ``decoder_embed`` on ``T_e``
tokens, the decoder blocks and ``decoder_pred`` on all ``L + 1`` tokens. SimMIM: the encoder on
``L + 1`` tokens, the 1x1-convolution decoder on ``L`` tokens.

Example
-------
>>> from trainer.presets import get_preset
>>> round(flops_per_image(get_preset("cifar10-vit-tiny-p2")).train / 1e9, 2)  # GFLOP fwd+bwd
5.54
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from trainer.masking import num_kept
from trainer.presets import Preset


@dataclass(frozen=True)
class FlopCount:
    """FLOPs per image of one training step.

    Attributes
    ----------
    encoder_forward : int
        Patch embedding + encoder blocks, forward.
    decoder_forward : int
        Decoder (MAE: embed, blocks, prediction; SimMIM: the linear head), forward.
    forward : int
        ``encoder_forward + decoder_forward``.
    train : int
        Forward + backward (the figure MFU is computed from).
    encoder_tokens, decoder_tokens : int
        Tokens through the encoder blocks and the decoder blocks.
    """

    encoder_forward: int
    decoder_forward: int
    forward: int
    train: int
    encoder_tokens: int
    decoder_tokens: int

    def to_dict(self) -> dict[str, int]:
        """Plain dict of the fields."""
        return asdict(self)


def block_forward_flops(tokens: int, dim: int, mlp_ratio: float) -> int:
    """Forward FLOPs of one pre-norm ViT block on one sequence.

    ``2 T (3D^2 + D^2 + 2 D H)`` for qkv, proj, fc1, fc2 (H = int(D * mlp_ratio), timm's
    rounding) plus ``4 T^2 D`` for the two attention products.

    Parameters
    ----------
    tokens : int
        Sequence length T.
    dim : int
        Width D.
    mlp_ratio : float
        MLP hidden width / D.
    """
    hidden = int(dim * mlp_ratio)
    linear = 2 * tokens * (3 * dim * dim + dim * dim + 2 * dim * hidden)
    attention = 4 * tokens * tokens * dim
    return linear + attention


def flops_per_image(preset: Preset, mask_ratio: float | None = None) -> FlopCount:
    """FLOPs per image of one training step of the preset's model.

    Parameters
    ----------
    preset : Preset
        Model shape and method.
    mask_ratio : float, optional
        Overrides ``preset.mask_ratio``.

    Returns
    -------
    FlopCount
    """
    rho = preset.mask_ratio if mask_ratio is None else mask_ratio
    L = preset.num_patches
    p, D = preset.patch_size, preset.embed_dim
    patch_dim = p * p * 3
    embed = 2 * L * patch_dim * D
    if preset.method == "mae":
        t_enc = num_kept(L, rho) + 1
        t_dec = L + 1
        Dd = preset.decoder_embed_dim
        enc = embed + preset.depth * block_forward_flops(t_enc, D, preset.mlp_ratio)
        dec = (2 * t_enc * D * Dd
               + preset.decoder_depth * block_forward_flops(t_dec, Dd, preset.mlp_ratio)
               + 2 * t_dec * Dd * patch_dim)
    else:  # simmim
        t_enc = L + 1
        t_dec = 0
        enc = embed + preset.depth * block_forward_flops(t_enc, D, preset.mlp_ratio)
        dec = 2 * L * D * patch_dim
    forward = enc + dec
    train = 3 * forward - embed  # no input gradient for the patch embedding
    return FlopCount(encoder_forward=enc, decoder_forward=dec, forward=forward, train=train,
                     encoder_tokens=t_enc, decoder_tokens=t_dec)


#: Dense bf16 peak TFLOP/s by device-name fragment (first match wins). H100/H200 SXM: the
#: datasheet says 989; the project's measured matmul ceiling on these machines is ~790, used here
#: so that MFU reads against what the hardware actually reaches.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 790.0),
    ("H100", 790.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),
    ("RTX 3090", 71.0),
    ("V100", 125.0),
)


def peak_tflops(device_name: str) -> float | None:
    """The bf16 dense peak of a GPU from its name, or None when unknown (no MFU then)."""
    for fragment, peak in PEAK_BF16_TFLOPS:
        if fragment.lower() in device_name.lower():
            return peak
    return None


def mfu(images_per_s: float, flops_per_img: int, peak_tflops_value: float) -> float:
    """Model FLOPs utilisation: achieved ``images_per_s * flops_per_img`` over the peak (0-1)."""
    return images_per_s * flops_per_img / (peak_tflops_value * 1e12)
