"""Every report figure as a paper figure: PDF, SVG and PNG (2x) in ``figures/``, drawn by matplotlib.

Why matplotlib and not plotly's own exporter: plotly's static export (kaleido) drives a
headless Chrome, which a plain ``pip install`` does not bring and which these machines cannot
download at run time; matplotlib is one wheel, writes vector PDF/SVG itself, offline and
deterministically, with fonts embedded as TrueType (editable in Illustrator / Inkscape).

The page keeps the interactive plotly figures; this module redraws each one from its plotly
JSON (the trace types the report uses: lines, markers, bands, bars with error bars, text
labels, reference lines, log axes, subplot grids, a secondary y axis, colour bars), so a
figure is defined once. Sizes and fonts are set for a paper: 6.75 in wide for multi-panel
figures, 3.25 in (one column) for one panel, no text under 7 pt, formulas in mathtext, no
title drawn. The title, caption and the settings that produced a figure go to
``figures/captions.md`` and into the file's metadata (PDF Subject, SVG description).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from umae_eval.provenance import atomic_write, project_revision
from umae_eval.report.static_draw import (
    Canvas,
    draw_annotation,
    draw_bars,
    draw_colorbars,
    draw_scatter,
    draw_shape,
    WIDTHS,
    math,
    plain,
    stamps,
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
    # no title and no settings line in the drawing: a paper sets its own caption (figures/captions.md)
    if handles and lay.get("showlegend", True) is not False and len(handles) <= 30:
        hs, names = zip(*handles.values())
        names = tuple(math(n) for n in names)
        # a formula's scripts are set at 70%: from an 8 pt base they stay above 5.6 pt
        size = 8 if any("$" in n for n in names) else None
        if len(canvas.axes) == 1:
            # above the panel, where a title would be: beside it, it would take half a column
            next(iter(canvas.axes.values())).legend(hs, names, loc="lower left", bbox_to_anchor=(0.0, 1.02),
                                                    frameon=False,
                                                    ncol=2 if len(hs) > 1 and max(map(len, names)) <= 16 else 1,
                                                    borderaxespad=0.0, handlelength=1.5, columnspacing=1.0,
                                                    fontsize=size)
        else:
            # under the lowest x title as drawn: a fixed fraction of the height clears it on a tall
            # figure and not on a short one (a 380-px plotly figure put 'block' over an entry)
            canvas.fig.legend(hs, names, loc="upper center", bbox_to_anchor=(0.5, _below_axes(canvas.fig)),
                              frameon=False, ncol=min(len(hs), 5), fontsize=size)
    return canvas.fig


def _below_axes(fig: Figure, gap_pt: float = 4.0) -> float:
    """The figure fraction ``gap_pt`` points below the lowest ink of the axes (tick labels and x titles)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    low = min(ax.get_tightbbox(renderer).y0 for ax in fig.axes)
    return (low - gap_pt * fig.dpi / 72.0) / (fig.get_figheight() * fig.dpi)


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


def fit_width(fig: Figure, renderer_of: Any) -> Any:
    """Resize ``fig`` so that its tight box is one paper width (3.25 in, or 6.75 in for figures
    wider than a column) and return that box: axes are placed in figure fractions, text in points,
    so one or two rounds converge to within a hundredth of an inch."""
    target = WIDTHS[0] if fig.get_figwidth() <= WIDTHS[0] + 1e-6 else WIDTHS[1]
    ink = target - 0.06  # the ink's width; the returned box adds 0.03 in of air on each side
    box = fig.get_tightbbox(renderer_of(fig))
    for _ in range(2):  # text keeps its size, so one correction lands within a hundredth; each costs a draw
        if abs(box.width - ink) < 0.01:
            break
        fig.set_size_inches(fig.get_figwidth() + (ink - box.width), fig.get_figheight())
        box = fig.get_tightbbox(renderer_of(fig))
    # a little air around the ink, inside the width: nothing is clipped at an edge
    from matplotlib.transforms import Bbox

    pad = 0.03
    return Bbox.from_extents(box.x0 - pad, box.y0 - pad, box.x0 - pad + target, box.y1 + pad)


def caption_entry(sf: StaticFigure) -> str:
    """The figure's entry in captions.md: title, caption, the settings line and stamp, the settings."""
    fig_json = sf.fig if isinstance(sf.fig, dict) else (
        sf.fig.to_plotly_json() if hasattr(sf.fig, "to_plotly_json") else {})  # a matplotlib figure: no layout
    lay = fig_json.get("layout", {})
    title, sub = title_parts(lay)
    lines = [f"## {sf.stem}", "", f"**{sf.title}.**" + (f" {sf.caption}" if sf.caption else "")]
    if title and title != sf.title:
        lines += ["", f"On the page: {title}."]
    for extra in [sub, *stamps(lay)]:
        if extra:
            lines += ["", extra.replace("\n", " / ")]
    if sf.settings:
        lines += ["", "Settings: " + "; ".join(f"{k}={v}" for k, v in sf.settings.items())]
    return "\n".join(lines) + "\n"


def export_figures(figures: Sequence[StaticFigure], folder: str | Path, *, title: str = "") -> list[Path]:
    """Write ``<stem>.pdf``, ``.svg`` and ``.png`` (2x) of every figure into ``folder`` and their
    captions, settings and stamps into ``captions.md``; return the paths."""
    import matplotlib

    out_dir = Path(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with matplotlib.rc_context({**_RC, "font.family": _font_families()}):
        for sf in figures:
            # a matplotlib figure (pictures) is written as it is; a plotly one is redrawn at a paper width
            drawn = hasattr(sf.fig, "savefig")
            fig = sf.fig if drawn else to_matplotlib(sf.fig)
            FigureCanvasAgg(fig)
            box = (fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.05) if drawn
                   else fit_width(fig, lambda f: f.canvas.get_renderer()))
            for fmt in FORMATS:
                buf = io.BytesIO()
                fig.savefig(buf, format=fmt, bbox_inches=box, dpi=PNG_DPI if fmt == "png" else 100,
                            metadata=_metadata(fmt, sf.title, sf.settings))
                data = buf.getvalue()
                written.append(atomic_write(out_dir / f"{sf.stem}.{fmt}", lambda fh, d=data: fh.write(d)))
    if figures:
        head = f"# Figures{': ' + title if title else ''}\n\nCaptions and the settings behind each file (also in " \
               "each PDF's Subject and SVG's description). The drawings carry no title, for a paper's own caption.\n\n"
        text = head + "\n".join(caption_entry(sf) for sf in figures)
        written.append(atomic_write(out_dir / "captions.md", lambda fh, t=text: fh.write(t.encode("utf-8"))))
    return written
