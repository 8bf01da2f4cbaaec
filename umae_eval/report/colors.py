"""The report's colours: one per checkpoint by role (the same in every figure of every report) and
colour-blind-safe class colours with a marker shape each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: A qualitative palette with 20 distinct colours (lines and bars; classes: :func:`class_colors`).
PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)

#: Okabe & Ito's colour-blind-safe palette ("Color Universal Design", 2008): one colour per
#: checkpoint role, the same in every figure of every report.
ROLE_COLORS: dict[str, str] = {"MAE": "#0072B2", "U-MAE": "#D55E00", "untrained": "#555555",
                               "smoke run": "#CC79A7"}
#: Checkpoints of no role (or a second of one role), in a fixed order: the rest of Okabe-Ito,
#: then Paul Tol's "muted" colours.
OTHER_COLORS: tuple[str, ...] = ("#009E73", "#E69F00", "#56B4E9", "#000000", "#882255", "#117733",
                                 "#332288", "#999933", "#AA4499", "#44AA99", "#DDCC77", "#88CCEE")
#: Classes up to 10: Okabe-Ito plus two of Tol's, each with its own marker shape, so classes
#: whose colours merge under a colour-vision deficiency still differ by shape.
CLASS_COLORS_10: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
                                    "#000000", "#F0E442", "#882255", "#999999")
CLASS_SYMBOLS: tuple[str, ...] = ("circle", "square", "diamond", "triangle-up", "triangle-down", "cross", "x",
                                  "star", "pentagon", "hexagon")
#: The symbols as glyphs, for the page's colour key.
SYMBOL_GLYPHS: dict[str, str] = {"circle": "●", "square": "■", "diamond": "◆", "triangle-up": "▲",
                                 "triangle-down": "▼", "cross": "✚", "x": "✖", "star": "★", "pentagon": "⬟",
                                 "hexagon": "⬢"}


def checkpoint_colors(roles: Mapping[str, str | None]) -> dict[str, str]:
    """One colour per checkpoint, by role: ``roles`` maps name -> role (``'MAE'``, ``'U-MAE'``,
    ``'untrained'``, ``'smoke run'`` or anything else), in report order. The first checkpoint of a
    role in :data:`ROLE_COLORS` gets that colour; every other one the next of :data:`OTHER_COLORS`.

    >>> checkpoint_colors({"a": "U-MAE", "b": "MAE", "c": "U-MAE"})
    {'a': '#D55E00', 'b': '#0072B2', 'c': '#009E73'}
    """
    out: dict[str, str] = {}
    used: set[str] = set()
    rest = iter(OTHER_COLORS * (1 + len(roles) // len(OTHER_COLORS)))
    for name, role in roles.items():
        color = ROLE_COLORS.get(role or "")
        if color is None or color in used:
            color = next(rest)
        used.add(color)
        out[name] = color
    return out


def _colors_for(names: Sequence[str], colors: Mapping[str, str] | None) -> dict[str, str]:
    """``colors`` where given, else roles guessed from the names (a fixed order for the rest)."""
    out = dict(colors or {})
    missing = [n for n in names if n not in out]
    if missing:
        guessed = checkpoint_colors({n: _role_from_name(n) for n in missing})
        taken = set(out.values())
        spare = iter(c for c in OTHER_COLORS * 4 if c not in taken)
        for n in missing:
            c = guessed[n]
            out[n] = c if c not in taken else next(spare)
            taken.add(out[n])
    return out


def _role_from_name(name: str) -> str | None:
    n = name.lower()
    if "random" in n or "untrained" in n:
        return "untrained"
    if "smoke" in n:
        return "smoke run"
    if "u-mae" in n or "umae" in n:
        return "U-MAE"
    if "mae" in n:
        return "MAE"
    return None


def class_colors(n: int) -> list[str]:
    """``n`` class colours: up to 10 the colour-blind-safe :data:`CLASS_COLORS_10` (each class also
    gets a marker shape, :func:`class_symbols`); up to 20 the 20 distinct qualitative ones; beyond,
    hues spaced by the golden angle at three lightness levels, so neighbouring labels (often
    related classes, e.g. CIFAR-100's) still differ and no two of 200 colours coincide."""
    if n <= 10:
        return list(CLASS_COLORS_10[:n])
    if n <= 20:
        return list(PALETTE[:n])
    import colorsys

    out = []
    for i in range(n):
        hue = (i * 0.618033988749895) % 1.0
        light = (0.38, 0.55, 0.70)[i % 3]
        r, g, b = colorsys.hls_to_rgb(hue, light, 0.75)
        out.append(f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    return out


def class_symbols(n: int) -> list[str]:
    """A plotly marker symbol per class: one shape each up to 10 classes, circles beyond."""
    return list(CLASS_SYMBOLS[:n]) if n <= len(CLASS_SYMBOLS) else ["circle"] * n
