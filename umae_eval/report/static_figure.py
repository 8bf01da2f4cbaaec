"""The record of one figure to export to ``figures/``: its own module so that the page writer
(:mod:`umae_eval.report.writer`) and the exporter (:mod:`umae_eval.report.static`) share the
type without importing each other (no import circle)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class StaticFigure:
    """A figure to write to ``figures/<stem>.{pdf,svg,png}``."""

    stem: str
    fig: Any
    title: str
    settings: dict[str, str]
    caption: str = ""
