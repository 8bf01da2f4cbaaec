"""The fine-tuned-classifier stage of ``umae compare``: the top-1 (and top-5) of the trained head
a ``umae finetune`` checkpoint carries, on the compare data's test split.

This is *not* a frozen-feature result: the whole network was trained with labels. It is kept
apart from the probes everywhere (its own results.json section, CSV, report section and
terminal table) and says which data the head was tuned on: the compare data (same fingerprint),
other data whose classes match by name (measured, and said so: its training images may overlap
this test split), or other classes (not measured: the head's outputs do not name these classes).
Intervals: percentile bootstrap over the test images (:mod:`umae_eval.pipeline.intervals`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from umae_eval.pipeline.intervals import Interval, bootstrap_accuracies, interval
from umae_eval.progress import ProgressFactory, null_progress

#: What this result is, wherever it is shown.
KIND = "fine-tuned classifier (the whole network trained with labels; not a frozen-feature result)"


@dataclass
class FinetunedResult:
    """One fine-tuned checkpoint's own head on the compare test split.

    ``accuracies``: 'top1' and, with 5 or more classes, 'top5' (percent, with intervals); empty
    when not measured (``reason`` says why). ``data_match``: 'same' (fingerprints equal), 'other'
    (another data set whose class names match) or 'other classes'.
    """

    record: Any  # umae_eval.checkpoints.classifier.FinetuneRecord
    data_match: str
    sentence: str
    accuracies: dict[str, Interval] = field(default_factory=dict)
    n_test: int = 0
    skipped: int = 0
    reason: str = ""
    n_boot: int = 0
    seed: int = 0
    #: per test image: the head's top-1 class (-1: undecodable, skipped); not in JSON
    predictions: np.ndarray | None = field(default=None, repr=False)

    @property
    def measured(self) -> bool:
        return bool(self.accuracies)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": KIND, "tuned_on": self.record.to_json(), "data_match": self.data_match,
                               "sentence": self.sentence, "measured": self.measured}
        if self.measured:
            out.update(accuracies={k: v.to_json() for k, v in self.accuracies.items()}, n_test=self.n_test,
                       skipped_images=self.skipped, bootstrap_resamples=self.n_boot, seed=self.seed,
                       interval="95% percentile bootstrap over test images",
                       preprocessing="resize to the model's input side (bicubic, antialiased) and its mean/std, "
                                     "as umae finetune evaluates")
        else:
            out["reason"] = self.reason
        return out


def _short(fp: str | None) -> str:
    return fp[:12] if fp else "not recorded"


def data_verdict(record: Any, spec: str, fingerprint: str | None, class_names: list[str]) -> tuple[str, str, str]:
    """(match, sentence, refusal) for a head tuned on ``record.tuned_on`` and the compare data.

    ``refusal`` is empty when the top-1 can be measured (the head's classes are the data's, by
    name and order).
    """
    tuned = f"tuned on {record.tuned_on} (fingerprint {_short(record.data_fingerprint)})"
    if list(record.class_names) != list(class_names):
        shown = ", ".join(list(record.class_names)[:5]) + (" ..." if len(record.class_names) > 5 else "")
        reason = (f"its head was {tuned} with {record.num_classes} classes ({shown}), the compare data {spec} has "
                  f"{len(class_names)} classes with other names or order; its outputs do not name these classes, "
                  "so no fine-tuned top-1 is measured")
        return "other classes", f"Not measured: {reason}.", reason
    if record.data_fingerprint is not None and record.data_fingerprint == fingerprint:
        return "same", f"Its head was {tuned}: the compare data (the fingerprints match).", ""
    return "other", (f"Its head was {tuned}, NOT the compare data {spec} (fingerprint {_short(fingerprint)}); "
                     "the class names match, so the top-1 is measured, but its training images may overlap "
                     "this test split."), ""


def _test_batches(data: Any, size: int, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(uint8 images (B, S', S', 3), decoded ok (B,)) over the test split in order."""
    n = len(data.y_test)
    if data.lazy:  # decoded at the model's side with its evaluation transform; bad files flagged
        view = data.pixels("test", size=size)
        for start in range(0, n, batch):
            pairs = [view.decode(j) for j in range(start, min(start + batch, n))]
            yield np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        return
    x = data.x_test
    for start in range(0, n, batch):
        chunk = np.asarray(x[start:start + batch])
        yield chunk, np.ones(len(chunk), dtype=bool)


@torch.no_grad()
def predict_top5(model: torch.nn.Module, data: Any, *, img_size: int, mean: Any, std: Any, device: Any,
                 batch_size: int, progress: ProgressFactory = null_progress) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's five best classes per test image (N, min(5, C)) and whether each decoded (N,)."""
    from umae_eval.preprocess import to_model_input

    tops, oks = [], []
    with progress("fine-tuned classifier", total=len(data.y_test)) as advance:
        for images, ok in _test_batches(data, img_size, batch_size):
            logits = model(to_model_input(images, img_size, mean, std, device=device)).float()
            tops.append(logits.topk(min(5, logits.shape[1]), dim=1).indices.cpu().numpy())
            oks.append(ok)
            advance(len(images))
    return np.concatenate(tops), np.concatenate(oks)


def finetuned_stage(subject: Any, data: Any, config: Any, spec: str,
                    progress: ProgressFactory = null_progress) -> FinetunedResult | None:
    """The fine-tuned top-1 / top-5 of ``subject`` when it is a ``umae finetune`` file; else None."""
    from umae_eval.checkpoints.classifier import finetune_record, load_classifier
    from umae_eval.features import resolve_device

    if subject.encoder is None:  # features read from files
        return None
    info = subject.info
    record = finetune_record(info.metadata) if info.layout == "umae" else None
    if record is None:
        return None
    match, sentence, refusal = data_verdict(record, spec, getattr(data.images, "fingerprint", None),
                                            [str(c) for c in data.images.class_names])
    if refusal:
        return FinetunedResult(record, match, sentence, reason=refusal)
    dev = resolve_device(config.device)
    model = load_classifier(info.path, info.arch, record).to(dev)
    top, ok = predict_top5(model, data, img_size=info.arch.img_size, mean=info.mean, std=info.std, device=dev,
                           batch_size=config.batch_size, progress=progress)
    y = np.asarray(data.y_test)[ok]
    hits = {"top1": top[ok, 0] == y}
    if record.num_classes >= 5:
        hits["top5"] = (top[ok] == y[:, None]).any(axis=1)
    boot = bootstrap_accuracies(np.stack(list(hits.values())), n_boot=config.n_boot, seed=config.seed)
    accs = {k: interval(100.0 * float(v.mean()), boot[:, j]) for j, (k, v) in enumerate(hits.items())}
    pred = np.full(len(ok), -1, dtype=np.int64)
    pred[ok] = top[ok, 0]
    return FinetunedResult(record, match, sentence, accs, n_test=int(ok.sum()), skipped=int((~ok).sum()),
                           n_boot=config.n_boot, seed=config.seed, predictions=pred)
