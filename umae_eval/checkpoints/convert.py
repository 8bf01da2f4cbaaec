"""Write any loadable checkpoint in the official MAE, timm or Hugging Face layout (``umae convert``).

- ``official``: ``{'model': encoder + decoder}`` with ``torch.save`` (the official-full layout,
  or official-encoder when the source has no decoder), readable by MAE's own ``models_mae``.
- ``timm``: the encoder as a bare state dict: ``.safetensors`` (safetensors) or ``.pth`` /
  ``.bin`` (``torch.save``); loads with ``timm.create_model(name, pretrained=True,
  pretrained_cfg_overlay=dict(file=OUT))``. The decoder is left out (timm has none).
- ``hf``: a ``save_pretrained``-style folder, ``config.json`` + ``model.safetensors`` in the hub's
  key names: ``ViTMAEForPreTraining`` with a decoder, else ``ViTMAEModel``.

Files are written under a temporary name and renamed; a folder is filled beside its final place
and renamed, so a failure leaves no half-written output.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from umae_eval.checkpoints import hf
from umae_eval.checkpoints.arch import ViTArch, default_heads
from umae_eval.checkpoints.loader import build_encoder, read_checkpoint
from umae_eval.errors import UmaeError
from umae_eval.provenance import atomic_write, sha256_file

Target = Literal["official", "timm", "hf"]
TARGETS = ("official", "timm", "hf")
#: Width of the official ImageNet MAE decoder and its head count.
_OFFICIAL_DECODER = (512, 16)


@dataclass
class ConversionResult:
    """What ``convert_checkpoint`` wrote.

    Attributes
    ----------
    source, source_layout : str
        The file or folder read and its layout.
    target : str
        ``'official'``, ``'timm'`` or ``'hf'``.
    out : str
        The file (official, timm) or folder (hf) written.
    arch : ViTArch
        The encoder's architecture.
    encoder_tensors, decoder_tensors : int
        How many tensors of each part were written.
    notes : list of str
        What did not carry over or was assumed (e.g. a dropped decoder, an eps the target
        cannot record).
    sha256 : dict
        sha256 of every file written, by file name.
    """

    source: str
    source_layout: str
    target: str
    out: str
    arch: ViTArch
    encoder_tensors: int
    decoder_tensors: int
    notes: list[str] = field(default_factory=list)
    sha256: dict[str, str] = field(default_factory=dict)
    #: What changes the features when the written file is loaded the target's way (a LayerNorm
    #: eps the target cannot record): shown as warning lines, not only inside the summary.
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: what went where."""
        parts = f"{self.encoder_tensors} encoder" + (f" + {self.decoder_tensors} decoder"
                                                     if self.decoder_tensors else "")
        text = (f"{self.source} ({self.source_layout}) -> {self.out} ({self.target}): "
                f"{parts} tensors, {self.arch.describe()}")
        return text + "".join(f"; {n}" for n in self.notes)


def _safetensors_bytes(state: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    # transformers refuses safetensors files without this metadata entry.
    return save({k: v.contiguous() for k, v in state.items()}, metadata={"format": "pt"})


def _write_folder(out: Path, files: dict[str, bytes]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _decoder_heads(width: int, hints: dict[str, Any], given: int | None) -> tuple[int | None, str]:
    if given is not None:
        if given < 1 or width % given:  # transformers would refuse the folder only when it is loaded
            raise UmaeError(f"--decoder-num-heads {given}: does not divide the decoder width {width}; "
                            f"choose a divisor of {width} (e.g. {max(h for h in range(1, 17) if width % h == 0)})")
        return given, ""
    if "decoder_num_heads" in hints:
        return int(hints["decoder_num_heads"]), ""
    if width == _OFFICIAL_DECODER[0]:
        return _OFFICIAL_DECODER[1], "decoder heads assumed 16 (the official 512-wide decoder)"
    return None, ""


def convert_checkpoint(src: str | Path, out: str | Path, to: str, *, trust_pickle: bool = False,
                       arch_overrides: dict[str, Any] | None = None,
                       decoder_num_heads: int | None = None) -> ConversionResult:
    """Read ``src`` (any layout :func:`read_checkpoint` knows) and write it as ``to`` at ``out``.

    Parameters
    ----------
    src : path
        Checkpoint file or Hugging Face folder.
    out : path
        The file (official: ``.pth``; timm: ``.safetensors``, ``.pth`` or ``.bin``) or folder
        (hf) to create; must not exist.
    to : {'official', 'timm', 'hf'}
    trust_pickle : bool
        Passed to :func:`read_checkpoint`.
    arch_overrides : dict, optional
        :class:`ViTArch` fields (``num_heads`` for a width the weights cannot tell).
    decoder_num_heads : int, optional
        The decoder's heads for ``hf`` when the source does not record them.

    Returns
    -------
    ConversionResult

    Raises
    ------
    UmaeError
        Unknown target, ``out`` exists or has the wrong suffix, an unreadable source, or a
        source the target cannot express (see :func:`umae_eval.checkpoints.hf.to_hf`).
    """
    if to not in TARGETS:
        raise UmaeError(f"--to {to!r}: choose one of {', '.join(TARGETS)}")
    out = Path(out)
    if out.exists():
        raise UmaeError(f"{out} already exists; choose a new output path (convert never overwrites)")
    suffixes = {"official": (".pth",), "timm": (".safetensors", ".pth", ".bin"), "hf": ("",)}[to]
    if out.suffix not in suffixes:
        raise UmaeError(f"{out}: --to {to} writes a " + (
            "folder, so give a path without a suffix" if to == "hf" else
            f"{' / '.join(suffixes)} file; end the output name with one of them"))
    parsed = read_checkpoint(src, trust_pickle=trust_pickle)
    _, arch = build_encoder(parsed, arch_overrides)  # proves the encoder loads, gives its arch
    notes: list[str] = []
    encoder, decoder = dict(parsed.encoder), dict(parsed.decoder)
    if to != "hf" and arch.num_heads != default_heads(arch.embed_dim):
        notes.append(f"{arch.num_heads} heads are not recorded in this layout: load it with "
                     f"--num-heads {arch.num_heads}")
    warnings: list[str] = []
    if to == "official":
        if arch.norm_eps != 1e-6:
            warnings.append(f"{out}: the source's LayerNorm eps {arch.norm_eps:g} cannot be recorded in the "
                            "official layout, whose model builds 1e-6: features there differ slightly "
                            f"(umae's own --to hf keeps it)")
        if arch.has_fc_norm and arch.has_final_norm:
            # models_mae.MaskedAutoencoderViT has only `norm`: its strict load refuses fc_norm.*
            encoder = {k: v for k, v in encoder.items() if not k.startswith("fc_norm.")}
            notes.append("fc_norm left out: the official MAE model has none (it only served average pooling)")
        payload = {"model": {**encoder, **decoder}}
        atomic_write(out, lambda fh: torch.save(payload, fh))
        written = {out.name: sha256_file(out)}
    elif to == "timm":
        if decoder:
            notes.append(f"decoder ({len(decoder)} tensors) left out: timm's ViT has none")
            decoder = {}
        if arch.norm_eps != 1e-6:
            warnings.append(f"{out}: timm builds LayerNorm eps 1e-6, the source used {arch.norm_eps:g}: "
                            "features loaded with timm differ slightly (pass norm_layer=partial(nn.LayerNorm, "
                            f"eps={arch.norm_eps:g}) to timm.create_model to match)")
        if arch.has_fc_norm and arch.has_final_norm:
            # timm's ViT has either a final norm ([CLS] pooling) or fc_norm (average pooling).
            encoder = {k: v for k, v in encoder.items() if not k.startswith("fc_norm.")}
            notes.append("fc_norm left out: timm's ViT with a final norm has none (it only served "
                         "average pooling)")
        if out.suffix == ".safetensors":
            data = _safetensors_bytes(encoder)
            atomic_write(out, lambda fh: fh.write(data))
        else:
            atomic_write(out, lambda fh: torch.save(encoder, fh))
        written = {out.name: sha256_file(out)}
    else:
        heads = None
        if decoder:
            width = int(decoder["decoder_embed.weight"].shape[0])
            heads, note = _decoder_heads(width, parsed.decoder_hints, decoder_num_heads)
            if note:
                notes.append(note)
        if arch.has_fc_norm:
            notes.append("fc_norm left out: ViTMAE has none (it only served average pooling)")
        state, config = hf.to_hf(encoder, decoder, arch, decoder_num_heads=heads,
                                 norm_pix_loss=bool(parsed.decoder_hints.get("norm_pix_loss", False)))
        config_text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        _write_folder(out, {"config.json": config_text.encode(), "model.safetensors": _safetensors_bytes(state)})
        written = {name: sha256_file(out / name) for name in ("config.json", "model.safetensors")}
        notes.append(f"written as {config['architectures'][0]}")
    return ConversionResult(source=str(parsed.path), source_layout=parsed.layout, target=to,
                            out=str(out), arch=arch, encoder_tensors=len(encoder),
                            decoder_tensors=len(decoder), notes=notes, sha256=written, warnings=warnings)
