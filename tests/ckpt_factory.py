"""Build small checkpoints in every layout users bring, saved the way the real tools save them.

For tests anywhere in the suite (``tests/`` is on ``sys.path`` under pytest)::

    from ckpt_factory import make_official_full, tiny_vit

    saved = make_official_full(tmp_path / "mae_visualize.pth", patch_size=2)
    enc = load_encoder(tmp_path / "mae_visualize.pth")
    original = tiny_vit(patch_size=2)              # same seed -> same encoder weights

The default encoder is ViT-T/4 at 32 px with depth 2 (dim 192, 3 heads, 64 patches, ~0.9 M
parameters, a 4 MB file). Every parameter is drawn from a seeded generator (LayerNorm weights near
1, everything else small and non-zero), so a loader that drops, swaps or re-initialises any tensor
changes the output. ``make_*`` functions return the dict stored under ``'model'`` (or the bare state
dict for timm files), so tests can compare against exactly what was saved.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from umae_eval.compat import ensure_timm_importable

ensure_timm_importable()  # before timm
from timm.models.vision_transformer import Block, VisionTransformer

#: The default tiny encoder: ViT-T/4 at 32 px, depth 2.
TINY = dict(img_size=32, patch_size=4, embed_dim=192, depth=2, num_heads=3, mlp_ratio=4.0)


def _randomise(module: nn.Module, seed: int) -> None:
    """Fill every parameter from a seeded generator: norm weights ~ 1 + N(0, .1), rest N(0, .05)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=param.dtype)
            parts = name.split(".")
            is_norm_weight = len(parts) > 1 and "norm" in parts[-2] and parts[-1] == "weight"
            param.copy_(1.0 + 0.1 * noise if is_norm_weight else 0.05 * noise)


def tiny_vit(*, img_size: int = 32, patch_size: int = 4, embed_dim: int = 192, depth: int = 2,
             num_heads: int = 3, mlp_ratio: float = 4.0, seed: int = 0) -> VisionTransformer:
    """A plain timm ViT encoder (no head, [CLS] pooling, LayerNorm eps 1e-6), random weights.

    The same arguments always give the same weights; ``model(x)`` maps (B, 3, H, W) to (B, D),
    the [CLS] token after the final norm.
    """
    model = VisionTransformer(
        img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
        num_heads=num_heads, mlp_ratio=mlp_ratio, num_classes=0, global_pool="token",
        qkv_bias=True, norm_layer=functools.partial(nn.LayerNorm, eps=1e-6),
    )
    _randomise(model, seed)
    return model.eval()


def encoder_weights(*, seed: int = 0, **arch: Any) -> dict[str, torch.Tensor]:
    """The state dict of ``tiny_vit(seed=seed, **arch)`` (official MAE encoder key names)."""
    return {k: v.clone() for k, v in tiny_vit(seed=seed, **{**TINY, **arch}).state_dict().items()}


def decoder_weights(*, embed_dim: int = 192, num_patches: int = 64, patch_size: int = 4,
                    decoder_dim: int = 32, decoder_depth: int = 1, decoder_heads: int = 2,
                    seed: int = 1) -> dict[str, torch.Tensor]:
    """MAE decoder tensors with the official names: mask_token, decoder_embed, decoder_pos_embed,
    decoder_blocks.{i}.*, decoder_norm, decoder_pred (p * p * 3 outputs)."""
    gen = torch.Generator().manual_seed(seed)
    norm = functools.partial(nn.LayerNorm, eps=1e-6)
    dec = nn.ModuleDict({
        "decoder_embed": nn.Linear(embed_dim, decoder_dim),
        "decoder_blocks": nn.ModuleList(
            [Block(decoder_dim, decoder_heads, 4.0, qkv_bias=True, norm_layer=norm)
             for _ in range(decoder_depth)]),
        "decoder_norm": norm(decoder_dim),
        "decoder_pred": nn.Linear(decoder_dim, patch_size * patch_size * 3),
    })
    _randomise(dec, seed)
    out = {"mask_token": 0.02 * torch.randn(1, 1, decoder_dim, generator=gen)}
    out.update({k: v.clone() for k, v in dec.state_dict().items()})
    out["decoder_pos_embed"] = torch.randn(1, num_patches + 1, decoder_dim, generator=gen)
    return out


def _full_weights(seed: int, decoder_depth: int, arch: dict[str, Any]) -> dict[str, torch.Tensor]:
    a = {**TINY, **arch}
    enc = encoder_weights(seed=seed, **a)
    dec = decoder_weights(embed_dim=a["embed_dim"], num_patches=(a["img_size"] // a["patch_size"]) ** 2,
                          patch_size=a["patch_size"], decoder_depth=decoder_depth, seed=seed + 1000)
    return {**enc, **dec}


def _training_extras(state: dict[str, torch.Tensor], epoch: int) -> dict[str, Any]:
    """What MAE's misc.save_model stores beside 'model': AdamW state, GradScaler state, epoch."""
    first = next(iter(state))
    return {
        "optimizer": {
            "state": {0: {"step": torch.tensor(float(epoch * 10)),
                          "exp_avg": torch.zeros_like(state[first]),
                          "exp_avg_sq": torch.zeros_like(state[first])}},
            "param_groups": [{"lr": 1.5e-4, "betas": (0.9, 0.95), "weight_decay": 0.05,
                              "params": [0]}],
        },
        "epoch": epoch,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                   "growth_interval": 2000, "_growth_tracker": 0},
    }


def mae_args(**changes: Any) -> argparse.Namespace:
    """An ``argparse.Namespace`` like MAE's ``main_pretrain.py`` parses (small subset)."""
    args = dict(batch_size=64, epochs=800, accum_iter=1, model="mae_vit_tiny", input_size=32,
                mask_ratio=0.75, norm_pix_loss=False, weight_decay=0.05, lr=None, blr=1.5e-4,
                warmup_epochs=40, data_path="/datasets/cifar10", output_dir="./output_dir",
                device="cuda", seed=0, num_workers=10, pin_mem=True, world_size=1, dist_url="env://")
    args.update(changes)
    return argparse.Namespace(**args)


def make_official_encoder(path: str | Path, *, seed: int = 0, **arch: Any) -> dict[str, torch.Tensor]:
    """``mae_pretrain_vit_*.pth``: ``{'model': encoder state dict}``."""
    state = encoder_weights(seed=seed, **arch)
    torch.save({"model": state}, path)
    return state


def make_official_full(path: str | Path, *, seed: int = 0, decoder_depth: int = 1,
                       **arch: Any) -> dict[str, torch.Tensor]:
    """``mae_visualize_vit_*.pth``: ``{'model': encoder + decoder}``."""
    state = _full_weights(seed, decoder_depth, arch)
    torch.save({"model": state}, path)
    return state


def make_umae_layout_official(path: str | Path, *, seed: int = 0, epoch: int = 3,
                              **arch: Any) -> dict[str, torch.Tensor]:
    """An official MAE *training* checkpoint (``main_pretrain.py``), the outer layout U-MAE kept:
    ``{'model': encoder + decoder, 'optimizer', 'epoch', 'scaler', 'args': Namespace}``.
    Loads as layout ``'official-full'`` with ``vars(args)`` as metadata."""
    state = _full_weights(seed, 1, arch)
    a = {**TINY, **arch}
    torch.save({"model": state, **_training_extras(state, epoch),
                "args": mae_args(input_size=a["img_size"])}, path)
    return state


def make_u_mae(path: str | Path, *, seed: int = 0, epoch: int = 3, num_classes: int = 10,
               lamb: float = 0.01, **arch: Any) -> dict[str, torch.Tensor]:
    """U-MAE's ``main_pretrain.py`` checkpoint: the official training layout whose model adds
    ``fc_norm.*`` (LayerNorm) and the online head ``fc.*`` (Linear D -> num_classes)."""
    state = _full_weights(seed, 1, arch)
    a = {**TINY, **arch}
    gen = torch.Generator().manual_seed(seed + 2000)
    dim = a["embed_dim"]
    state["fc_norm.weight"] = 1.0 + 0.1 * torch.randn(dim, generator=gen)
    state["fc_norm.bias"] = 0.1 * torch.randn(dim, generator=gen)
    state["fc.weight"] = 0.05 * torch.randn(num_classes, dim, generator=gen)
    state["fc.bias"] = torch.zeros(num_classes)
    torch.save({"model": state, **_training_extras(state, epoch),
                "args": mae_args(input_size=a["img_size"], lamb=lamb, global_pool=False,
                                 nb_classes=num_classes)}, path)
    return state


def make_timm(path: str | Path, fmt: Literal["pth", "bin", "safetensors"] = "pth", *,
              seed: int = 0, with_head: bool = False, num_classes: int = 10,
              **arch: Any) -> dict[str, torch.Tensor]:
    """A bare timm state dict (as ``vit_base_patch16_224.mae`` saved locally), optionally with a
    classifier ``head.*``; ``.pth``/``.bin`` via ``torch.save``, ``.safetensors`` via safetensors."""
    state = encoder_weights(seed=seed, **arch)
    if with_head:
        gen = torch.Generator().manual_seed(seed + 3000)
        state["head.weight"] = 0.05 * torch.randn(num_classes, state["cls_token"].shape[-1],
                                                  generator=gen)
        state["head.bias"] = torch.zeros(num_classes)
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif fmt in ("pth", "bin"):
        torch.save(state, path)
    else:
        raise ValueError(f"fmt must be pth, bin or safetensors, not {fmt!r}")
    return state


def umae_metadata(**changes: Any) -> dict[str, Any]:
    """The JSON-safe ``'umae'`` dict umae's trainer writes, for the default tiny arch."""
    meta: dict[str, Any] = dict(
        format_version=1, preset="test-tiny", method="u-mae", lam=0.01, unif_form="code",
        epoch=3, img_size=TINY["img_size"], patch_size=TINY["patch_size"],
        embed_dim=TINY["embed_dim"], depth=TINY["depth"], num_heads=TINY["num_heads"],
        mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], data_fingerprint="0123abcd",
        versions={"torch": str(torch.__version__)},  # TorchVersion is not weights_only-safe
    )
    meta.update(changes)
    return meta


def make_umae(path: str | Path, metadata: dict[str, Any] | None = None, *, seed: int = 0,
              epoch: int = 3, **arch: Any) -> dict[str, torch.Tensor]:
    """umae's trainer checkpoint: ``{'model': encoder + decoder, 'umae': metadata, 'optimizer',
    'scaler', 'epoch'}``. ``metadata`` entries override :func:`umae_metadata`'s defaults (which
    follow ``arch``)."""
    state = _full_weights(seed, 1, arch)
    a = {**TINY, **arch}
    meta = umae_metadata(epoch=epoch, **{k: a[k] for k in
                                         ("img_size", "patch_size", "embed_dim", "depth", "num_heads")})
    meta.update(metadata or {})
    torch.save({"model": state, "umae": meta, **_training_extras(state, epoch)}, path)
    return state


class OpaqueConfig:
    """A custom class: pickling an instance makes a file need full unpickling (--trust-pickle)."""

    def __init__(self, name: str = "custom") -> None:
        self.name = name


def make_needs_pickle(path: str | Path, *, seed: int = 0, **arch: Any) -> dict[str, torch.Tensor]:
    """``{'model': encoder, 'config': OpaqueConfig()}``: refused without ``trust_pickle``;
    the global it names is ``ckpt_factory.OpaqueConfig``."""
    state = encoder_weights(seed=seed, **arch)
    torch.save({"model": state, "config": OpaqueConfig()}, path)
    return state


def truncated_copy(src: str | Path, dst: str | Path, fraction: float = 0.5) -> Path:
    """Write the first ``fraction`` of ``src``'s bytes to ``dst`` (an interrupted download)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def class_colour_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 32, 32, 3) uint8 images of 3 classes (red, green, blue, plus noise) and their labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=float)[y]
    x = base[:, None, None, :] + rng.normal(0, 40, size=(n, 32, 32, 3))
    return np.clip(x, 0, 255).astype(np.uint8), y


def random_bytes_file(path: str | Path, n: int = 4096, seed: int = 0) -> Path:
    """``n`` seeded random bytes: a file that is no checkpoint at all."""
    gen = torch.Generator().manual_seed(seed)
    data = torch.randint(0, 256, (n,), generator=gen, dtype=torch.uint8).numpy().tobytes()
    Path(path).write_bytes(data)
    return Path(path)

