"""The fine-tuned-classifier section of the compare report, its CSV and its terminal table.

A ``umae finetune`` checkpoint's own head, on the compare test split (:mod:`umae_eval.pipeline.finetuned`):
top-1 / top-5 with 95% bootstrap intervals over test images, the data it was tuned on and
whether that is the compare data. Kept apart from the frozen-feature probes on the page
("not a frozen-feature result"), in ``finetuned_classifiers.csv`` and in results.json's
``finetuned_classifiers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from rich import box
from rich.table import Table

from umae_eval.pipeline.finetuned import KIND

TITLE = "Fine-tuned classifiers (not frozen features)"


def finetuned_frame(res: Any) -> pd.DataFrame:
    """One row per ``umae finetune`` checkpoint: where it was tuned, top-1 / top-5 with intervals."""
    rows = []
    for c in res.checkpoints:
        f = c.finetuned
        if f is None:
            continue
        r = f.record
        row: dict[str, Any] = {"checkpoint": c.name, "kind": "fine-tuned classifier", "tuned_on": r.tuned_on,
                               "tuned_on_fingerprint": r.data_fingerprint or "", "compare_data": res.data.get("spec"),
                               "compare_fingerprint": res.data.get("fingerprint"), "data_match": f.data_match,
                               "pool": r.pool, "num_classes": r.num_classes, "freeze_blocks": r.freeze_blocks,
                               "source": r.source_name, "epoch": r.epoch}
        for k in ("top1", "top5"):
            iv = f.accuracies.get(k)
            row.update({k: iv.estimate if iv else None, f"{k}_lo": iv.lo if iv else None,
                        f"{k}_hi": iv.hi if iv else None})
        row.update(n_test=f.n_test if f.measured else None, skipped_images=f.skipped,
                   bootstrap_resamples=f.n_boot if f.measured else None, seed=f.seed,
                   note=f.sentence)
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(iv: Any) -> str:
    return "not measured" if iv is None else f"{iv.estimate:.1f} [{iv.lo:.1f}, {iv.hi:.1f}]"


def add_finetuned_section(rep: Any, res: Any, prov: Mapping[str, str]) -> None:
    """The section (absent when no checkpoint carries a `umae finetune` head)."""
    frame = finetuned_frame(res)
    if frame.empty:
        return
    rep.add_heading(TITLE)
    rep.add_text("These checkpoints were fine-tuned end to end with labels (`umae finetune`); below is the top-1 "
                 "of the head each file carries, rebuilt as it was trained, on the same test images as the probes. "
                 "It is not a frozen-feature result and is not ranked with the probes above (which read the tuned "
                 "encoder's features like any other).")
    rep.add_sentences([f"{c.name}: {c.finetuned.sentence}" for c in res.checkpoints if c.finetuned is not None])
    shown = pd.DataFrame([{"checkpoint": c.name, "tuned on": c.finetuned.record.tuned_on,
                           "same data": {"same": "yes", "other": "NO", "other classes": "NO (other classes)"}[
                               c.finetuned.data_match],
                           "top-1 % [95%]": _cell(c.finetuned.accuracies.get("top1")),
                           "top-5 % [95%]": _cell(c.finetuned.accuracies.get("top5"))
                           if c.finetuned.record.num_classes >= 5 else "fewer than 5 classes",
                           "pool": c.finetuned.record.pool, "test images": c.finetuned.n_test or ""}
                          for c in res.checkpoints if c.finetuned is not None])
    first = next(c.finetuned for c in res.checkpoints if c.finetuned is not None)
    rep.add_table("Top-1 / top-5 of the trained head", shown, level=3,
                  caption=f"{KIND}. Intervals: 95% percentile bootstrap over test images "
                          f"({first.n_boot or res.config.n_boot} resamples). finetuned_classifiers.csv has every "
                          "field, including both data fingerprints.",
                  settings={"data": res.data.get("spec"), "fingerprint": str(res.data.get("fingerprint", ""))[:16],
                            "seed": res.config.seed, **prov})


def finetuned_table(res: Any) -> Table | None:
    """The terminal table (80 columns): checkpoint, same data, top-1 and top-5 with intervals."""
    rows = [c for c in res.checkpoints if c.finetuned is not None]
    if not rows:
        return None
    table = Table(title="Fine-tuned classifier (own head; not frozen features), %",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    table.add_column("checkpoint", overflow="fold", min_width=8)
    table.add_column("same data", no_wrap=True)
    table.add_column("top-1", justify="right", no_wrap=True)
    table.add_column("top-5", justify="right", no_wrap=True)
    for c in rows:
        f = c.finetuned
        table.add_row(c.name, {"same": "yes", "other": "NO"}.get(f.data_match, "NO"),
                      _cell(f.accuracies.get("top1")),
                      _cell(f.accuracies.get("top5")) if f.record.num_classes >= 5 else "–")
    return table
