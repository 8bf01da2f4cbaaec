"""Fine-tuning runs compared on the same test images: per run, per fine-tuning seed, over seeds.

Input: for each fine-tuning run, which encoder it started from ('MAE', 'U-MAE', 'random init'),
how it was tuned (e.g. 'full', 'last 2 blocks'), its fine-tuning seed, and whether it classified
each of the N test images correctly. Output, per tuning mode:

- every run's top-1 with a 95% percentile bootstrap interval over the test images;
- for every pair of encoders and every fine-tuning seed they share, B - A with a *paired*
  bootstrap interval (both runs resampled with the same image indices);
- over the fine-tuning seeds both encoders have: B - A of the seed-averaged accuracy, with the
  paired bootstrap of the per-image fraction of seeds that got the image right (test-image noise
  only), and the Student t interval over the seeds' paired differences
  (:func:`umae_eval.pipeline.seeds.seed_difference`; fine-tuning seed noise, wide at 2 seeds).

Neither interval covers pre-training seed variation when every run starts from the same
pre-trained encoder of each method; the report must say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

import numpy as np

from umae_eval.pipeline.intervals import DEFAULT_BOOTSTRAP, Interval, bootstrap_accuracies, interval
from umae_eval.pipeline.seeds import SeedDifference, seed_difference

#: Encoders in the order of every table; a pair (A, B) always reads B - A with B later here.
ENCODER_ORDER = ("random init", "MAE", "U-MAE")


@dataclass(frozen=True)
class FinetuneRun:
    """One fine-tuning run's per-image outcome on the test split."""

    name: str
    encoder: str  # one of ENCODER_ORDER
    mode: str  # 'full', 'last 2 blocks', ...
    seed: int  # fine-tuning seed
    correct: np.ndarray  # (N,) bool


@dataclass(frozen=True)
class RunAccuracy:
    name: str
    encoder: str
    mode: str
    seed: int
    top1: Interval  # percent, bootstrap over test images


@dataclass(frozen=True)
class PairDifference:
    """B - A in top-1 points for one tuning mode, at one fine-tuning seed or averaged over seeds."""

    mode: str
    a: str
    b: str
    seeds: tuple[int, ...]
    a_top1: float  # mean over ``seeds``
    b_top1: float
    diff: Interval  # paired bootstrap over test images
    over_seeds: SeedDifference | None  # t interval over fine-tuning seeds; None for one seed


@dataclass(frozen=True)
class FinetuneComparison:
    n_test: int
    n_boot: int
    runs: tuple[RunAccuracy, ...]
    per_seed: tuple[PairDifference, ...]
    pooled: tuple[PairDifference, ...]


def _order(encoder: str) -> int:
    return ENCODER_ORDER.index(encoder) if encoder in ENCODER_ORDER else len(ENCODER_ORDER)


def compare_finetune_runs(runs: Sequence[FinetuneRun], *, n_boot: int = DEFAULT_BOOTSTRAP,
                          boot_seed: int = 0) -> FinetuneComparison:
    """Intervals of every run and of every encoder pair (see the module docstring).

    Raises
    ------
    ValueError
        No runs, runs of different test sizes, or two runs of one (encoder, mode, seed).
    """
    if not runs:
        raise ValueError("no fine-tuning runs to compare")
    n = {len(r.correct) for r in runs}
    if len(n) != 1 or 0 in n:
        raise ValueError(f"every run must be scored on the same test images; sizes {sorted(n)}")
    keys = [(r.encoder, r.mode, r.seed) for r in runs]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"two runs of the same encoder, mode and seed: {dup}")
    runs = sorted(runs, key=lambda r: (r.mode, _order(r.encoder), r.seed))
    correct = np.stack([np.asarray(r.correct, dtype=bool) for r in runs])
    boot = bootstrap_accuracies(correct, n_boot=n_boot, seed=boot_seed)  # (n_boot, runs)
    acc = correct.mean(axis=1) * 100.0
    index = {k: i for i, k in enumerate((r.encoder, r.mode, r.seed) for r in runs)}
    out_runs = tuple(RunAccuracy(r.name, r.encoder, r.mode, r.seed, interval(float(acc[i]), boot[:, i]))
                     for i, r in enumerate(runs))
    per_seed: list[PairDifference] = []
    pooled: list[PairDifference] = []
    for mode in sorted({r.mode for r in runs}):
        encoders = sorted({r.encoder for r in runs if r.mode == mode}, key=_order)
        for a, b in combinations(encoders, 2):
            seeds = sorted({r.seed for r in runs if r.mode == mode and r.encoder == a}
                           & {r.seed for r in runs if r.mode == mode and r.encoder == b})
            if not seeds:
                continue
            ia = [index[(a, mode, s)] for s in seeds]
            ib = [index[(b, mode, s)] for s in seeds]
            for s, i, j in zip(seeds, ia, ib):
                per_seed.append(PairDifference(mode, a, b, (s,), float(acc[i]), float(acc[j]),
                                               interval(float(acc[j] - acc[i]), boot[:, j] - boot[:, i]), None))
            if len(seeds) < 2:
                continue
            # the fraction of seeds that got each image right, resampled like one run
            frac = np.stack([correct[ia].mean(axis=0), correct[ib].mean(axis=0)])
            pb = bootstrap_accuracies(frac, n_boot=n_boot, seed=boot_seed)
            ma, mb = float(acc[ia].mean()), float(acc[ib].mean())
            sd = seed_difference("top1", seeds, [float(acc[i]) for i in ia], [float(acc[j]) for j in ib], (a, b))
            pooled.append(PairDifference(mode, a, b, tuple(seeds), ma, mb,
                                         interval(mb - ma, pb[:, 1] - pb[:, 0]), sd))
    return FinetuneComparison(len(runs[0].correct), n_boot, out_runs, tuple(per_seed), tuple(pooled))


def _num(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x


def comparison_json(c: FinetuneComparison) -> dict:
    """A JSON-ready record of ``c`` (intervals as {estimate, lo, hi, level})."""
    def pair(p: PairDifference) -> dict:
        d = {"mode": p.mode, "a": p.a, "b": p.b, "seeds": list(p.seeds), "a_top1": p.a_top1, "b_top1": p.b_top1,
             "diff": p.diff.to_json(), "diff_interval": "paired percentile bootstrap over test images"}
        if p.over_seeds is not None:
            s = p.over_seeds
            d["over_seeds"] = {"mean_diff": s.mean_diff, "sd_diff": _num(s.sd_diff), "lo": _num(s.lo),
                               "hi": _num(s.hi), "diffs": [y - x for x, y in zip(s.a, s.b)],
                               "interval": "Student t over fine-tuning seeds, paired by seed"}
        return d

    return {"n_test": c.n_test, "n_boot": c.n_boot,
            "runs": [{"name": r.name, "encoder": r.encoder, "mode": r.mode, "seed": r.seed, "top1": r.top1.to_json()}
                     for r in c.runs],
            "per_seed": [pair(p) for p in c.per_seed], "pooled": [pair(p) for p in c.pooled],
            "study_rows": study_rows(c)}


def pair_verdict(p: PairDifference) -> str:
    """A sentence for B - A worded for the widest interval the pair has.

    With two or more fine-tuning seeds the t interval over seeds decides; the bootstrap over
    test images says whether the difference is beyond the noise of the test images alone.
    """
    def side(lo: float, hi: float) -> str | None:
        return "above" if lo > 0 else "below" if hi < 0 else None

    boot = side(p.diff.lo, p.diff.hi)
    n = len(p.seeds)
    if n < 2:
        if boot is None:
            return "within test-image noise (one fine-tuning seed)"
        return f"{p.b} {boot} {p.a} beyond test-image noise (one fine-tuning seed)"
    s = p.over_seeds
    seeds = side(s.lo, s.hi) if s is not None else None
    if seeds is not None:
        return f"{p.b} {seeds} {p.a} across fine-tuning seeds (t interval over {n} seeds excludes 0)"
    if boot is None:
        return f"within noise (test images and {n} fine-tuning seeds)"
    return f"{p.b} {boot} {p.a} beyond test-image noise, within fine-tuning-seed noise ({n} seeds)"


def study_rows(c: FinetuneComparison) -> list[dict]:
    """One row per (tuning mode, encoder pair): over seeds where the pair shares two or more, else
    its one seed; the record `umae demo` quotes (study.json's ``finetune`` rows)."""
    chosen: dict[tuple[str, str, str], PairDifference] = {}
    for p in c.per_seed:  # per-seed order, so the rows keep the tables' order
        chosen.setdefault((p.mode, p.a, p.b), p)
    chosen.update({(p.mode, p.a, p.b): p for p in c.pooled})
    rows: list[dict] = []
    for p in chosen.values():
        s = p.over_seeds
        rows.append({"mode": p.mode, "a": p.a, "b": p.b, "seeds": list(p.seeds), "a_top1": p.a_top1,
                     "b_top1": p.b_top1, "diff": p.diff.estimate, "boot_lo": p.diff.lo, "boot_hi": p.diff.hi,
                     "t_lo": _num(s.lo) if s else None, "t_hi": _num(s.hi) if s else None,
                     "verdict": pair_verdict(p)})
    return rows
