"""Reading one plotly figure's JSON for print: data arrays (typed ``bdata`` too), colours and
colour scales, label markup as plain text, formulas as mathtext, the settings stamps, and the
paper sizes. Used by :mod:`umae_eval.report.static_draw` and :mod:`umae_eval.report.static`.
"""

from __future__ import annotations

import base64
import html
import re
from typing import Any

import numpy as np

_DASH = {"dash": (0, (4, 2)), "dot": (0, (1, 1.5)), "dashdot": (0, (4, 1.5, 1, 1.5)), "solid": "-",
         "longdash": (0, (7, 2))}
_SYMBOL = {"circle": "o", "star": "*", "diamond": "D", "square": "s", "x": "X", "cross": "P",
           "triangle-up": "^", "triangle-down": "v", "pentagon": "p", "hexagon": "h"}
BOX = (0.09, 0.97, 0.16, 0.90)  # left, right, bottom, top of the plotting area (figure fraction)
#: Paper column widths (inches): one column of a two-column paper, and the full text width.
WIDTHS = (3.25, 6.75)
#: Smallest text in a figure (points), after placement at its width.
MIN_PT = 7.0
#: Plain-text formulas of the page's labels, typeset as mathtext for print.
_MATH = (
    ("σ_k / σ_1", r"$\sigma_k / \sigma_1$"),
    # (uniformity's log E exp(-2||z-z'||²) stays plain text: as a formula its exponent rises into the tick labels)
    ("E ||z1-z2||²", r"$\mathbb{E}\,\|z_1-z_2\|^2$"),
    ("D^-1/2 A D^-1/2", r"$D^{-1/2} A D^{-1/2}$"),
    ("λ_i²", r"$\lambda_i^2$"),
    ("λ_i", r"$\lambda_i$"),
    ("Δ intra / inter", r"$\Delta$ intra / inter"),
)


#: The name plotly annotations carry when they are a figure's settings stamp (not drawn for print).
STAMP = "umae-settings-stamp"


def stamps(layout: dict[str, Any]) -> list[str]:
    """The settings stamps of a figure (annotations named :data:`STAMP`), as plain text."""
    return [plain(a.get("text", "")) for a in layout.get("annotations", []) or [] if a.get("name") == STAMP]


def math(text: str) -> str:
    """Plain-text formulas (``σ_k / σ_1``, ``Σ_(i>10) λ_i²``) as matplotlib mathtext; ``$`` escaped elsewhere."""
    out = text.replace("$", r"\$")
    out = re.sub(r"Σ_\(i>(\d+)\) λ_i²", lambda m: r"$\sum_{i>" + m.group(1) + r"} \lambda_i^2$", out)
    for plain_text, tex in _MATH:
        out = out.replace(plain_text, tex)
    return out


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


def plain(text: Any) -> str:
    """Plotly label markup as plain text: ``<br>`` -> newline, tags dropped, entities decoded."""
    s = re.sub(r"<br\s*/?>", "\n", str(text or ""), flags=re.I)
    return html.unescape(re.sub(r"<[^>]+>", "", s))


def title_parts(layout: dict[str, Any]) -> tuple[str, str]:
    """(title, settings line) from ``layout.title.text`` = 'Title<br><sup>settings</sup>'."""
    title = layout.get("title") or {}
    text = str(title.get("text", "") if isinstance(title, dict) else title)
    main, _, rest = text.partition("<br>")
    return plain(main), plain(rest)


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
