"""How a table reads in the report: words as headers and one number format per column.

Result names (``linear_accuracy``, ``knn_accuracy@20``, ``effective_rank``) stay in CSV files
and results.json; on the page they become words (``linear (%)``, ``kNN k=20 (%)``). Each numeric
column gets one format chosen from its values, so a column never mixes ``27`` / ``27.5`` / ``27.00``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

#: Headers for result names (anything else: underscores become spaces).
HEADERS: dict[str, str] = {
    "checkpoint": "checkpoint",
    "linear_accuracy": "linear (%)",
    "mean_classifier_accuracy": "mean classifier (%)",
    "attentive_accuracy": "attentive probe (%)",
    "effective_rank": "effective rank",
    "rankme": "RankMe",
    "alpha_req": "α-ReQ",
    "alpha_req_r2": "α-ReQ fit R²",
    "feature_std": "feature std",
    "umae_uniformity_code": "U-MAE term (code form)",
    "umae_uniformity_paper": "U-MAE term (paper form)",
    "lam": "λ",
    "unif_form": "uniformity form",
    "mask_ratio": "mask ratio",
    "params_m": "params (M)",
    "sha256": "sha256",
    "n_points": "points",
    "sweet_spot": "sweet spot ρ",
    "sweet_lo": "sweet spot 95% low",
    "sweet_hi": "sweet spot 95% high",
    "intra_falls": "intra falls",
    "inter_falls": "inter falls",
    "relative_falls_then_rises": "relative falls then rises",
    "reproduces_paper_shape": "reproduces the paper's shape",
    "beyond_noise": "beyond noise",
}

#: Columns in percent or percentage points: always one decimal.
_PERCENT_HINTS = ("accuracy", "(%)", "points")


def header(column: str) -> str:
    """Words for a column name: ``knn_accuracy@20`` -> ``kNN k=20 (%)``, ``x_lo`` -> ``x 95% low``."""
    c = str(column)
    if c in HEADERS:
        return HEADERS[c]
    for suffix, words in (("_lo", "95% low"), ("_hi", "95% high")):
        if c.endswith(suffix):
            return f"{header(c[: -len(suffix)]).replace(' (%)', '')} {words}"
    if c.startswith("knn_accuracy@"):
        return f"kNN k={c.split('@', 1)[1]} (%)"
    return HEADERS.get(c, c.replace("_", " "))


def _decimals(values: np.ndarray) -> int:
    """Decimals that give about three significant digits to the column's typical value, but no
    more than any value needs (0.01 stays ``0.01``, not ``0.0100``)."""
    finite = np.abs(values[np.isfinite(values)])
    finite = finite[finite > 0]
    if finite.size == 0:
        return 0
    typical = float(np.median(finite))
    sig3 = int(min(4, max(0, 2 - math.floor(math.log10(typical)))))
    needed = max(len(f"{v:.{sig3}f}".rstrip("0").split(".")[1]) if "." in f"{v:.{sig3}f}".rstrip("0") else 0
                 for v in finite)
    return min(sig3, needed)


def column_formatter(column: str, series: pd.Series) -> Callable[[object], str] | None:
    """One formatter for a numeric column (None for text columns).

    Integers keep no decimals (thousands separated), percentages one decimal, other floats as
    many decimals as give the median value three significant digits; NaN shows as an en dash.
    """
    if pd.api.types.is_bool_dtype(series):
        return lambda v: "yes" if bool(v) else "no"
    if not pd.api.types.is_numeric_dtype(series):
        if series.map(lambda v: isinstance(v, (bool, np.bool_))).all() and len(series):
            return lambda v: "yes" if bool(v) else "no"
        return None
    values = series.to_numpy(dtype=np.float64)
    finite = values[np.isfinite(values)]
    if pd.api.types.is_integer_dtype(series) or (finite.size and np.all(finite == np.round(finite))
                                                 and np.all(np.abs(finite) < 1e15)
                                                 and not any(h in str(column) for h in _PERCENT_HINTS)):
        return lambda v: "–" if _missing(v) else f"{float(v):,.0f}"
    decimals = 1 if any(h in str(column) for h in _PERCENT_HINTS) else _decimals(values)
    return lambda v: "–" if _missing(v) else f"{float(v):,.{decimals}f}"


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(float(v)))


def formatted(df: pd.DataFrame) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Headers in words and every cell as (text, is_number), one format per column."""
    formatters = {c: column_formatter(str(c), df[c]) for c in df.columns}
    rows = []
    for _, row in df.iterrows():
        cells = []
        for c in df.columns:
            v = row[c]
            fmt = formatters[c]
            if fmt is None:
                cells.append(("" if _missing(v) else str(v), False))
            else:
                cells.append((fmt(v), True))
        rows.append(cells)
    return [header(str(c)) for c in df.columns], rows
