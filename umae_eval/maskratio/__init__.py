"""Mask-ratio study (paper Sec. 4.2, Fig. 2b/2c): named view-distance estimators, the sweep over
mask ratios, bootstrap intervals and the sweet spot, the label error alpha (Thm 4.1) and the
spectrum of the mask-induced augmentation graph (Thm 4.2).

Modules: ``masks`` (ratios, patches, MAE masks), ``estimators`` (the distances), ``pairs``
(class-balanced samples), ``stats`` (bootstrap, sweet spot, shape check), ``label_error``,
``graph``, ``sweep`` (orchestration), ``figures`` (plotly).
"""

from umae_eval.maskratio.estimators import FEATURE_ESTIMATORS, FEATURE_METRICS, PIXEL_ESTIMATORS
from umae_eval.maskratio.masks import num_visible, parse_ratios, validate_ratios
from umae_eval.maskratio.sweep import SweepConfig, SweepResult, run_sweep

__all__ = [
    "FEATURE_ESTIMATORS",
    "FEATURE_METRICS",
    "PIXEL_ESTIMATORS",
    "SweepConfig",
    "SweepResult",
    "num_visible",
    "parse_ratios",
    "run_sweep",
    "validate_ratios",
]
