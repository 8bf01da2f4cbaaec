"""Drawing one plotly figure's JSON with matplotlib: axes placed by their domains, the trace
types the report uses (lines, markers, bands, grouped bars with error bars, text labels), reference
lines, annotations, log axes, a secondary y axis, colour bars. Used by :mod:`umae_eval.report.static`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

# Reading plotly's JSON lives in static_plotly; its names stay importable here.
from umae_eval.report.static_plotly import (  # noqa: F401
    _DASH,
    _MATH,
    _SYMBOL,
    BOX,
    MIN_PT,
    STAMP,
    WIDTHS,
    _arr,
    _color,
    _colormap,
    math,
    plain,
    stamps,
    title_parts,
)

#: SVG ids of the drawn intervals: error-bar segments and 95% bands (the browser test counts them
#: against the page's own figure, so no interval of the page goes missing in figures/).
INTERVAL_GID = "umae-interval"
BAND_GID = "umae-band"

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


# ----------------------------------------------------------------------------- layout


class Canvas:
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
        width = WIDTHS[0] if self.ncols == 1 else WIDTHS[1]
        row_h = 2.3 if self.ncols == 1 else (2.6 if self.ncols == 2 else 2.2)
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
        left, right, bottom, top = BOX
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


def draw_scatter(ax: Axes, tr: dict[str, Any]) -> Any:
    x, y = _floats(_arr(tr.get("x"))), _floats(_arr(tr.get("y")))
    if y.size and y.dtype.kind == "f" and not np.isfinite(y).any():
        return _legend_proxy(tr)  # a carrier of a colour bar (None) or of a legend entry only
    if x.size == 0 and y.size:
        x = np.arange(y.size)
    mode = str(tr.get("mode", "lines+markers" if y.size < 20 else "lines"))
    line = tr.get("line") or {}
    marker = tr.get("marker") or {}
    label = plain(tr.get("name", "")) if tr.get("showlegend", True) is not False else "_nolegend_"
    if tr.get("fill") == "toself":
        band = ax.fill(x, y, facecolor=_color(tr.get("fillcolor"), "#cccccc"), edgecolor="none",
                       label="_nolegend_", zorder=1)[0]
        band.set_gid(BAND_GID)
        return band
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
        if isinstance(marker.get("symbol"), (list, tuple, np.ndarray)):
            handle = handle or _layered_points(ax, x, y, marker, size, alpha)
        elif isinstance(mcolor, (list, dict, np.ndarray)) and not isinstance(mcolor, str):
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
            ax.annotate(plain(t), (xi, yi), xytext=(0, 4 if va == "bottom" else -4), textcoords="offset points",
                        ha="center", va=va, fontsize=MIN_PT)
    _error_bars(ax, tr, x, y, color)
    return handle


def _legend_proxy(tr: dict[str, Any]) -> Any:
    """A legend handle for a trace with no finite point (a plotly legend-only entry), or None."""
    from matplotlib.lines import Line2D

    marker = tr.get("marker") or {}
    if tr.get("showlegend", True) is False or marker.get("showscale") or not tr.get("name"):
        return None
    sym = marker.get("symbol", "circle")
    return Line2D([], [], ls="", marker=_SYMBOL.get(str(sym), "o"), markersize=4,
                  color=_color(marker.get("color"), "#333333"), markeredgewidth=0)


def _layered_points(ax: Axes, x: np.ndarray, y: np.ndarray, marker: dict[str, Any], size: float,
                    alpha: float) -> Any:
    """Points with one marker shape each, drawn in their given (seeded random) order as far as
    matplotlib allows: one scatter takes one shape, so the sequence is cut into 8 layers and each
    layer draws its shapes in turn (no class lies on top of all the others)."""
    syms = [_SYMBOL.get(str(v), "o") for v in _arr(marker.get("symbol")).tolist()]
    cols = [_color(c) for c in _arr(marker.get("color")).tolist()] if isinstance(marker.get("color"), (list, dict)) \
        else [_color(marker.get("color"))] * len(syms)
    handle = None
    for part in np.array_split(np.arange(len(syms)), min(8, max(1, len(syms)))):
        for sym in dict.fromkeys(syms[i] for i in part):
            sel = [i for i in part if syms[i] == sym]
            handle = ax.scatter(x[sel], y[sel], c=[cols[i] for i in sel], marker=sym, s=(0.75 * size) ** 2,
                                alpha=alpha, linewidths=0, zorder=4)
    return handle


def _error_bars(ax: Axes, tr: dict[str, Any], x: np.ndarray, y: np.ndarray, color: Any,
                xpos: np.ndarray | None = None) -> None:
    """Vertical (``error_y``) and horizontal (``error_x``) error bars of a trace, as plotly draws them."""
    for key in ("error_y", "error_x"):
        err = tr.get(key) or {}
        if not err or err.get("visible") is False or err.get("array") is None:
            continue
        up = _arr(err["array"]).astype(float)
        down = _arr(err.get("arrayminus", err["array"])).astype(float)
        bars = {"yerr" if key == "error_y" else "xerr": np.vstack([down, up])}
        drawn = ax.errorbar(xpos if xpos is not None else x, y.astype(float), fmt="none",
                            ecolor=_color(err.get("color"), "#333333"), elinewidth=0.7, capsize=2, zorder=5, **bars)
        for lines in drawn[2]:  # the bars themselves (not the caps): one segment per interval
            lines.set_gid(INTERVAL_GID)


def draw_bars(ax: Axes, traces: Sequence[dict[str, Any]]) -> list[Any]:
    """Grouped bars: one group per category, one bar per trace, error bars and value labels."""
    cats: list[str] = []
    for tr in traces:
        for c in _arr(tr.get("x")).tolist():
            if plain(c) not in cats:
                cats.append(plain(c))
    n = len(traces)
    width = 0.8 / max(n, 1)
    handles = []
    for j, tr in enumerate(traces):
        xs = [cats.index(plain(c)) for c in _arr(tr.get("x")).tolist()]
        y = _arr(tr.get("y")).astype(float)
        pos = np.asarray(xs, dtype=float) - 0.4 + width * (j + 0.5)
        color = _color((tr.get("marker") or {}).get("color"))
        bars = ax.bar(pos, np.nan_to_num(y), width=width * 0.95, color=color, label=plain(tr.get("name", "")),
                      zorder=3)
        handles.append(bars)
        _error_bars(ax, tr, pos, y, color, xpos=pos)
        if tr.get("texttemplate") or tr.get("text") is not None:
            m = re.search(r"%\{y:\.(\d)f\}", str(tr.get("texttemplate", "")))
            fmt = f"%.{m.group(1)}f" if m else "%.1f"
            labels = [("" if not np.isfinite(v) else fmt % v) for v in y]
            if tr.get("text") is not None and not tr.get("texttemplate"):
                labels = [plain(t) for t in (tr["text"] if isinstance(tr["text"], list) else [tr["text"]] * len(y))]
            if len(traces) * len(cats) <= 6:  # more bars than that: their labels would touch at column width
                # as on the page: mid-bar when the bar has an error bar (above it, it would meet the whisker
                # or, on a 100% bar, the legend above the panel)
                inside = tr.get("textposition") == "inside"
                ax.bar_label(bars, labels=labels, fontsize=MIN_PT, padding=0 if inside else 2,
                             label_type="center" if inside else "edge")
    # about 28 characters of 7 pt labels fit under one column's width side by side
    tilt = sum(len(c) for c in cats) >= 28
    ax.set_xticks(range(len(cats)), cats, rotation=20 if tilt else 0, ha="right" if tilt else "center")
    return handles


# ----------------------------------------------------------------------------- axes, shapes, text


def style_axis(ax: Axes, spec: dict[str, Any], which: str) -> None:
    set_label = ax.set_xlabel if which == "x" else ax.set_ylabel
    title = spec.get("title")
    text = title.get("text") if isinstance(title, dict) else title
    if text:
        set_label(math(plain(text)))
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
        ax.spines["bottom" if which == "x" else "left"].set_visible(False)  # a map has no scale to show
    axis = ax.xaxis if which == "x" else ax.yaxis
    if log:
        # plotly's dtick=1 on a log axis means one tick per decade, not integer ticks
        from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter

        axis.set_major_locator(LogLocator(base=10.0, numticks=6))  # every other decade on a long range: no overlap
        axis.set_major_formatter(LogFormatterSciNotation(base=10.0))
        axis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis=which, labelsize=8)  # the exponent is set at 70%: 5.6 pt, as LaTeX would
    elif spec.get("tickformat") == "d" or spec.get("dtick") == 1:
        from matplotlib.ticker import MaxNLocator

        axis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    elif re.fullmatch(r"\.\d+f", str(spec.get("tickformat", ""))):
        from matplotlib.ticker import FormatStrFormatter, MaxNLocator

        axis.set_major_locator(MaxNLocator(nbins=5))
        axis.set_major_formatter(FormatStrFormatter("%" + str(spec["tickformat"])))
    if spec.get("ticksuffix") and not log:
        from matplotlib.ticker import FormatStrFormatter

        (ax.xaxis if which == "x" else ax.yaxis).set_major_formatter(
            FormatStrFormatter("%g" + str(spec["ticksuffix"]).replace("%", "%%")))


def draw_shape(canvas: Canvas, sh: dict[str, Any]) -> None:
    if sh.get("type") == "rect" and str(sh.get("xref", "")).endswith("domain"):
        # a horizontal band across the panel (plotly's add_hrect)
        y_short = str(sh.get("yref", "y")).replace(" domain", "")
        band_ax = next((a for (x, y), a in canvas.axes.items() if y == y_short), None)
        if band_ax is not None:
            band_ax.axhspan(float(sh["y0"]), float(sh["y1"]), color=_color(sh.get("fillcolor"), "#dddddd"),
                            lw=0, zorder=1)
        return
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


def draw_annotation(canvas: Canvas, an: dict[str, Any]) -> None:
    from matplotlib.transforms import offset_copy

    text = math(plain(an.get("text", "")))
    if not text or an.get("name") == STAMP:
        return  # the settings stamp goes to captions.md and the file's metadata, not into the drawing
    xref, yref = str(an.get("xref", "paper")), str(an.get("yref", "paper"))
    size = max(MIN_PT, min(8.5, 0.6 * float((an.get("font") or {}).get("size", 12))))
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


def draw_colorbars(canvas: Canvas) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.ticker import MaxNLocator

    for tr in canvas.data:
        marker = tr.get("marker") or {}
        if not marker.get("showscale") or marker.get("colorscale") is None:
            continue
        vals = _arr(marker.get("color")).astype(float) if isinstance(marker.get("color"), (list, dict)) else None
        lo = marker.get("cmin", float(np.nanmin(vals)) if vals is not None and vals.size else 0.0)
        hi = marker.get("cmax", float(np.nanmax(vals)) if vals is not None and vals.size else 1.0)
        sm = ScalarMappable(norm=Normalize(lo, hi), cmap=_colormap(marker["colorscale"]))
        # inside the panel's lower left corner (empty under a decaying spectrum), horizontal: a bar
        # beside the panel would sit on the next panel's axis title
        ax = canvas.ax_for(tr)
        cax = ax.inset_axes((0.08, 0.1, 0.4, 0.045))
        cb = canvas.fig.colorbar(sm, cax=cax, orientation="horizontal")
        cb.ax.tick_params(labelsize=MIN_PT, length=2, pad=1)
        cb.ax.xaxis.set_major_locator(MaxNLocator(3))
        title = (marker.get("colorbar") or {}).get("title")
        text = title.get("text") if isinstance(title, dict) else title
        if text:
            cb.ax.set_title(math(plain(text)), fontsize=MIN_PT, pad=2)
