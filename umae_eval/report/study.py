"""The shipped study's differences over pre-training seeds, as a report table and terminal lines.

``study.json`` (beside the demo encoders) may carry a ``seeds`` section written from
``scripts/study_seeds.py``'s ``seeds.json``: per measure, each method's mean and spread over
pre-training seeds and a Student t interval of the paired U-MAE - MAE difference. `umae demo`
quotes it in the report's preface and on the terminal, so that the sample's numbers (one pair
of encoders, 1,000 test images) are read against the noise that matters: another seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from umae_eval.pipeline.summary import one_decimal
from umae_eval.report.summary import bracketed, brackets, signed_decimal

#: How each measure of the seeds table reads in a report (the protocol matrix's names as keys).
MEASURE_WORDS = {
    "linear_accuracy": "linear probe",
    "knn_accuracy@20": "kNN k=20",
    "mean_classifier_accuracy": "mean classifier",
    "attentive_accuracy": "attentive probe (EP)",
    "linear_accuracy@best_block": "linear probe, best block",
    "linear_accuracy@1%": "linear probe, 1% labels",
    "knn_accuracy@1%": "kNN, 1% labels",
    "linear_accuracy@10%": "linear probe, 10% labels",
    "knn_accuracy@10%": "kNN, 10% labels",
    "effective_rank": "effective rank",
    "rankme": "RankMe",
}


def _num(x: Any) -> str:
    """One decimal; 'n/a' for a spread that one seed cannot give (None in seeds.json)."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else one_decimal(float(x))


def _words(row: Mapping[str, Any]) -> str:
    return MEASURE_WORDS.get(str(row["measure"]), str(row["measure"]))


def _difference(row: Mapping[str, Any]) -> str:
    """``'+6.4 [1.5, 11.3]'``; ``'+0.2 (one seed)'`` where there is no interval over seeds."""
    if row.get("lo") is None or row.get("hi") is None:
        return f"{signed_decimal(float(row['mean_diff']))} (one seed)"
    return bracketed(float(row["mean_diff"]), float(row["lo"]), float(row["hi"]), signed=True)


def seed_count(seeds: Mapping[str, Any]) -> int:
    """The most pre-training seeds any measure of ``seeds`` (study.json's section) has; 1 without rows."""
    return max((len(r["seeds"]) for r in seeds.get("rows") or []), default=1)


def seed_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per measure: each method's mean (sd) over seeds, U-MAE - MAE with its t interval, the verdict.

    ``rows``: ``SeedDifference.to_json()`` dicts (``seeds.json``'s ``rows``).
    """
    out = []
    for r in rows:
        out.append({"measure": _words(r), "seeds": len(r["seeds"]),
                    "MAE, mean (sd)": f"{_num(r['mean_a'])} ({_num(r['sd_a'])})",
                    "U-MAE, mean (sd)": f"{_num(r['mean_b'])} ({_num(r['sd_b'])})",
                    "U-MAE − MAE [95% t interval over seeds]": _difference(r),
                    "verdict": r["verdict"]})
    return pd.DataFrame(out)


def seed_lines(seeds: Mapping[str, Any]) -> list[str]:
    """Terminal lines: a heading naming the interval, then one line per measure."""
    rows = seeds.get("rows") or []
    if not rows:
        return []
    n = seed_count(seeds)
    source = seeds.get("source", "reports/cifar10-mae-vs-umae-cpu")
    interval = seeds.get("interval", "Student t over seeds")
    lines = [f"The full study over {n} pre-training seeds ({source}): U-MAE − MAE, mean over seeds "
             f"[95% interval: {interval}]"]
    for r in rows:
        lines.append(f"  {_words(r)}: {_difference(r)} (MAE {_num(r['mean_a'])}, U-MAE {_num(r['mean_b'])}): "
                     f"{r['verdict']}")
    return lines


def _ft_interval(lo: Any, hi: Any) -> str:
    return "n/a" if lo is None or hi is None else brackets(float(lo), float(hi))


def finetune_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per tuning mode and encoder pair: each one's top-1 (mean over fine-tuning seeds),
    B - A with the paired bootstrap over test images and the t interval over fine-tuning seeds.

    ``rows``: study.json's ``finetune`` rows (:func:`umae_eval.pipeline.finetune_study.study_rows`).
    """
    out = []
    for r in rows:
        out.append({"fine-tuning": r["mode"], "pair": f"{r['b']} − {r['a']}",
                    "fine-tuning seeds": len(r["seeds"]), "A top-1": one_decimal(float(r["a_top1"])),
                    "B top-1": one_decimal(float(r["b_top1"])), "B − A": signed_decimal(float(r["diff"])),
                    "[bootstrap, test images]": _ft_interval(r["boot_lo"], r["boot_hi"]),
                    "[t, fine-tuning seeds]": _ft_interval(r.get("t_lo"), r.get("t_hi")),
                    "verdict": r["verdict"]})
    return pd.DataFrame(out)


def random_init_clause(rows: Sequence[Mapping[str, Any]]) -> str:
    """' and a random init' when study.json's fine-tuning rows hold a random-init run, else ''."""
    return " and a random init" if any("random init" in (r["a"], r["b"]) for r in rows) else ""


def finetune_lines(section: Mapping[str, Any]) -> list[str]:
    """Terminal lines for study.json's ``finetune`` section: a heading, then one line per pair."""
    rows = section.get("rows") or []
    if not rows:
        return []
    random = random_init_clause(rows)
    source = section.get("source", "reports/cifar10-mae-vs-umae-cpu")
    lines = [f"Fine-tuning of the seed-0 encoders{random} ({source}, "
             f"{section.get('recipe', 'umae finetune --preset cpu-demo')}): B − A in top-1 points "
             "[95% paired bootstrap over test images; t interval over fine-tuning seeds]"]
    for r in rows:
        lines.append(f"  {r['mode']}, {r['b']} − {r['a']}: {signed_decimal(float(r['diff']))} "
                     f"{_ft_interval(r['boot_lo'], r['boot_hi'])}; "
                     f"{_ft_interval(r.get('t_lo'), r.get('t_hi'))} ({r['a']} {one_decimal(float(r['a_top1']))}, "
                     f"{r['b']} {one_decimal(float(r['b_top1']))}; {len(r['seeds'])} seed(s)): {r['verdict']}")
    return lines
