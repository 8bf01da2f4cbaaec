"""Which protocols a checkpoint was read under, as per-image outcomes for the protocol matrix.

From one checkpoint's results (:class:`umae_eval.pipeline.run.CheckpointResult`): the headline
probes on the main feature spec, the linear probe on the checkpoint's best block (layer-wise
stage), the attentive probe and the low-shot probes when they ran. Names are stable keys of
results.json and ``protocol_matrix.csv``: ``linear_accuracy``, ``knn_accuracy@20``,
``mean_classifier_accuracy``, ``linear_accuracy@best_block``, ``attentive_accuracy``,
``linear_accuracy@1%``, ``knn_accuracy@5-shot``, ...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from umae_eval.pipeline.matrix import Outcome


def spec_words(spec: Mapping[str, Any], block: int | None = None) -> str:
    """``'block 11, cls, final norm on'`` for a feature spec."""
    b = spec.get("main_block") if block is None else block
    return f"block {b}, {spec.get('pool')}, final norm {spec.get('final_norm')}"


def _one_spec(spec: Mapping[str, Any], block: int | None = None) -> dict[str, Any]:
    return {"block": int(spec.get("main_block", 0) if block is None else block), "pool": spec.get("pool"),
            "final_norm": spec.get("final_norm")}


def checkpoint_outcomes(result: Any, best_block: int | None, headline: list[str]
                        ) -> tuple[dict[str, Outcome], dict[str, str], list[str]]:
    """``(outcomes, words, order)`` of one checkpoint result.

    ``headline``: the accuracies the summary shows (linear, the main kNN, mean classifier);
    ``best_block``: the layer-wise stage's pick for this checkpoint (None without one).
    """
    from umae_eval.pipeline.summary import metric_words

    out: dict[str, Outcome] = {}
    words: dict[str, str] = {}
    order: list[str] = []
    spec = result.spec
    if result.probes is not None:
        for m in headline:
            if m in result.probes.predictions:
                out[m] = Outcome(result.probes.correct(m).astype(np.float64), _one_spec(spec))
                words[m] = f"{metric_words(m)}, {spec_words(spec)}"
                order.append(m)
    if best_block is not None:
        blk = next((b for b in result.blocks if b.block == best_block), None)
        if blk is not None and blk.probes is not None and "linear_accuracy" in blk.probes.predictions:
            name = "linear_accuracy@best_block"
            out[name] = Outcome(blk.probes.correct("linear_accuracy").astype(np.float64),
                                {**_one_spec(spec, best_block), "chosen_by": "linear validation accuracy"})
            words[name] = "linear accuracy on each checkpoint's best block (chosen by validation accuracy)"
            order.append(name)
    attentive = getattr(result, "attentive", None)
    if attentive is not None:
        preds = attentive.test_predictions.get("attentive_accuracy")
        if preds is not None and result.probes is not None and result.probes.y_test is not None:
            name = "attentive_accuracy"
            out[name] = Outcome((np.asarray(preds) == np.asarray(result.probes.y_test)).astype(np.float64),
                                {**_one_spec(spec), "pool": "attentive (patch tokens)"})
            words[name] = f"attentive probe (block {spec.get('main_block')} patch tokens)"
            order.append(name)
    for item in getattr(result, "lowshot", None) or []:
        out[item["name"]] = Outcome(np.asarray(item["per_image"], dtype=np.float64), _one_spec(spec),
                                    list(item["draws"]))
        words[item["name"]] = item["words"]
        order.append(item["name"])
    return out, words, order
