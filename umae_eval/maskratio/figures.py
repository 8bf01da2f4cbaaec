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

from umae_eval.maskratio.sweep import SweepResult

__all__ = ["intra_inter_figure", "relative_figure", "label_error_figure", "spectrum_figure"]

_COLORS = qualitative.D3
_PAPER_SWEET = 0.7


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _band(fig: go.Figure, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, color: str,
          name: str, row: int | None = None, col: int | None = None) -> None:
    kw = {"row": row, "col": col} if row is not None else {}
    fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi, lo[::-1]]),
                             fill="toself", fillcolor=_rgba(color, 0.18), line={"width": 0},
                             hoverinfo="skip", showlegend=False, name=f"{name} 95% CI"), **kw)


def _stamp(fig: go.Figure, note: str, height: int) -> go.Figure:
    fig.add_annotation(text=note, xref="paper", yref="paper", x=0, y=-0.02, yshift=-60,
                       xanchor="left", yanchor="top", showarrow=False, align="left",
                       font={"size": 10, "color": "#555"})
    fig.update_layout(height=height, margin={"b": 130, "t": 60}, template="plotly_white")
    return fig


def intra_inter_figure(result: SweepResult, note: str = "") -> go.Figure:
    """Fig. 2b: mean intra- and inter-class view distance per mask ratio, one panel per estimator,
    with bootstrap 95% bands."""
    names = list(result.curves)
    cols = min(len(names), 3)
    rows = math.ceil(len(names) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.08,
                        vertical_spacing=0.16)
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
        fig.update_yaxes(title_text="mean distance", row=row, col=col)
    fig.update_layout(title="Intra- vs inter-class distance of masked views (Fig. 2b)")
    return _stamp(fig, note, 360 * rows + 120)


def relative_figure(result: SweepResult, note: str = "") -> go.Figure:
    """Fig. 2c: intra/inter per mask ratio for every estimator (left; sweet spots starred, the
    paper's 0.7 dashed) and its change from the first ratio with the paired bootstrap band (right)."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("intra / inter (95% bands)",
                                        f"change from ρ={result.ratios[0]:g} (paired 95% bands)"))
    x = result.ratios
    for i, (name, c) in enumerate(result.curves.items()):
        color = _COLORS[i % len(_COLORS)]
        _band(fig, x, c.ratio.lo, c.ratio.hi, color, name, 1, 1)
        fig.add_trace(go.Scatter(x=x, y=c.ratio.mean, mode="lines+markers", name=name,
                                 line={"color": color}, legendgroup=name), row=1, col=1)
        s = c.sweet_spot
        best = int(np.argmin(np.abs(x - s.ratio)))
        fig.add_trace(go.Scatter(
            x=[s.ratio], y=[c.ratio.mean[best]], mode="markers", legendgroup=name, showlegend=False,
            marker={"symbol": "star", "size": 16, "color": color, "line": {"width": 1, "color": "#222"}},
            name=f"{name} sweet spot",
            hovertext=f"{name}: sweet spot ρ={s.ratio:g} (95% CI {s.lo:g}-{s.hi:g})", hoverinfo="text"),
            row=1, col=1)
        _band(fig, x, c.ratio_change.lo, c.ratio_change.hi, color, name, 1, 2)
        fig.add_trace(go.Scatter(x=x, y=c.ratio_change.mean, mode="lines+markers", name=name,
                                 line={"color": color}, legendgroup=name, showlegend=False), row=1, col=2)
    for col in (1, 2):
        fig.add_vline(x=_PAPER_SWEET, line_dash="dash", line_color="#888", row=1, col=col)
        fig.update_xaxes(title_text="mask ratio ρ", row=1, col=col)
    fig.add_hline(y=0, line_color="#bbb", row=1, col=2)
    fig.update_yaxes(title_text="intra / inter", row=1, col=1)
    fig.update_yaxes(title_text="Δ intra / inter", row=1, col=2)
    fig.update_layout(title="Relative distance intra/inter (Fig. 2c); star = sweet spot (argmin); "
                            "dashed: the paper's 0.7")
    return _stamp(fig, note, 540)


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
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, specs=[[{}, {"secondary_y": True}]],
                        subplot_titles=("top eigenvalues λ_i of D^-1/2 A D^-1/2",
                                        f"residual Σ_(i>{result.n_classes}) λ_i² and same-class edge share"))
    n = len(result.ratios)
    colors = sample_colorscale("Viridis", [i / max(n - 1, 1) for i in range(n)])
    for rho, g, color in zip(result.ratios, result.graph, colors):
        lam = np.asarray(g.eigenvalues)
        fig.add_trace(go.Scatter(x=np.arange(1, len(lam) + 1), y=lam, mode="lines+markers",
                                 name=f"ρ={rho:g}", line={"color": color}, marker={"size": 4}),
                      row=1, col=1)
    fig.add_vline(x=result.n_classes + 0.5, line_dash="dash", line_color="#888", row=1, col=1)
    fig.add_trace(go.Scatter(x=result.ratios, y=[g.residual for g in result.graph], mode="lines+markers",
                             name=f"Σ_(i>{result.n_classes}) λ_i²", line={"color": "#222"}),
                  row=1, col=2, secondary_y=False)
    fig.add_trace(go.Scatter(x=result.ratios, y=[g.same_class_edge_share for g in result.graph],
                             mode="lines+markers", name="same-class edge share",
                             line={"color": _COLORS[2], "dash": "dot"}),
                  row=1, col=2, secondary_y=True)
    fig.update_xaxes(title_text="index i", row=1, col=1)
    fig.update_yaxes(title_text="λ_i", type="log", row=1, col=1)
    fig.update_xaxes(title_text="mask ratio ρ", row=1, col=2)
    fig.update_yaxes(title_text="residual", row=1, col=2, secondary_y=False)
    fig.update_yaxes(title_text="same-class share", row=1, col=2, secondary_y=True)
    fig.update_layout(title=f"Mask-induced augmentation graph ({result.n_graph_nodes} views; "
                            f"Gaussian kernel, median bandwidth)")
    return _stamp(fig, note, 520)
