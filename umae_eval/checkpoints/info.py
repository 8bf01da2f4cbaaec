"""What a loaded checkpoint is: :class:`ParsedCheckpoint` (any layout, in canonical names),
:class:`EncoderInfo` and :class:`LoadedEncoder` (the encoder built from it)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from umae_eval.checkpoints.arch import MAEEncoderViT, ViTArch

Triple = tuple[float, float, float]

#: ImageNet channel statistics, used when a checkpoint carries none (official MAE, timm, HF).
IMAGENET_MEAN: Triple = (0.485, 0.456, 0.406)
IMAGENET_STD: Triple = (0.229, 0.224, 0.225)

#: Every layout name :func:`umae_eval.checkpoints.detect_layout` can return, plus the untrained
#: baseline.
LAYOUTS = ("official-encoder", "official-full", "u-mae", "timm", "umae", "hf-vitmae",
           "icarus-mae", "mmpretrain", "solo-learn", "lightly", "random-init")


@dataclass
class ParsedCheckpoint:
    """A checkpoint of any layout, renamed to one vocabulary.

    Attributes
    ----------
    layout : str
        One of :data:`LAYOUTS`.
    encoder : dict[str, Tensor]
        The encoder under timm ``VisionTransformer`` names (``cls_token``, ``pos_embed``,
        ``patch_embed.proj.*``, ``blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*``,
        ``norm.*``, optionally ``fc_norm.*``); heads dropped, q/k/v fused.
    decoder : dict[str, Tensor]
        The MAE decoder under the official names (``mask_token``, ``decoder_embed.*``,
        ``decoder_pos_embed``, ``decoder_blocks.{i}.*``, ``decoder_norm.*``, ``decoder_pred.*``);
        empty when the file has none.
    hints : dict
        :class:`ViTArch` fields the file states outright (a config file, metadata), which win
        over inference from the weights: e.g. ``num_heads``, ``norm_eps``, ``qkv_bias``.
    decoder_hints : dict
        ``decoder_num_heads`` and ``norm_pix_loss`` where the file states them.
    metadata : dict
        JSON-safe: umae's metadata, ``vars(args)`` of an MAE/U-MAE training file, a Hugging
        Face ``config.json``, ...
    note : str
        What was recognised beyond the layout name, for the one-line summary ('' when nothing).
    path : Path
        The file or folder given.
    weights : Path
        The file the tensors came from (the folder's weights file for a Hugging Face folder).
    norm : (mean, std) or None
        The pixel normalisation the writing tool always trains with, where the layout implies
        one the file does not store (None: umae metadata or ImageNet's).
    """

    layout: str
    encoder: dict[str, torch.Tensor]
    decoder: dict[str, torch.Tensor] = field(default_factory=dict)
    hints: dict[str, Any] = field(default_factory=dict)
    decoder_hints: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    path: Path = Path()
    weights: Path = Path()
    norm: tuple[Triple, Triple] | None = None


@dataclass
class EncoderInfo:
    """Where an encoder came from and how to feed it.

    Attributes
    ----------
    path : str
        The checkpoint file or folder (``'random-init'`` for
        :func:`umae_eval.checkpoints.random_init_encoder`).
    layout : str
        One of :data:`LAYOUTS`.
    arch : ViTArch
        The architecture the weights were loaded into.
    n_params : int
        Parameters of the encoder as built (decoder and heads excluded).
    sha256 : str
        Hex sha256 of the weights file's bytes, or ``'random-init-seed<N>'``.
    mean, std : tuple of 3 floats
        Per-channel normalisation of pixels in [0, 1] that the encoder was trained with.
    metadata : dict
        JSON-safe: umae's ``'umae'`` metadata, ``vars(args)`` of an MAE/U-MAE training file, a
        Hugging Face ``config.json``, else empty.
    run_dir : str or None
        The umae run folder (holding ``metrics.jsonl``) the checkpoint belongs to.
    note : str
        What was recognised beyond the layout name (e.g. which Hugging Face class, where the
        head count came from); appended to :meth:`summary` when not empty.
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
    note: str = ""

    def summary(self) -> str:
        """One line: layout, architecture, parameter count, sha256 prefix (and the note).

        Example: ``'u-mae: ViT dim192 depth12 heads3 p2 32px +fc_norm, 5.36M params,
        sha256 9f2c4e1b07aa'``.
        """
        digest = self.sha256[:12] if re.fullmatch(r"[0-9a-f]{64}", self.sha256) else self.sha256
        text = (f"{self.layout}: {self.arch.describe()}, {self.n_params / 1e6:.2f}M params, "
                f"sha256 {digest}")
        return f"{text} ({self.note})" if self.note else text

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
            "note": self.note,
        }


@dataclass
class LoadedEncoder:
    """A ready-to-use encoder (eval mode, on CPU) and where it came from."""

    model: MAEEncoderViT
    info: EncoderInfo
