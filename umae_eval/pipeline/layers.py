"""The layer-wise stage: per block effective rank, RankMe and probe accuracies, with intervals.

Masked-image models keep their most linearly useful features in earlier blocks than contrastive
ones (Park et al., ICLR 2023) and a shallow decoder makes the last block worse (PROTOCOLS.md
Sec. 1), so the last block alone can mislead. With ``--layers`` naming several blocks, every
block read (all from one forward pass) gets the probes (mean classifier, linear, kNN) and the
ranks of its test features. Accuracy intervals come from one bootstrap over test images shared
by every checkpoint and every block (so differences between blocks and between checkpoints are
paired); rank intervals from the rank bootstrap of each block's test features.

The best block of a checkpoint is the one with the highest linear-probe *validation* accuracy
(the probe's own held-out part of train, at its chosen weight decay): choosing it on the test
images would inflate its test accuracy. Without a linear probe it is chosen on test accuracy of
the headline probe, and the summary says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from umae_eval.analysis import FeatureSet
from umae_eval.pipeline.intervals import Interval, bootstrap_accuracies, centred_interval, interval
from umae_eval.pipeline.probing import ProbeSummary, run_probes
from umae_eval.progress import ProgressFactory, null_progress

#: Probes of the layer-wise stage when the command runs none of its own (collapse-report).
LAYER_METHODS: tuple[str, ...] = ("mean", "linear", "knn")


@dataclass
class BlockResult:
    """What one block of one checkpoint measured."""

    block: int
    probes: ProbeSummary | None
    ranks: dict[str, float]
    #: (R, 2) effective rank and RankMe on R row resamples of the block's test features
    rank_resamples: np.ndarray | None = field(default=None, repr=False)

    @property
    def val_accuracy(self) -> float | None:
        """The linear probe's validation accuracy at its chosen weight decay (None without one)."""
        if self.probes is None:
            return None
        for r in self.probes.results:
            if r.get("method") == "linear":
                curve = r.get("extras", {}).get("val_curve") or []
                vals = [float(p["val_accuracy"]) for p in curve if "val_accuracy" in p]
                return max(vals) if vals else None
        return None


def sweep_blocks(
    fs: FeatureSet,
    *,
    methods: Sequence[str],
    ks: Sequence[int] = (10, 20, 200),
    temperature: float = 0.07,
    protocol: str = "fast",
    backend: str = "torch",
    seed: int = 0,
    device: str = "cpu",
    probe_path: str = "auto",
    rank_boot: int = 200,
    progress: ProgressFactory = null_progress,
) -> list[BlockResult]:
    """Probes and ranks of every block held in ``fs`` (``fs.blocks``; train and test features).

    Parameters
    ----------
    fs : FeatureSet
        Features of several blocks side by side (``compute_features(..., readout=...)``).
    methods : sequence of str
        Probes per block (``mean``, ``linear``, ``knn``); empty: ranks only.
    rank_boot : int
        Resamples of the rank intervals (0: none).
    """
    from umae_eval.metrics.rank_bootstrap import bootstrap_ranks, rank_resample_count
    from umae_eval.metrics.spectrum import effective_rank, rankme

    out = []
    for b in fs.blocks or ():
        one = fs.block(b)
        probes = None
        if methods:
            probes = run_probes(one, methods=methods, ks=ks, temperature=temperature, protocol=protocol,
                                backend=backend, seed=seed, device=device, probe_path=probe_path,
                                progress=progress)
        ranks = {"effective_rank": float(effective_rank(one.test)), "rankme": float(rankme(one.test))}
        boot = None
        if rank_boot:
            n, d = one.test.shape
            boot = bootstrap_ranks(one.test, n_boot=rank_resample_count(n, d, rank_boot), seed=seed + 7)
        out.append(BlockResult(int(b), probes, ranks, boot))
    return out


@dataclass
class BestBlock:
    """The block a checkpoint reads best, and how it was chosen."""

    block: int
    chosen_by: str  # 'linear validation accuracy' or 'test <metric>'
    metric: str  # the accuracy reported for that block
    accuracy: Interval

    def to_json(self) -> dict[str, Any]:
        return {"block": self.block, "chosen_by": self.chosen_by, "metric": self.metric,
                "accuracy": self.accuracy.to_json()}


@dataclass
class LayerSummary:
    """Per checkpoint, per block, per measure: the estimate and its 95% interval; the best blocks."""

    rows: list[dict[str, Any]]
    best: dict[str, BestBlock]
    metric: str | None
    n_test: int

    def sentences(self) -> list[str]:
        """One sentence per checkpoint: its best block and what it reads there vs the last block."""
        out = []
        for name, b in self.best.items():
            last = max(r["block"] for r in self.rows if r["checkpoint"] == name)
            at_last = next((r for r in self.rows if r["checkpoint"] == name and r["block"] == last
                            and r["metric"] == b.metric), None)
            tail = ""
            if at_last is not None and last != b.block:
                tail = f", against {at_last['estimate']:.1f} at block {last}"
            elif last == b.block:
                tail = " (the deepest block read)"
            out.append(f"{name}: best block {b.block} (chosen by {b.chosen_by}), {_words(b.metric)} "
                       f"{b.accuracy.estimate:.1f}% (95% interval {b.accuracy.lo:.1f} to {b.accuracy.hi:.1f}){tail}.")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "n_test": self.n_test, "rows": self.rows,
                "best_block": {n: b.to_json() for n, b in self.best.items()}, "sentences": self.sentences()}


def _words(metric: str) -> str:
    from umae_eval.pipeline.summary import metric_words

    return metric_words(metric)


def summarise_layers(sweeps: Mapping[str, Sequence[BlockResult]], *, n_boot: int, seed: int,
                     n_test: int) -> LayerSummary:
    """Intervals of every block's accuracies (one paired bootstrap) and ranks; the best blocks."""
    from umae_eval.pipeline.summary import headline_metrics

    rows: list[dict[str, Any]] = []
    names = list(sweeps)
    first = next((b.probes for s in sweeps.values() for b in s if b.probes is not None), None)
    heads = headline_metrics(list(first.accuracies)) if first is not None else []
    metric = heads[0] if heads else None
    acc_iv: dict[tuple[str, int, str], Interval] = {}
    if heads:
        cells = [(n, b.block, m, b.probes.correct(m)) for n in names for b in sweeps[n]
                 if b.probes is not None for m in heads]
        correct = np.stack([c[3] for c in cells])
        boot = bootstrap_accuracies(correct, n_boot=n_boot, seed=seed)
        for j, (n, blk, m, c) in enumerate(cells):
            acc_iv[(n, blk, m)] = interval(100.0 * c.mean(), boot[:, j])
    for n in names:
        for b in sweeps[n]:
            for m in heads:
                iv = acc_iv.get((n, b.block, m))
                if iv is not None:
                    rows.append(_row(n, b.block, m, iv))
            for j, m in enumerate(("effective_rank", "rankme")):
                if b.rank_resamples is not None:
                    rows.append(_row(n, b.block, m, centred_interval(b.ranks[m], b.rank_resamples[:, j])))
                else:
                    rows.append({"checkpoint": n, "block": b.block, "metric": m, "estimate": b.ranks[m],
                                 "lo": None, "hi": None})
    best: dict[str, BestBlock] = {}
    if metric is not None:
        for n in names:
            blocks = [b for b in sweeps[n] if b.probes is not None]
            vals = {b.block: b.val_accuracy for b in blocks}
            if "linear_accuracy" in heads and all(v is not None for v in vals.values()):
                pick = max(blocks, key=lambda b: (vals[b.block], b.block))
                best[n] = BestBlock(pick.block, "linear validation accuracy", "linear_accuracy",
                                    acc_iv[(n, pick.block, "linear_accuracy")])
            elif blocks:
                pick = max(blocks, key=lambda b: (acc_iv[(n, b.block, metric)].estimate, b.block))
                best[n] = BestBlock(pick.block, f"test {_words(metric)} (optimistic: chosen on the test images)",
                                    metric, acc_iv[(n, pick.block, metric)])
    return LayerSummary(rows, best, metric, n_test)


def _row(name: str, block: int, metric: str, iv: Interval) -> dict[str, Any]:
    return {"checkpoint": name, "block": block, "metric": metric, "estimate": iv.estimate, "lo": iv.lo, "hi": iv.hi}
