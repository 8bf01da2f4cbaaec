"""Mirrors of ``metrics.jsonl`` that the ecosystem reads: TensorBoard event files, a CSV and an offline
Weights & Biases run (:mod:`trainer.wandb_log`).

``metrics.jsonl`` stays the record of a run (:mod:`trainer.runlog`); every other log is derived
from it, so that a resumed run's logs hold every epoch exactly once. The first record a process
logs rebuilds the derived logs from ``metrics.jsonl`` as it stands then (the resume has already
dropped the lines of epochs its checkpoint had not reached); later records are appended. So a
run killed after epoch 7 and resumed from its epoch-5 checkpoint shows epochs 1-5 once, then 6, 7,
... once each, never the lost 6-7 of the first attempt.

Scalar names are stable (:data:`SCALAR_NAMES`; the official MAE / U-MAE code logs the same loss
parts under other names), the x axis is the epoch (``record['epoch']``, completed epochs), the
singular-value spectrum of evaluation epochs is an image (``rank/spectrum``), and the run's
``config.json`` is logged as text at epoch 0.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from trainer.runlog import read_config, read_metrics
from trainer.wandb_log import WandbLog, check_wandb
from umae_eval.errors import UmaeError
from umae_eval.provenance import atomic_write_text

T = TypeVar("T")

#: Log kinds ``--log`` accepts; ``jsonl`` (metrics.jsonl) is always written.
LOG_KINDS = ("jsonl", "tensorboard", "csv", "wandb")
TB_DIR = "tensorboard"
CSV_FILE = "metrics.csv"

#: metrics.jsonl key -> scalar name in TensorBoard. Keys not listed go under ``other/<key>``.
SCALAR_NAMES = {
    "loss": "loss/total",
    "loss_recon": "loss/recon",
    "loss_unif": "loss/unif",
    "lr": "lr",
    "effective_rank": "rank/effective",
    "rankme": "rank/rankme",
    "linear_accuracy": "probe/linear",
    "knn_accuracy": "probe/knn",
    "mean_classifier_accuracy": "probe/mean",
    "img_per_s": "speed/img_per_s",
    "train_s": "speed/train_s",
    "train_loss": "loss/train",
    "test_top1": "eval/top1",
    "test_top5": "eval/top5",
    "test_loss": "eval/loss",
}

#: Record keys that are axes or labels, not measurements.
_NOT_SCALARS = {"epoch", "step", "unif_form", "resumed", "lam"}


def tensorboard_available() -> bool:
    """Whether ``torch.utils.tensorboard`` can write (it needs the ``tensorboard`` package)."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def parse_log_kinds(text: str | None) -> tuple[str, ...]:
    """``--log`` text -> the kinds to write, ``jsonl`` first.

    ``None`` is the default: jsonl plus TensorBoard when the package is installed. An unknown
    kind, or ``tensorboard`` asked for without the package, is a :class:`UmaeError` naming the fix.
    """
    if text is None:
        return ("jsonl", "tensorboard") if tensorboard_available() else ("jsonl",)
    kinds = [k.strip().lower() for k in text.split(",") if k.strip()]
    if not kinds:
        raise UmaeError(f"--log {text!r}: name at least one of {', '.join(LOG_KINDS)}")
    for kind in kinds:
        if kind not in LOG_KINDS:
            raise UmaeError(f"--log {text!r}: unknown kind {kind!r}; choose from {', '.join(LOG_KINDS)}")
    if "tensorboard" in kinds and not tensorboard_available():
        raise UmaeError("--log tensorboard: the tensorboard package is not installed; "
                        "`pip install tensorboard`, or pass --log jsonl,csv")
    if "wandb" in kinds:
        check_wandb()
    return tuple(["jsonl"] + [k for k in LOG_KINDS[1:] if k in kinds])


def scalar_name(key: str) -> str:
    """The TensorBoard tag of a metrics.jsonl key."""
    return SCALAR_NAMES.get(key, f"other/{key}")


def scalars_of(record: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of one record, by TensorBoard tag (booleans and axes left out)."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in _NOT_SCALARS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            out[scalar_name(key)] = float(value)
    return out


def _unique_epochs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per epoch (the last written wins), in epoch order."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for r in records:
        if "epoch" in r:
            by_epoch[int(r["epoch"])] = r
    return [by_epoch[e] for e in sorted(by_epoch)]


def metrics_csv_text(records: list[dict[str, Any]]) -> str:
    """The records as CSV: one row per epoch, columns in first-seen order, nested values as JSON."""
    columns: list[str] = []
    for r in records:
        columns.extend(k for k in r if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
    return buf.getvalue()


def spectrum_figure(values: list[float], epoch: int) -> Any:
    """Fig. 1b at one epoch: singular values of held-out [CLS] features (centred, over the largest), log y."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.0, 3.0), dpi=100)
    ax = fig.add_subplot()
    ax.semilogy(range(1, len(values) + 1), [max(v, 1e-12) for v in values], lw=1.5)
    ax.set_xlabel("index k")
    ax.set_ylabel(r"$\sigma_k / \sigma_1$")
    ax.set_title(f"singular values, epoch {epoch}", fontsize=9)
    fig.tight_layout()
    return fig


class RunLoggers:
    """The derived logs of one run folder, fed one ``metrics.jsonl`` record per epoch.

    Parameters
    ----------
    run_dir : path
        The run folder (``metrics.jsonl`` and ``config.json`` inside).
    kinds : tuple of str
        From :func:`parse_log_kinds`; ``jsonl`` needs nothing here (the trainer writes it).
    """

    def __init__(self, run_dir: str | Path, kinds: tuple[str, ...]) -> None:
        self.run_dir = Path(run_dir)
        self.kinds = kinds
        self._writer: Any = None
        self._wandb: WandbLog | None = None
        self._started = False

    @property
    def tensorboard_dir(self) -> Path:
        return self.run_dir / TB_DIR

    def _open_tensorboard(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # Rebuilt from metrics.jsonl: the old event files may hold epochs a resume dropped.
        if self.tensorboard_dir.exists():
            shutil.rmtree(self.tensorboard_dir)
        self._writer = SummaryWriter(log_dir=str(self.tensorboard_dir))
        config = read_config(self.run_dir)
        if config:
            self._writer.add_text("config", "```\n" + json.dumps(config, indent=1, default=str) + "\n```", 0)

    def _log_tensorboard(self, record: dict[str, Any]) -> None:
        epoch = int(record["epoch"])
        for tag, value in scalars_of(record).items():
            self._writer.add_scalar(tag, value, epoch)
        spectrum = record.get("singular_values")
        if isinstance(spectrum, list) and spectrum:
            self._writer.add_figure("rank/spectrum", spectrum_figure(spectrum, epoch), epoch)

    def on_epoch(self, record: dict[str, Any]) -> None:
        """Log one record (already appended to metrics.jsonl by the trainer)."""
        if not self._started:
            self._started = True
            history = _unique_epochs(read_metrics(self.run_dir))
            if "tensorboard" in self.kinds:
                self._open_tensorboard()
                for r in history:
                    self._log_tensorboard(r)
            if "wandb" in self.kinds:
                self._wandb = WandbLog(self.run_dir)
                self._wandb.start(history)
        else:
            if "tensorboard" in self.kinds:
                self._log_tensorboard(record)
            if self._wandb is not None:
                self._wandb.log(record)
        if self._writer is not None:
            self._writer.flush()
        if "csv" in self.kinds:
            atomic_write_text(self.run_dir / CSV_FILE, metrics_csv_text(_unique_epochs(read_metrics(self.run_dir))))

    def close(self, failed: bool = False) -> None:
        """Close the writers; ``failed``: the run raised (W&B marks the run failed)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._wandb is not None:
            self._wandb.close(failed)
            self._wandb = None


def run_logged(run_dir: str | Path, kinds: tuple[str, ...], display: Any, run: Callable[..., T]) -> T:
    """``run(progress=, on_step=, on_epoch=, on_note=)`` shown by ``display``, each epoch's record logged.

    ``display`` is a context manager whose value has ``on_step``, ``on_epoch`` and ``note`` (the
    commands' progress displays); each record goes to the logs first, then to the display. The
    logs are closed whatever happens; W&B marks a run that raised (an error, Ctrl-C) as failed.
    """
    loggers = RunLoggers(run_dir, kinds)
    failed = True
    try:
        with display as shown:
            def on_epoch(record: dict[str, Any]) -> None:
                loggers.on_epoch(record)
                shown.on_epoch(record)

            result = run(progress=shown, on_step=shown.on_step, on_epoch=on_epoch, on_note=shown.note)
        failed = False
        return result
    finally:
        loggers.close(failed)
