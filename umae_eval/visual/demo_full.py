"""The full (encoder + decoder) checkpoints behind ``umae reconstruct --demo``.

The encoders ``umae demo`` analyses (``umae_eval/demo/encoders/``) ship without their decoder,
so they cannot reconstruct. ``umae_eval/demo/full/`` holds the **seed-1** runs of the same
recipe (MAE and U-MAE) slimmed to their weights: encoder + decoder in float16 and the run's
``umae`` metadata (``norm_pix_loss``, ``epoch``, ``seed``, ``lam``, ...), each under 2 MB.
``scripts/ship_demo_full.py`` writes a file and its entry of ``provenance.json`` in one command.

:func:`slim_checkpoint` is the slimming (a dict in, a dict out); :func:`demo_full_checkpoints`
reads what is shipped and names it honestly (seed and epoch in every label).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from umae_eval.errors import UmaeError

#: Largest shipped file (bytes): the package stays small.
MAX_BYTES = 2_000_000
#: Why these files exist and what they are not, said wherever they are used.
DEMO_NOTE = ("--demo shows the seed-1 study runs of the demo's recipe (full checkpoints: encoder + "
             "decoder); the numbers of `umae demo` come from the seed-0 encoders, which shipped "
             "without their decoder.")


def demo_full_dir() -> Path:
    """``umae_eval/demo/full/`` inside the installed package."""
    return Path(str(resources.files("umae_eval").joinpath("demo", "full")))


def slim_checkpoint(ckpt: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``{'model': encoder + decoder tensors as float16, 'umae': metadata}`` of a umae training checkpoint.

    Optimiser, RNG, sampler and running sums are dropped; the metadata is kept whole, so the
    file loads as the 'umae' layout and states its ``norm_pix_loss``, ``epoch``, ``seed`` and ``lam``.

    Raises
    ------
    UmaeError
        Not a umae training checkpoint with a decoder (``source`` names the file).
    """
    meta, model = ckpt.get("umae"), ckpt.get("model")
    if not isinstance(meta, Mapping) or not isinstance(model, Mapping):
        raise UmaeError(f"{source}: not a umae training checkpoint (no 'umae' metadata or 'model'); "
                        "pass runs/<name>/last.pth or checkpoint-N.pth of `umae train`")
    if meta.get("kind") == "finetune" or not any(str(k).startswith("decoder_") for k in model):
        raise UmaeError(f"{source}: has no MAE decoder; pass a `umae train` checkpoint (runs/<name>/last.pth)")
    weights = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in model.items()}
    return {"model": weights, "umae": dict(meta)}


@dataclass(frozen=True)
class DemoFull:
    """One shipped full checkpoint: its path, display label and provenance entry."""

    path: Path
    label: str
    provenance: dict[str, Any]


def demo_label(entry: Mapping[str, Any]) -> str:
    """``'MAE seed 1 e7'`` / ``'U-MAE λ=0.01 seed 1 e6'``: method, seed and epoch from the provenance."""
    lam = float(entry.get("lam") or 0.0)
    method = "MAE" if lam == 0 else f"U-MAE λ={lam:g}"
    return f"{method} seed {entry.get('seed')} e{entry.get('epoch')}"


def demo_full_checkpoints(folder: Path | None = None) -> list[DemoFull]:
    """The shipped full checkpoints in ``provenance.json``'s order (MAE first).

    Raises
    ------
    UmaeError
        No provenance or a listed file missing (a broken install).
    """
    folder = demo_full_dir() if folder is None else folder
    index = folder / "provenance.json"
    if not index.is_file():
        raise UmaeError(f"{index}: missing; reinstall umae (pip install -e .) or pass checkpoint files")
    entries = json.loads(index.read_text())
    out = []
    for name, entry in entries.items():
        path = folder / name
        if not path.is_file():
            raise UmaeError(f"{path}: listed in provenance.json but missing; reinstall umae")
        out.append(DemoFull(path, demo_label(entry), dict(entry)))
    if not out:
        raise UmaeError(f"{index}: lists no checkpoint; reinstall umae")
    return out


def demo_sentences(shipped: list[DemoFull]) -> list[str]:
    """What the --demo files are, one sentence each, epochs stated as trained (snapshots said so)."""
    out = [DEMO_NOTE]
    for d in shipped:
        p = d.provenance
        done, planned = p.get("epoch"), p.get("epochs_planned")
        state = (f"a snapshot after epoch {done} of {planned} (the run was still training)"
                 if planned and done is not None and done < planned else f"after epoch {done}")
        out.append(f"{d.label}: {d.path.name}, {state}, norm_pix_loss={p.get('norm_pix_loss')}, "
                   f"source sha256 {str(p.get('source_checkpoint_sha256', ''))[:12]}.")
    return out
