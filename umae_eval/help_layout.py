"""``--help`` that never cuts an option name.

typer draws each options panel as a rich table (required mark, long names, short names, negative
names, type, help). When the terminal is narrow, rich first narrows the widest *wrappable*
columns and, once the help text is as narrow as the names, narrows the name column too, cutting
``--max-train-per-class`` to ``--max-train-per-cla…``. Marking every column before the type and
help columns ``no_wrap`` takes the names out of that narrowing: the help text and the type wrap
instead, down to a few characters each, and the names stay whole; a help word longer than its
column (``'train-{000000..000099}.tar'``) folds onto the next line rather than ending in ``…`` (tests/test_help_width.py renders
every command's help through the installed ``umae`` at 80 and 60 columns).
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

__all__ = ["install"]


class _OptionsTable(Table):
    """A rich table whose columns before the last two (type, help) never wrap or shrink; the last
    two fold a word too long for them instead of cutting it."""

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        for cell in renderables[-2:]:
            # typer hands the help as rich Columns of Text items: the items' own overflow decides
            for item in getattr(cell, "renderables", [cell]):
                if isinstance(item, Text):
                    item.overflow = "fold"
        super().add_row(*renderables, **kwargs)
        # rich creates the columns on the first row; typer's commands table has two and is left alone
        if len(self.columns) > 2:
            for column in self.columns[:-2]:
                column.no_wrap = True
        for column in self.columns[-2:]:
            column.overflow = "fold"  # a long word (a path pattern) breaks across lines instead of '…'


def install() -> None:
    """Make typer's help panels use :class:`_OptionsTable` (idempotent)."""
    import typer.rich_utils as rich_utils

    if getattr(rich_utils, "Table", None) is Table:
        rich_utils.Table = _OptionsTable  # type: ignore[misc]
