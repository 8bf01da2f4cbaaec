"""A self-contained HTML report (plotly.js embedded once) plus results.json, CSVs and figures/.

Every user-supplied string (paths, class names, settings) is HTML-escaped here, in one place.
The page opens offline, draws every plot as SVG (no WebGL), has a table of contents with
anchors, links to every file written, prints without splitting figures, and stacks its
side-by-side panels on screens narrower than 900 px. Each figure is also written to
``figures/`` as PDF, SVG and PNG (2x) by :mod:`umae_eval.report.static`. The escaping and
formatting helpers are in :mod:`umae_eval.report.page_parts`, the folder writer
(:func:`write_outputs`) in :mod:`umae_eval.report.outputs`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from umae_eval.provenance import atomic_write_text, command_line_text, now_iso, project_revision, versions
from umae_eval.report.outputs import write_outputs
from umae_eval.report.page_parts import BASIC_TRACES, _fmt, _script_json, _settings_line, plotly_js, slug
from umae_eval.report.page_style import CSS, PRINT_JS
from umae_eval.report.static_figure import StaticFigure
from umae_eval.report.tables import formatted

# the page's helpers and the folder writer live in page_parts / outputs; named here so that
# imports from this module keep working
__all__ = ["BASIC_TRACES", "HtmlReport", "StaticFigure", "plotly_js", "slug", "write_outputs"]


@dataclass
class HtmlReport:
    """Sections added in order, rendered to one offline HTML page.

    Example::

        rep = HtmlReport("collapse report", command="collapse-report")
        rep.add_figure("Singular values (Fig. 1b)", fig, caption="centred features, log scale")
        rep.add_table("Effective rank", df)
        with rep.collapsed("Settings"):
            rep.add_settings({"data": "demo", "pool": "cls"})
        rep.write(out_dir / "report.html")
    """

    title: str
    command: str
    _parts: list[str] = field(default_factory=list)
    _toc: list[tuple[int, str, str]] = field(default_factory=list)
    _ids: set[str] = field(default_factory=set)
    _n_figures: int = 0
    static_figures: list[StaticFigure] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    _trace_types: set[str] = field(default_factory=set)

    # ------------------------------------------------------------------ structure

    def _anchor(self, text: str) -> str:
        base = slug(text)
        anchor, i = base, 2
        while anchor in self._ids:
            anchor, i = f"{base}-{i}", i + 1
        self._ids.add(anchor)
        return anchor

    def _heading_html(self, text: str, level: int = 2) -> str:
        anchor = self._anchor(text)
        self._toc.append((level, anchor, text))
        return (f"<h{level} id='{anchor}'>{html.escape(text)}"
                f"<a class='anchor' href='#{anchor}' aria-label='link to this section'>#</a></h{level}>")

    def add_heading(self, text: str, level: int = 2) -> None:
        """A section heading with an anchor; level 2 headings go into the table of contents."""
        self._parts.append(self._heading_html(text, level))

    def add_text(self, text: str) -> None:
        """A plain paragraph (escaped; blank lines split paragraphs)."""
        for para in str(text).split("\n\n"):
            self._parts.append(f"<p>{html.escape(para)}</p>")

    def add_sentences(self, sentences: Sequence[str], *, verdict: bool = False) -> None:
        """A bulleted list of plain sentences (escaped); ``verdict`` frames it as the report's answer."""
        if not sentences:
            return
        items = "".join(f"<li>{html.escape(s)}</li>" for s in sentences)
        cls = " class='verdict'" if verdict else ""
        self._parts.append(f"<div{cls}><ul class='sentences'>{items}</ul></div>")

    @contextmanager
    def collapsed(self, summary: str, *, open_: bool = False, level: int = 2) -> Iterator[None]:
        """Everything added inside the block goes into a ``<details>`` section (opened for print).

        ``level`` 2 lists it in the table of contents; 3 keeps it inside the section above.
        """
        anchor = self._anchor(summary)
        self._toc.append((level, anchor, summary))
        self._parts.append(f"<details id='{anchor}'{' open' if open_ else ''}><summary>{html.escape(summary)}"
                           f"</summary>")
        try:
            yield
        finally:
            self._parts.append("</details>")

    def add_settings(self, settings: Mapping[str, Any], title: str = "Settings", *, level: int = 3) -> None:
        """A two-column table of the settings that produced this report (escaped)."""
        rows = "".join(
            f"<tr><th class='brk'>{html.escape(str(k))}</th><td class='brk'>{html.escape(_fmt(v))}</td></tr>"
            for k, v in settings.items()
        )
        self._parts.append(f"{self._heading_html(title, level)}<table class='settings'>{rows}</table>")

    # ------------------------------------------------------------------ tables

    def table_html(self, df: pd.DataFrame) -> str:
        """A data table: headers in words, one number format per column, numbers right-aligned."""
        heads, rows = formatted(df)
        numeric = [all(r[j][1] for r in rows) and bool(rows) for j in range(len(heads))]
        head = "".join(f"<th{' class=num' if numeric[j] else ''}>{html.escape(h)}</th>"
                       for j, h in enumerate(heads))
        def cell(t: str, num: bool) -> str:
            if num:
                return f"<td class='num'>{html.escape(t)}</td>"
            # hashes and paths may break anywhere; words only between words
            long = any(len(w) > 22 for w in t.split())
            return f"<td class='brk'>{html.escape(t)}</td>" if long else f"<td>{html.escape(t)}</td>"

        body = "".join("<tr>" + "".join(cell(t, num) for t, num in r) + "</tr>" for r in rows)
        return f"<div class='tablewrap'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"

    def add_table(
        self,
        title: str,
        df: pd.DataFrame,
        caption: str = "",
        float_format: str | None = None,
        settings: Mapping[str, Any] | None = None,
        *,
        level: int = 2,
    ) -> None:
        """A data table under its own heading; every cell escaped.

        ``settings`` (optional) is shown under the table: the options that produced it.
        ``float_format`` is accepted for old callers and ignored: each column picks one format.
        """
        self._parts.append(
            (self._heading_html(title, level) if title else "") + self.table_html(df)
            + (f"<div class='caption'>{html.escape(caption)}</div>" if caption else "")
            + _settings_line(settings)
        )

    # ------------------------------------------------------------------ figures

    def _figure_div(self, fig: Any, settings: Mapping[str, Any] | None, stem: str, modebar: bool = True) -> str:
        self._n_figures += 1
        div_id = f"umae-fig-{self._n_figures}"
        if settings:
            fig.update_layout(meta={"umae_settings": {str(k): _fmt(v) for k, v in settings.items()}})
        import plotly.io as pio

        fig_json = json.loads(pio.to_json(fig, validate=False, pretty=False))
        self._trace_types.update(str(t.get("type", "scatter")) for t in fig_json.get("data", []))
        config = {"displaylogo": False, "responsive": True, "displayModeBar": "hover" if modebar else False,
                  "toImageButtonOptions": {"format": "svg", "filename": stem}}
        script = (
            f"Plotly.newPlot({_script_json(div_id)}, {_script_json(fig_json.get('data', []))}, "
            f"{_script_json(fig_json.get('layout', {}))}, {_script_json(config)});"
        )
        return (f"<div class='umae-figure'><div id='{div_id}' class='plotly-graph-div'></div>"
                f"<script type='text/javascript'>{script}</script></div>")

    def _static(self, stem: str, fig: Any, title: str, settings: Mapping[str, Any] | None, caption: str = "") -> str:
        """Register ``fig`` for figures/ and return the links to its files."""
        stem = self._unique_stem(stem)
        self.static_figures.append(StaticFigure(stem, fig, title, {str(k): _fmt(v) for k, v in (settings or {}).items()},
                                                caption))
        links = " ".join(f"<a href='figures/{html.escape(stem)}.{ext}'>{ext.upper()}</a>" for ext in ("pdf", "svg", "png"))
        return f"<div class='figlinks'>figure files: {links}</div>"

    def _unique_stem(self, stem: str) -> str:
        taken = {s.stem for s in self.static_figures}
        out, i = stem, 2
        while out in taken:
            out, i = f"{stem}-{i}", i + 1
        return out

    def add_figure(
        self,
        title: str,
        fig: Any,
        caption: str = "",
        settings: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        static: Any | None = None,
        level: int = 2,
    ) -> None:
        """A plotly figure under its own heading; its div gets class ``umae-figure``.

        The figure is serialised to JSON with ``<``, ``>`` and ``&`` written as ``\\uXXXX``
        escapes, so no string inside it can close the ``<script>`` element. Plotly draws a
        small HTML subset in labels: pass user strings through
        :func:`umae_eval.report.figures.label` (the figure functions there already do).
        ``settings`` (optional) is shown under the figure and stored in ``layout.meta``. The
        figure (or ``static``, a version typeset for print) is also written to
        ``figures/<name>.{pdf,svg,png}`` (``name`` defaults to the title's slug).
        """
        stem = name or slug(title)
        self._parts.append(
            self._heading_html(title, level) + self._figure_div(fig, settings, stem)
            + (f"<div class='caption'>{html.escape(caption)}</div>" if caption else "")
            + _settings_line(settings) + self._static(stem, static if static is not None else fig, title, settings,
                                                      caption)
        )

    def add_figure_grid(
        self,
        title: str,
        figs: Sequence[Any],
        *,
        caption: str = "",
        settings: Mapping[str, Any] | None = None,
        swatches: Sequence[tuple[str, ...]] = (),
        name: str | None = None,
        static: Any | None = None,
    ) -> None:
        """Several figures side by side (stacked below 900 px), an optional colour key
        (``swatches``: (label, colour) or (label, colour, glyph of the marker shape)) and one
        static file of ``static`` (all panels in one)."""
        stem = name or slug(title)
        # small panels: no modebar over their titles (drag to zoom, double-click to reset still work)
        cells = "".join(f"<div>{self._figure_div(f, settings, stem, modebar=False)}</div>" for f in figs)
        key = ""
        if swatches:
            def chip(name_: str, color: str, glyph: str = "") -> str:
                mark = (f"<span class='glyph' style='color:{html.escape(color)}'>{html.escape(glyph)}</span>" if glyph
                        else f"<span class='swatch' style='background:{html.escape(color)}'></span>")
                return f"<span>{mark}{html.escape(name_)}</span>"

            key = "<div class='swatches'>" + "".join(chip(*sw) for sw in swatches) + "</div>"
        self._parts.append(
            self._heading_html(title) + f"<div class='figgrid'>{cells}</div>" + key
            + (f"<div class='caption'>{html.escape(caption)}</div>" if caption else "")
            + _settings_line(settings)
            + (self._static(stem, static, title, settings, caption) if static is not None else "")
        )

    def add_image_figure(self, title: str, fig: Any, caption: str = "", settings: Mapping[str, Any] | None = None,
                         *, name: str | None = None, level: int = 2) -> None:
        """A matplotlib figure (pictures: reconstructions, attention maps) under its own heading:
        an embedded PNG on the page (the page stays one file), PDF / SVG / PNG in ``figures/``."""
        import base64
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        self._parts.append(
            self._heading_html(title, level)
            + f"<div class='umae-image'><img class='umae-picture' alt='{html.escape(title)}' style='max-width:100%' src='{src}'></div>"
            + (f"<div class='caption'>{html.escape(caption)}</div>" if caption else "")
            + _settings_line(settings) + self._static(name or slug(title), fig, title, settings))

    @property
    def n_figures(self) -> int:
        return self._n_figures

    # ------------------------------------------------------------------ page

    def _toc_html(self) -> str:
        items = "".join(f"<li><a href='#{a}'>{html.escape(t)}</a></li>" for lvl, a, t in self._toc if lvl == 2)
        return f"<nav class='toc' aria-label='contents'><b>Contents</b><ol>{items}</ol></nav>" if items else ""

    def _files_html(self) -> str:
        """Links to every file written: results.json and the CSVs, then each figure's PDF / SVG / PNG."""
        if not self.files:
            return ""
        heading = self._heading_html("Files written")
        data = [f for f in self.files if not f.startswith("figures/")]
        figs: dict[str, list[str]] = {}
        for f in self.files:
            if f.startswith("figures/"):
                figs.setdefault(f.rsplit(".", 1)[0], []).append(f)
        items = "".join(f"<li><a href='{html.escape(f)}'>{html.escape(f)}</a></li>" for f in data)
        fig_items = "".join(
            f"<li>{html.escape(stem)}: " + "".join(f"<a href='{html.escape(f)}'>{html.escape(f.rsplit('.', 1)[1].upper())}</a>"
                                                   for f in files) + "</li>"
            for stem, files in figs.items())
        return (f"{heading}<p class='meta'>Tables (CSV, as in results.json) and the run record:</p>"
                f"<ul class='files'>{items}</ul>"
                + (f"<p class='meta'>Figures for a paper (PDF and SVG vector, PNG at 2x), in figures/:</p>"
                   f"<ul class='files'>{fig_items}</ul>" if fig_items else ""))

    def render(self) -> str:
        """The whole page as a string. plotly.js is inlined once, only if a figure exists: the
        basic partial bundle when the figures need nothing else (:func:`plotly_js`)."""
        files = self._files_html()  # adds its heading to the contents before they are drawn
        script = ""
        if self._n_figures:
            script = f"<script type='text/javascript'>{plotly_js(self._trace_types)}</script>"
        v = versions()
        rev = project_revision()
        cmd = command_line_text()
        stamp = (f"umae {html.escape(rev['version'])} (revision {html.escape(rev['revision'])}) · "
                 f"torch {html.escape(v.get('torch', '?'))} · {html.escape(now_iso())}")
        cmd_html = f"<div class='meta'>command: <code>{html.escape(cmd)}</code></div>" if cmd else ""
        tail = f"<script type='text/javascript'>{PRINT_JS}</script>" if self._n_figures else ""
        return (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style>{script}</head><body>"
            f"<h1>{html.escape(self.title)}</h1><div class='meta'>umae {html.escape(self.command)} · {stamp}</div>"
            + cmd_html + self._toc_html()
            + "".join(self._parts) + files + tail
            + "</body></html>"
        )

    def write(self, path: str | Path) -> Path:
        """Atomically write the page."""
        return atomic_write_text(path, self.render())
