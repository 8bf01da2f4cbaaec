"""Curves along training, from a umae run folder: ``metrics.jsonl`` (+ ``config.json``).

Fig. 1c (effective rank along training) and Fig. 3b (online linear-probe accuracy, kNN as a
second line) are drawn from these columns; ``config.json``'s ``eval_images`` gives the number
of test images behind each online accuracy, hence its Wilson interval.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path


def read_training_curves(run_dir: str | Path | None) -> dict[str, list[float]] | None:
    """Columns of ``<run_dir>/metrics.jsonl`` (epoch, effective_rank, knn_accuracy, ...), or None.

    Rows are sorted by epoch; a column holds the values of the rows that have it, aligned with
    ``'<column>:epoch'``. Lines that are not JSON objects (e.g. a torn last line) are skipped.
    """
    if run_dir is None:
        return None
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), (int, float)):
            rows.append(row)
    if not rows:
        return None
    rows.sort(key=lambda r: r["epoch"])
    cols: dict[str, list[float]] = {"epoch": [float(r["epoch"]) for r in rows]}
    keys = ("loss", "loss_recon", "loss_unif", "lr", "effective_rank", "rankme", "knn_accuracy",
            "mean_classifier_accuracy", "linear_accuracy")
    for key in keys:
        pts = [(float(r["epoch"]), float(r[key])) for r in rows
               if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        if pts:
            cols[f"{key}:epoch"] = [p[0] for p in pts]
            cols[key] = [p[1] for p in pts]
    return cols


def curve_for(curves: Mapping[str, Mapping[str, list[float]]], metric: str) -> dict[str, dict[str, list[float]]]:
    """``{run: {'epoch': [...], metric: [...]}}`` for the runs that logged ``metric``."""
    return {name: {"epoch": list(c[f"{metric}:epoch"]), metric: list(c[metric])}
            for name, c in curves.items() if metric in c}


def eval_images(run_dir: str | Path | None) -> int | None:
    """Test images behind each online accuracy of a run (``config.json``), or None if unknown.

    The trainer evaluates on ``min(eval_images, test split size)`` images.
    """
    if run_dir is None:
        return None
    path = Path(run_dir) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(config, dict):
        return None
    wanted = (config.get("train_config") or {}).get("eval_images")
    available = (config.get("data") or {}).get("test_images")
    values = [int(v) for v in (wanted, available) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return min(values) if values else None
