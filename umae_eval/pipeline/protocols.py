"""Which protocols a checkpoint was read under, as per-image outcomes for the protocol matrix.

From one checkpoint's results (:class:`umae_eval.pipeline.results.CheckpointResult`): the headline
probes on the main feature spec, the linear probe on the checkpoint's best block (layer-wise
stage), the attentive probe and the low-shot probes when they ran. Names are stable keys of
results.json and ``protocol_matrix.csv``: ``linear_accuracy``, ``knn_accuracy@20``,
``mean_classifier_accuracy``, ``linear_accuracy@best_block``, ``attentive_accuracy``,
``linear_accuracy@1%``, ``knn_accuracy@5-shot``, ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from umae_eval.pipeline.matrix import Outcome, ProtocolMatrix, build_matrix

if TYPE_CHECKING:  # run.py imports this module: its types only for the checker
    from umae_eval.analysis import Subject
    from umae_eval.pipeline.layers import LayerSummary
    from umae_eval.pipeline.results import AnalysisConfig, CheckpointResult


def spec_words(spec: Mapping[str, Any], block: int | None = None) -> str:
    """``'block 11, cls, final norm on'`` for a feature spec (``'features as saved'`` for --features)."""
    if spec.get("source") == "features file":  # umae_eval.feature_subjects: no block, pooling or norm of ours
        return "features as saved"
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
    if result.probes is not None and "attentive_accuracy" in result.probes.predictions:
        name = "attentive_accuracy"
        out[name] = Outcome(result.probes.correct(name).astype(np.float64),
                            {**_one_spec(spec), "pool": "attentive (EP head on patch tokens)"})
        words[name] = (f"attentive probe (EP, 32 queries) on the patch tokens of block {spec.get('main_block')}, "
                       f"final norm {spec.get('final_norm')}")
        order.append(name)
    for item in getattr(result, "lowshot", None) or []:
        out[item["name"]] = Outcome(np.asarray(item["per_image"], dtype=np.float64), _one_spec(spec),
                                    list(item["draws"]))
        words[item["name"]] = item["words"]
        order.append(item["name"])
    return out, words, order


def feature_spec(blocks: Sequence[int], main: int, config: AnalysisConfig, subject: Subject) -> dict[str, Any]:
    """What results.json records of the feature each number was measured on."""
    import torch

    from umae_eval.readout import fc_norm_untrained

    model = subject.encoder.model
    has_fc = isinstance(getattr(model, "fc_norm", None), torch.nn.LayerNorm)
    return {"blocks": list(blocks), "main_block": int(main), "depth": int(subject.info.arch.depth),
            "pool": config.pool, "final_norm": "on" if config.final_norm else "off",
            "fc_norm": ("untrained" if fc_norm_untrained(model) else "trained") if has_fc else "none",
            # fine-tuned global-pool files carry no final norm: 'on' then applies nothing
            "has_final_norm": bool(subject.info.arch.has_final_norm)}


def fc_norm_notes(results: Sequence[CheckpointResult], pool: str) -> list[str]:
    """A sentence naming every checkpoint whose average pooling goes through an untrained fc_norm."""
    if pool not in ("avg", "cls+avg"):
        return []
    bad = [r.name for r in results if r.spec.get("fc_norm") == "untrained"]
    if not bad:
        return []
    return [f"Average pooling goes through an fc_norm that was never trained (weight 1, bias 0) in "
            f"{', '.join(bad)}: official linear-probe files with global pooling carry one (mae issue 186); "
            f"their avg features are normalised, not learned."]


def headline_names(results: Sequence[CheckpointResult]) -> list[str]:
    """The headline accuracies of the first checkpoint with probes (linear, main kNN, mean)."""
    from umae_eval.pipeline.summary import headline_metrics

    first = next((r.probes for r in results if r.probes is not None), None)
    return headline_metrics(list(first.accuracies)) if first is not None else []


def protocol_matrix(results: Sequence[CheckpointResult], layers: LayerSummary | None,
                    config: AnalysisConfig) -> ProtocolMatrix | None:
    """Every checkpoint under every protocol it ran (:mod:`umae_eval.pipeline.matrix`)."""
    from umae_eval.pipeline.protocols import checkpoint_outcomes

    heads = headline_names(results)
    outcomes, words, order = {}, {}, []
    for r in results:
        best = layers.best[r.name].block if layers is not None and r.name in layers.best else None
        o, w, ordr = checkpoint_outcomes(r, best, heads)
        outcomes[r.name] = o
        words.update(w)
        order.extend(p for p in ordr if p not in order)
    return build_matrix(outcomes, words, order, n_boot=config.n_boot, seed=config.seed)
