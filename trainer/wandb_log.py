"""Weights & Biases mirror of ``metrics.jsonl``: offline by default, one run id per run folder.

W&B runs **offline** (``mode='offline'``, files under ``RUN/wandb/``, nothing sent; ``wandb sync
RUN/wandb/offline-run-*`` uploads later). ``WANDB_MODE`` set in the environment overrides the mode
(``online``, ``offline``, ``disabled``); nothing else is read from the environment but
``WANDB_PROJECT`` (default ``umae``).

The id is kept in ``RUN/wandb-run-id.txt``, so ``--resume auto`` continues the same W&B run.
Offline, W&B cannot resume: a second ``wandb.init(id=...)`` starts a second offline folder whose
steps begin at 0 and know nothing of the first (checked by reading the ``.wandb`` files back), so
syncing both would give the steps of the first attempt twice. Hence the same rule as the
TensorBoard and CSV mirrors (:mod:`trainer.logsinks`): the first record a process logs removes
this id's earlier offline folders and writes the whole history from ``metrics.jsonl`` into a
fresh one, then later records are appended; one offline folder holds every epoch once.
Online (only when ``WANDB_MODE=online`` is set) the server's copy cannot be rewritten: the run is
resumed with ``resume='allow'`` and only epochs from the server's next step on are sent (W&B
drops smaller steps), so epochs redone after a fallback to an older checkpoint keep their first
values there.

Steps are epochs (``record['epoch']``), scalar names those of TensorBoard
(:func:`trainer.logsinks.scalars_of`), the spectrum of evaluation epochs an image
(``rank/spectrum``), and ``config.json`` the run's config.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import string
from pathlib import Path
from typing import Any

from trainer.runlog import read_config
from umae_eval.errors import UmaeError
from umae_eval.provenance import atomic_write_text

WANDB_DIR = "wandb"
RUN_ID_FILE = "wandb-run-id.txt"
_MODES = ("offline", "online", "disabled")


def wandb_mode() -> str:
    """The W&B mode: ``offline`` unless ``WANDB_MODE`` names another (``dryrun`` is offline)."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower() or "offline"
    mode = "offline" if mode == "dryrun" else mode
    if mode not in _MODES:
        raise UmaeError(f"WANDB_MODE={os.environ['WANDB_MODE']!r}: choose offline (the default when unset), "
                        "online or disabled")
    return mode


def check_wandb() -> None:
    """Refuse ``--log wandb`` before the run starts when wandb is missing or ``WANDB_MODE`` is bad."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise UmaeError("--log wandb: the wandb package is not installed; `pip install umae[wandb]` "
                        "(or pip install wandb), or drop wandb from --log") from None
    wandb_mode()


def wandb_run_id(run_dir: str | Path) -> str:
    """The run folder's W&B id, created (8 random base-36 characters) on first use."""
    path = Path(run_dir) / RUN_ID_FILE
    if path.is_file():
        run_id = path.read_text().strip()
        if run_id:
            return run_id
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    atomic_write_text(path, run_id + "\n")
    return run_id


def offline_run_dirs(run_dir: str | Path, run_id: str) -> list[Path]:
    """The offline W&B folders of ``run_id`` under ``RUN/wandb`` (``offline-run-<time>-<id>``), oldest first."""
    return sorted(p for p in (Path(run_dir) / WANDB_DIR).glob(f"offline-run-*-{run_id}") if p.is_dir())


class WandbLog:
    """One process's W&B run for a run folder; :meth:`start` with the history, then :meth:`log`."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.mode = wandb_mode()
        self._run: Any = None

    def start(self, history: list[dict[str, Any]]) -> None:
        """Open the run (offline: rebuilt, see the module notes) and log ``history``, one record per epoch."""
        import wandb

        run_id = wandb_run_id(self.run_dir)
        if self.mode == "offline":
            for old in offline_run_dirs(self.run_dir, run_id):
                shutil.rmtree(old)
        # No git, code, system or machine probes, no console capture (it would wrap the progress
        # display). setup() first: wandb's telemetry is configured from the process-wide settings
        # (default online), and without it an offline run still posted to the W&B server.
        settings = wandb.Settings(mode=self.mode, console="off", silent=True, disable_git=True, save_code=False,
                                  x_disable_stats=True, x_disable_machine_info=True)
        wandb.setup(settings=settings)
        self._run = wandb.init(
            dir=str(self.run_dir), id=run_id, name=self.run_dir.name,
            project=os.environ.get("WANDB_PROJECT") or "umae", config=read_config(self.run_dir),
            resume="allow" if self.mode == "online" else None, settings=settings)
        first = int(self._run.step) if self.mode == "online" else 0  # the server's next step
        for record in history:
            if int(record["epoch"]) >= first:
                self.log(record)

    def log(self, record: dict[str, Any]) -> None:
        """Log one record at step ``record['epoch']``."""
        import PIL.Image
        import wandb

        from trainer.logsinks import scalars_of, spectrum_figure

        epoch = int(record["epoch"])
        data: dict[str, Any] = dict(scalars_of(record))
        spectrum = record.get("singular_values")
        if isinstance(spectrum, list) and spectrum:
            # As a PNG: wandb.Image takes a matplotlib figure only through pyplot.
            buf = io.BytesIO()
            spectrum_figure(spectrum, epoch).savefig(buf, format="png")
            buf.seek(0)
            with PIL.Image.open(buf) as png:
                data["rank/spectrum"] = wandb.Image(png.convert("RGB"))
        self._run.log(data, step=epoch)

    def close(self, failed: bool = False) -> None:
        """Finish the run (exit code 1 when the training raised)."""
        if self._run is not None:
            self._run.finish(exit_code=1 if failed else 0)
            self._run = None
