"""Checks before a run starts or continues: a taken ``--out`` and a checkpoint of another recipe,
data or seed are refused; the schedule fields a resume may change.

Split out of :mod:`trainer.loop` (code moved unchanged); ``trainer.loop`` re-exports every name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


from trainer.presets import Preset
from umae_eval.errors import UmaeError


#: Preset fields a resumed run may change: the learning-rate schedule is recomputed from them
#: (a run extended with more --epochs, or continued with a lower --blr after a NaN).
SCHEDULE_FIELDS = ("epochs", "warmup_epochs", "blr")


def _check_resume_compatible(meta: dict[str, Any], preset: Preset, fingerprint: str, seed: int,
                             path: Path) -> dict[str, list[Any]]:
    """Refuse to resume a checkpoint of another recipe, dataset or seed.

    Returns the schedule fields that change, ``{field: [checkpoint's, now]}``.
    """
    saved = dict(meta.get("preset_fields", {}))
    now = preset.to_dict()
    changes: dict[str, list[Any]] = {}
    for key in sorted(set(saved) | set(now)):
        if key in SCHEDULE_FIELDS:
            if saved.get(key) != now.get(key):
                changes[key] = [saved.get(key), now.get(key)]
            continue
        if saved.get(key) != now.get(key):
            raise UmaeError(
                f"--resume {path}: the checkpoint has {key}={saved.get(key)!r} but this run asks for "
                f"{now.get(key)!r}; pass the original options (see config.json) or a new --out"
            )
    if meta.get("data_fingerprint") != fingerprint:
        raise UmaeError(f"--resume {path}: the checkpoint was trained on other data "
                        f"({meta.get('data_spec')!r}); pass the same --data or a new --out")
    if int(meta.get("seed", seed)) != seed:
        raise UmaeError(f"--resume {path}: the checkpoint used --seed {meta.get('seed')}, not {seed}; "
                        "pass the same --seed")
    return changes


def check_out_dir(run_dir: Path, resume: str | None) -> None:
    """Refuse a file, an unwritable folder, or an existing non-empty run folder unless resuming."""
    from umae_eval.staging import check_writable

    if os.path.lexists(run_dir) and not run_dir.is_dir():
        raise UmaeError(f"--out {run_dir} is an existing file; give a run folder")
    if resume is None and run_dir.exists() and any(run_dir.iterdir()):
        raise UmaeError(f"--out {run_dir} already exists and is not empty; pass --resume auto to "
                        "continue that run, or choose another --out")
    check_writable(run_dir)  # a read-only or full disk is refused now, not after loading the data
