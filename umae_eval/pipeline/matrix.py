"""The protocol matrix: every checkpoint under every protocol, with intervals and paired differences.

For MAE the protocol decides the number (PROTOCOLS.md Sec. 1: the same checkpoint reads 16.1 to
83.6 on ImageNet-1k), so a comparison holds only if it survives the protocol. A *protocol* here is
one way of reading a frozen encoder: a probe (mean classifier, linear, kNN at k, attentive) on a
feature spec (blocks, pooling, final norm), the linear probe on each checkpoint's best block, or a
probe trained on few labels (1% of train, k shots per class; the mean over seeded draws).

Each (checkpoint, protocol) cell is the accuracy on the same test images with a 95% percentile
bootstrap interval over them; all cells share one set of resamples, so the difference between
two checkpoints under a protocol is paired. A low-shot cell's per-image outcome is the fraction
of its draws that got the image right (so the interval covers test images, the spread beside it
the draws). Differences are each checkpoint minus the first one given (the baseline: ``umae
compare mae.pth u-mae.pth`` gives U-MAE minus MAE).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from umae_eval.pipeline.intervals import Interval, bootstrap_accuracies, interval, noise_verdict


@dataclass
class Outcome:
    """One checkpoint under one protocol: per test image, the fraction of probes that got it right.

    ``per_image`` (N,) float in [0, 1] (0/1 for a single probe); ``spec``: the feature spec and
    probe settings behind it; ``draws``: accuracies of the separate draws (low-shot), else empty.
    """

    per_image: np.ndarray
    spec: dict[str, Any] = field(default_factory=dict)
    draws: list[float] = field(default_factory=list)


@dataclass
class MatrixDifference:
    """``name`` minus ``baseline`` under ``protocol`` (points), paired over the test images."""

    protocol: str
    words: str
    name: str
    baseline: str
    difference: Interval
    n_test: int

    @property
    def beyond_noise(self) -> bool:
        return self.difference.excludes(0.0)

    def sentence(self) -> str:
        d = self.difference
        verdict = noise_verdict(self.beyond_noise, self.n_test)
        sign = "+" if d.estimate >= 0.05 else ""
        return (f"{self.words}: {self.name} minus {self.baseline} is {sign}{d.estimate:.1f} points "
                f"(95% interval {d.lo:.1f} to {d.hi:.1f}): {verdict}.")

    def to_json(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "name": self.name, "baseline": self.baseline,
                "difference": self.difference.to_json(), "n_test": self.n_test,
                "beyond_noise": self.beyond_noise, "sentence": self.sentence()}


@dataclass
class ProtocolMatrix:
    """Checkpoint x protocol accuracies (percent) with intervals, and the paired differences."""

    protocols: list[dict[str, Any]]  # {name, words}
    checkpoints: list[str]
    cells: dict[tuple[str, str], dict[str, Any]]  # (checkpoint, protocol) -> interval, spread, spec
    differences: list[MatrixDifference]
    n_test: int
    n_boot: int

    def rows(self) -> list[dict[str, Any]]:
        """Long form: one row per cell (the CSV ``protocol_matrix.csv``)."""
        out = []
        for p in self.protocols:
            for n in self.checkpoints:
                cell = self.cells.get((n, p["name"]))
                if cell is None:
                    continue
                iv: Interval = cell["accuracy"]
                spec = cell["spec"]
                out.append({"checkpoint": n, "protocol": p["name"], "protocol_words": p["words"],
                            "accuracy": iv.estimate, "lo": iv.lo, "hi": iv.hi,
                            "draws": len(cell["draws"]) or None,
                            "draw_spread": cell["spread"],
                            "block": spec.get("block"), "pool": spec.get("pool"),
                            "final_norm": spec.get("final_norm"), "n_test": self.n_test})
        return out

    def sentences(self) -> list[str]:
        return [d.sentence() for d in self.differences]

    def to_json(self) -> dict[str, Any]:
        return {
            "interval": f"95% percentile bootstrap over the {self.n_test:,} test images ({self.n_boot} resamples, "
                        "shared by every cell: differences are paired); low-shot: per-image fraction of the "
                        "draws correct, draw_spread = standard deviation of the draws' accuracies",
            "protocols": self.protocols,
            "cells": [{**{k: v for k, v in r.items() if k != "protocol_words"},
                       "spec": self.cells[(r["checkpoint"], r["protocol"])]["spec"],
                       "draw_accuracies": self.cells[(r["checkpoint"], r["protocol"])]["draws"]}
                      for r in self.rows()],
            "differences": [d.to_json() for d in self.differences],
            "sentences": self.sentences(),
        }


def build_matrix(outcomes: Mapping[str, Mapping[str, Outcome]], words: Mapping[str, str],
                 order: Sequence[str], *, n_boot: int, seed: int) -> ProtocolMatrix | None:
    """The matrix of ``outcomes`` (checkpoint -> protocol -> :class:`Outcome`).

    ``words`` names each protocol; ``order`` gives the protocols' order. A protocol is kept only
    when every checkpoint has it and every outcome covers the same number of test images.
    """
    names = list(outcomes)
    if not names:
        return None
    protocols = [p for p in order if all(p in outcomes[n] for n in names)]
    sizes = {len(outcomes[n][p].per_image) for n in names for p in protocols}
    if not protocols or len(sizes) != 1:
        return None
    n_test = sizes.pop()
    keys = [(n, p) for p in protocols for n in names]
    values = np.stack([np.asarray(outcomes[n][p].per_image, dtype=np.float64) for n, p in keys])
    boot = bootstrap_accuracies(values, n_boot=n_boot, seed=seed)
    col = {k: j for j, k in enumerate(keys)}
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for k, j in col.items():
        o = outcomes[k[0]][k[1]]
        cells[k] = {"accuracy": interval(100.0 * values[j].mean(), boot[:, j]), "spec": dict(o.spec),
                    "draws": [float(v) for v in o.draws],
                    "spread": float(np.std(o.draws, ddof=1)) if len(o.draws) > 1 else None}
    diffs = []
    base = names[0]
    for p in protocols:
        for n in names[1:]:
            a, b = col[(n, p)], col[(base, p)]
            est = cells[(n, p)]["accuracy"].estimate - cells[(base, p)]["accuracy"].estimate
            diffs.append(MatrixDifference(p, words.get(p, p), n, base, interval(est, boot[:, a] - boot[:, b]), n_test))
    return ProtocolMatrix([{"name": p, "words": words.get(p, p)} for p in protocols], names, cells, diffs,
                          n_test, n_boot)
