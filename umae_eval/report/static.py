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

import base64
import html
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from umae_eval.provenance import atomic_write, project_revision

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from umae_eval.report.writer import StaticFigure

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
_DASH = {"dash": (0, (4, 2)), "dot": (0, (1, 1.5)), "dashdot": (0, (4, 1.5, 1, 1.5)), "solid": "-",
         "longdash": (0, (7, 2))}
_SYMBOL = {"circle": "o", "star": "*", "diamond": "D", "square": "s", "x": "x", "cross": "P",
           "triangle-up": "^", "triangle-down": "v"}
_BOX = (0.09, 0.97, 0.16, 0.86)  # left, right, bottom, top of the plotting area (figure fraction)


# ----------------------------------------------------------------------------- plotly JSON


def _arr(value: Any) -> np.ndarray:
    """A plotly data array (list, typed-array dict with ``bdata``, scalar) as numpy."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            out = out.reshape([int(s) for s in str(shape).split(",")] if isinstance(shape, str) else shape)
        return out
    if value is None:
        return np.zeros(0)
    return np.asarray(value if isinstance(value, (list, tuple, np.ndarray)) else [value])


def _plain(text: Any) -> str:
    """Plotly label markup as plain text: ``<br>`` -> newline, tags dropped, entities decoded."""
    s = re.sub(r"<br\s*/?>", "\n", str(text or ""), flags=re.I)
    return html.unescape(re.sub(r"<[^>]+>", "", s))


def _title_parts(layout: dict[str, Any]) -> tuple[str, str]:
    """(title, settings line) from ``layout.title.text`` = 'Title<br><sup>settings</sup>'."""
    title = layout.get("title") or {}
    text = str(title.get("text", "") if isinstance(title, dict) else title)
    main, _, rest = text.partition("<br>")
    return _plain(main), _plain(rest)


def _color(value: Any, default: str = "#1f77b4") -> Any:
    """A plotly colour (hex, ``rgb(...)``, ``rgba(...)``, name) as a matplotlib colour."""
    if value is None or isinstance(value, (list, tuple, dict, np.ndarray)):
        return default
    s = str(value).strip()
    m = re.fullmatch(r"rgba?\(([^)]*)\)", s)
    if m:
        parts = [float(p) for p in m.group(1).split(",")]
        rgb = [p / 255.0 for p in parts[:3]]
        return (*rgb, parts[3] if len(parts) > 3 else 1.0)
    return s


def _colormap(scale: Any) -> Any:
    """A plotly colour scale (name or [[t, colour], ...]) as a matplotlib colormap."""
    from matplotlib.colors import LinearSegmentedColormap

    if isinstance(scale, str):
        import plotly.colors as pc

        scale = pc.get_colorscale(scale)
    stops = [(float(t), _color(c)) for t, c in scale]
    return LinearSegmentedColormap.from_list("umae", stops)


# ----------------------------------------------------------------------------- layout


class _Canvas:
    """The matplotlib figure and one Axes per plotly (xaxis, yaxis) pair, placed by their domains."""

    def __init__(self, fig_json: dict[str, Any]) -> None:
        from matplotlib.figure import Figure

        self.layout = fig_json.get("layout", {})
        self.data = fig_json.get("data", [])
        lay = self.layout
        names = [k for k in lay if re.fullmatch(r"xaxis\d*", k)] or ["xaxis"]
        pairs = []
        for xk in names:
            anchor = (lay.get(xk) or {}).get("anchor", "y")
            pairs.append((self._short(xk), anchor if anchor != "free" else "y"))
        for tr in self.data:
            p = (tr.get("xaxis", "x"), tr.get("yaxis", "y"))
            overlay = (lay.get(self._long(p[1])) or {}).get("overlaying")
            if p not in pairs and not overlay:
                pairs.append(p)
        self.pairs = pairs
        xdoms = sorted({tuple((lay.get(self._long(x)) or {}).get("domain", [0, 1])) for x, _ in pairs})
        ydoms = sorted({tuple((lay.get(self._long(y)) or {}).get("domain", [0, 1])) for _, y in pairs})
        self.ncols, self.nrows = len(xdoms), len(ydoms)
        width = 4.8 if self.ncols == 1 else 7.0
        row_h = 3.0 if self.ncols == 1 else (2.7 if self.ncols == 2 else 2.3)
        self.fig: Figure = Figure(figsize=(width, row_h * self.nrows + 0.4))
        self.axes: dict[tuple[str, str], Axes] = {}
        for x, y in pairs:
            xd = (lay.get(self._long(x)) or {}).get("domain", [0, 1])
            yd = (lay.get(self._long(y)) or {}).get("domain", [0, 1])
            x0, y0 = self.to_fig(xd[0], yd[0])
            x1, y1 = self.to_fig(xd[1], yd[1])
            self.axes[(x, y)] = self.fig.add_axes((x0, y0, x1 - x0, y1 - y0))
        # secondary y axes (overlaying another y): twin of the Axes that owns that y
        for yk in [k for k in lay if re.fullmatch(r"yaxis\d*", k)]:
            over = (lay.get(yk) or {}).get("overlaying")
            if over:
                host = next(((x, y) for (x, y) in pairs if y == over), None)
                x_anchor = (lay.get(yk) or {}).get("anchor", host[0] if host else "x")
                if host is not None:
                    twin = self.axes[host].twinx()
                    twin.spines["right"].set_visible(True)
                    self.axes[(x_anchor, self._short(yk))] = twin

    @staticmethod
    def _short(axis_key: str) -> str:
        return axis_key.replace("axis", "")

    @staticmethod
    def _long(short: str) -> str:
        return short[0] + "axis" + short[1:]

    @staticmethod
    def to_fig(px: float, py: float) -> tuple[float, float]:
        """Plotly paper coordinates -> matplotlib figure fraction."""
        left, right, bottom, top = _BOX
        return left + px * (right - left), bottom + py * (top - bottom)

    def ax_for(self, trace: dict[str, Any]) -> Axes:
        key = (trace.get("xaxis", "x"), trace.get("yaxis", "y"))
        if key in self.axes:
            return self.axes[key]
        return next(ax for (x, _), ax in self.axes.items() if x == key[0])


# ----------------------------------------------------------------------------- traces


def _floats(a: np.ndarray) -> np.ndarray:
    """Numbers as float64 (None -> NaN); anything else (category names) unchanged."""
    try:
        return np.array([np.nan if v is None else v for v in a.tolist()], dtype=np.float64) if a.dtype == object \
            else a.astype(np.float64)
    except (TypeError, ValueError):
        return a


def _scatter(ax: Axes, tr: dict[str, Any]) -> Any:
    x, y = _floats(_arr(tr.get("x"))), _floats(_arr(tr.get("y")))
    if y.size and y.dtype.kind == "f" and not np.isfinite(y).any():
        return None  # a carrier of a colour bar or legend entry only
    if x.size == 0 and y.size:
        x = np.arange(y.size)
    mode = str(tr.get("mode", "lines+markers" if y.size < 20 else "lines"))
    line = tr.get("line") or {}
    marker = tr.get("marker") or {}
    label = _plain(tr.get("name", "")) if tr.get("showlegend", True) is not False else "_nolegend_"
    if tr.get("fill") == "toself":
        return ax.fill(x, y, facecolor=_color(tr.get("fillcolor"), "#cccccc"), edgecolor="none",
                       label="_nolegend_", zorder=1)[0]
    handle = None
    color = _color(line.get("color") or marker.get("color"))
    if "lines" in mode:
        (handle,) = ax.plot(x, y, color=color, lw=0.6 * float(line.get("width", 2)),
                            ls=_DASH.get(str(line.get("dash", "solid")), "-"), label=label, zorder=3)
    if "markers" in mode:
        mcolor = marker.get("color")
        size = float(np.mean(_arr(marker.get("size", 6)))) if marker.get("size") is not None else 6.0
        sym = _SYMBOL.get(str(marker.get("symbol", "circle")), "o")
        alpha = float(marker.get("opacity", 1.0)) if not isinstance(marker.get("opacity"), (list, dict)) else 1.0
        edge = _color((marker.get("line") or {}).get("color"), "none") if marker.get("line") else "none"
        if isinstance(mcolor, (list, dict, np.ndarray)) and not isinstance(mcolor, str):
            cvals = _arr(mcolor)
            if cvals.dtype.kind in "fiu" and marker.get("colorscale") is not None:
                sc = ax.scatter(x, y, c=cvals, cmap=_colormap(marker["colorscale"]), s=(0.75 * size) ** 2,
                                marker=sym, alpha=alpha, linewidths=0, zorder=4,
                                vmin=marker.get("cmin"), vmax=marker.get("cmax"))
            else:
                sc = ax.scatter(x, y, c=[_color(c) for c in cvals], s=(0.75 * size) ** 2, marker=sym,
                                alpha=alpha, linewidths=0, zorder=4)
            handle = handle or sc
        else:
            sc = ax.scatter(x, y, color=_color(mcolor, color if isinstance(color, str) else "#1f77b4"),
                            s=(0.75 * size) ** 2, marker=sym, alpha=alpha, edgecolors=edge,
                            linewidths=0.4, zorder=4, label=label if handle is None else "_nolegend_")
            handle = handle or sc
    if "text" in mode and tr.get("text") is not None:
        texts = tr["text"] if isinstance(tr["text"], list) else [tr["text"]] * len(x)
        pos = str(tr.get("textposition", "top center"))
        va = "bottom" if "top" in pos else ("top" if "bottom" in pos else "center")
        for xi, yi, t in zip(x, y, texts):
            ax.annotate(_plain(t), (xi, yi), xytext=(0, 4 if va == "bottom" else -4), textcoords="offset points",
                        ha="center", va=va, fontsize=6.5)
    _error_bars(ax, tr, x, y, color)
    return handle


def _error_bars(ax: Axes, tr: dict[str, Any], x: np.ndarray, y: np.ndarray, color: Any,
                xpos: np.ndarray | None = None) -> None:
    err = tr.get("error_y") or {}
    if not err or err.get("visible") is False or err.get("array") is None:
        return
    up = _arr(err["array"]).astype(float)
    down = _arr(err.get("arrayminus", err["array"])).astype(float)
    ax.errorbar(xpos if xpos is not None else x, y.astype(float), yerr=np.vstack([down, up]), fmt="none",
                ecolor=_color(err.get("color"), "#333333"), elinewidth=0.7, capsize=2, zorder=5)


def _bars(ax: Axes, traces: Sequence[dict[str, Any]]) -> list[Any]:
    """Grouped bars: one group per category, one bar per trace, error bars and value labels."""
    cats: list[str] = []
    for tr in traces:
        for c in _arr(tr.get("x")).tolist():
            if _plain(c) not in cats:
                cats.append(_plain(c))
    n = len(traces)
    width = 0.8 / max(n, 1)
    handles = []
    for j, tr in enumerate(traces):
        xs = [cats.index(_plain(c)) for c in _arr(tr.get("x")).tolist()]
        y = _arr(tr.get("y")).astype(float)
        pos = np.asarray(xs, dtype=float) - 0.4 + width * (j + 0.5)
        color = _color((tr.get("marker") or {}).get("color"))
        bars = ax.bar(pos, np.nan_to_num(y), width=width * 0.95, color=color, label=_plain(tr.get("name", "")),
                      zorder=3)
        handles.append(bars)
        _error_bars(ax, tr, pos, y, color, xpos=pos)
        if tr.get("texttemplate") or tr.get("text") is not None:
            m = re.search(r"%\{y:\.(\d)f\}", str(tr.get("texttemplate", "")))
            fmt = f"%.{m.group(1)}f" if m else "%.1f"
            labels = [("" if not np.isfinite(v) else fmt % v) for v in y]
            if tr.get("text") is not None and not tr.get("texttemplate"):
                labels = [_plain(t) for t in (tr["text"] if isinstance(tr["text"], list) else [tr["text"]] * len(y))]
            ax.bar_label(bars, labels=labels, fontsize=6, padding=2)
    ax.set_xticks(range(len(cats)), cats, rotation=0 if sum(len(c) for c in cats) < 60 else 20,
                  ha="center" if sum(len(c) for c in cats) < 60 else "right")
    return handles


# ----------------------------------------------------------------------------- axes, shapes, text


def _axis(ax: Axes, spec: dict[str, Any], which: str) -> None:
    set_label = ax.set_xlabel if which == "x" else ax.set_ylabel
    title = spec.get("title")
    text = title.get("text") if isinstance(title, dict) else title
    if text:
        set_label(_plain(text))
    log = spec.get("type") == "log"
    if log:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    rng = spec.get("range")
    if rng is not None and len(rng) == 2 and None not in rng:
        lo, hi = (10 ** float(rng[0]), 10 ** float(rng[1])) if log else (float(rng[0]), float(rng[1]))
        (ax.set_xlim if which == "x" else ax.set_ylim)(lo, hi)
    elif spec.get("rangemode") == "tozero":
        (ax.set_xlim if which == "x" else ax.set_ylim)(left=0) if which == "x" else ax.set_ylim(bottom=0)
    if spec.get("showticklabels") is False:
        (ax.set_xticks if which == "x" else ax.set_yticks)([])
    if spec.get("tickformat") == "d" or spec.get("dtick") == 1:
        from matplotlib.ticker import MaxNLocator

        (ax.xaxis if which == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))
    if spec.get("ticksuffix") and not log:
        from matplotlib.ticker import FormatStrFormatter

        (ax.xaxis if which == "x" else ax.yaxis).set_major_formatter(
            FormatStrFormatter("%g" + str(spec["ticksuffix"]).replace("%", "%%")))


def _shape(canvas: _Canvas, sh: dict[str, Any]) -> None:
    if sh.get("type", "line") != "line":
        return
    xref, yref = str(sh.get("xref", "x")), str(sh.get("yref", "y"))
    line = sh.get("line") or {}
    kw = {"color": _color(line.get("color"), "#888888"), "lw": 0.6 * float(line.get("width", 1.5)),
          "ls": _DASH.get(str(line.get("dash", "solid")), "-"), "zorder": 2}
    x_short = xref.replace(" domain", "")
    y_short = yref.replace(" domain", "")
    ax = canvas.axes.get((x_short, y_short)) or next(
        (a for (x, y), a in canvas.axes.items() if x == x_short or y == y_short), None)
    if ax is None:
        return
    if yref.endswith("domain") and sh.get("x0") == sh.get("x1"):
        ax.axvline(float(sh["x0"]), ymin=float(sh.get("y0", 0)), ymax=float(sh.get("y1", 1)), **kw)
    elif xref.endswith("domain") and sh.get("y0") == sh.get("y1"):
        ax.axhline(float(sh["y0"]), xmin=float(sh.get("x0", 0)), xmax=float(sh.get("x1", 1)), **kw)
    else:
        ax.plot([sh.get("x0"), sh.get("x1")], [sh.get("y0"), sh.get("y1")], **kw)


def _annotation(canvas: _Canvas, an: dict[str, Any]) -> None:
    from matplotlib.transforms import offset_copy

    text = _plain(an.get("text", ""))
    if not text:
        return
    xref, yref = str(an.get("xref", "paper")), str(an.get("yref", "paper"))
    size = min(8.5, 0.6 * float((an.get("font") or {}).get("size", 12)))
    ha = {"left": "left", "right": "right"}.get(str(an.get("xanchor", "center")), "center")
    va = {"top": "top", "bottom": "bottom"}.get(str(an.get("yanchor", "middle")), "center")
    x, y = float(an.get("x", 0)), float(an.get("y", 0))
    color = _color((an.get("font") or {}).get("color"), "#222222")
    if xref == "paper" and yref == "paper":
        fx, fy = canvas.to_fig(x, y)
        trans = offset_copy(canvas.fig.transFigure, fig=canvas.fig, x=0.75 * float(an.get("xshift", 0)),
                            y=0.75 * float(an.get("yshift", 0)), units="points")
        canvas.fig.text(fx, fy, text, ha=ha, va=va, fontsize=size, color=color, transform=trans)
        return
    x_short, y_short = xref.replace(" domain", ""), yref.replace(" domain", "")
    ax = canvas.axes.get((x_short, y_short)) or next(iter(canvas.axes.values()))
    from matplotlib.transforms import blended_transform_factory

    tx = ax.transAxes if xref.endswith("domain") else ax.transData
    ty = ax.transAxes if yref.endswith("domain") else ax.transData
    ax.text(x, y, text, ha=ha, va=va, fontsize=size, color=color, transform=blended_transform_factory(tx, ty))


def _colorbars(canvas: _Canvas) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    for tr in canvas.data:
        marker = tr.get("marker") or {}
        if not marker.get("showscale") or marker.get("colorscale") is None:
            continue
        vals = _arr(marker.get("color")).astype(float) if isinstance(marker.get("color"), (list, dict)) else None
        lo = marker.get("cmin", float(np.nanmin(vals)) if vals is not None and vals.size else 0.0)
        hi = marker.get("cmax", float(np.nanmax(vals)) if vals is not None and vals.size else 1.0)
        sm = ScalarMappable(norm=Normalize(lo, hi), cmap=_colormap(marker["colorscale"]))
        cb = canvas.fig.colorbar(sm, ax=canvas.ax_for(tr), fraction=0.05, pad=0.02)
        title = (marker.get("colorbar") or {}).get("title")
        text = title.get("text") if isinstance(title, dict) else title
        if text:
            cb.set_label(_plain(text))


# ----------------------------------------------------------------------------- figure


def to_matplotlib(fig: Any) -> Figure:
    """Redraw a plotly figure (``go.Figure`` or its JSON dict) as a matplotlib ``Figure``."""
    fig_json = fig if isinstance(fig, dict) else fig.to_plotly_json()
    canvas = _Canvas(fig_json)
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
            h = _scatter(ax, tr)
            name = _plain(tr.get("name", ""))
            group = str(tr.get("legendgroup") or name)
            if h is not None and name and tr.get("showlegend", True) is not False and tr.get("fill") != "toself" \
                    and group not in handles:
                handles[group] = (h, name)
    for ax in canvas.axes.values():
        group = bars.get(id(ax))
        if group:
            for tr, h in zip(group, _bars(ax, group)):
                handles.setdefault(_plain(tr.get("name", "")), (h, _plain(tr.get("name", ""))))
    for (x, y), ax in canvas.axes.items():
        _axis(ax, lay.get(canvas._long(x)) or {}, "x")
        _axis(ax, lay.get(canvas._long(y)) or {}, "y")
        if (lay.get(canvas._long(y)) or {}).get("scaleanchor"):
            ax.set_aspect("equal", adjustable="datalim")
        ax.grid(True, color="#e6e6e6", lw=0.5, zorder=0)
        ax.set_axisbelow(True)
    for sh in lay.get("shapes", []) or []:
        _shape(canvas, sh)
    for an in lay.get("annotations", []) or []:
        _annotation(canvas, an)
    _colorbars(canvas)
    for ax in list(canvas.fig.axes):  # empty cells of a subplot grid (e.g. 4 maps on 3 x 2)
        if not (ax.lines or ax.collections or ax.patches or ax.texts or ax.images) and ax in canvas.axes.values():
            canvas.fig.delaxes(ax)
    title, sub = _title_parts(lay)
    left, _, _, top = _BOX
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
            canvas.fig.legend(hs, names, loc="upper center", bbox_to_anchor=(0.5, _BOX[2] - 0.1),
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
            fig = to_matplotlib(sf.fig)
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
