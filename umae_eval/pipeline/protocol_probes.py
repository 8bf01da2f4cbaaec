"""The probe stages beyond the pooled-feature probes: attentive (on tokens) and low-shot (few labels).

- :func:`attentive_stage`: the EP attentive probe (:mod:`umae_eval.probes.attentive`) on the
  patch tokens of the main block (the deepest block read, with the final norm as asked), cached
  as float16 when they fit the memory budget, else re-encoded per batch (:mod:`umae_eval.tokens`).
- :func:`lowshot_stage`: linear and kNN probes on seeded, class-balanced, nested subsets of the
  training labels (:mod:`umae_eval.probes.lowshot`), on the main block's features; each
  (subset, method) as per-image outcomes (the fraction of draws right) for the protocol matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from umae_eval.analysis import DataSubset, FeatureSet, Subject
from umae_eval.pipeline.probing import ProbeSummary
from umae_eval.probes.result import ProbeResult
from umae_eval.progress import ProgressFactory, null_progress

if TYPE_CHECKING:  # run.py imports this module
    from umae_eval.pipeline.results import AnalysisConfig


def attentive_stage(subject: Subject, data: DataSubset, *, block: int, final_norm: bool, seed: int,
                    device: str, batch_size: int, budget_bytes: int | None = None,
                    progress: ProgressFactory = null_progress, **probe_options: Any) -> ProbeResult:
    """The attentive probe on ``block``'s patch tokens of the data's train and test images.

    ``budget_bytes``: largest float16 token cache per split (default the probe's 4 GiB);
    ``probe_options`` go to :func:`umae_eval.probes.attentive.attentive_probe` (epochs, grids).
    The result's settings record the block, the final norm and how the tokens were served.
    """
    from umae_eval.probes.attentive import DEFAULT_TOKEN_CACHE_BYTES, attentive_probe
    from umae_eval.tokens import token_source

    budget = DEFAULT_TOKEN_CACHE_BYTES if budget_bytes is None else int(budget_bytes)
    size = subject.info.arch.img_size if data.lazy else None
    served = {}
    sources = {}
    for split in ("train", "test"):
        images = data.pixels(split, size)
        sources[split], served[split] = token_source(
            subject.encoder, images, block=block, final_norm=final_norm, device=device, batch_size=batch_size,
            budget_bytes=budget, progress=progress)
    r = attentive_probe(sources["train"], data.y_train, sources["test"], data.y_test, seed=seed, device=device,
                        num_classes=len(data.images.class_names), progress=progress, **probe_options)
    r.settings.update(block=int(block), final_norm="on" if final_norm else "off", tokens="patch tokens ([CLS] left out)",
                      token_cache=served, token_cache_budget_bytes=budget)
    return r


def lowshot_stage(fs: FeatureSet, *, fractions: Sequence[float], shots: Sequence[int], draws: int, seed: int,
                  k: int, temperature: float, backend: str, device: str,
                  progress: ProgressFactory = null_progress) -> tuple[Any, list[dict[str, Any]]]:
    """Low-shot linear and kNN probes on ``fs`` (one block's train / test features).

    Returns the :class:`~umae_eval.probes.lowshot.LowShotResult` and, per (subset, method), the
    matrix's entry: ``name`` (``linear_accuracy@1%``), ``words``, ``per_image`` (fraction of draws
    right, (M,)), ``draws`` (each draw's accuracy).
    """
    from umae_eval.probes.lowshot import lowshot_probes, lowshot_subsets

    if fs.train is None:
        raise ValueError("lowshot_stage needs training features")
    subsets = lowshot_subsets(fs.y_train, fractions=tuple(fractions), shots=tuple(shots), draws=draws, seed=seed)
    res = lowshot_probes(fs.train, fs.y_train, fs.test, fs.y_test, subsets, methods=("linear", "knn"), seed=seed,
                         k=k, temperature=temperature, linear_options={"backend": backend, "device": device},
                         num_classes=int(max(fs.y_train.max(), fs.y_test.max())) + 1, progress=progress)
    items = []
    y = np.asarray(fs.y_test)
    for e in res.entries:
        right = np.stack([np.asarray(p) == y for p in e.test_predictions]).mean(axis=0)
        metric = "linear_accuracy" if e.method == "linear" else "knn_accuracy"
        what = "linear probe" if e.method == "linear" else f"kNN (k={k})"
        label = f"{e.subset} of the train labels" if e.subset.endswith("%") else f"{e.subset} per class"
        items.append({"name": f"{metric}@{e.subset}", "per_image": right, "draws": list(e.accuracies),
                      "words": f"{what} on {label} ({len(e.accuracies)} seeded class-balanced draws)"})
    return res, items



def headline_k(ks: Sequence[int]) -> int:
    """The kNN k the summary shows (20 if run, else the first): also the low-shot kNN's k."""
    return 20 if 20 in ks else int(ks[0])


def attentive_into(probes: ProbeSummary | None, subject: Subject, data: DataSubset, fs: FeatureSet, block: int,
                   config: AnalysisConfig, device: str, notify: Callable[[str], None],
                   progress: ProgressFactory) -> ProbeSummary | None:
    """Run the attentive probe on ``block``'s tokens and add it to (a copy of) ``probes``."""
    from umae_eval.pipeline.protocol_probes import attentive_stage

    if len(fs.y_test) != len(data.y_test) or len(fs.y_train) != len(data.y_train):
        notify(f"{subject.name}: attentive probe skipped: undecodable images were left out of the features, "
               "and the token pass would not line up with them")
        return probes
    notify(f"{subject.name}: attentive probe (EP) on the patch tokens of block {block}")
    r = attentive_stage(subject, data, block=block, final_norm=config.final_norm, seed=config.seed, device=device,
                        batch_size=config.batch_size, progress=progress)
    base = probes or ProbeSummary({}, [], {}, {}, np.asarray(fs.y_test))
    out = ProbeSummary(dict(base.accuracies), list(base.results), dict(base.seconds), dict(base.predictions),
                       base.y_test)
    out.accuracies["attentive_accuracy"] = float(r.accuracy)
    out.results.append(r.to_dict())
    sec = r.extras.get("seconds") or {}
    out.seconds["attentive"] = float(sec.get("total", 0.0) if isinstance(sec, dict) else sec)
    out.predictions.update(r.test_predictions)
    return out
