"""Load any MAE-family checkpoint into timm's ViT: detect the layout, infer the ViT, refuse clearly.

One loader for every command. ``load_encoder(path)`` reads a checkpoint with
``torch.load(weights_only=True)`` (or the ``safetensors`` package), recognises which tool wrote it,
infers the encoder's architecture from the weights, builds a timm ``VisionTransformer``
(``num_classes=0``, ``global_pool='token'``, LayerNorm eps 1e-6) and loads the encoder keys
strictly. Layouts (see ``docs/REFERENCE.md`` section 4):

- ``official-encoder``: ``{'model': encoder}`` (``mae_pretrain_vit_*.pth``; also official
  fine-tuned files, whose ``head.*`` is dropped).
- ``official-full``: ``{'model': encoder + decoder}`` (visualize files; ``main_pretrain.py``
  checkpoints with ``optimizer``/``scaler``/``epoch``/``args``); the decoder is dropped.
- ``u-mae``: U-MAE's ``main_pretrain.py``: the official layout plus ``fc_norm.*`` (kept) and the
  online head ``fc.*`` (dropped), with ``args`` a pickled ``argparse.Namespace``.
- ``timm``: a bare state dict (``.pth``, ``.bin`` or ``.safetensors``); ``head.*`` dropped.
- ``umae``: umae's trainer: ``{'model': encoder + decoder, 'umae': metadata, ...}``.
- ``random-init``: not a file: :func:`random_init_encoder`, the untrained baseline.

Only ``argparse.Namespace`` is allow-listed for unpickling (scoped to the one ``torch.load``
call); anything else needs ``trust_pickle=True`` (the CLI's ``--trust-pickle``).

Example
-------
>>> enc = load_encoder("mae_pretrain_vit_base.pth")          # doctest: +SKIP
>>> enc.info.summary()                                         # doctest: +SKIP
'official-encoder: ViT dim768 depth12 heads12 p16 224px, 85.80M params, sha256 3f1a...'
"""

from __future__ import annotations

import argparse
import functools
import math
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from umae_eval.compat import ensure_timm_importable
from umae_eval.errors import UmaeError
from umae_eval.provenance import sha256_file

ensure_timm_importable()  # before timm: lets it import on CPU torch beside a CUDA torchvision
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LAYOUTS",
    "EncoderInfo",
    "LoadedEncoder",
    "MAEEncoderViT",
    "ViTArch",
    "build_vit",
    "detect_layout",
    "encoder_state_dict",
    "infer_arch",
    "load_encoder",
    "random_init_encoder",
]

Triple = tuple[float, float, float]

#: ImageNet channel statistics, used when a checkpoint carries none (official MAE, timm).
IMAGENET_MEAN: Triple = (0.485, 0.456, 0.406)
IMAGENET_STD: Triple = (0.229, 0.224, 0.225)

#: Every layout name :func:`detect_layout` can return, plus the untrained baseline.
LAYOUTS = ("official-encoder", "official-full", "u-mae", "timm", "umae", "random-init")

#: Key prefixes that belong to MAE's decoder (official, U-MAE and umae checkpoints).
_DECODER_PREFIXES = ("mask_token", "decoder_embed.", "decoder_pos_embed", "decoder_blocks.",
                     "decoder_norm.", "decoder_pred.")
#: Key prefixes of classifier heads: timm/fine-tuned ``head.*``, U-MAE's online head ``fc.*``.
_HEAD_PREFIXES = ("head.", "fc.")
#: The only global unpickled without --trust-pickle: the ``args`` of MAE/U-MAE training files.
_SAFE_GLOBALS: list[Any] = [argparse.Namespace]
_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+) was not an allowed global")
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")


@dataclass(frozen=True)
class ViTArch:
    """The shape of a plain ViT encoder (class token, learned/fixed absolute positions).

    Attributes
    ----------
    img_size : int
        Side of the square input image in pixels (``sqrt(L) * patch_size``).
    patch_size : int
        Side of a square patch in pixels; ``L = (img_size / patch_size) ** 2`` patches.
    embed_dim : int
        Token width ``D``.
    depth : int
        Number of transformer blocks.
    num_heads : int
        Attention heads. Not visible in the weights: inferred as ``D / 64`` (16 for D = 1280),
        so pass it through ``arch_overrides`` for anything else.
    mlp_ratio : float
        Hidden width of the MLP over ``D``.
    has_fc_norm : bool
        The checkpoint carries ``fc_norm.*`` (U-MAE, official fine-tuned files): a LayerNorm that
        is applied after average pooling, never to the [CLS] token.
    has_final_norm : bool
        The checkpoint carries the final ``norm.*`` applied to every token after the last block
        (all pre-training layouts; official fine-tuned files with global pooling lack it).
    """

    img_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    has_fc_norm: bool = False
    has_final_norm: bool = True

    @property
    def num_patches(self) -> int:
        """``L``, the number of patch tokens (without [CLS])."""
        return (self.img_size // self.patch_size) ** 2

    def describe(self) -> str:
        """Short text such as ``'ViT dim192 depth12 heads3 p2 32px'``."""
        text = (f"ViT dim{self.embed_dim} depth{self.depth} heads{self.num_heads} "
                f"p{self.patch_size} {self.img_size}px")
        if self.mlp_ratio != 4.0:
            text += f" mlp{self.mlp_ratio:g}"
        if self.has_fc_norm:
            text += " +fc_norm"
        if not self.has_final_norm:
            text += " no-final-norm"
        return text


@dataclass
class EncoderInfo:
    """Where an encoder came from and how to feed it.

    Attributes
    ----------
    path : str
        The checkpoint file (``'random-init'`` for :func:`random_init_encoder`).
    layout : str
        One of :data:`LAYOUTS`.
    arch : ViTArch
        The architecture the weights were loaded into.
    n_params : int
        Parameters of the encoder as built (decoder and heads excluded).
    sha256 : str
        Hex sha256 of the file's bytes, or ``'random-init-seed<N>'``.
    mean, std : tuple of 3 floats
        Per-channel normalisation of pixels in [0, 1] that the encoder was trained with.
    metadata : dict
        JSON-safe: umae's ``'umae'`` metadata, or ``vars(args)`` of an MAE/U-MAE training file,
        else empty.
    run_dir : str or None
        The umae run folder (holding ``metrics.jsonl``) the checkpoint belongs to.
    """

    path: str
    layout: str
    arch: ViTArch
    n_params: int
    sha256: str
    mean: Triple = IMAGENET_MEAN
    std: Triple = IMAGENET_STD
    metadata: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None

    def summary(self) -> str:
        """One line: layout, architecture, parameter count, sha256 prefix.

        Example: ``'u-mae: ViT dim192 depth12 heads3 p2 32px +fc_norm, 5.36M params,
        sha256 9f2c4e1b07aa'``.
        """
        digest = self.sha256[:12] if re.fullmatch(r"[0-9a-f]{64}", self.sha256) else self.sha256
        return (f"{self.layout}: {self.arch.describe()}, {self.n_params / 1e6:.2f}M params, "
                f"sha256 {digest}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict of every field (``arch`` as a nested dict)."""
        return {
            "path": self.path,
            "layout": self.layout,
            "arch": asdict(self.arch),
            "n_params": self.n_params,
            "sha256": self.sha256,
            "mean": list(self.mean),
            "std": list(self.std),
            "metadata": self.metadata,
            "run_dir": self.run_dir,
        }


class MAEEncoderViT(VisionTransformer):
    """timm's ``VisionTransformer`` whose ``fc_norm`` never touches the [CLS] token.

    timm applies ``fc_norm`` after any pooling; MAE and U-MAE apply it only to the average of the
    patch tokens. With ``global_pool='token'`` this class skips it, so ``model(x)`` is MAE's
    linear-probe feature (the [CLS] token after the final norm), shape ``(B, D)``, for every
    layout. ``umae_eval.features.pool_tokens`` does the pooling for both modes.
    """

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool ``(B, 1 + L, D)`` tokens to ``(B, D)``; ``fc_norm`` only for non-token pooling."""
        x = self.pool(x)
        if self.global_pool != "token":
            x = self.fc_norm(x)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)


@dataclass
class LoadedEncoder:
    """A ready-to-use encoder (eval mode, on CPU) and where it came from."""

    model: MAEEncoderViT
    info: EncoderInfo


# --------------------------------------------------------------------------------------------
# Layout detection and key selection
# --------------------------------------------------------------------------------------------

def _is_vit_state_dict(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and "cls_token" in obj and "pos_embed" in obj
            and "patch_embed.proj.weight" in obj)


def _strip_module_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop DDP's ``module.`` prefix when every key has it."""
    keys = [k for k in state if isinstance(k, str)]
    if keys and len(keys) == len(state) and all(k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _keys_preview(obj: Any, n: int = 10) -> str:
    if not isinstance(obj, Mapping):
        return f"a {type(obj).__name__}, not a dict"
    keys = [str(k) for k in obj]
    shown = ", ".join(keys[:n])
    more = f", ... ({len(keys)} keys)" if len(keys) > n else ""
    return f"keys: {shown}{more}" if keys else "an empty dict"


def detect_layout(obj: Any) -> str:
    """Name the layout of a loaded checkpoint object.

    Parameters
    ----------
    obj : Any
        What ``torch.load`` (or ``safetensors.torch.load_file``) returned.

    Returns
    -------
    str
        ``'umae'`` (has ``'umae'`` metadata and ``'model'``), ``'u-mae'`` (``'model'`` with the
        online head ``fc.*``), ``'official-full'`` (``'model'`` with decoder keys),
        ``'official-encoder'`` (``'model'`` with encoder keys only) or ``'timm'`` (a bare ViT
        state dict).

    Raises
    ------
    UmaeError
        If ``obj`` is none of these; the message lists the first keys seen.
    """
    if isinstance(obj, Mapping):
        model = obj.get("model")
        if isinstance(model, Mapping):
            model = _strip_module_prefix(model)
            if _is_vit_state_dict(model):
                if isinstance(obj.get("umae"), Mapping):
                    return "umae"
                if "fc.weight" in model:
                    return "u-mae"
                if any(k.startswith(_DECODER_PREFIXES) for k in model):
                    return "official-full"
                return "official-encoder"
        if _is_vit_state_dict(_strip_module_prefix(obj)):
            return "timm"
    where = _keys_preview(obj)
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        where = f"'model' {_keys_preview(obj['model'])}"
    raise UmaeError(
        f"unknown checkpoint layout ({where}); expected an official MAE, U-MAE or umae file "
        "({'model': ViT state dict}) or a bare timm ViT state dict with cls_token, pos_embed "
        "and patch_embed.proj.weight")


def encoder_state_dict(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The encoder's tensors of an MAE-family state dict.

    Drops the decoder (``mask_token``, ``decoder_*``), classifier heads (``head.*``, U-MAE's
    ``fc.*``) and DDP's ``module.`` prefix; keeps ``fc_norm.*``.

    Parameters
    ----------
    state : Mapping[str, Tensor]
        A full state dict (e.g. ``ckpt['model']``).

    Returns
    -------
    dict[str, Tensor]
        The same tensors (not copies), encoder keys only, in the original order.
    """
    state = _strip_module_prefix(state)
    return {k: v for k, v in state.items()
            if not k.startswith(_DECODER_PREFIXES) and not k.startswith(_HEAD_PREFIXES)}


# --------------------------------------------------------------------------------------------
# Architecture inference and model building
# --------------------------------------------------------------------------------------------

def _default_heads(embed_dim: int) -> int | None:
    if embed_dim == 1280:  # ViT-H/14: 16 heads of 80
        return 16
    if embed_dim % 64 == 0:
        return embed_dim // 64
    return None


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(t.shape) if hasattr(t, "shape") else ()


def infer_arch(state: Mapping[str, torch.Tensor], *, source: str = "checkpoint",
               overrides: Mapping[str, Any] | None = None) -> ViTArch:
    """Infer a :class:`ViTArch` from encoder weights.

    Parameters
    ----------
    state : Mapping[str, Tensor]
        Encoder state dict: ``cls_token`` (1, 1, D), ``pos_embed`` (1, L + 1, D),
        ``patch_embed.proj.weight`` (D, 3, p, p), ``blocks.{i}.mlp.fc1.weight`` (H, D), ...
    source : str
        The file name used in error messages.
    overrides : Mapping[str, Any], optional
        Fields of :class:`ViTArch` to set instead of inferring them (e.g. ``{'num_heads': 6}``).

    Returns
    -------
    ViTArch
        ``D`` from ``cls_token``, depth from the block count, ``p`` from the patch projection,
        ``img_size = sqrt(L) * p``, heads ``D / 64`` (16 for ``D = 1280``), MLP ratio
        ``H / D``, and which of ``fc_norm`` / ``norm`` are present.

    Raises
    ------
    UmaeError
        If a needed tensor is missing or odd-shaped and no override supplies the value, or an
        override names no field.
    """
    overrides = dict(overrides or {})
    valid = {f.name for f in fields(ViTArch)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise UmaeError(f"{source}: unknown architecture override(s) {', '.join(unknown)}; "
                        f"valid names are {', '.join(sorted(valid))}")

    cls = _shape(state.get("cls_token"))
    if len(cls) != 3 or cls[:2] != (1, 1):
        raise UmaeError(f"{source}: cls_token has shape {cls}, expected (1, 1, D); "
                        "only ViTs with one class token are supported")
    dim = cls[2]
    proj = _shape(state.get("patch_embed.proj.weight"))
    if len(proj) != 4 or proj[0] != dim or proj[2] != proj[3]:
        raise UmaeError(f"{source}: patch_embed.proj.weight has shape {proj}, expected "
                        f"({dim}, 3, p, p) for square patches")
    if proj[1] != 3:
        raise UmaeError(f"{source}: patch_embed.proj.weight takes {proj[1]} input channels; "
                        "only RGB (3-channel) encoders are supported")
    patch = proj[2]
    pos = _shape(state.get("pos_embed"))
    if len(pos) != 3 or pos[0] != 1 or pos[2] != dim:
        raise UmaeError(f"{source}: pos_embed has shape {pos}, expected (1, L + 1, {dim})")
    grid = math.isqrt(max(pos[1] - 1, 0))
    if "img_size" in overrides:
        img_size = int(overrides["img_size"])
    elif grid * grid == pos[1] - 1 and grid > 0:
        img_size = grid * patch
    else:
        raise UmaeError(f"{source}: pos_embed holds {pos[1] - 1} patch positions, not a square "
                        "grid; pass arch_overrides={'img_size': N}")
    block_ids = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))}
    depth = max(block_ids) + 1 if block_ids else 0
    if depth == 0 and "depth" not in overrides:
        raise UmaeError(f"{source}: no transformer blocks (blocks.0.*) in the encoder weights")
    fc1 = _shape(state.get("blocks.0.mlp.fc1.weight"))
    if len(fc1) == 2 and fc1[1] == dim:
        mlp_ratio = fc1[0] / dim
    elif "mlp_ratio" not in overrides:
        raise UmaeError(f"{source}: blocks.0.mlp.fc1.weight has shape {fc1}, expected "
                        f"(hidden, {dim}); pass arch_overrides={{'mlp_ratio': r}}")
    else:
        mlp_ratio = 4.0
    heads = _default_heads(dim)
    if heads is None and "num_heads" not in overrides:
        raise UmaeError(f"{source}: cannot infer the number of attention heads for embed dim "
                        f"{dim} (not a multiple of 64); pass --num-heads N "
                       "(arch_overrides={'num_heads': N} from Python)")
    arch = ViTArch(img_size=img_size, patch_size=patch, embed_dim=dim, depth=depth,
                   num_heads=heads or 1, mlp_ratio=float(mlp_ratio),
                   has_fc_norm="fc_norm.weight" in state,
                   has_final_norm="norm.weight" in state)
    arch = replace(arch, **overrides)
    if arch.embed_dim % arch.num_heads != 0:
        raise UmaeError(f"{source}: embed dim {arch.embed_dim} is not divisible by "
                        f"num_heads={arch.num_heads}; pass a divisor through arch_overrides")
    return arch


def build_vit(arch: ViTArch) -> MAEEncoderViT:
    """An untrained timm ViT encoder with MAE's conventions.

    ``num_classes=0`` (no head), ``global_pool='token'``, one class token, qkv bias,
    ``LayerNorm(eps=1e-6)``; a final ``norm`` unless ``arch.has_final_norm`` is False, and an
    ``fc_norm`` LayerNorm only if ``arch.has_fc_norm``. Weights follow timm's default init (uses
    torch's global RNG).

    Parameters
    ----------
    arch : ViTArch
        The architecture.

    Returns
    -------
    MAEEncoderViT
        In eval mode; ``model(x)`` maps (B, 3, img_size, img_size) to (B, D).
    """
    norm_layer = functools.partial(nn.LayerNorm, eps=1e-6)
    model = MAEEncoderViT(
        img_size=arch.img_size, patch_size=arch.patch_size, in_chans=3, num_classes=0,
        global_pool="token", embed_dim=arch.embed_dim, depth=arch.depth,
        num_heads=arch.num_heads, mlp_ratio=arch.mlp_ratio, qkv_bias=True, class_token=True,
        fc_norm=False, final_norm=arch.has_final_norm, norm_layer=norm_layer,
    )
    if arch.has_fc_norm:
        model.fc_norm = norm_layer(arch.embed_dim)
    return model.eval()


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    expected = model.state_dict()
    for key, value in state.items():
        if key in expected and _shape(value) != tuple(expected[key].shape):
            raise UmaeError(
                f"{source}: shape mismatch for '{key}': checkpoint {_shape(value)} vs model "
                f"{tuple(expected[key].shape)}; the file is inconsistent or an arch override "
                "does not fit it")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:6])}" + (" ..." if len(missing) > 6 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:6])}"
                         + (" ..." if len(unexpected) > 6 else ""))
        raise UmaeError(f"{source}: encoder keys do not match a plain MAE ViT ({'; '.join(parts)}); "
                        "only class-token ViTs without layer scale or registers are supported")
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------

def _one_line(exc: BaseException, limit: int = 120) -> str:
    """The gist of a reader's error: torch's weights-only advice and miniz's hints dropped."""
    text = " ".join(str(exc).split())
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    text = text.strip().split(". ", 1)[0].rstrip(".") or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _looks_like_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 32


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError
        raise UmaeError(f"{path}: truncated or not a safetensors file ({_one_line(exc)}); "
                        "re-download or re-export it") from exc


def _read_torch(path: Path, trust_pickle: bool) -> Any:
    with warnings.catch_warnings():
        # torch warns about pickle protocols it did not write; the user cannot act on it.
        warnings.filterwarnings("ignore", message=".*pickle protocol.*")
        if trust_pickle:
            try:
                return torch.load(path, map_location="cpu", weights_only=False)
            except (ImportError, AttributeError) as exc:
                raise UmaeError(f"{path}: unpickling needs code that is not importable here "
                                f"({_one_line(exc)}); install the package that wrote it or "
                                "re-save only its state dict") from exc
            except Exception as exc:
                raise UmaeError(f"{path}: truncated or not a PyTorch checkpoint "
                                f"({_one_line(exc)}); re-download or re-save it") from exc
        try:
            with torch.serialization.safe_globals(_SAFE_GLOBALS):
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            match = _UNSAFE_GLOBAL.search(str(exc))
            if match:
                raise UmaeError(
                    f"{path}: needs full unpickling of {match.group(1)}, which is not allowed by "
                    "default; pass --trust-pickle (trust_pickle=True) only if you trust the file, "
                    "since unpickling can run arbitrary code") from exc
            raise UmaeError(f"{path}: truncated or not a PyTorch checkpoint ({_one_line(exc)}); "
                            "re-download or re-save it") from exc
        except Exception as exc:  # zip / EOF / index errors of torch's readers
            raise UmaeError(f"{path}: truncated or not a PyTorch checkpoint ({_one_line(exc)}); "
                            "re-download or re-save it") from exc


def _json_safe(obj: Any) -> Any:
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return _json_safe(obj.item())
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, argparse.Namespace):
        return _json_safe(vars(obj))
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        n = obj.numel() if isinstance(obj, torch.Tensor) else obj.size
        return obj.tolist() if n <= 16 else f"<{type(obj).__name__} shape {tuple(obj.shape)}>"
    return str(obj)


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


def load_encoder(path: str | Path, *, trust_pickle: bool = False,
                 arch_overrides: Mapping[str, Any] | None = None,
                 norm: tuple[Triple, Triple] | None = None) -> LoadedEncoder:
    """Load the ViT encoder of an MAE-family checkpoint into timm.

    Parameters
    ----------
    path : str or Path
        A ``.pth`` / ``.bin`` (torch) or ``.safetensors`` file of any layout in the module
        docstring.
    trust_pickle : bool
        Load with ``weights_only=False``: runs arbitrary pickled code. Only for trusted files.
    arch_overrides : Mapping[str, Any], optional
        :class:`ViTArch` fields to use instead of inferring them, e.g. ``{'num_heads': 6}``.
        For umae checkpoints ``num_heads`` defaults to the metadata's.
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
    path = Path(path)
    if not path.exists():
        raise UmaeError(f"checkpoint not found: {path}; check the path")
    if not path.is_file():
        raise UmaeError(f"checkpoint {path} is not a file; give the .pth/.bin/.safetensors file")
    if path.stat().st_size == 0:
        raise UmaeError(f"{path}: the file is empty (truncated download?); re-download it")

    obj = _read_safetensors(path) if _looks_like_safetensors(path) else _read_torch(path, trust_pickle)
    try:
        layout = detect_layout(obj)
    except UmaeError as exc:
        raise UmaeError(f"{path}: {exc.message}") from None

    inner = obj if layout == "timm" else obj["model"]
    state = encoder_state_dict(inner)
    metadata: dict[str, Any] = {}
    if layout == "umae":
        metadata = _json_safe(obj["umae"])
    elif isinstance(obj.get("args"), argparse.Namespace):
        metadata = _json_safe(vars(obj["args"]))

    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UmaeError(f"{path}: encoder entries that are not tensors: {', '.join(bad[:6])}; "
                        "the file is not a plain state dict")
    overrides = dict(arch_overrides or {})
    if layout == "umae" and "num_heads" not in overrides and isinstance(metadata.get("num_heads"), int):
        overrides["num_heads"] = metadata["num_heads"]
    arch = infer_arch(state, source=str(path), overrides=overrides)
    model = build_vit(arch)
    _load_strict(model, state, str(path))
    model.eval()

    if norm is not None:
        mean, std = _triple(norm[0], "mean", "--norm"), _triple(norm[1], "std", "--norm")
    elif layout == "umae" and "mean" in metadata and "std" in metadata:
        mean = _triple(metadata["mean"], "mean", f"{path} (umae metadata)")
        std = _triple(metadata["std"], "std", f"{path} (umae metadata)")
    else:
        mean, std = IMAGENET_MEAN, IMAGENET_STD

    info = EncoderInfo(
        path=str(path), layout=layout, arch=arch,
        n_params=sum(p.numel() for p in model.parameters()),
        sha256=sha256_file(path), mean=mean, std=std, metadata=metadata,
        run_dir=_find_run_dir(path) if layout == "umae" else None,
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
