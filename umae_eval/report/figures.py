"""The report's plotly figures: one function per figure, each returning a ``go.Figure``.

Figures follow the paper ("How Mask Matters", NeurIPS 2022):

- :func:`singular_values_figure`: Fig. 1b, normalised singular values, log-scale y,
  one line per checkpoint (random init included when asked for).
- :func:`rank_bars_figure`: effective rank and RankMe per checkpoint.
- :func:`accuracy_figure`: mean classifier / linear / kNN accuracy per checkpoint.
- :func:`alignment_uniformity_figure`: alignment vs uniformity of two masked views.
- :func:`embedding_figure`: Fig. 3a, a t-SNE/UMAP map coloured by class (class names in the legend).
- :func:`training_curve_figure`: Fig. 1c (effective rank along training) and Fig. 3b
  (online accuracy along training), one line per run.

Every user-supplied string (checkpoint names, class names, paths) goes through :func:`label`
before it reaches plotly: plotly renders a small HTML subset in labels (``<b>``, ``<a href>``,
...), so a class folder named ``<b>x</b>`` would otherwise be drawn as markup. Escaped, plotly
turns ``&lt;`` back into a literal ``<`` and the name shows as text.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

#: A qualitative palette with 20 distinct colours (classes beyond 20 reuse them).
PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)

_LAYOUT: dict[str, Any] = dict(
    template="plotly_white",
    margin=dict(l=60, r=20, t=50, b=50),
    height=420,
    legend=dict(orientation="v"),
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


def singular_values_figure(
    spectra: Mapping[str, np.ndarray],
    *,
    title: str = "Normalised singular values of the features (Fig. 1b)",
    settings_line: str = "",
) -> go.Figure:
    """Fig. 1b: sorted singular values normalised to the largest, log-scale y.

    Parameters
    ----------
    spectra:
        ``{checkpoint name: singular values (D,)}``, each sorted in decreasing order and
        normalised so that the first is 1 (zeros are dropped: they cannot be shown on a log axis).
    settings_line:
        One line of settings shown under the title (features, pooling, data).
    """
    fig = _base(title, "singular value index (sorted)", "σ_k / σ_1 (log scale)", settings_line)
    for i, (name, sv) in enumerate(spectra.items()):
        sv = np.asarray(sv, dtype=np.float64)
        keep = sv > 0
        idx = np.arange(1, sv.size + 1)[keep]
        fig.add_trace(go.Scatter(x=idx, y=sv[keep], mode="lines", name=label(name),
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=2)))
    fig.update_yaxes(type="log", exponentformat="power")
    return fig


def _grouped_bars(fig: go.Figure, values: Mapping[str, Mapping[str, float]], columns: Sequence[str]) -> None:
    """Add one bar trace per column to ``fig``: x = checkpoint names, missing values as NaN, labelled."""
    names = list(values)
    for j, col in enumerate(columns):
        fig.add_trace(go.Bar(
            x=[label(n) for n in names],
            y=[float(values[n].get(col, float("nan"))) for n in names],
            name=label(col),
            marker_color=PALETTE[j % len(PALETTE)],
            texttemplate="%{y:.1f}",
            textposition="outside",
        ))
    fig.update_layout(barmode="group")


def rank_bars_figure(
    ranks: Mapping[str, Mapping[str, float]],
    *,
    metrics: Sequence[str] = ("effective_rank", "rankme"),
    title: str = "Effective rank and RankMe",
    settings_line: str = "",
) -> go.Figure:
    """Grouped bars: one group per checkpoint, one bar per metric (``effective_rank``, ``rankme``).

    ``ranks`` maps checkpoint name -> ``{metric name: value}``; missing metrics are left out.
    """
    fig = _base(title, "checkpoint", "rank (number of dimensions)", settings_line)
    _grouped_bars(fig, ranks, metrics)
    return fig


def accuracy_figure(
    accuracies: Mapping[str, Mapping[str, float]],
    *,
    title: str = "Probe accuracy",
    settings_line: str = "",
) -> go.Figure:
    """Grouped bars of accuracy (percent): one group per checkpoint, one bar per probe.

    ``accuracies`` maps checkpoint name -> ``{probe column (e.g. 'knn_accuracy@20'): percent}``.
    """
    fig = _base(title, "checkpoint", "test accuracy (%)", settings_line)
    columns: list[str] = []
    for per in accuracies.values():
        columns.extend(c for c in per if c not in columns)
    _grouped_bars(fig, accuracies, columns)
    fig.update_yaxes(range=[0, 105])
    return fig


def alignment_uniformity_figure(
    points: Mapping[str, tuple[float, float]],
    *,
    title: str = "Alignment and uniformity of two masked views",
    settings_line: str = "",
) -> go.Figure:
    """One marker per checkpoint at (uniformity, alignment); lower is better on both axes.

    ``points`` maps checkpoint name -> ``(alignment, uniformity)``.
    """
    fig = _base(title, "uniformity (log E exp(-2||z-z'||²), lower = more uniform)",
                "alignment (E ||z1-z2||², lower = better aligned)", settings_line)
    for i, (name, (align, unif)) in enumerate(points.items()):
        fig.add_trace(go.Scatter(x=[float(unif)], y=[float(align)], mode="markers+text",
                                 name=label(name), text=[label(name)], textposition="top center",
                                 marker=dict(size=12, color=PALETTE[i % len(PALETTE)])))
    return fig


def embedding_figure(
    coords: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    title: str,
    settings_line: str = "",
    marker_size: int = 4,
) -> go.Figure:
    """Fig. 3a: a 2-D map (t-SNE or UMAP) of features, one colour and legend entry per class.

    Parameters
    ----------
    coords:
        (N, 2) map coordinates.
    labels:
        (N,) integer class of each point (indexes ``class_names``).
    class_names:
        Names shown in the legend (escaped here).
    """
    coords = np.asarray(coords)
    labels = np.asarray(labels)
    fig = _base(title, "dim 1", "dim 2", settings_line)
    for c in np.unique(labels):
        sel = labels == c
        name = class_names[int(c)] if 0 <= int(c) < len(class_names) else str(int(c))
        fig.add_trace(go.Scattergl(
            x=coords[sel, 0], y=coords[sel, 1], mode="markers", name=label(name),
            marker=dict(size=marker_size, color=PALETTE[int(c) % len(PALETTE)], opacity=0.8),
            hovertemplate=label(name) + "<extra></extra>",
        ))
    fig.update_layout(height=520, legend=dict(itemsizing="constant", title_text="class"))
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, scaleanchor="x", scaleratio=1)
    return fig


def training_curve_figure(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    metric: str,
    y_title: str,
    title: str,
    settings_line: str = "",
) -> go.Figure:
    """Fig. 1c / 3b: a metric along training, one line per run.

    ``curves`` maps run name -> ``{'epoch': [...], metric: [...]}`` (from ``metrics.jsonl``);
    runs without the metric are skipped.
    """
    fig = _base(title, "epoch", y_title, settings_line)
    for i, (name, curve) in enumerate(curves.items()):
        if metric not in curve:
            continue
        fig.add_trace(go.Scatter(x=list(curve["epoch"]), y=list(curve[metric]), mode="lines+markers",
                                 name=label(name), marker=dict(size=5),
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=2)))
    return fig
