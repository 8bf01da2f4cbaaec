"""How much memory a preset's model needs, estimated from its fields before anything is built.

``--set embed_dim=65536`` used to ask torch for tens of GB (and die with a MemoryError or the
OOM killer) before any check; :func:`check_model_fits` refuses it in one line first.

The count is exact for the model :func:`trainer.model.build_model` makes (checked against it in
the tests); the bytes assume fp32 weights, their gradients and AdamW's two moments (16 bytes a
parameter), the least a training step holds, activations not counted.
"""

from __future__ import annotations

from trainer.presets import Preset
from umae_eval.errors import UmaeError

#: Weights, gradients and AdamW's exp_avg and exp_avg_sq, fp32.
BYTES_PER_PARAMETER = 16

#: Above this many parameters a run is refused whatever memory the machine reports (ViT-g has 1.0 B).
MAX_PARAMETERS = 4_000_000_000


def _blocks(dim: int, depth: int, mlp_ratio: float) -> int:
    hidden = int(dim * mlp_ratio)
    # two LayerNorms, qkv (with bias), proj, fc1, fc2
    per_block = 4 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + (dim * hidden + hidden) + (hidden * dim + dim)
    return depth * per_block


def parameter_count(p: Preset) -> int:
    """Parameters of the preset's model (``build_model(p)``): encoder, and the MAE decoder or
    SimMIM's mask token and 1x1-conv head. The fixed sin-cos positions are parameters too."""
    tokens = p.num_patches + 1
    patch_pixels = p.patch_size * p.patch_size * 3
    D = p.embed_dim
    # patch embedding (conv + bias), cls token, positions, blocks, final norm
    encoder = (patch_pixels * D + D) + D + tokens * D + _blocks(D, p.depth, p.mlp_ratio) + 2 * D
    if p.method == "simmim":
        return encoder + D + (D * patch_pixels + patch_pixels)
    d = p.decoder_embed_dim
    # decoder_embed, mask token, positions, blocks, norm, prediction
    decoder = (D * d + d) + d + tokens * d + _blocks(d, p.decoder_depth, p.mlp_ratio) + 2 * d \
        + (d * patch_pixels + patch_pixels)
    return encoder + decoder


def available_bytes() -> int | None:
    """Memory this process could still get: ``MemAvailable`` of /proc/meminfo, else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_model_fits(p: Preset, available: int | None = None, where: str = "the CPU's memory") -> int:
    """Refuse a preset whose parameters alone (with gradients and AdamW state) cannot fit.

    Parameters
    ----------
    p : Preset
    available : int, optional
        Bytes free where the model will live (GPU memory for CUDA); default: /proc/meminfo.

    Returns
    -------
    int
        The parameter count.

    Raises
    ------
    UmaeError
        Naming the size fields (``--set embed_dim`` ...) and what they ask for.
    """
    count = parameter_count(p)
    need = count * BYTES_PER_PARAMETER
    if available is None:
        available = available_bytes()
    fields = (f"embed_dim {p.embed_dim}, depth {p.depth}, mlp_ratio {p.mlp_ratio:g}" +
              ("" if p.method == "simmim" else f", decoder_embed_dim {p.decoder_embed_dim}, "
               f"decoder_depth {p.decoder_depth}"))
    if count > MAX_PARAMETERS or (available is not None and need > available):
        room = f"{available / 2**30:.1f} GiB free in {where}" if available is not None else "the limit"
        raise UmaeError(f"--set {fields}: a model of {count / 1e6:,.0f} M parameters needs "
                        f"{need / 2**30:,.1f} GiB for weights, gradients and AdamW state, more than {room}; "
                        "choose smaller --set values or another --preset")
    return count


def free_memory(device: str) -> tuple[int | None, str]:
    """Bytes free where a run on ``device`` ('auto', 'cpu', 'cuda', 'cuda:1', ...) keeps its model."""
    import torch

    if device != "cpu" and torch.cuda.is_available() and (device == "auto" or device.startswith("cuda")):
        try:
            index = torch.device(device if device != "auto" else "cuda").index or 0
            return torch.cuda.mem_get_info(index)[0], f"GPU {index}'s memory"
        except (RuntimeError, ValueError):
            return None, "GPU memory"
    return available_bytes(), "the CPU's memory"
