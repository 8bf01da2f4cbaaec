"""``umae train --init CKPT``: start pre-training from the weights of any loadable checkpoint.

The file is read by :func:`umae_eval.checkpoints.read_checkpoint` (every layout umae knows:
official MAE, U-MAE, umae, timm, Hugging Face ViTMAE, ...), so its encoder arrives under timm's
names and its decoder under the official MAE names, which are the trainer model's own. The
encoder must fit the preset exactly (width, depth, patch, image size, MLP ratio, and the heads
where the file states them); the decoder is taken when the file has one that fits and the model
has a decoder, else the model keeps its fresh initialisation. :class:`InitReport` lists which
tensors came from the file and which are new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer.presets import Preset
from umae_eval.checkpoints import infer_arch, read_checkpoint
from umae_eval.errors import UmaeError
from umae_eval.provenance import sha256_file

#: Preset fields an encoder must match, and how ViTArch names them.
_ARCH_FIELDS = (("img_size", "img_size"), ("patch_size", "patch_size"), ("embed_dim", "embed_dim"),
                ("depth", "depth"), ("mlp_ratio", "mlp_ratio"))


@dataclass
class InitReport:
    """Where a run's starting weights came from.

    Attributes
    ----------
    path, layout, sha256 : str
        The checkpoint, its layout and the sha256 of its weights file.
    from_file : list of str
        Model state keys whose values were copied from the file.
    new : list of str
        Model state keys left at the model's fresh initialisation.
    dropped : list of str
        File tensors the model has no place for (e.g. U-MAE's ``fc_norm``).
    notes : list of str
        Anything else worth knowing (a LayerNorm eps that changes, a decoder that is ignored).
    """

    path: str
    layout: str
    sha256: str
    from_file: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line, e.g. ``'--init x.pth (official-encoder): 40 tensors from the file
        (encoder), 19 new (decoder: mask_token, decoder_embed, ...)'``."""
        def parts(keys: list[str]) -> str:
            groups = sorted({"decoder" if _is_decoder(k) else "encoder" for k in keys})
            return ", ".join(groups)

        text = f"--init {self.path} ({self.layout}): {len(self.from_file)} tensors from the file"
        if self.from_file:
            text += f" ({parts(self.from_file)})"
        text += f", {len(self.new)} new"
        if self.new:
            heads = sorted({k.split(".")[0] for k in self.new})
            text += f" ({parts(self.new)}: {', '.join(heads[:6])}{' ...' if len(heads) > 6 else ''})"
        if self.dropped:
            text += f", {len(self.dropped)} dropped ({', '.join(sorted({k.split('.')[0] for k in self.dropped}))})"
        return text + "".join(f"; {n}" for n in self.notes)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict of every field (for config.json and results.json)."""
        return {"path": self.path, "layout": self.layout, "sha256": self.sha256,
                "from_file": list(self.from_file), "new": list(self.new),
                "dropped": list(self.dropped), "notes": list(self.notes)}


def _is_decoder(key: str) -> bool:
    return key.startswith(("mask_token", "decoder_"))


def init_from_checkpoint(model: nn.Module, preset: Preset, path: str | Path, *,
                         trust_pickle: bool = False) -> InitReport:
    """Copy a checkpoint's encoder (and fitting decoder) into a freshly built trainer model.

    Parameters
    ----------
    model : nn.Module
        :func:`trainer.model.build_model` of ``preset`` (any device); changed in place.
    preset : Preset
        The run's preset, whose architecture the file must match.
    path : path
        Any checkpoint file or folder umae reads.
    trust_pickle : bool
        Passed to :func:`umae_eval.checkpoints.read_checkpoint`.

    Returns
    -------
    InitReport

    Raises
    ------
    UmaeError
        Unreadable file; an encoder of another shape than the preset's (names both and the
        ``--set`` fields to change); a decoder tensor whose shape does not fit.
    """
    parsed = read_checkpoint(path, trust_pickle=trust_pickle)
    where = f"--init {parsed.path}"
    arch = infer_arch(parsed.encoder, source=where, overrides={**parsed.hints, "num_heads": preset.num_heads})
    wrong = [(name, getattr(arch, a), getattr(preset, name)) for name, a in _ARCH_FIELDS
             if getattr(arch, a) != getattr(preset, name)]
    stated = parsed.hints.get("num_heads")
    if stated is not None and stated != preset.num_heads:
        wrong.append(("num_heads", stated, preset.num_heads))
    if wrong:
        diff = ", ".join(f"{n} {f:g} in the file vs {p:g}" for n, f, p in wrong)
        fix = " ".join(f"--set {n}={f:g}" for n, f, _ in wrong)
        raise UmaeError(f"{where}: the encoder does not fit preset {preset.name} ({diff}); choose the "
                        f"preset of that model or pass {fix}")
    state = model.state_dict()
    report = InitReport(path=str(parsed.path), layout=parsed.layout, sha256=sha256_file(parsed.weights))
    if arch.norm_eps != 1e-6:
        report.notes.append(f"the file's LayerNorm eps {arch.norm_eps:g} becomes the trainer's 1e-6")
    decoder = parsed.decoder
    has_decoder = any(_is_decoder(k) for k in state)
    if decoder and not has_decoder:
        report.notes.append(f"the file's MAE decoder is not used by {preset.method}")
        decoder = {}
    if decoder:
        bad = [k for k, v in decoder.items() if k in state and tuple(v.shape) != tuple(state[k].shape)]
        extra = [k for k in decoder if k not in state]
        if bad or extra:
            k = (bad or extra)[0]
            got = tuple(decoder[k].shape)
            want = tuple(state[k].shape) if k in state else "no such tensor"
            raise UmaeError(f"{where}: the file's decoder does not fit preset {preset.name} ('{k}': file "
                            f"{got} vs model {want}); set decoder_embed_dim / decoder_depth with --set "
                            "to the file's, or start from an encoder-only file")
    source = {**parsed.encoder, **decoder}
    with torch.no_grad():
        for key, value in source.items():
            if key not in state:
                report.dropped.append(key)
                continue
            if tuple(value.shape) != tuple(state[key].shape):  # pragma: no cover - arch checked above
                raise UmaeError(f"{where}: '{key}' has shape {tuple(value.shape)}, the model "
                                f"{tuple(state[key].shape)}")
            state[key].copy_(value.to(state[key].dtype))
            report.from_file.append(key)
    report.new = [k for k in state if k not in source]
    return report
