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
from typing import ContextManager, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

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


def say(message: str) -> None:
    """One status line on stderr (e.g. 'UMAP compiles on first use: ~15 s')."""
    console.print(message, highlight=False)
