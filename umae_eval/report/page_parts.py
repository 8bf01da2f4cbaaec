"""The small pieces of page text :class:`umae_eval.report.writer.HtmlReport` assembles: JSON safe
inside ``<script>``, the settings line under a table or figure, one value format, section slugs,
and which plotly.js bundle to inline.

Apart from the writer because they are pure functions of their arguments (the escaping rules
are tested alone) while the writer holds the page's state; :mod:`umae_eval.report.writer`
re-exports them, so old imports keep working.

Example
-------
>>> slug("Singular values (Fig. 1b)")
'singular-values-fig-1b'
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["BASIC_TRACES", "plotly_js", "slug"]

#: Trace types of plotly.js's "basic" partial bundle (umae_eval/report/vendor/: 1.2 MB instead of 4.6 MB).
BASIC_TRACES = frozenset({"scatter", "bar", "pie"})


def plotly_js(trace_types: set[str]) -> str:
    """The plotly.js source to inline: the vendored basic bundle when it draws every trace type
    used (and is the version the plotly package would inline), else the full bundle."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    basic = Path(__file__).with_name("vendor") / "plotly-basic.min.js"
    if trace_types <= BASIC_TRACES and basic.is_file():
        text = basic.read_text(encoding="utf-8")
        if f"v{get_plotlyjs_version()}" in text[:200]:
            return text
    return get_plotlyjs()


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


def slug(text: str) -> str:
    """A URL fragment / file stem from a title: ``'Singular values (Fig. 1b)'`` -> ``'singular-values-fig-1b'``."""
    s = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return s[:60].rstrip("-") or "section"
