"""The layout every plotly figure of a report shares, and :func:`label`, which escapes user strings
(see :mod:`umae_eval.report.figures`)."""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

#: Legend above the plot, horizontal: it wraps on narrow screens instead of covering an axis.
_LEGEND: dict[str, Any] = dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom")

_LAYOUT: dict[str, Any] = dict(
    template="plotly_white",
    margin=dict(l=60, r=20, t=110, b=50),
    height=440,
    legend=_LEGEND,
    showlegend=True,  # plotly hides a one-trace legend: the run/checkpoint name would be lost
)


def label(text: object) -> str:
    """A user string made safe to show as plain text in a plotly label or legend."""
    return html.escape(str(text), quote=False)


def _base(title: str, xaxis: str, yaxis: str, settings_line: str = "") -> go.Figure:
    fig = go.Figure()
    full_title = label(title)
    if settings_line:
        full_title += f"<br><sup>{label(settings_line)}</sup>"
    fig.update_layout(title=dict(text=full_title, x=0.01), xaxis_title=xaxis, yaxis_title=yaxis, **_LAYOUT)
    return fig
