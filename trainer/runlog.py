"""The run folder's text records: ``config.json`` and ``metrics.jsonl``.

``metrics.jsonl`` holds one JSON object per completed epoch (see ARCHITECTURE.md): ``epoch``
(1-based count of completed epochs), ``step``, ``loss``, ``loss_recon``, ``loss_unif``, ``lam``,
``unif_form``, ``lr``, ``img_per_s``, ``effective_rank``, ``rankme`` and, on evaluation epochs,
``knn_accuracy`` and ``mean_classifier_accuracy`` (percent). Lines are appended and fsync'ed; a
resumed run first drops the lines of epochs its checkpoint had not reached.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from umae_eval.provenance import atomic_write_json, atomic_write_text, now_iso

CONFIG = "config.json"
METRICS = "metrics.jsonl"


def _json_safe(value: Any) -> Any:
    """NaN/inf floats become None so that every line is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_config(run_dir: str | Path, config: dict[str, Any]) -> Path:
    """Write ``config.json`` (atomically) with a ``created`` time stamp added."""
    return atomic_write_json(Path(run_dir) / CONFIG, {"created": now_iso(), **config})


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """``config.json`` of a run folder ({} when absent)."""
    path = Path(run_dir) / CONFIG
    return json.loads(path.read_text()) if path.is_file() else {}


def note_resume(run_dir: str | Path, entry: dict[str, Any]) -> Path:
    """Append ``entry`` (time stamped) to the ``resumes`` list of ``config.json``."""
    config = read_config(run_dir)
    config.setdefault("resumes", []).append({"time": now_iso(), **entry})
    return atomic_write_json(Path(run_dir) / CONFIG, config)


def append_metrics(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Append one epoch's record to ``metrics.jsonl`` and fsync it."""
    path = Path(run_dir) / METRICS
    line = json.dumps({k: _json_safe(v) for k, v in record.items()}, allow_nan=False) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (or of a run folder); a torn last line is skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    return records


def truncate_metrics(run_dir: str | Path, last_epoch: int) -> int:
    """Keep only the records with ``epoch <= last_epoch`` (rewritten atomically).

    Returns
    -------
    int
        How many records were kept.
    """
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return 0
    kept = [r for r in read_metrics(path) if int(r.get("epoch", 0)) <= last_epoch]
    atomic_write_text(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept))
    return len(kept)


def record_epoch(run_dir: str | Path, record: dict[str, Any], history: list[dict[str, Any]], *, epoch: int,
                 epochs: int, save_every: int, save: Callable[[], Any],
                 on_epoch: Callable[[dict[str, Any]], None] | None) -> None:
    """What rank 0 does once epoch ``epoch`` (completed epochs) is done, pre-training and fine-tuning alike.

    In this order: the record goes to ``metrics.jsonl`` and ``history``; ``save()`` writes the
    numbered checkpoint every ``save_every`` epochs and at the last; then ``on_epoch`` sees the
    record. The order is what resuming relies on: a checkpoint's epoch is always in
    ``metrics.jsonl`` (a resume drops only later lines), and the logs derived by ``on_epoch``
    never run ahead of the record.
    """
    append_metrics(run_dir, record)
    history.append(record)
    if epoch % save_every == 0 or epoch == epochs:
        save()
    if on_epoch is not None:
        on_epoch(record)
