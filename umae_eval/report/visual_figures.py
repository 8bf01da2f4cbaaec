"""Figures of ``umae reconstruct``: reconstruction grids and attention maps (matplotlib: they are
pictures), attention statistics against depth (plotly, redrawn for figures/ like every plot).

- :func:`reconstruction_figure`: one row per image; per mask ratio (and display mode) the four
  panels of MAE's ``mae_visualize`` notebook; the masked-patch MSE under the reconstruction.
- :func:`comparison_figure`: several checkpoints on the same masks, side by side.
- :func:`attention_figure`: one row per image: the image, attention rollout, the last block's
  [CLS] attention of each head, over the image.
- :func:`distance_figure`: Park et al. (ICLR 2023) Fig. 3 / Dosovitskiy et al. Fig. 7: mean
  attention distance against depth, a dot per head, bootstrap intervals over images.
- :func:`entropy_nmi_figure`: attention entropy ([CLS] and patch queries) and NMI per block.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from umae_eval.report.figures import _colors_for, label
from umae_eval.visual.normpix import MODE_LABELS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from umae_eval.visual.attention_stats import StatSummary
    from umae_eval.visual.reconstruct import Panels

_PANEL_IN = 0.85  # inches per picture


def _new_figure(rows: int, cols: int, title: str, footer: str) -> tuple[Figure, np.ndarray]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(cols * _PANEL_IN, rows * _PANEL_IN + 0.9))
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False, gridspec_kw=dict(wspace=0.05, hspace=0.32)))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle(title, fontsize=9, x=0.01, ha="left")
    if footer:
        fig.text(0.01, 0.005, footer, fontsize=5.5, color="#555555", ha="left", va="bottom", wrap=True)
    return fig, axes


def reconstruction_figure(panel_sets: Sequence[Panels], row_labels: Sequence[str], title: str,
                          footer: str = "") -> Figure:
    """Rows: images; per :class:`Panels` four columns (original, masked, reconstruction,
    reconstruction + visible), headed by the ratio and display mode."""
    n = len(row_labels)
    cols = 4 * len(panel_sets)
    fig, axes = _new_figure(n, cols, title, footer)
    for j, ps in enumerate(panel_sets):
        names = ("original", f"masked {ps.mask_ratio:.0%}", "reconstruction", "+ visible")
        for i in range(n):
            for k, img in enumerate((ps.original[i], ps.masked[i], ps.reconstruction[i], ps.pasted[i])):
                ax = axes[i, 4 * j + k]
                ax.imshow(img, interpolation="nearest")
                if i == 0:
                    ax.set_title(names[k] + (f"\n[{ps.mode}]" if k == 2 and ps.mode != "pixels" else ""),
                                 fontsize=6)
                if k == 2:
                    ax.set_xlabel(f"MSE {ps.mse_target[i]:.3f}", fontsize=5.5, labelpad=1)
    for i in range(n):
        axes[i, 0].set_ylabel(row_labels[i], fontsize=5.5, rotation=0, ha="right", va="center")
    return fig


def comparison_figure(named: Sequence[tuple[str, Panels]], row_labels: Sequence[str], title: str,
                      footer: str = "") -> Figure:
    """Checkpoints side by side on the same masks: original, masked, then per checkpoint its
    reconstruction and reconstruction + visible (``named``: (name, Panels) sharing one mask)."""
    first = named[0][1]
    n = len(row_labels)
    fig, axes = _new_figure(n, 2 + 2 * len(named), title, footer)
    for i in range(n):
        cells = [(first.original[i], "original", ""), (first.masked[i], f"masked {first.mask_ratio:.0%}", "")]
        for name, ps in named:
            tag = f" [{ps.mode}]" if ps.mode != "pixels" else ""
            cells += [(ps.reconstruction[i], f"{name}{tag}", f"MSE {ps.mse_target[i]:.3f}"),
                      (ps.pasted[i], f"{name}\n+ visible", "")]
        for k, (img, head, under) in enumerate(cells):
            ax = axes[i, k]
            ax.imshow(img, interpolation="nearest")
            if i == 0:  # long names wrap: a column is under an inch wide
                ax.set_title("\n".join(textwrap.fill(part, 16) for part in head.split("\n")), fontsize=5.5)
            if under:
                ax.set_xlabel(under, fontsize=5.5, labelpad=1)
        axes[i, 0].set_ylabel(row_labels[i], fontsize=5.5, rotation=0, ha="right", va="center")
    return fig


def attention_figure(images: np.ndarray, rollout: np.ndarray, cls_attention: np.ndarray,
                     row_labels: Sequence[str], title: str, footer: str = "") -> Figure:
    """Rows: images (N, S, S, 3) in [0, 1]; columns: image, rollout (N, g, g), each head's
    last-block [CLS] attention (N, H, g, g), drawn over the image (each map scaled to its own max)."""
    n, heads = cls_attention.shape[:2]
    fig, axes = _new_figure(n, 2 + heads, title, footer)
    side = images.shape[1]
    names = ["image", "rollout"] + [f"[CLS] head {h + 1}" for h in range(heads)]
    for i in range(n):
        maps = [None, rollout[i]] + [cls_attention[i, h] for h in range(heads)]
        for k, amap in enumerate(maps):
            ax = axes[i, k]
            ax.imshow(images[i], interpolation="nearest", extent=(0, side, side, 0))
            if amap is not None:
                ax.imshow(amap / max(float(amap.max()), 1e-12), cmap="inferno", alpha=0.7, vmin=0, vmax=1,
                          interpolation="nearest", extent=(0, side, side, 0))
            if i == 0:
                ax.set_title(names[k], fontsize=6)
        axes[i, 0].set_ylabel(row_labels[i], fontsize=5.5, rotation=0, ha="right", va="center")
    return fig


def distance_figure(summaries: Sequence[tuple[str, StatSummary]], note: str,
                    colors: Mapping[str, str] | None = None) -> go.Figure:
    """Mean attention distance (pixels) against block, a dot per head with its bootstrap interval;
    ``colors``: the report's colour per checkpoint (else roles guessed from the names)."""
    fig = go.Figure()
    k = len(summaries)
    palette = _colors_for([name for name, _ in summaries], colors)  # one colour per checkpoint, by role
    for c, (name, s) in enumerate(summaries):
        depth, heads = s.mean.shape
        xs, ys, lo, hi = [], [], [], []
        for b in range(depth):
            for h in range(heads):
                xs.append(b + 1 + (c - (k - 1) / 2) * 0.18 + (h - (heads - 1) / 2) * 0.04)
                ys.append(float(s.mean[b, h]))
                lo.append(float(s.mean[b, h] - s.lo[b, h]))
                hi.append(float(s.hi[b, h] - s.mean[b, h]))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=label(name),
                                 marker=dict(color=palette[name], size=6),
                                 error_y=dict(type="data", array=hi, arrayminus=lo, thickness=0.8, width=0)))
    fig.update_layout(title=dict(text=f"Mean attention distance per head and block<br><sup>{note}</sup>"),
                      xaxis=dict(title="block", dtick=1), yaxis=dict(title="mean attention distance (pixels)",
                                                                     rangemode="tozero"),
                      template="plotly_white", height=420)
    return fig


def entropy_nmi_figure(summaries: Sequence[tuple[str, dict[str, StatSummary]]], note: str,
                       colors: Mapping[str, str] | None = None) -> go.Figure:
    """Per block (head-averaged per image, then bootstrapped: ``block_stats``): [CLS] entropy,
    patch entropy (nats) and NMI, one colour per checkpoint."""
    from plotly.subplots import make_subplots

    titles = ("[CLS] -> patch entropy (nats)", "patch -> patch entropy (nats)", "attention NMI")
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles)
    palette = _colors_for([name for name, _ in summaries], colors)  # one colour per checkpoint, by role
    for name, stats in summaries:
        color = palette[name]
        for j, key in enumerate(("cls_entropy", "patch_entropy", "nmi")):
            s = stats[key]
            y = s.mean
            x = list(range(1, len(y) + 1))
            fig.add_trace(go.Scatter(x=x, y=[float(v) for v in y], mode="lines+markers", name=label(name),
                                     legendgroup=label(name), showlegend=j == 0, line=dict(color=color),
                                     error_y=dict(type="data", array=[float(v) for v in s.hi - y],
                                                  arrayminus=[float(v) for v in y - s.lo], width=0)),
                          row=1, col=j + 1)
            fig.update_xaxes(title_text="block", dtick=1, row=1, col=j + 1)
    fig.update_layout(title=dict(text=f"Attention entropy and NMI per block (mean over heads)<br><sup>{note}</sup>"),
                      template="plotly_white", height=380)
    return fig


def mode_caption(modes: Sequence[str]) -> str:
    """What the display modes of a grid mean, one sentence each."""
    return " ".join(f"[{m}] {MODE_LABELS[m]}." for m in dict.fromkeys(modes))


def settings_footer(settings: dict[str, Any]) -> str:
    """One line of settings written under a picture figure."""
    return "; ".join(f"{k}={v}" for k, v in settings.items())
