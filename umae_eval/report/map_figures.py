"""Fig. 3a: t-SNE / UMAP maps coloured and shaped by class, drawn as SVG scatter (never WebGL)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from umae_eval.report.colors import class_colors, class_symbols
from umae_eval.report.figure_layout import _LEGEND, _base, label


def _map_traces(coords: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                test_index: np.ndarray | None, marker_size: int, legend: bool, seed: int = 0) -> list[go.Scatter]:
    """SVG scatter traces of one map: every point in one trace, in a seeded random order (so no
    class is drawn over all the others), coloured and shaped by class; up to 20 classes, one
    legend-only trace per class (class order) carries the key."""
    n_classes = max(len(class_names), int(labels.max()) + 1 if labels.size else 1)
    colors = class_colors(n_classes)
    symbols = class_symbols(n_classes)
    index = np.arange(len(labels)) if test_index is None else np.asarray(test_index)
    names = [class_names[int(c)] if 0 <= int(c) < len(class_names) else str(int(c)) for c in labels]
    order = np.random.default_rng(seed).permutation(len(labels))
    hover = "%{text}<br>test image %{customdata}<extra></extra>"
    out = [go.Scatter(x=coords[order, 0], y=coords[order, 1], mode="markers", name="test images", showlegend=False,
                      text=[label(names[i]) for i in order], customdata=index[order],
                      marker=dict(size=marker_size, color=[colors[int(labels[i])] for i in order],
                                  symbol=[symbols[int(labels[i])] for i in order], opacity=0.85,
                                  line=dict(width=0)),
                      hovertemplate=hover)]
    if n_classes <= 20:
        for c in np.unique(labels):
            name = names[int(np.flatnonzero(labels == c)[0])]
            out.append(go.Scatter(x=[None], y=[None], mode="markers", name=label(name), legendgroup=label(name),
                                  showlegend=legend, hoverinfo="skip",
                                  marker=dict(size=marker_size + 3, color=colors[int(c)], symbol=symbols[int(c)])))
    return out


def embedding_figure(
    coords: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    title: str,
    settings_line: str = "",
    marker_size: int = 4,
    test_index: np.ndarray | None = None,
    legend: bool = True,
) -> go.Figure:
    """Fig. 3a: a 2-D map (t-SNE or UMAP) of features, coloured by class, as SVG (no WebGL).

    Parameters
    ----------
    coords:
        (N, 2) map coordinates.
    labels:
        (N,) integer class of each point (indexes ``class_names``).
    class_names:
        Names shown in the legend and tooltip (escaped here). Up to 20 classes get one legend
        entry each (up to 10 also a marker shape each); more get no legend (the tooltip names
        the class). Points are drawn in a seeded random order, coloured by :func:`class_colors`.
    test_index:
        (N,) row of each point in the test split, shown in the tooltip.
    legend:
        False to leave the class key to the page (maps side by side share one key).
    """
    coords = np.asarray(coords, dtype=np.float64)
    labels = np.asarray(labels)
    fig = _base(title, "dim 1", "dim 2", settings_line)
    for tr in _map_traces(coords, labels, class_names, test_index, marker_size, legend):
        fig.add_trace(tr)
    fig.update_layout(height=460, legend=dict(itemsizing="constant", title_text="class"),
                      margin=dict(l=30, r=10, t=110 if legend else 70, b=30),
                      showlegend=legend and len(class_names) <= 20)
    fig.update_xaxes(showticklabels=False, title_text="", zeroline=False)
    fig.update_yaxes(showticklabels=False, title_text="", zeroline=False, scaleanchor="x", scaleratio=1)
    return fig


def maps_figure(
    maps: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]],
    class_names: Sequence[str],
    *,
    title: str,
    settings_line: str = "",
    marker_size: int = 3,
) -> go.Figure:
    """Several maps side by side (three per row; four as 2 x 2), equal axes, one shared class legend.

    ``maps``: (panel title, coords (N, 2), labels (N,), test_index (N,) or None) per panel.
    """
    from plotly.subplots import make_subplots

    # four maps (e.g. MAE, U-MAE, a smoke run, random init) fill a 2 x 2 grid instead of 3 + 1
    cols = 2 if len(maps) == 4 else min(3, max(1, len(maps)))
    rows = -(-len(maps) // cols)
    # titles may hold one <br> (name, then its score); the rest is escaped
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=["<br>".join(label(t) for t in m[0].split("<br>"))
                                                              for m in maps],
                        horizontal_spacing=0.03, vertical_spacing=0.08)
    for i, (_, coords, labels, idx) in enumerate(maps):
        r, c = i // cols + 1, i % cols + 1
        for tr in _map_traces(np.asarray(coords, dtype=np.float64), np.asarray(labels), class_names, idx,
                              marker_size, legend=i == 0):
            fig.add_trace(tr, row=r, col=c)
        axis = "" if i == 0 else str(i + 1)
        fig.update_xaxes(showticklabels=False, zeroline=False, row=r, col=c)
        fig.update_yaxes(showticklabels=False, zeroline=False, scaleanchor=f"x{axis}", scaleratio=1, row=r, col=c)
    full = label(title) + (f"<br><sup>{label(settings_line)}</sup>" if settings_line else "")
    fig.update_layout(template="plotly_white", title=dict(text=full, x=0.01), height=380 * rows + 120,
                      legend=dict(_LEGEND, itemsizing="constant", y=-0.02, yanchor="top"),
                      showlegend=len(class_names) <= 20, margin=dict(l=20, r=20, t=90, b=80))
    return fig
