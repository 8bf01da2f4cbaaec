"""What a training run folder says about itself: recipe, progress, last figures, status.

Read-only: only ``config.json``, ``metrics.jsonl`` and the files' modification times are used,
so it is safe on a run that is still training. Behind ``umae runs``.

Status rule (documented in the README):

- ``empty``: no completed epoch in ``metrics.jsonl``;
- ``finished``: the last record's epoch reached the planned epochs (``config.json``'s preset);
- ``running``: not finished, and a file of the folder changed within ``max(10 min, 3 x the
  slowest epoch so far)`` (a run between two epochs writes nothing for up to one epoch);
- ``stopped``: otherwise (killed, crashed, or stopped with Ctrl-C: ``--resume auto`` continues it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.runlog import CONFIG, METRICS, read_config, read_metrics
from umae_eval.errors import UmaeError

STATUSES = ("finished", "running", "stopped", "empty")
#: Online figures shown per run, by metrics.jsonl key.
CURVE_KEYS = ("loss", "effective_rank", "linear_accuracy", "knn_accuracy", "mean_classifier_accuracy")
_MIN_QUIET_S = 600.0


@dataclass
class RunInfo:
    """One run folder. ``records`` are its metrics.jsonl lines (one per completed epoch)."""

    path: Path
    method: str
    lam: float | None
    epochs_done: int
    epochs_planned: int | None
    status: str
    last: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    reference: bool = False

    @property
    def name(self) -> str:
        return self.path.name

    def latest(self, key: str) -> float | None:
        """The newest value of ``key`` in the records (eval-only keys skip non-eval epochs)."""
        for r in reversed(self.records):
            if r.get(key) is not None:
                return float(r[key])
        return None

    @property
    def display_name(self) -> str:
        """The folder name, marked when it is a reference run (``umae runs --reference``)."""
        return f"ref: {self.name}" if self.reference else self.name

    def curve(self, key: str) -> dict[str, list[float]] | None:
        """``{'epoch': [...], key: [...]}`` over the epochs that logged ``key`` (None if none did)."""
        pts = [(int(x["epoch"]), float(x[key])) for x in self.records
               if isinstance(x.get(key), (int, float)) and not isinstance(x.get(key), bool) and "epoch" in x]
        return {"epoch": [e for e, _ in pts], key: [v for _, v in pts]} if pts else None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "name": self.display_name, "method": self.method, "lam": self.lam,
                "epochs_done": self.epochs_done, "epochs_planned": self.epochs_planned,
                "status": self.status, "reference": self.reference,
                "last": {k: self.latest(k) for k in CURVE_KEYS}}


def is_run_folder(path: Path) -> bool:
    return (path / CONFIG).is_file() or (path / METRICS).is_file()


def _newest_mtime(path: Path) -> float:
    times = [p.stat().st_mtime for p in path.iterdir() if p.is_file()]
    return max(times, default=path.stat().st_mtime)


def run_status(records: Sequence[dict[str, Any]], planned: int | None, newest_mtime: float,
               now: float | None = None) -> str:
    """The status rule of the module docstring (``now`` defaults to the clock)."""
    if not records:
        return "empty"
    done = int(records[-1].get("epoch", 0))
    if planned is not None and done >= planned:
        return "finished"
    slowest = max((float(r.get("train_s") or 0.0) for r in records), default=0.0)
    quiet = (now if now is not None else time.time()) - newest_mtime
    return "running" if quiet <= max(_MIN_QUIET_S, 3.0 * slowest) else "stopped"


def read_run(path: str | Path, *, reference: bool = False, now: float | None = None) -> RunInfo:
    """Read one run folder (``UmaeError`` if it holds neither config.json nor metrics.jsonl)."""
    path = Path(path)
    if not is_run_folder(path):
        raise UmaeError(f"{path}: not a training run folder (no {CONFIG} or {METRICS}); "
                        "pass a folder written by `umae train` or `umae finetune`, or a folder above several")
    config = read_config(path)
    records = read_metrics(path)
    preset = config.get("preset") or {}
    planned = preset.get("epochs") if isinstance(preset, dict) else None
    for resume in config.get("resumes") or []:  # a resume may extend the schedule: {epochs: [old, new]}
        changed = resume.get("changed", {}) if isinstance(resume, dict) else {}
        if isinstance(changed.get("epochs"), list) and len(changed["epochs"]) == 2:
            planned = changed["epochs"][1]
    lam = config.get("lam", preset.get("lam") if isinstance(preset, dict) else None)
    method = str(config.get("method") or (preset.get("method") if isinstance(preset, dict) else "") or "?")
    return RunInfo(
        path=path, method=method, lam=float(lam) if isinstance(lam, (int, float)) else None,
        epochs_done=int(records[-1]["epoch"]) if records else 0,
        epochs_planned=int(planned) if isinstance(planned, int) else None,
        status=run_status(records, planned if isinstance(planned, int) else None, _newest_mtime(path), now),
        last=records[-1] if records else {}, records=records, config=config, reference=reference)


def find_runs(paths: Iterable[str | Path], *, reference: bool = False, max_depth: int = 3) -> list[RunInfo]:
    """Every run folder given, or found below a given folder (at most ``max_depth`` levels), sorted by path.

    Raises
    ------
    UmaeError
        A path that does not exist, or a folder with no run inside.
    """
    found: list[RunInfo] = []
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            raise UmaeError(f"{root}: no such folder; pass a run folder or a folder holding runs")
        if not root.is_dir():
            raise UmaeError(f"{root}: not a folder; pass a run folder (config.json, metrics.jsonl inside)")
        level = [root]
        hits: list[Path] = []
        for _ in range(max_depth + 1):
            nxt: list[Path] = []
            for folder in level:
                if is_run_folder(folder):
                    hits.append(folder)
                else:
                    nxt.extend(sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")))
            level = nxt
        if not hits:
            raise UmaeError(f"{root}: no training run inside (looked {max_depth} levels down for "
                            f"{CONFIG} / {METRICS})")
        found.extend(read_run(p, reference=reference) for p in sorted(hits))
    return found
