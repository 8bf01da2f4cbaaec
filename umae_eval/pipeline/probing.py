"""The probe stage: frozen features -> mean classifier / linear probe / kNN accuracies.

Each probe keeps its test predictions, so the summary can put a bootstrap interval on every
accuracy and a paired interval on every difference between checkpoints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from umae_eval.analysis import FeatureSet
from umae_eval.errors import UmaeError
from umae_eval.progress import ProgressFactory, null_progress

#: The probes, by their ``--methods`` names.
PROBE_METHODS: tuple[str, ...] = ("mean", "linear", "knn")


@dataclass
class ProbeSummary:
    """Accuracies (percent) of the probes run on one encoder, with their settings.

    ``predictions`` maps each accuracy name to the predicted class of every test row, ``(M,)``
    int64, aligned with ``y_test`` (the labels they were scored against).
    """

    accuracies: dict[str, float]
    results: list[dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    y_test: np.ndarray | None = field(default=None, repr=False)

    def correct(self, name: str) -> np.ndarray:
        """``(M,)`` bool: whether the probe behind accuracy ``name`` got each test image right."""
        assert self.y_test is not None
        return np.asarray(self.predictions[name]) == np.asarray(self.y_test)


def knn_column(k: int) -> str:
    """The result/column name of kNN accuracy at ``k`` (``knn_accuracy@20``)."""
    return f"knn_accuracy@{k}"


def run_probes(
    fs: FeatureSet,
    *,
    methods: Sequence[str] = PROBE_METHODS,
    ks: Sequence[int] = (10, 20, 200),
    temperature: float = 0.07,
    protocol: str = "fast",
    backend: str = "torch",
    seed: int = 0,
    device: str = "cpu",
    probe_path: str = "auto",
    progress: ProgressFactory = null_progress,
) -> ProbeSummary:
    """Run the requested probes on frozen features; accuracies in percent.

    Names: ``mean_classifier_accuracy``, ``linear_accuracy``, ``knn_accuracy@<k>``.
    ``fs.train`` (N, D) and ``fs.test`` (M, D) must both be present (a memory-mapped float16
    store included). ``probe_path`` (auto / memory / blocked) is how the linear probe and kNN
    hold the train features (:mod:`umae_eval.probes.blocks`); each result's settings say which ran.
    """
    from umae_eval.probes.knn import knn_probe
    from umae_eval.probes.linear import linear_probe
    from umae_eval.probes.mean import mean_classifier

    if fs.train is None:
        raise ValueError("run_probes needs training features: compute_features(..., with_train=True)")
    acc: dict[str, float] = {}
    results: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    predictions: dict[str, np.ndarray] = {}
    for method in methods:
        t0 = time.perf_counter()
        if method == "mean":
            r = mean_classifier(fs.train, fs.y_train, fs.test, fs.y_test)
            acc["mean_classifier_accuracy"] = float(r.accuracy)
        elif method == "linear":
            r = linear_probe(fs.train, fs.y_train, fs.test, fs.y_test, backend=backend, protocol=protocol,
                             seed=seed, device=device, progress=progress, path=probe_path)
            acc["linear_accuracy"] = float(r.accuracy)
        elif method == "knn":
            # one neighbour search at max(k); each k is clipped to the training size (settings['ks_effective'])
            r = knn_probe(fs.train, fs.y_train, fs.test, fs.y_test, ks=tuple(ks), temperature=temperature,
                          path=probe_path, device=device)
            for k, v in r.extras["accuracy_by_k"].items():
                acc[knn_column(int(k))] = float(v)
        else:  # option parsing keeps this unreachable from the CLI
            raise UmaeError(f"--methods: unknown probe {method!r}; choose from {', '.join(PROBE_METHODS)}")
        seconds[method] = time.perf_counter() - t0
        predictions.update(r.test_predictions)
        results.append(r.to_dict())
    for name, v in acc.items():
        if not (0.0 <= v <= 100.0) or math.isnan(v):
            raise RuntimeError(f"{name} = {v} is not a percentage; a probe returned a fraction or NaN")
    return ProbeSummary(acc, results, seconds, predictions, np.asarray(fs.y_test))
