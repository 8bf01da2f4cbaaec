"""Progress reporting passed into library code, so that only the CLI touches the terminal.

Library functions take ``progress: ProgressFactory = null_progress`` and use it as::

    with progress("encoding test split", total=len(images)) as advance:
        for batch in batches:
            ...
            advance(len(batch))
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ContextManager, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:  # the trainer (and torch) load only when a run starts
    from trainer.stepinfo import StepInfo

Advance = Callable[[int], None]

# When a stream is a file or a pipe (logs, CI, nohup) rich would wrap at 80 columns, squashing
# tables into slivers and splitting one epoch's figures over two lines, so those get a wide width.
_LOG_WIDTH = 200

#: Messages and progress go to stderr; tables and paths of results go to stdout.
console = Console(stderr=True, width=None if sys.stderr.isatty() else _LOG_WIDTH)
#: Result tables.
stdout = Console(width=None if sys.stdout.isatty() else _LOG_WIDTH)


class ProgressFactory(Protocol):
    def __call__(self, description: str, total: int | None = None) -> ContextManager[Advance]: ...


@contextlib.contextmanager
def null_progress(description: str, total: int | None = None) -> Iterator[Advance]:
    """A progress factory that reports nothing (the library default, and tests')."""
    yield lambda n=1: None


@contextlib.contextmanager
def rich_progress(description: str, total: int | None = None) -> Iterator[Advance]:
    """A rich progress bar on stderr with count, elapsed time and ETA."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False,
                  disable=not sys.stderr.isatty() and total is None) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


class PlannedProgress:
    """One bar over a whole run whose stages are known in advance, plus a bar per stage.

    ``stages`` maps each stage's progress description to (units, cost per unit); the overall bar's
    total is the summed cost, and each finished unit advances it by its stage's cost, so its time
    remaining is estimated from the work done so far (rich's rate over the last 30 s), not from a
    spinner. A stage that starts with another unit count than planned corrects the total; a stage
    not in the plan gets its own bar only. Use as a context manager, then as a
    :class:`ProgressFactory`.
    """

    def __init__(self, title: str, stages: dict[str, tuple[int, float]], out: Console | None = None) -> None:
        self.stages = dict(stages)
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=out or console,
                            transient=False)
        self.title = title
        self.overall: TaskID | None = None

    def __enter__(self) -> PlannedProgress:
        self.bar.start()
        self.overall = self.bar.add_task(self.title, total=sum(n * c for n, c in self.stages.values()))
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    @contextlib.contextmanager
    def __call__(self, description: str, total: int | None = None) -> Iterator[Advance]:
        planned, cost = self.stages.get(description, (0, 0.0))
        assert self.overall is not None, "PlannedProgress is used inside its with block"
        overall = self.overall
        if cost and total is not None and total != planned:
            self.bar.update(overall, total=self.bar.tasks[overall].total + (total - planned) * cost)
        task = self.bar.add_task(f"  {description}", total=total)

        def advance(n: int = 1) -> None:
            self.bar.advance(task, n)
            if cost:
                self.bar.advance(overall, n * cost)

        try:
            yield advance
        finally:
            self.bar.remove_task(task)


def say(message: str) -> None:
    """One status line on stderr (e.g. 'UMAP compiles on first use: ~15 s')."""
    console.print(message, highlight=False)


class TrainDisplay:
    """A rich display for a training run: one bar for the whole run (with ETA) and one per epoch.

    Works as a :class:`~umae_eval.progress.ProgressFactory` (for data loading and the epoch bars)
    and takes :meth:`on_step` / :meth:`on_epoch` callbacks from :func:`trainer.loop.train_run`.
    """

    def __init__(self, out: Console) -> None:
        self.out = out
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=out,
            transient=False,
        )
        self.run_task: TaskID | None = None
        self.current: TaskID | None = None

    def __enter__(self) -> TrainDisplay:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    @contextlib.contextmanager
    def __call__(self, description: str, total: int | None = None) -> Iterator[Advance]:
        task = self.bar.add_task(description, total=total, info="")
        self.current = task
        try:
            yield lambda n=1: self.bar.advance(task, n)
        finally:
            self.bar.remove_task(task)
            self.current = None

    def on_step(self, info: StepInfo) -> None:
        """Show one optimiser step's figures (a :class:`trainer.stepinfo.StepInfo`)."""
        text = (f"loss {info.loss:.4f} (recon {info.loss_recon:.4f}, unif {info.loss_unif:.4f}) "
                f"lr {info.lr:.2e} {info.img_per_s:,.0f} img/s")
        if self.run_task is None:
            self.run_task = self.bar.add_task("run", total=info.total_steps, info="")
        self.bar.update(self.run_task, completed=info.step, info=f"epoch {info.epoch}/{info.epochs}")
        if self.current is not None:
            self.bar.update(self.current, info=text)
        if info.note:
            self.bar.console.print(f"warning: {info.note}", highlight=False, soft_wrap=True)

    def note(self, message: str) -> None:
        """A one-line message from the run (e.g. which checkpoint a resume fell back to)."""
        self.bar.console.print(message, highlight=False, markup=False, soft_wrap=True)

    def on_epoch(self, record: dict[str, Any]) -> None:
        """One line per finished epoch."""
        parts = [f"epoch {record['epoch']}", f"loss {record['loss']:.4f}",
                 f"effective_rank {record['effective_rank']:.2f}", f"rankme {record['rankme']:.2f}"]
        for key in ("linear_accuracy", "knn_accuracy", "mean_classifier_accuracy"):
            if key in record:
                parts.append(f"{key} {record[key]:.2f}%")
        if record.get("img_per_s"):
            parts.append(f"{record['img_per_s']:,.0f} img/s")
        self.bar.console.print("  ".join(parts), highlight=False)


class FinetuneDisplay(TrainDisplay):
    """:class:`TrainDisplay` for ``umae finetune``: loss, lr and img/s per step; top-1/top-5 per epoch."""

    def on_step(self, info: Any) -> None:  # a trainer.finetune.FinetuneStep
        """Show one optimiser step's loss, lr and speed."""
        if self.run_task is None:
            self.run_task = self.bar.add_task("run", total=info.total_steps, info="")
        self.bar.update(self.run_task, completed=info.step, info=f"epoch {info.epoch}/{info.epochs}")
        if self.current is not None:
            self.bar.update(self.current, info=f"loss {info.loss:.4f} lr {info.lr:.2e} "
                                               f"{info.img_per_s:,.0f} img/s")

    def on_epoch(self, record: dict[str, Any]) -> None:
        """One line per finished epoch."""
        parts = [f"epoch {record['epoch']}", f"loss {record['loss']:.4f}"]
        for key in ("test_top1", "test_top5"):
            if key in record:
                parts.append(f"{key} {record[key]:.2f}%")
        if record.get("img_per_s"):
            parts.append(f"{record['img_per_s']:,.0f} img/s")
        self.bar.console.print("  ".join(parts), highlight=False)
