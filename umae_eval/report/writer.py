"""A self-contained HTML report (plotly.js embedded once) plus results.json and CSVs.

Every user-supplied string (paths, class names, settings) is HTML-escaped here, in one place.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from umae_eval.provenance import atomic_write_json, atomic_write_text, now_iso, results_envelope, versions

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem} th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.caption{color:#555;font-size:.85rem;margin:.2rem 0 1rem} .meta{color:#666;font-size:.85rem}
code{background:#f4f4f4;padding:0 .2rem}
.figsettings{color:#666;font-size:.78rem;margin:.1rem 0 1rem;word-break:break-all}
.umae-figure{min-height:420px} .tablewrap{overflow-x:auto}
"""


def _script_json(obj: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``<``, ``>``, ``&`` or line separators.

    ``</script>`` (or ``<!--``) in a user string can therefore never end the script early.
    """
    text = json.dumps(obj, default=str)  # NaN/Infinity are valid JavaScript here
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _settings_line(settings: Mapping[str, Any] | None) -> str:
    if not settings:
        return ""
    items = "; ".join(f"{k}={_fmt(v)}" for k, v in settings.items())
    return f"<div class='figsettings'><b>settings:</b> {html.escape(items)}</div>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


@dataclass
class HtmlReport:
    """Sections added in order, rendered to one offline HTML page.

    Example::

        rep = HtmlReport("collapse report", command="collapse-report")
        rep.add_settings({"data": "demo", "pool": "cls"})
        rep.add_figure("Singular values (Fig. 1b)", fig, caption="centred features, log scale")
        rep.add_table("Effective rank", df)
        rep.write(out_dir / "report.html")
    """

    title: str
    command: str
    _parts: list[str] = field(default_factory=list)
    _n_figures: int = 0

    def add_heading(self, text: str) -> None:
        self._parts.append(f"<h2>{html.escape(text)}</h2>")

    def add_text(self, text: str) -> None:
        """A plain paragraph (escaped; blank lines split paragraphs)."""
        for para in str(text).split("\n\n"):
            self._parts.append(f"<p>{html.escape(para)}</p>")

    def add_settings(self, settings: Mapping[str, Any], title: str = "Settings") -> None:
        """A two-column table of the settings that produced this report (escaped)."""
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
            for k, v in settings.items()
        )
        self._parts.append(f"<h2>{html.escape(title)}</h2><table class='settings'>{rows}</table>")

    def add_table(
        self,
        title: str,
        df: pd.DataFrame,
        caption: str = "",
        float_format: str = "{:.2f}",
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """A data table; numbers right-aligned, every cell escaped.

        ``settings`` (optional) is shown under the table: the options that produced it.
        """
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
        body = []
        for _, row in df.iterrows():
            cells = []
            for v in row.tolist():
                if isinstance(v, float):
                    cells.append(f"<td class='num'>{html.escape(float_format.format(v))}</td>")
                elif isinstance(v, int) and not isinstance(v, bool):
                    cells.append(f"<td class='num'>{v}</td>")
                else:
                    cells.append(f"<td>{html.escape(str(v))}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        self._parts.append(
            f"<h2>{html.escape(title)}</h2><div class='tablewrap'><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>"
            + (f"<div class='caption'>{html.escape(caption)}</div>" if caption else "")
            + _settings_line(settings)
        )

    def add_figure(
        self,
        title: str,
        fig: Any,
        caption: str = "",
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """A plotly figure. Its div gets class ``umae-figure`` (the browser test counts them).

        The figure is serialised to JSON with ``<``, ``>`` and ``&`` written as ``\\uXXXX``
        escapes, so no string inside it can close the ``<script>`` element. Plotly draws a
        small HTML subset in labels: pass user strings through
        :func:`umae_eval.report.figures.label` (the figure functions there already do).
        ``settings`` (optional) is shown under the figure and stored in ``layout.meta``.
        """
        self._n_figures += 1
        div_id = f"umae-fig-{self._n_figures}"
        if settings:
            fig.update_layout(meta={"umae_settings": {str(k): _fmt(v) for k, v in settings.items()}})
        import plotly.io as pio

        fig_json = json.loads(pio.to_json(fig, validate=False, pretty=False))
        config = {"displaylogo": False, "responsive": True}
        script = (
            f"Plotly.newPlot({_script_json(div_id)}, {_script_json(fig_json.get('data', []))}, "
            f"{_script_json(fig_json.get('layout', {}))}, {_script_json(config)});"
        )
        self._parts.append(
            f"<h2>{html.escape(title)}</h2>"
            f"<div class='umae-figure'><div id='{div_id}' class='plotly-graph-div'></div>"
            f"<script type='text/javascript'>{script}</script></div>"
            + (f"<div class='caption'>{html.escape(caption)}</div>" if caption else "")
            + _settings_line(settings)
        )

    @property
    def n_figures(self) -> int:
        return self._n_figures

    def render(self) -> str:
        """The whole page as a string. plotly.js is inlined once, only if a figure exists."""
        script = ""
        if self._n_figures:
            from plotly.offline import get_plotlyjs

            script = f"<script type='text/javascript'>{get_plotlyjs()}</script>"
        v = versions()
        stamp = (f"umae {html.escape(v.get('umae', '?'))} · torch {html.escape(v.get('torch', '?'))}"
                 f" · {html.escape(now_iso())}")
        return (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style>{script}</head><body>"
            f"<h1>{html.escape(self.title)}</h1><div class='meta'>umae {html.escape(self.command)} · {stamp}</div>"
            + "".join(self._parts)
            + "</body></html>"
        )

    def write(self, path: str | Path) -> Path:
        """Atomically write the page."""
        return atomic_write_text(path, self.render())


def write_outputs(
    out_dir: str | Path,
    command: str,
    settings: Mapping[str, Any],
    results: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame] | None = None,
    report: HtmlReport | None = None,
) -> dict[str, Path]:
    """Write ``results.json`` (settings, versions, results), one CSV per table, and ``report.html``.

    Returns the paths written, keyed by ``'results'``, ``'report'`` and each table name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, df in (tables or {}).items():
        written[name] = atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
    if report is not None:
        written["report"] = report.write(out / "report.html")
    written["results"] = atomic_write_json(
        out / "results.json", results_envelope(command, dict(settings), dict(results))
    )
    return written
