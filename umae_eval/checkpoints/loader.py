"""``read_checkpoint`` (any file or folder -> :class:`ParsedCheckpoint`) and ``load_encoder``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from umae_eval.checkpoints.arch import MAEEncoderViT, ViTArch, build_vit, infer_arch, load_strict
from umae_eval.checkpoints.detect import detect_layout, parse_object
from umae_eval.checkpoints.files import folder_weights, read_any, read_json, read_weights
from umae_eval.checkpoints.pickles import class_name, is_module_like, layer_norm_eps, module_state
from umae_eval.checkpoints.info import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EncoderInfo,
    LoadedEncoder,
    ParsedCheckpoint,
    Triple,
)
from umae_eval.errors import UmaeError
from umae_eval.provenance import sha256_file


def _hf_config_beside(path: Path) -> dict[str, Any] | None:
    """A ViTMAE ``config.json`` in the same folder as a lone weights file, if there is one."""
    candidate = path.parent / "config.json"
    if not candidate.is_file():
        return None
    config = read_json(candidate)
    return config if config.get("model_type") == "vit_mae" else None


def read_checkpoint(path: str | Path, *, trust_pickle: bool = False) -> ParsedCheckpoint:
    """Read a checkpoint file or Hugging Face folder of any supported layout.

    Parameters
    ----------
    path : str or Path
        A ``.pth`` / ``.bin`` / ``.safetensors`` file, or a ``save_pretrained`` folder
        (``config.json`` + ``model.safetensors`` / ``pytorch_model.bin``, shards allowed).
    trust_pickle : bool
        Load with ``weights_only=False``: runs arbitrary pickled code. Only for trusted files.

    Returns
    -------
    ParsedCheckpoint
        Encoder under timm names, decoder under official MAE names (may be empty), the
        architecture hints and metadata the file states.

    Raises
    ------
    UmaeError
        Missing, empty, truncated or unknown file (the message lists the keys seen), a
        pickled global other than ``argparse.Namespace`` without ``trust_pickle``.
    """
    path = Path(path)
    config: dict[str, Any] | None = None
    if path.is_dir():
        weights = folder_weights(path)
        obj = read_weights(weights, trust_pickle)
        if (path / "config.json").is_file():
            config = read_json(path / "config.json")
    else:
        weights = path
        obj = read_any(path, trust_pickle)
    pickled, eps = None, set()
    if is_module_like(obj):  # torch.save(model): a whole module (IcarusWizard/MAE)
        pickled, eps = class_name(obj), layer_norm_eps(obj)
        obj = module_state(obj)
    try:
        layout = detect_layout(obj)
    except UmaeError as exc:
        raise UmaeError(f"{path}: {exc.message}") from None
    if layout == "hf-vitmae" and config is None and not path.is_dir():
        config = _hf_config_beside(path)
    parsed = parse_object(obj, layout, str(path), config)
    parsed.path, parsed.weights = path, weights
    if pickled is not None:
        parsed.note = f"whole-model pickle of {pickled}" + (f"; {parsed.note}" if parsed.note else "")
        if len(eps) == 1:  # the pickled LayerNorms say which eps the run had
            parsed.hints["norm_eps"] = eps.pop()
        elif eps:
            parsed.note += f"; mixed LayerNorm eps {sorted(eps)}: umae uses {parsed.hints.get('norm_eps', 1e-6):g}"
    bad = [k for k, v in {**parsed.encoder, **parsed.decoder}.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UmaeError(f"{path}: encoder entries that are not tensors: {', '.join(bad[:6])}; "
                        "the file is not a plain state dict")
    return parsed


def build_encoder(parsed: ParsedCheckpoint,
                  arch_overrides: Mapping[str, Any] | None = None) -> tuple[MAEEncoderViT, ViTArch]:
    """The timm encoder of a parsed checkpoint, weights loaded strictly, in eval mode.

    ``arch_overrides`` win over the file's hints, which win over inference from the weights.
    """
    overrides = {**parsed.hints, **dict(arch_overrides or {})}
    arch = infer_arch(parsed.encoder, source=str(parsed.path), overrides=overrides)
    model = build_vit(arch)
    load_strict(model, parsed.encoder, str(parsed.path))
    return model.eval(), arch


def _triple(value: Any, what: str, source: str) -> Triple:
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise UmaeError(f"{source}: {what} must be 3 finite numbers (one per RGB channel), got "
                        f"{value!r}")
    if what == "std" and any(v <= 0 for v in values):
        raise UmaeError(f"{source}: std must be positive, got {value!r}")
    return values  # type: ignore[return-value]


def _find_run_dir(path: Path) -> str | None:
    for folder in (path.parent, path.parent.parent):
        if (folder / "metrics.jsonl").is_file():
            return str(folder)
    return None


def _norm_of(parsed: ParsedCheckpoint, norm: tuple[Triple, Triple] | None) -> tuple[Triple, Triple]:
    meta, path = parsed.metadata, parsed.path
    if norm is not None:
        return _triple(norm[0], "mean", "--norm"), _triple(norm[1], "std", "--norm")
    if parsed.layout == "umae" and "mean" in meta and "std" in meta:
        return (_triple(meta["mean"], "mean", f"{path} (umae metadata)"),
                _triple(meta["std"], "std", f"{path} (umae metadata)"))
    if parsed.norm is not None:  # the convention of the tool that wrote the file
        return parsed.norm
    return IMAGENET_MEAN, IMAGENET_STD


def load_encoder(path: str | Path, *, trust_pickle: bool = False,
                 arch_overrides: Mapping[str, Any] | None = None,
                 norm: tuple[Triple, Triple] | None = None) -> LoadedEncoder:
    """Load the ViT encoder of an MAE-family checkpoint into timm.

    Parameters
    ----------
    path : str or Path
        A ``.pth`` / ``.bin`` (torch) or ``.safetensors`` file, or a Hugging Face folder, of any
        layout in :data:`umae_eval.checkpoints.LAYOUTS`.
    trust_pickle : bool
        Load with ``weights_only=False``: runs arbitrary pickled code. Only for trusted files.
    arch_overrides : Mapping[str, Any], optional
        :class:`ViTArch` fields to use instead of inferring them, e.g. ``{'num_heads': 6}``.
        By default heads, LayerNorm eps and qkv bias come from the file where it states them
        (umae metadata, a Hugging Face config.json).
    norm : (mean, std), optional
        Per-channel pixel normalisation to record instead of the metadata's (umae files) or
        ImageNet's (everything else).

    Returns
    -------
    LoadedEncoder
        ``model``: a :class:`MAEEncoderViT` in eval mode on CPU, weights loaded strictly;
        ``info``: :class:`EncoderInfo` with the layout, arch, sha256 and normalisation.

    Raises
    ------
    UmaeError
        Missing file; truncated or non-checkpoint file; unknown layout (lists the keys seen);
        a pickled global other than ``argparse.Namespace`` without ``trust_pickle``;
        architecture that cannot be inferred; a key whose shape does not fit (names both shapes).
    """
    parsed = read_checkpoint(path, trust_pickle=trust_pickle)
    model, arch = build_encoder(parsed, arch_overrides)
    mean, std = _norm_of(parsed, norm)
    info = EncoderInfo(
        path=str(parsed.path), layout=parsed.layout, arch=arch,
        n_params=sum(p.numel() for p in model.parameters()),
        sha256=sha256_file(parsed.weights), mean=mean, std=std, metadata=parsed.metadata,
        run_dir=_find_run_dir(parsed.path) if parsed.layout == "umae" else None,
        note=parsed.note,
    )
    return LoadedEncoder(model=model, info=info)


def random_init_encoder(arch: ViTArch, *, seed: int = 0, mean: Triple = IMAGENET_MEAN,
                        std: Triple = IMAGENET_STD) -> LoadedEncoder:
    """The untrained baseline: ``arch`` with timm's default init, deterministic in ``seed``.

    The global torch RNG is left as it was.

    Parameters
    ----------
    arch : ViTArch
        Usually ``loaded.info.arch`` of the trained encoder it is compared with.
    seed : int
        Seed of the initialisation.
    mean, std : tuple of 3 floats
        Pixel normalisation to record (use the trained encoder's for a fair comparison).

    Returns
    -------
    LoadedEncoder
        Layout ``'random-init'``, path ``'random-init'``, sha256 ``'random-init-seed<seed>'``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_vit(arch)
    mean = _triple(mean, "mean", "random_init_encoder")
    std = _triple(std, "std", "random_init_encoder")
    info = EncoderInfo(path="random-init", layout="random-init", arch=arch,
                       n_params=sum(p.numel() for p in model.parameters()),
                       sha256=f"random-init-seed{seed}", mean=mean, std=std,
                       metadata={"seed": seed})
    return LoadedEncoder(model=model, info=info)
