"""The report's plotly figures: one function per figure, each returning a ``go.Figure``.

Figures follow the paper ("How Mask Matters", NeurIPS 2022):

- :func:`singular_values_figure`: Fig. 1b, normalised singular values, log-scale y,
  one line per checkpoint (random init included when asked for).
- :func:`rank_bars_figure`: effective rank and RankMe per checkpoint.
- :func:`accuracy_figure`: mean classifier / linear / kNN accuracy per checkpoint.
- :func:`alignment_uniformity_figure`: alignment vs uniformity of two masked views.
- :func:`embedding_figure`: Fig. 3a, a t-SNE/UMAP map coloured by class, drawn as SVG
  (``go.Scatter``, never WebGL), equal axes, the class and test-image index in the tooltip;
  :func:`maps_figure` puts several side by side for figures/.
- :func:`training_curve_figure`: Fig. 1c (effective rank along training) and Fig. 3b
  (online linear-probe accuracy along training, kNN dashed), one colour per run, integer epoch
  ticks, accuracy with its 95% band, rank axes from 0 so noise does not look like collapse.

Every user-supplied string (checkpoint names, class names, paths) goes through :func:`label`
before it reaches plotly: plotly renders a small HTML subset in labels (``<b>``, ``<a href>``,
...), so a class folder named ``<b>x</b>`` would otherwise be drawn as markup. Escaped, plotly
turns ``&lt;`` back into a literal ``<`` and the name shows as text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

# Colours, the shared layout and the maps live in their own modules; their names stay importable here.
from umae_eval.report.colors import (  # noqa: F401
    CLASS_COLORS_10,
    CLASS_SYMBOLS,
    OTHER_COLORS,
    PALETTE,
    ROLE_COLORS,
    SYMBOL_GLYPHS,
    _colors_for,
    _role_from_name,
    checkpoint_colors,
    class_colors,
    class_symbols,
)
from umae_eval.report.figure_layout import _LAYOUT, _LEGEND, _base, label  # noqa: F401
from umae_eval.report.map_figures import _map_traces, embedding_figure, maps_figure  # noqa: F401


def singular_values_figure(
    spectra: Mapping[str, np.ndarray],
    *,
    title: str = "Normalised singular values of the features (Fig. 1b)",
    settings_line: str = "",
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """Fig. 1b: sorted singular values normalised to the largest, log-scale y.

    Parameters
    ----------
    spectra:
        ``{checkpoint name: singular values (D,)}``, each sorted in decreasing order and
        normalised so that the first is 1 (zeros are dropped: they cannot be shown on a log axis).
    settings_line:
        One line of settings shown under the title (features, pooling, data).
    colors:
        One colour per checkpoint (:func:`checkpoint_colors`); guessed from the names if left out.
    """
    fig = _base(title, "singular value index (sorted)", "σ_k / σ_1 (log scale)", settings_line)
    palette = _colors_for(list(spectra), colors)
    for name, sv in spectra.items():
        sv = np.asarray(sv, dtype=np.float64)
        keep = sv > 0
        idx = np.arange(1, sv.size + 1)[keep]
        fig.add_trace(go.Scatter(x=idx, y=sv[keep], mode="lines", name=label(name),
                                 line=dict(color=palette[name], width=2)))
    fig.update_yaxes(type="log", exponentformat="power", dtick=1)  # decades only: no 2 / 5 minor labels
    return fig


def _grouped_bars(fig: go.Figure, values: Mapping[str, Mapping[str, float]], columns: Sequence[str],
                  intervals: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
                  colors: Mapping[str, str] | None = None) -> None:
    """Add one bar trace per checkpoint to ``fig`` (its colour in every figure): x = the measures
    (``columns`` in words), missing values as NaN, each bar labelled with its value.

    ``intervals`` (optional) maps checkpoint -> column -> (lo, hi), drawn as error bars.
    """
    from umae_eval.report.tables import header

    palette = _colors_for(list(values), colors)
    cats = [label(header(c).replace(" (%)", "")) for c in columns]  # the axis title gives the unit
    for name, per in values.items():
        y = [float(per.get(col, float("nan"))) for col in columns]
        error_y = None
        if intervals:
            lo = [intervals.get(name, {}).get(col, (v, v))[0] for col, v in zip(columns, y)]
            hi = [intervals.get(name, {}).get(col, (v, v))[1] for col, v in zip(columns, y)]
            error_y = dict(type="data", array=[h - v for h, v in zip(hi, y)],
                           arrayminus=[v - lo_ for lo_, v in zip(lo, y)], visible=True, thickness=1.2, width=4,
                           color="#222222")
        fig.add_trace(go.Bar(
            x=cats, y=y, name=label(name), marker_color=palette[name], texttemplate="%{y:.1f}",
            # with error bars the value sits mid-bar, clear of the whisker
            textposition="inside" if error_y else "outside", insidetextanchor="middle", error_y=error_y,
        ))
    fig.update_layout(barmode="group")


def rank_bars_figure(
    ranks: Mapping[str, Mapping[str, float]],
    *,
    metrics: Sequence[str] = ("effective_rank", "rankme"),
    title: str = "Effective rank and RankMe",
    settings_line: str = "",
    intervals: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """Grouped bars: one group per metric (``effective_rank``, ``rankme``), one bar per checkpoint.

    ``ranks`` maps checkpoint name -> ``{metric name: value}``; missing metrics are left out.
    ``intervals`` (optional) the 95% interval of each, drawn as error bars.
    """
    fig = _base(title, "", "rank (number of dimensions)", settings_line)
    _grouped_bars(fig, ranks, metrics, intervals, colors)
    fig.update_yaxes(rangemode="tozero")
    return fig


def accuracy_figure(
    accuracies: Mapping[str, Mapping[str, float]],
    *,
    title: str = "Probe accuracy",
    settings_line: str = "",
    intervals: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
    colors: Mapping[str, str] | None = None,
    chance: float | None = None,
) -> go.Figure:
    """Grouped bars of accuracy (percent): one group per probe, one bar per checkpoint.

    ``accuracies`` maps checkpoint name -> ``{probe column (e.g. 'knn_accuracy@20'): percent}``;
    ``intervals`` (optional) the 95% interval of each, drawn as error bars; ``chance`` (percent,
    100 / classes) a dotted line.
    """
    fig = _base(title, "", "test accuracy (%)", settings_line)
    columns: list[str] = []
    for per in accuracies.values():
        columns.extend(c for c in per if c not in columns)
    _grouped_bars(fig, accuracies, columns, intervals, colors)
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dot", line_color="#666666", annotation_text=f"chance {chance:.3g}%",
                      annotation_position="top right", annotation_font_size=11)
    fig.update_yaxes(range=[0, 100], ticksuffix="%")
    return fig


def alignment_uniformity_figure(
    points: Mapping[str, tuple[float, float]],
    *,
    title: str = "Alignment and uniformity of two masked views",
    settings_line: str = "",
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """One marker per checkpoint at (uniformity, alignment).

    ``points`` maps checkpoint name -> ``(alignment, uniformity)``. The two are read together
    (Wang & Isola 2020): low alignment alone is no merit, since features that all coincide
    align perfectly; what is good is low alignment at low (more negative) uniformity.
    """
    # short axis titles (a column is 3.25 in); "lower = more uniform" and "read with uniformity" are in the caption
    fig = _base(title, "uniformity log E exp(-2||z-z'||²)", "alignment E ||z1-z2||²", settings_line)
    palette = _colors_for(list(points), colors)
    for i, (name, (align, unif)) in enumerate(points.items()):
        # names in the legend and tooltip: text beside close markers would overlap
        fig.add_trace(go.Scatter(x=[float(unif)], y=[float(align)], mode="markers", name=label(name),
                                 hovertemplate=label(name) + ": uniformity %{x:.3f}, alignment %{y:.3f}<extra></extra>",
                                 marker=dict(size=12, color=palette[name],
                                             symbol=("circle", "square", "diamond", "triangle-up")[i % 4])))
    return fig


def lambda_figure(
    points: Mapping[str, tuple[float, float, float, float]],
    *,
    y_title: str,
    title: str = "Against the uniformity weight λ",
    settings_line: str = "",
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """A λ sweep on an ordered log axis: one marker per checkpoint at (λ, value) with its 95%
    interval, joined in λ order; a λ = 0 checkpoint (MAE) cannot sit on a log axis and is drawn as
    a dashed line with its interval as a band.

    ``points`` maps checkpoint name -> ``(lam, value, lo, hi)``.
    """
    fig = _base(title, "λ (log scale)", y_title, settings_line)
    palette = _colors_for(list(points), colors)
    for name, (lam, value, lo, hi) in points.items():
        if lam > 0:
            continue
        color = palette[name]
        fig.add_hrect(y0=lo, y1=hi, fillcolor=_rgba(color, 0.12), line_width=0)
        fig.add_hline(y=value, line_dash="dash", line_color=color)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"{label(name)} (λ = 0)",
                                 line=dict(color=color, dash="dash")))
    pos = sorted((lam, name) for name, (lam, *_rest) in points.items() if lam > 0)
    if pos:
        fig.add_trace(go.Scatter(x=[lam for lam, _ in pos], y=[points[n][1] for _, n in pos], mode="lines",
                                 line=dict(color="#999999", width=1), showlegend=False, hoverinfo="skip"))
    for lam, name in pos:
        _, value, lo, hi = points[name]
        fig.add_trace(go.Scatter(x=[lam], y=[value], mode="markers", name=label(name),
                                 marker=dict(size=10, color=palette[name]),
                                 error_y=dict(type="data", array=[hi - value], arrayminus=[value - lo], visible=True,
                                              color=palette[name])))
    fig.update_xaxes(type="log", exponentformat="power", dtick=1)
    return fig


def _curve_range(values: Sequence[float], lo: Sequence[float], hi: Sequence[float], span: float) -> list[float]:
    """A y range that holds every line and band and is at least ``span`` wide (so noise looks like noise)."""
    bottom = min(float(np.nanmin(lo)), float(np.nanmin(values)))
    top = max(float(np.nanmax(hi)), float(np.nanmax(values)))
    if top - bottom < span:
        mid = (top + bottom) / 2
        bottom, top = mid - span / 2, mid + span / 2
    pad = 0.05 * (top - bottom)
    return [max(0.0, bottom - pad), min(100.0, top + pad)]


def training_curve_figure(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    metric: str,
    y_title: str,
    title: str,
    settings_line: str = "",
    extra_metric: str | None = None,
    eval_images: Mapping[str, int | None] | None = None,
    colors: Mapping[str, str] | None = None,
    chance: float | None = None,
) -> go.Figure:
    """Fig. 1c / 3b: a metric along training, one colour per run.

    ``curves`` maps run name -> ``{'epoch': [...], metric: [...]}`` (from ``metrics.jsonl``);
    runs without the metric are skipped. ``extra_metric`` (e.g. ``knn_accuracy`` on the linear
    panel) is drawn dashed in the same colour from ``'<extra_metric>:epoch'`` / its column.
    Accuracies (percent) get a 95% Wilson band when ``eval_images`` gives the run's test images;
    their axis spans at least 20 points, a rank axis starts at 0. Epoch ticks are integers.
    """
    from umae_eval.pipeline.intervals import wilson_interval

    fig = _base(title, "epoch", y_title, settings_line)
    percent = "accuracy" in metric
    palette = _colors_for(list(curves), colors)
    lows: list[float] = []
    highs: list[float] = []
    vals: list[float] = []
    for name, curve in curves.items():
        color = palette[name]
        n = (eval_images or {}).get(name)
        for m, dash, suffix in ((metric, "solid", ""), (extra_metric, "dash", " (kNN)")):
            if not m or m not in curve:
                continue
            epochs = list(curve.get(f"{m}:epoch", curve["epoch"]))
            ys = [float(v) for v in curve[m]]
            vals.extend(ys)
            if percent and n and m == metric and len(ys) == 1:  # one point: an error bar, not a band
                iv = wilson_interval(ys[0], int(n))
                fig.add_trace(go.Scatter(x=epochs, y=ys, mode="markers", showlegend=False, hoverinfo="skip",
                                         marker=dict(size=1, color=color), name=f"{label(name)} 95% interval",
                                         error_y=dict(type="data", array=[iv.hi - ys[0]], arrayminus=[ys[0] - iv.lo],
                                                      visible=True, color=color)))
                lows.append(iv.lo)
                highs.append(iv.hi)
            elif percent and n and m == metric:  # one band per run: the extra line would only blur it
                band = [wilson_interval(v, int(n)) for v in ys]
                lo, hi = [b.lo for b in band], [b.hi for b in band]
                fig.add_trace(go.Scatter(x=epochs + epochs[::-1], y=hi + lo[::-1], fill="toself", mode="lines",
                                         fillcolor=_rgba(color, 0.15), line=dict(width=0), hoverinfo="skip",
                                         showlegend=False, name=f"{label(name)}{suffix} 95% band"))
                lows.extend(lo)
                highs.extend(hi)
            fig.add_trace(go.Scatter(x=epochs, y=ys, mode="lines+markers", name=label(name) + suffix,
                                     marker=dict(size=5), line=dict(color=color, width=2, dash=dash)))
    fig.update_xaxes(tickformat="d")
    epochs_all = [e for c in curves.values() for e in c.get("epoch", [])]
    if epochs_all and max(epochs_all) - min(epochs_all) <= 12:
        fig.update_xaxes(dtick=1)
    if percent and vals:
        if chance is not None:
            fig.add_hline(y=chance, line_dash="dot", line_color="#666666", annotation_text=f"chance {chance:.3g}%",
                          annotation_position="bottom right", annotation_font_size=11)
            vals = [*vals, chance]
        fig.update_yaxes(range=_curve_range(vals, lows or vals, highs or vals, 20.0), ticksuffix="%")
    else:
        fig.update_yaxes(rangemode="tozero")
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
