"""Training checkpoints: the official MAE layout plus JSON-safe metadata, written atomically.

A checkpoint is a dict loadable with ``torch.load(path, weights_only=True)``::

    {'model': <official MAE state dict, encoder + decoder>,
     'umae': {'format_version': 1, 'preset', 'method', 'lam', 'unif_form', 'epoch', 'step',
              'img_size', 'patch_size', 'embed_dim', 'depth', 'num_heads', 'mlp_ratio',
              'decoder_embed_dim', 'decoder_depth', 'decoder_num_heads', 'mask_ratio',
              'norm_pix_loss', 'mean', 'std', 'data_fingerprint', 'data_spec', 'seed',
              'preset_fields', 'versions'},
     'optimizer': <AdamW state dict>, 'epoch': int, 'step': int,
     'rng': {'torch', 'cuda', 'numpy', 'python'},        # tensors and plain numbers only
     'sampler': {'epoch', 'step_in_epoch', 'seed', 'num_samples'},
     'running': {...}}                                   # partial-epoch sums (mid-epoch saves)

``epoch`` counts completed epochs and ``step`` completed optimiser steps; ``sampler`` says where
the next batch comes from. Files are written to a temporary name and renamed (``os.replace``);
``last.pth`` is always a complete copy of the newest checkpoint (a hard link where the file
system allows, else a copy, each put in place by an atomic rename), never a symlink.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umae_eval.errors import UmaeError
from umae_eval.oom import is_out_of_memory
from umae_eval.provenance import atomic_write

FORMAT_VERSION = 1
LAST = "last.pth"
_NUMBERED = re.compile(r"^checkpoint-(\d+)\.pth$")
#: Temporary names of atomic writes in a run folder (provenance.atomic_write, update_last).
_TEMP = re.compile(r"^\.(?:last\.pth|checkpoint-\d+\.pth|config\.json|metrics\.jsonl|results\.json)\..+\.tmp$")

#: Preset fields copied to the top level of the 'umae' metadata (what loaders look for).
_ARCH_FIELDS = (
    "method", "lam", "unif_form", "img_size", "patch_size", "embed_dim", "depth", "num_heads",
    "mlp_ratio", "decoder_embed_dim", "decoder_depth", "decoder_num_heads", "mask_ratio",
    "norm_pix_loss",
)


def checkpoint_name(epoch: int) -> str:
    """``checkpoint-<epoch>.pth``, ``epoch`` = number of completed epochs."""
    return f"checkpoint-{epoch}.pth"


def metadata(
    preset_fields: dict[str, Any],
    *,
    epoch: int,
    step: int,
    data_spec: str,
    data_fingerprint: str,
    seed: int,
    versions: dict[str, str],
) -> dict[str, Any]:
    """The JSON-safe ``'umae'`` metadata of a checkpoint.

    Parameters
    ----------
    preset_fields : dict
        ``Preset.to_dict()`` of the run (lists, numbers, strings only).
    epoch, step : int
        Completed epochs and optimiser steps.
    data_spec, data_fingerprint : str
        The ``--data`` value and the dataset's content fingerprint.
    seed : int
        The run seed.
    versions : dict of str
        ``umae_eval.provenance.versions()``.
    """
    meta: dict[str, Any] = {"format_version": FORMAT_VERSION, "preset": preset_fields["name"]}
    for key in _ARCH_FIELDS:
        meta[key] = preset_fields[key]
    meta.update(
        epoch=int(epoch),
        step=int(step),
        mean=[float(v) for v in preset_fields["mean"]],
        std=[float(v) for v in preset_fields["std"]],
        data_spec=str(data_spec),
        data_fingerprint=str(data_fingerprint),
        seed=int(seed),
        preset_fields=dict(preset_fields),
        versions=dict(versions),
    )
    return meta


# --------------------------------------------------------------------------- RNG states


def rng_state() -> dict[str, Any]:
    """Every RNG state of this process as tensors and plain numbers (``weights_only``-safe).

    Returns
    -------
    dict
        ``torch``: uint8 tensor; ``cuda``: list of uint8 tensors (empty without CUDA);
        ``numpy``: {'keys': int64 tensor (624,), 'pos', 'has_gauss', 'cached_gaussian'};
        ``python``: {'version', 'state': int64 tensor (625,), 'gauss_next'}.
    """
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only where devices exist)."""
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        for i in range(n):
            torch.cuda.set_rng_state(cuda[i].cpu(), i)
    npst = state["numpy"]
    np.random.set_state(
        ("MT19937", npst["keys"].numpy().astype(np.uint32), int(npst["pos"]),
         int(npst["has_gauss"]), float(npst["cached_gaussian"]))
    )
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))


# --------------------------------------------------------------------------- files


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` with ``torch.save`` to a temporary file, then rename it to ``path``."""
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def update_last(path: str | Path) -> Path:
    """Make ``<folder>/last.pth`` a complete copy of checkpoint ``path``, atomically.

    A hard link is made under a temporary name (a copy where links are unsupported) and renamed
    over ``last.pth``; the old ``last.pth`` stays valid until the rename.
    """
    path = Path(path)
    last = path.parent / LAST
    fd, tmp = tempfile.mkstemp(prefix=f".{LAST}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)
        os.replace(tmp, last)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return last


class UnreadableCheckpoint(UmaeError):
    """A checkpoint file that cannot be read at all (truncated, corrupted): resume may fall back."""


def _official_mae_summary(path: Path) -> str | None:
    """'official MAE checkpoint (epoch N, model M)' when ``path`` holds MAE's ``args`` Namespace."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("args"), argparse.Namespace) and "model" in obj:
        model = getattr(obj["args"], "model", "?")
        return f"an official MAE checkpoint (main_pretrain.py: model {model}, epoch {obj.get('epoch', '?')})"
    return None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a umae training checkpoint with ``weights_only=True``.

    Raises
    ------
    UnreadableCheckpoint
        A file that cannot be read (truncated, corrupted).
    UmaeError
        A missing file, or a file that is not a umae training checkpoint (official MAE files,
        whose pickled ``argparse.Namespace`` ``weights_only`` refuses, are named as such).
    """
    path = Path(path)
    if not path.is_file():
        raise UmaeError(f"checkpoint {path} does not exist; check --resume")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, pickle from another tool, ...
        if is_out_of_memory(exc):
            raise  # not a damaged file: never fall back to an older checkpoint for it
        official = _official_mae_summary(path)
        if official is not None:
            raise UmaeError(f"--resume {path}: {official}, not a run of `umae train`; --resume continues "
                            f"only umae runs: start a new run from its weights with --init {path}") from exc
        raise UnreadableCheckpoint(
            f"cannot read checkpoint {path} ({type(exc).__name__}: truncated or corrupted); resume "
            "from another checkpoint-<epoch>.pth in that folder with --resume PATH"
        ) from exc
    if not isinstance(ckpt, dict) or "umae" not in ckpt or "model" not in ckpt:
        raise UmaeError(f"{path} is not a umae training checkpoint (no 'umae' metadata); "
                        "--resume takes a file written by `umae train`; to start a new run from "
                        "another tool's weights use --init PATH")
    version = ckpt["umae"].get("format_version")
    if version != FORMAT_VERSION:
        raise UmaeError(f"{path} has checkpoint format_version {version}; this umae reads "
                        f"{FORMAT_VERSION}")
    return ckpt


def numbered_checkpoints(run_dir: str | Path) -> list[Path]:
    """``checkpoint-<epoch>.pth`` files of a run folder, newest (highest epoch) first."""
    found = []
    for p in Path(run_dir).glob("checkpoint-*.pth"):
        m = _NUMBERED.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found, reverse=True)]


@dataclass
class ResumePoint:
    """Where a run continues from.

    Attributes
    ----------
    path : Path or None
        The checkpoint loaded, None for a fresh start.
    checkpoint : dict or None
        Its contents (:func:`load_checkpoint`).
    skipped : list of (Path, str)
        Unreadable checkpoints passed over (newest first) and why.
    """

    path: Path | None
    checkpoint: dict[str, Any] | None
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def load_resume_point(run_dir: str | Path, resume: str | None,
                      map_location: str | torch.device = "cpu") -> ResumePoint:
    """Load the checkpoint a run continues from.

    ``resume='auto'`` tries ``last.pth``, then every ``checkpoint-<epoch>.pth`` newest first, and
    takes the first that reads (a truncated ``last.pth`` falls back to the newest intact numbered
    checkpoint; :attr:`ResumePoint.skipped` says which were passed over). A folder with none of
    them starts fresh. An explicit path is loaded as given, without fallback.

    Raises
    ------
    UmaeError
        The explicit checkpoint is missing or unreadable, every candidate of 'auto' is
        unreadable, or a candidate is not a umae training checkpoint.
    """
    if resume != "auto":
        path = resume_path(run_dir, resume)
        return ResumePoint(path, None if path is None else load_checkpoint(path, map_location))
    run_dir = Path(run_dir)
    candidates = ([run_dir / LAST] if (run_dir / LAST).is_file() else []) + numbered_checkpoints(run_dir)
    skipped: list[tuple[Path, str]] = []
    for path in candidates:
        try:
            return ResumePoint(path, load_checkpoint(path, map_location), skipped)
        except UnreadableCheckpoint as exc:
            cause = exc.__cause__
            skipped.append((path, type(cause).__name__ if cause is not None else "unreadable"))
    if skipped:
        names = ", ".join(p.name for p, _ in skipped)
        raise UmaeError(f"--resume auto: no intact checkpoint in {run_dir} ({names} cannot be read: "
                        "truncated or corrupted); start again with a new --out")
    return ResumePoint(None, None)


def remove_stale_temp_files(run_dir: str | Path) -> list[Path]:
    """Remove the temporary files of writes that a kill interrupted; returns what was removed.

    :func:`save_checkpoint` and the run log write ``.<name>.<random>.tmp`` and rename it; a
    SIGKILL in between leaves the temporary file (a checkpoint's worth of bytes) behind.
    Call this only when no other process writes into ``run_dir``.
    """
    removed = []
    for entry in Path(run_dir).iterdir() if Path(run_dir).is_dir() else ():
        if _TEMP.match(entry.name) and entry.is_file() and not entry.is_symlink():
            entry.unlink()
            removed.append(entry)
    return removed


def resume_path(run_dir: str | Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from, or None for a fresh start.

    Parameters
    ----------
    run_dir : path
        The run folder.
    resume : {None, 'auto'} or path
        None: never resume. 'auto': ``run_dir/last.pth`` when it exists, else a fresh start.
        A file: that checkpoint. A folder: its ``last.pth``.

    Raises
    ------
    UmaeError
        A given path that does not exist or has no ``last.pth``.
    """
    if resume is None:
        return None
    if resume == "auto":
        last = Path(run_dir) / LAST
        return last if last.is_file() else None
    p = Path(resume)
    if p.is_dir():
        p = p / LAST
    if not p.is_file():
        raise UmaeError(f"--resume {resume}: no such checkpoint (give a .pth file, a run folder "
                        "with last.pth, or 'auto')")
    return p
