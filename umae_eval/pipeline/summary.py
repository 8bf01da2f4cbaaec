"""The verdict of an analysis: headline numbers with 95% intervals, paired differences, sentences.

Accuracy intervals come from a bootstrap over test images (:mod:`umae_eval.pipeline.intervals`)
with one set of resamples shared by all checkpoints, so every difference is paired. Effective
rank and RankMe get theirs from a (smaller) bootstrap of the test features' rows
(:mod:`umae_eval.metrics.rank_bootstrap`), also shared by all checkpoints. Each
comparison gets one plain sentence saying whether the difference is beyond test-image noise at
this number of test images (:func:`~umae_eval.pipeline.intervals.noise_verdict`, the one wording); the paper's Table 1 number is attached where the setting matches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from umae_eval.pipeline.intervals import Interval, bootstrap_accuracies, centred_interval, interval, noise_verdict
from umae_eval.pipeline.probing import ProbeSummary, knn_column
from umae_eval.pipeline.recipe import Recipe
from umae_eval.pipeline.reference import Reference, table1_rows, table1_setting

#: Words for each result name, in sentences and column headers.
METRIC_WORDS: dict[str, str] = {
    "linear_accuracy": "linear accuracy",
    "mean_classifier_accuracy": "mean-classifier accuracy",
    "attentive_accuracy": "attentive-probe accuracy",
    "effective_rank": "effective rank",
    "rankme": "RankMe",
}
#: Pairwise comparisons up to this many checkpoints; beyond it, each against the best only.
ALL_PAIRS_UP_TO = 5
#: Measures that are not percentages: their differences are not "points".
RANK_NAMES: tuple[str, ...] = ("effective_rank", "rankme")


def one_decimal(x: float) -> str:
    """``x`` to one decimal, without the ``-0.0`` that rounding a small negative number gives."""
    out = f"{x:.1f}"
    return "0.0" if out == "-0.0" else out


def metric_words(name: str) -> str:
    """``'knn_accuracy@20'`` -> ``'kNN accuracy (k=20)'``; known names from :data:`METRIC_WORDS`."""
    if name.startswith("knn_accuracy@"):
        return f"kNN accuracy (k={name.split('@', 1)[1]})"
    return METRIC_WORDS.get(name, name.replace("_", " "))


def headline_metrics(accuracy_names: Sequence[str]) -> list[str]:
    """The accuracies the summary shows, in order: linear, one kNN (k=20 if run), mean classifier."""
    names = list(accuracy_names)
    knn = [n for n in names if n.startswith("knn_accuracy@")]
    main_knn = knn_column(20) if knn_column(20) in knn else (knn[0] if knn else None)
    return [n for n in ("linear_accuracy", main_knn, "mean_classifier_accuracy") if n and n in names]


def main_metric(accuracy_names: Sequence[str]) -> str | None:
    """The accuracy that ranks checkpoints: linear, else the headline kNN, else the mean classifier."""
    head = headline_metrics(accuracy_names)
    return head[0] if head else None


@dataclass
class Headline:
    """One checkpoint's row of the summary panel."""

    name: str
    recipe: Recipe
    accuracies: dict[str, Interval] = field(default_factory=dict)
    ranks: dict[str, float] = field(default_factory=dict)
    dim: int | None = None
    reference: Reference | None = None
    rank_intervals: dict[str, Interval] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "recipe": self.recipe.to_json(),
                "accuracies": {k: v.to_json() for k, v in self.accuracies.items()},
                "ranks": dict(self.ranks), "rank_intervals": {k: v.to_json() for k, v in self.rank_intervals.items()},
                "dim": self.dim,
                "paper_reference": self.reference.to_json() if self.reference else None}


@dataclass
class Comparison:
    """``better`` minus ``worse`` in ``metric`` (percentage points), paired over the test images."""

    metric: str
    better: str
    worse: str
    difference: Interval
    n_test: int

    @property
    def beyond_noise(self) -> bool:
        """True when the 95% interval of the difference excludes 0."""
        return self.difference.excludes(0.0)

    def sentence(self) -> str:
        """E.g. 'U-MAE is 1.9 points above MAE in linear accuracy (95% interval -1.1 to 4.8):
        within noise at 1,000 test images.'"""
        d = self.difference
        verdict = noise_verdict(self.beyond_noise, self.n_test)
        unit = "" if self.metric in RANK_NAMES else " points"
        if abs(d.estimate) < 0.05:
            head = f"{self.better} and {self.worse} are level in {metric_words(self.metric)}"
        else:
            head = f"{self.better} is {one_decimal(d.estimate)}{unit} above {self.worse} in {metric_words(self.metric)}"
        return f"{head} (95% interval {one_decimal(d.lo)} to {one_decimal(d.hi)}): {verdict}."

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "better": self.better, "worse": self.worse,
                "difference": self.difference.to_json(), "n_test": self.n_test,
                "beyond_noise": self.beyond_noise, "sentence": self.sentence()}


@dataclass
class Claim:
    """One of the paper's claims checked on this run: ``paper`` says what the paper reports,
    ``here`` what was measured (with its 95% interval), ``verdict`` whether they agree."""

    claim: str
    paper: str
    here: str
    verdict: str

    def to_json(self) -> dict[str, str]:
        return {"claim": self.claim, "paper": self.paper, "here": self.here, "verdict": self.verdict}


def _iv_text(iv: Interval, unit: str = "") -> str:
    return f"{one_decimal(iv.estimate)}{unit} [{one_decimal(iv.lo)}, {one_decimal(iv.hi)}]"


def _direction(diff: Interval) -> str:
    """The verdict on 'the first is above the second' from the paired difference's interval."""
    if diff.lo > 0:
        return "reproduced"
    if diff.hi < 0:
        return "reversed"
    return "not reproduced: within test-image noise"


def paper_claims(headlines: Sequence[Headline], comparisons: Sequence[Comparison],
                 table_only: Sequence[str] = ()) -> list[Claim]:
    """The paper's claims that this run can check, only where its setting matches.

    - Table 1's linear accuracy, for each checkpoint whose dataset, backbone and method have a row
      (what still differs, e.g. epochs, is named in the verdict);
    - "U-MAE above MAE in linear accuracy" (Table 1), when one MAE and one U-MAE checkpoint both
      have a Table 1 row;
    - "U-MAE has a higher effective rank than MAE" (Fig. 1b / 1c: less dimensional collapse), when
      one MAE and one U-MAE checkpoint are compared, whatever the dataset (a qualitative claim).
    """
    out: list[Claim] = []
    for h in headlines:
        r, here = h.reference, h.accuracies.get("linear_accuracy")
        if r is None or here is None:
            continue
        where = ("within" if here.lo <= r.linear_accuracy <= here.hi else
                 "below" if here.hi < r.linear_accuracy else "above")
        verdict = "matches the paper" if where == "within" else f"{where} the paper"
        if r.differences:
            verdict += f" (this run differs: {'; '.join(r.differences)})"
        out.append(Claim(f"{r.method} linear-probe accuracy, {r.dataset} {r.backbone} ({r.source})",
                         f"{r.linear_accuracy:.1f}%", _iv_text(here, "%") + f" ({h.name})", verdict))
    by_method: dict[str, list[Headline]] = {}
    for h in headlines:
        if h.name not in table_only and h.recipe.method in ("MAE", "U-MAE"):
            by_method.setdefault(str(h.recipe.method), []).append(h)
    if len(by_method.get("MAE", [])) != 1 or len(by_method.get("U-MAE", [])) != 1:
        return out
    mae, umae = by_method["MAE"][0], by_method["U-MAE"][0]

    def diff(metric: str) -> Interval | None:
        for c in comparisons:
            if c.metric == metric and {c.better, c.worse} == {mae.name, umae.name}:
                d = c.difference
                return d if c.better == umae.name else Interval(-d.estimate, -d.hi, -d.lo)
        return None

    lin = diff("linear_accuracy")
    if lin is not None and mae.reference is not None and umae.reference is not None:
        gap = umae.reference.linear_accuracy - mae.reference.linear_accuracy
        out.append(Claim("U-MAE above MAE in linear accuracy (Table 1)",
                         f"{gap:+.1f} points ({mae.reference.linear_accuracy:.1f} -> {umae.reference.linear_accuracy:.1f})",
                         _iv_text(lin, " points"), _direction(lin)))
    rank = diff("effective_rank")
    if rank is not None:
        out.append(Claim("U-MAE has a higher effective rank than MAE: less dimensional collapse (Fig. 1b / 1c)",
                         "higher", _iv_text(rank), _direction(rank)))
    return out


@dataclass
class Summary:
    """Everything the summary panel shows, in the order it shows it."""

    metric: str | None
    n_test: int
    n_boot: int
    headlines: list[Headline]
    comparisons: list[Comparison]
    notes: list[str] = field(default_factory=list)
    n_boot_ranks: int = 0
    #: Why no paper number is shown (probes only; empty when a Table 1 row applies or no probe ran).
    reference_note: str = ""
    #: Checkpoints shown as table rows but left out of the paired comparisons (e.g. a smoke run).
    table_only: tuple[str, ...] = ()
    #: The paper's claims this run can check (:func:`paper_claims`).
    claims: list[Claim] = field(default_factory=list)

    def sentences(self) -> list[str]:
        """The headline (or the comparison sentences) of the main metric, a word on multiple
        comparisons when there are several, then the notes (ranks, the paper)."""
        main = [c.sentence() for c in self.comparisons if c.metric == self.metric]
        if not main:
            main = self._headline_sentences()
        return main + self.multiple_comparisons_note() + list(self.notes)

    def _headline_sentences(self) -> list[str]:
        """One sentence per checkpoint with its main accuracy and interval (no comparison to make)."""
        if not self.metric or self.metric in RANK_NAMES:
            return []
        out = []
        for h in self.headlines:
            iv = h.accuracies.get(self.metric)
            if iv is not None:
                out.append(f"{h.name}: {metric_words(self.metric)} {one_decimal(iv.estimate)}% (95% interval "
                           f"{one_decimal(iv.lo)} to {one_decimal(iv.hi)}) at {self.n_test:,} test images.")
        return out

    def multiple_comparisons_note(self) -> list[str]:
        """A word on multiple comparisons once there are more than three paired verdicts."""
        n = len(self.comparisons)
        if n <= 3:
            return []
        n_metrics = len({c.metric for c in self.comparisons})
        return [f"{n} paired comparisons in {n_metrics} measure{'s' if n_metrics > 1 else ''}, each at 95% and "
                f"not corrected for multiple comparisons: about 1 in 20 'beyond noise' verdicts can be chance, "
                f"so read a single one near its edge with care."]

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "n_test": self.n_test, "bootstrap_resamples": self.n_boot,
                "rank_bootstrap_resamples": self.n_boot_ranks,
                "rank_interval": "95% percentile bootstrap over test images (paired), shifted so that its mean "
                                 "is the estimate: resampling repeats rows, which lowers a rank by itself",
                "interval": "95% percentile bootstrap over test images (paired across checkpoints)",
                "headlines": [h.to_json() for h in self.headlines],
                "comparisons": [c.to_json() for c in self.comparisons], "sentences": self.sentences(),
                "reference_note": self.reference_note, "not_compared": list(self.table_only),
                "claims": [c.to_json() for c in self.claims],
                "multiple_comparisons": "none: each interval is a marginal 95% interval"}


def _pairs(order: Sequence[str]) -> list[tuple[str, str]]:
    if len(order) <= ALL_PAIRS_UP_TO:
        return [(a, b) for i, a in enumerate(order) for b in order[i + 1:]]
    return [(order[0], b) for b in order[1:]]


def build_summary(
    names: Sequence[str],
    recipes: Mapping[str, Recipe],
    probes: Mapping[str, ProbeSummary],
    ranks: Mapping[str, Mapping[str, float]],
    dims: Mapping[str, int],
    references: Mapping[str, Reference | None],
    data: Mapping[str, Any],
    *,
    n_boot: int,
    seed: int,
    rank_resamples: Mapping[str, np.ndarray] | None = None,
    table_only: Sequence[str] = (),
) -> Summary:
    """Headlines with intervals, paired differences (best first) and the notes of the summary.

    ``table_only`` names checkpoints that get their headline row but no paired comparison
    (umae demo's smoke run: its numbers say nothing about the methods). ``probes`` may be empty (collapse-report): then the panel shows ranks and, where
    ``rank_resamples`` (name -> (R, 2) effective rank, RankMe on R shared row resamples) are
    given, their intervals and paired differences, ranked by effective rank.
    """
    accuracy_names = next((list(p.accuracies) for p in probes.values()), [])
    heads = headline_metrics(accuracy_names)
    metric = main_metric(accuracy_names)
    n_test = int(data.get("n_test", 0))
    headlines = {n: Headline(n, recipes[n], ranks=dict(ranks.get(n, {})), dim=dims.get(n),
                             reference=references.get(n)) for n in names}
    comparisons: list[Comparison] = []
    if heads and all(n in probes for n in names):
        for m in heads:
            correct = np.stack([probes[n].correct(m) for n in names])
            boot = bootstrap_accuracies(correct, n_boot=n_boot, seed=seed)
            for i, n in enumerate(names):
                headlines[n].accuracies[m] = interval(100.0 * correct[i].mean(), boot[:, i])
            col = {n: i for i, n in enumerate(names)}
            order = sorted(names, key=lambda n: -headlines[n].accuracies[m].estimate)
            for a, b in _pairs([n for n in order if n not in table_only]):
                diff = interval(headlines[a].accuracies[m].estimate - headlines[b].accuracies[m].estimate,
                                boot[:, col[a]] - boot[:, col[b]])
                comparisons.append(Comparison(m, a, b, diff, n_test))
    boots = dict(rank_resamples or {})
    n_boot_ranks = 0
    if names and all(n in boots and "effective_rank" in headlines[n].ranks for n in names):
        # checkpoints of different widths may get different counts; the first R are shared
        n_boot_ranks = min(int(boots[n].shape[0]) for n in names)
        boots = {n: np.asarray(boots[n])[:n_boot_ranks] for n in names}
        for j, m in enumerate(RANK_NAMES):
            for n in names:
                headlines[n].rank_intervals[m] = centred_interval(headlines[n].ranks[m], boots[n][:, j])
            order = sorted(names, key=lambda n: -headlines[n].ranks[m])
            for a, b in _pairs([n for n in order if n not in table_only]):
                comparisons.append(Comparison(m, a, b, centred_interval(
                    headlines[a].ranks[m] - headlines[b].ranks[m], boots[a][:, j] - boots[b][:, j]), n_test))
    if metric is None and n_boot_ranks:
        metric = "effective_rank"  # collapse-report: no accuracies, the ranks are the verdict
    if metric in RANK_NAMES:
        ordered = sorted(names, key=lambda n: -headlines[n].ranks[metric])  # type: ignore[index]
    elif metric and comparisons:
        ordered = sorted(names, key=lambda n: -headlines[n].accuracies[metric].estimate)
    else:
        ordered = list(names)
    # the rank sentence, unless the effective-rank comparisons already say it all
    said = metric == "effective_rank" and any(c.metric == metric for c in comparisons)
    notes = ([] if said else _rank_notes([headlines[n] for n in ordered])) \
        + _paper_notes([headlines[n] for n in ordered])
    # a missing paper number is worth a word only where a probe ran (its accuracy is what Table 1 reports)
    reference_note = _no_reference_note([headlines[n] for n in ordered], data) if heads else ""
    claims = paper_claims([headlines[n] for n in ordered], comparisons, table_only)
    return Summary(metric, n_test, n_boot, [headlines[n] for n in ordered], comparisons, notes, n_boot_ranks,
                   reference_note, tuple(n for n in names if n in table_only), claims)


def _rank_notes(headlines: Sequence[Headline]) -> list[str]:
    with_rank = [h for h in headlines if "effective_rank" in h.ranks]
    if not with_rank:
        return []
    dims = {h.dim for h in with_rank if h.dim}
    of = f" (of {dims.pop()} feature dimensions)" if len(dims) == 1 else ""
    def one(h: Headline) -> str:
        iv = h.rank_intervals.get("effective_rank")
        return f"{h.name} {h.ranks['effective_rank']:.1f}" + (f" ({one_decimal(iv.lo)} to {one_decimal(iv.hi)})" if iv else "")

    values = ", ".join(one(h) for h in with_rank)
    return [f"Effective rank of the test features{of}: {values}; higher means less dimensional collapse."]


def _paper_notes(headlines: Sequence[Headline]) -> list[str]:
    """The paper's Table 1 number beside ours, for each checkpoint whose setting it matches."""
    out = []
    for h in headlines:
        if h.reference is not None:
            r = h.reference
            here = h.accuracies.get("linear_accuracy")
            measured = f"; here {here.estimate:.1f}" if here else ""
            caveat = f" This run differs: {'; '.join(r.differences)}." if r.differences else ""
            out.append(f"Paper, {r.source}, {r.dataset} {r.backbone}: {r.method} {r.linear_accuracy:.1f}"
                       f"{measured} ({h.name}).{caveat}")
    return out


def _no_reference_note(headlines: Sequence[Headline], data: Mapping[str, Any]) -> str:
    """Why no Table 1 number is shown (a caption, not a verdict), or '' when one is."""
    if any(h.reference is not None for h in headlines):
        return ""
    ds = table1_setting(data)
    if ds is None:
        return ("No paper number: the paper's Table 1 has no row for this dataset (it reports CIFAR-10, "
                "ImageNet-100 and ImageNet-1K).")
    rows = "; ".join(f"{bb}: MAE {v['MAE']:.1f}, U-MAE {v['U-MAE']:.1f}" for bb, v in table1_rows(ds).items())
    return (f"No paper number: the paper's Table 1 ({ds}, linear probe: {rows}) is for MAE / U-MAE "
            f"with those backbones, and no checkpoint here is one.")
