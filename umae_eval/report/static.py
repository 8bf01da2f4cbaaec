"""Every report figure as a paper figure: PDF, SVG and PNG (2x) in ``figures/``, drawn by matplotlib.

Why matplotlib and not plotly's own exporter: plotly's static export (kaleido) drives a
headless Chrome, which a plain ``pip install`` does not bring and which these machines cannot
download at run time; matplotlib is one wheel, writes vector PDF/SVG itself, offline and
deterministically, with fonts embedded as TrueType (editable in Illustrator / Inkscape).

The page keeps the interactive plotly figures; this module redraws each one from its plotly
JSON (the trace types the report uses: lines, markers, bands, bars with error bars, text
labels, reference lines, log axes, subplot grids, a secondary y axis, colour bars), so a
figure is defined once. Sizes and fonts are set for a paper: 7 in wide for multi-panel
figures, 4.8 in for one panel, 8 pt text. The settings that produced a figure are written
under it as a small footer and into the file's metadata (PDF Subject, SVG description).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from umae_eval.provenance import atomic_write, project_revision
from umae_eval.report.static_draw import (
    BOX,
    Canvas,
    draw_annotation,
    draw_bars,
    draw_colorbars,
    draw_scatter,
    draw_shape,
    plain,
    style_axis,
    title_parts,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from umae_eval.report.static_figure import StaticFigure

FORMATS = ("pdf", "svg", "png")
PNG_DPI = 200  # 2x a 100-dpi screen figure
_RC = {"font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "legend.fontsize": 7,
       "xtick.labelsize": 7, "ytick.labelsize": 7, "pdf.fonttype": 42, "svg.fonttype": "none",
       "axes.spines.top": False, "axes.spines.right": False, "axes.linewidth": 0.6,
       "svg.hashsalt": "umae"}
#: Paper fonts in order of preference, where installed (Liberation Sans has Arial's metrics and
#: embeds ~10x faster than DejaVu Sans, whose large tables dominate a PDF's write time);
#: DejaVu Sans (shipped with matplotlib) is the fallback for anything else, glyph by glyph.
_FONTS = ("Arial", "Helvetica", "Liberation Sans", "DejaVu Sans")



# ----------------------------------------------------------------------------- figure


def to_matplotlib(fig: Any) -> Figure:
    """Redraw a plotly figure (``go.Figure`` or its JSON dict) as a matplotlib ``Figure``."""
    fig_json = fig if isinstance(fig, dict) else fig.to_plotly_json()
    canvas = Canvas(fig_json)
    lay = canvas.layout
    bars: dict[int, list[dict[str, Any]]] = {}
    handles: dict[str, Any] = {}
    for tr in canvas.data:
        ax = canvas.ax_for(tr)
        kind = tr.get("type", "scatter")
        if kind == "bar":
            bars.setdefault(id(ax), []).append(tr)
            continue
        if kind in ("scatter", "scattergl"):
            h = draw_scatter(ax, tr)
            name = plain(tr.get("name", ""))
            group = str(tr.get("legendgroup") or name)
            if h is not None and name and tr.get("showlegend", True) is not False and tr.get("fill") != "toself" \
                    and group not in handles:
                handles[group] = (h, name)
    for ax in canvas.axes.values():
        group = bars.get(id(ax))
        if group:
            for tr, h in zip(group, draw_bars(ax, group)):
                handles.setdefault(plain(tr.get("name", "")), (h, plain(tr.get("name", ""))))
    for (x, y), ax in canvas.axes.items():
        style_axis(ax, lay.get(canvas._long(x)) or {}, "x")
        style_axis(ax, lay.get(canvas._long(y)) or {}, "y")
        if (lay.get(canvas._long(y)) or {}).get("scaleanchor"):
            ax.set_aspect("equal", adjustable="datalim")
        ax.grid(True, color="#e6e6e6", lw=0.5, zorder=0)
        ax.set_axisbelow(True)
    for sh in lay.get("shapes", []) or []:
        draw_shape(canvas, sh)
    for an in lay.get("annotations", []) or []:
        draw_annotation(canvas, an)
    draw_colorbars(canvas)
    for ax in list(canvas.fig.axes):  # empty cells of a subplot grid (e.g. 4 maps on 3 x 2)
        if not (ax.lines or ax.collections or ax.patches or ax.texts or ax.images) and ax in canvas.axes.values():
            canvas.fig.delaxes(ax)
    title, sub = title_parts(lay)
    left, _, _, top = BOX
    if title:
        canvas.fig.text(left, top + 0.09, title, ha="left", va="bottom", fontsize=9.5)  # one font: one embedding
    if sub:
        canvas.fig.text(left, top + 0.085, sub, ha="left", va="top", fontsize=6, color="#555555", wrap=True)
    if handles and lay.get("showlegend", True) is not False and len(handles) <= 30:
        hs, names = zip(*handles.values())
        if len(canvas.axes) == 1:
            next(iter(canvas.axes.values())).legend(hs, names, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                                                    frameon=False, ncol=1 if len(hs) <= 15 else 2)
        else:
            canvas.fig.legend(hs, names, loc="upper center", bbox_to_anchor=(0.5, BOX[2] - 0.1),
                              frameon=False, ncol=min(len(hs), 5))
    return canvas.fig


def _metadata(fmt: str, title: str, settings: dict[str, str]) -> dict[str, Any]:
    rev = project_revision()
    creator = f"umae {rev['version']} (revision {rev['revision']}), matplotlib"
    desc = "; ".join(f"{k}={v}" for k, v in settings.items())
    if fmt == "pdf":
        return {"Title": title, "Subject": desc, "Creator": creator, "CreationDate": None}
    if fmt == "svg":
        return {"Title": title, "Description": desc, "Creator": creator, "Date": None}
    return {"Title": title, "Description": desc, "Software": creator}


def _font_families() -> list[str]:
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return [f for f in _FONTS if f in installed] or ["DejaVu Sans"]


def export_figures(figures: Sequence[StaticFigure], folder: str | Path, *, title: str = "") -> list[Path]:
    """Write ``<stem>.pdf``, ``.svg`` and ``.png`` (2x) of every figure into ``folder``; return the paths."""
    import matplotlib

    out_dir = Path(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with matplotlib.rc_context({**_RC, "font.family": _font_families()}):
        for sf in figures:
            # a matplotlib figure (pictures) is written as it is; a plotly one is redrawn
            fig = sf.fig if hasattr(sf.fig, "savefig") else to_matplotlib(sf.fig)
            # the tight box once (one extra draw), not once per format
            FigureCanvasAgg(fig)
            box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.05)
            for fmt in FORMATS:
                buf = io.BytesIO()
                fig.savefig(buf, format=fmt, bbox_inches=box, dpi=PNG_DPI if fmt == "png" else 100,
                            metadata=_metadata(fmt, sf.title, sf.settings))
                data = buf.getvalue()
                written.append(atomic_write(out_dir / f"{sf.stem}.{fmt}", lambda fh, d=data: fh.write(d)))
    return written
