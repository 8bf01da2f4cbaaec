"""Plotly figures of a mask-ratio sweep: Fig. 2b (intra/inter), Fig. 2c (relative distance and
sweet spot), the label error alpha and the augmentation-graph spectrum.

Every figure carries ``note``, a one/two-line settings stamp (estimator, patch size, pairs,
views K, seed, ratios, checkpoint hash, versions) written inside the figure, so an exported
image still says how it was made.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots

from umae_eval.maskratio.stats import sweet_spot_identified
from umae_eval.maskratio.sweep import SweepResult

__all__ = ["intra_inter_figure", "relative_figure", "relative_change_figure", "label_error_figure",
           "spectrum_figure"]

_COLORS = qualitative.D3
_PAPER_SWEET = 0.7
#: The estimator that reads the paper's text literally ("every pair of patches").
PAPER_ESTIMATOR = "all-pairs"


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _band(fig: go.Figure, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, color: str,
          name: str, row: int | None = None, col: int | None = None) -> None:
    kw = {"row": row, "col": col} if row is not None else {}
    fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi, lo[::-1]]),
                             fill="toself", mode="lines", fillcolor=_rgba(color, 0.18), line={"width": 0},
                             hoverinfo="skip", showlegend=False, name=f"{name} 95% CI"), **kw)


def _stamp(fig: go.Figure, note: str, height: int) -> go.Figure:
    # named so that figures/ leaves it out of the drawing and puts it into captions.md
    # (umae_eval.report.static_draw.STAMP)
    fig.add_annotation(text=note, xref="paper", yref="paper", x=0, y=0, yshift=-105,
                       xanchor="left", yanchor="top", showarrow=False, align="left",
                       font={"size": 10, "color": "#555"}, name="umae-settings-stamp")
    fig.update_layout(height=height + 50, margin={"b": 180, "t": 70}, template="plotly_white")
    return fig


def intra_inter_figure(result: SweepResult, note: str = "") -> go.Figure:
    """Fig. 2b: mean intra- and inter-class view distance per mask ratio, one panel per estimator,
    with bootstrap 95% bands."""
    names = list(result.curves)
    cols = min(len(names), 3)
    rows = math.ceil(len(names) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[_title(n) for n in names], horizontal_spacing=0.08,
                        vertical_spacing=0.2 if rows > 1 else 0.1)
    x = result.ratios
    for i, name in enumerate(names):
        c = result.curves[name]
        row, col = i // cols + 1, i % cols + 1
        for kind, iv, color in (("intra-class", c.intra, _COLORS[0]), ("inter-class", c.inter, _COLORS[1])):
            _band(fig, x, iv.lo, iv.hi, color, kind, row, col)
            fig.add_trace(go.Scatter(x=x, y=iv.mean, mode="lines+markers", name=kind,
                                     line={"color": color}, legendgroup=kind, showlegend=i == 0),
                          row=row, col=col)
        fig.update_xaxes(title_text="mask ratio ρ", row=row, col=col)
        # the y title on the first column only: on narrow screens it would sit on the panel to its left
        fig.update_yaxes(title_text="mean distance" if col == 1 else None, row=row, col=col)
    fig.update_layout(title="Intra- vs inter-class distance of masked views (Fig. 2b)",
                      legend={"orientation": "h", "x": 0, "y": -0.2 if rows == 1 else -0.08, "yanchor": "top"})
    return _stamp(fig, note, 360 * rows + 120)


def _grid(names: list[str], titles: list[str]) -> tuple[go.Figure, int, int]:
    cols = min(len(names), 3)
    rows = math.ceil(len(names) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.07,
                        vertical_spacing=0.2 if rows > 1 else 0.1)
    return fig, rows, cols


def _title(name: str) -> str:
    return f"{name} (the paper's text)" if name == PAPER_ESTIMATOR else name


def relative_figure(result: SweepResult, note: str = "") -> go.Figure:
    """Fig. 2c: intra/inter per mask ratio, one panel per estimator (one band each), an identified
    interior minimum starred with its bootstrap interval, "not identified" where that interval
    spans (nearly) the whole range, "no interior minimum" where the smallest value is at an end
    of the range, the paper's 0.7 dashed."""
    names = list(result.curves)
    fig, rows, cols = _grid(names, [_title(n) for n in names])
    x = result.ratios
    for i, name in enumerate(names):
        c = result.curves[name]
        row, col = i // cols + 1, i % cols + 1
        color = _COLORS[0]
        _band(fig, x, c.ratio.lo, c.ratio.hi, color, name, row, col)
        fig.add_trace(go.Scatter(x=x, y=c.ratio.mean, mode="lines+markers", name="intra / inter",
                                 line={"color": color}, legendgroup="ratio", showlegend=i == 0), row=row, col=col)
        s = c.sweet_spot
        best = int(np.argmin(np.abs(x - s.ratio)))
        interior = 0 < best < len(x) - 1
        if interior and sweet_spot_identified(s.ratio, s.lo, s.hi, list(map(float, x))):
            fig.add_trace(go.Scatter(
                x=[s.ratio], y=[c.ratio.mean[best]], mode="markers", name="interior minimum (95% interval)",
                legendgroup="sweet", showlegend=i == 0,
                error_x={"type": "data", "array": [s.hi - s.ratio], "arrayminus": [s.ratio - s.lo], "visible": True},
                marker={"symbol": "star", "size": 15, "color": _COLORS[1], "line": {"width": 1, "color": "#222"}},
                hovertext=f"{name}: minimum at ρ={s.ratio:g} (95% {s.lo:g}-{s.hi:g})", hoverinfo="text"),
                row=row, col=col)
        else:
            axis = "" if i == 0 else str(i + 1)
            words = (f"minimum not identified<br>(95% interval {s.lo:g}-{s.hi:g})" if interior
                     else f"no interior minimum<br>(smallest at ρ={s.ratio:g})")
            fig.add_annotation(text=words, showarrow=False,
                               xref=f"x{axis} domain", yref=f"y{axis} domain", x=0.5, y=0.95, yanchor="top",
                               font={"size": 11, "color": "#b33"})
        fig.add_vline(x=_PAPER_SWEET, line_dash="dash", line_color="#888", row=row, col=col)
        fig.update_xaxes(title_text="mask ratio ρ", row=row, col=col)
        # the y title on the first column only: on narrow screens it would sit on the panel to its left
        fig.update_yaxes(title_text="intra / inter" if col == 1 else None, row=row, col=col)
    fig.update_layout(title="Relative distance intra / inter of masked views (Fig. 2c); dashed: the paper's 0.7",
                      legend={"orientation": "h", "x": 0, "y": -0.2 if rows == 1 else -0.08, "yanchor": "top"})
    return _stamp(fig, note, 340 * rows + 160)


def relative_change_figure(result: SweepResult, note: str = "") -> go.Figure:
    """Change of intra/inter from the first ratio, one panel per estimator, each with its paired
    bootstrap band (every resample moves a pair's whole curve)."""
    names = list(result.curves)
    fig, rows, cols = _grid(names, [_title(n) for n in names])
    x = result.ratios
    for i, name in enumerate(names):
        c = result.curves[name]
        row, col = i // cols + 1, i % cols + 1
        _band(fig, x, c.ratio_change.lo, c.ratio_change.hi, _COLORS[2], name, row, col)
        fig.add_trace(go.Scatter(x=x, y=c.ratio_change.mean, mode="lines+markers", name=f"change from ρ={x[0]:g}",
                                 line={"color": _COLORS[2]}, legendgroup="change", showlegend=i == 0),
                      row=row, col=col)
        fig.add_hline(y=0, line_color="#bbb", row=row, col=col)
        fig.add_vline(x=_PAPER_SWEET, line_dash="dash", line_color="#888", row=row, col=col)
        fig.update_xaxes(title_text="mask ratio ρ", row=row, col=col)
        # the y title on the first column only: on narrow screens it would sit on the panel to its left
        fig.update_yaxes(title_text="Δ intra / inter" if col == 1 else None, row=row, col=col)
    fig.update_layout(title=f"Change of intra / inter from ρ={x[0]:g} (paired 95% bands)",
                      legend={"orientation": "h", "x": 0, "y": -0.2 if rows == 1 else -0.08, "yanchor": "top"})
    return _stamp(fig, note, 340 * rows + 160)


def label_error_figure(result: SweepResult, note: str = "") -> go.Figure:
    """alpha(rho): share of masked views nearest another class's mean, with a 95% band."""
    le = result.label_error
    fig = go.Figure()
    _band(fig, result.ratios, le.lo, le.hi, _COLORS[3], "alpha")
    fig.add_trace(go.Scatter(x=result.ratios, y=le.mean, mode="lines+markers", name="label error α",
                             line={"color": _COLORS[3]}))
    chance = 1.0 - 1.0 / result.n_classes
    fig.add_hline(y=chance, line_dash="dot", line_color="#888",
                  annotation_text=f"chance error {chance:.2f}", annotation_position="bottom right")
    fig.update_layout(title="Mask-induced label error α (Thm 4.1), nearest class mean",
                      xaxis_title="mask ratio ρ", yaxis_title="α", yaxis_range=[0, 1])
    return _stamp(fig, note, 480)


def spectrum_figure(result: SweepResult, note: str = "") -> go.Figure:
    """Augmentation-graph spectrum: top eigenvalues of D^-1/2 A D^-1/2 per rho (left), and the
    residual sum_{i>k} lambda_i^2 and same-class edge share per rho (right)."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.16, specs=[[{}, {"secondary_y": True}]],
                        subplot_titles=("top eigenvalues λ_i of D^-1/2 A D^-1/2",
                                        f"residual Σ_(i>{result.n_classes}) λ_i² and same-class edge share"))
    n = len(result.ratios)
    colors = sample_colorscale("Viridis", [i / max(n - 1, 1) for i in range(n)])
    for rho, g, color in zip(result.ratios, result.graph, colors):
        lam = np.asarray(g.eigenvalues)
        fig.add_trace(go.Scatter(x=np.arange(1, len(lam) + 1), y=lam, mode="lines+markers", showlegend=False,
                                 name=f"ρ={rho:g}", line={"color": color}, marker={"size": 4}),
                      row=1, col=1)
    # one colour bar for the ratios instead of a legend entry per ratio
    lo, hi = float(np.min(result.ratios)), float(np.max(result.ratios))
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                             marker={"color": [lo, hi], "colorscale": "Viridis", "cmin": lo, "cmax": hi, "size": 0,
                                     "showscale": True,
                                     "colorbar": {"title": {"text": "mask ratio ρ"}, "x": 0.44, "len": 0.9,
                                                  "thickness": 12}}),
                  row=1, col=1)
    fig.add_vline(x=result.n_classes + 0.5, line_dash="dash", line_color="#888", row=1, col=1)
    fig.add_trace(go.Scatter(x=result.ratios, y=[g.residual for g in result.graph], mode="lines+markers",
                             name=f"Σ_(i>{result.n_classes}) λ_i²", line={"color": "#222"}),
                  row=1, col=2, secondary_y=False)
    fig.add_trace(go.Scatter(x=result.ratios, y=[g.same_class_edge_share for g in result.graph],
                             mode="lines+markers", name="same-class edge share",
                             line={"color": _COLORS[2], "dash": "dot"}),
                  row=1, col=2, secondary_y=True)
    chance = float(np.nanmean([g.same_class_chance for g in result.graph]))
    if np.isfinite(chance):
        # what a class-blind graph gives: the share of same-class pairs among pairs of different images
        fig.add_trace(go.Scatter(x=[float(result.ratios[0]), float(result.ratios[-1])], y=[chance, chance],
                                 mode="lines", name=f"chance share {chance:.3f}",
                                 line={"color": _COLORS[2], "dash": "dash", "width": 1}),
                      row=1, col=2, secondary_y=True)
    fig.update_xaxes(title_text="index i", row=1, col=1)
    fig.update_yaxes(title_text="λ_i", type="log", row=1, col=1)
    fig.update_xaxes(title_text="mask ratio ρ", row=1, col=2)
    fig.update_yaxes(title_text="residual", row=1, col=2, secondary_y=False)
    fig.update_yaxes(title_text="same-class share", row=1, col=2, secondary_y=True, tickformat=".3f")
    fig.update_layout(legend={"orientation": "h", "x": 0.58, "y": -0.2, "yanchor": "top"})
    fig.update_layout(title=f"Mask-induced augmentation graph ({result.n_graph_nodes} views; "
                            f"Gaussian kernel, median bandwidth)")
    return _stamp(fig, note, 520)
