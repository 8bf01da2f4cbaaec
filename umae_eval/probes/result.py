"""The one result type shared by the three probes (mean classifier, kNN, linear)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _jsonable(value: Any) -> Any:
    """Plain JSON types: dict keys become strings, numpy scalars/arrays become Python ones."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class ProbeResult:
    """What a probe measured and everything needed to measure it again.

    Attributes
    ----------
    method : str
        ``'mean_classifier'``, ``'knn'`` or ``'linear'`` (the names used in results.json are
        ``mean_classifier_accuracy``, ``knn_accuracy``, ``linear_accuracy``).
    accuracy : float
        Top-1 accuracy on the test features, in percent.
    settings : dict
        Every option that shaped the number (k, temperature, metric, weight-decay grid, seed,
        backend, protocol, epochs, batch size, learning rate, sizes of the splits, ...).
    extras : dict
        Further measurements: per-k accuracies (kNN), the validation curve and the chosen weight
        decay (linear), train accuracy, per-class accuracy, timings.
    test_predictions : dict of str to ndarray
        The predicted class of every test row, ``(M,)`` int64, keyed by result name
        (``mean_classifier_accuracy``, ``linear_accuracy``, ``knn_accuracy@<k>``): what bootstrap
        intervals and paired differences over test images are computed from. Not in
        :meth:`to_dict` (results.json keeps the numbers, not the M predictions).
    """

    method: str
    accuracy: float
    settings: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    test_predictions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (string keys, Python numbers and lists)."""
        return {
            "method": self.method,
            "accuracy": float(self.accuracy),
            "settings": _jsonable(self.settings),
            "extras": _jsonable(self.extras),
        }
