"""The two compare stages that sit beside the frozen-feature results of a checkpoint: attention
statistics (:mod:`umae_eval.pipeline.attention`) and a ``umae finetune`` file's own head
(:mod:`umae_eval.pipeline.finetuned`), run by :func:`umae_eval.pipeline.run.run_analysis` per
checkpoint and written to results.json in sections of their own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from umae_eval.pipeline.attention import attention_stage
from umae_eval.pipeline.finetuned import finetuned_stage
from umae_eval.progress import ProgressFactory


def side_stages(result: Any, data: Any, config: Any, spec: str, progress: ProgressFactory,
                times: dict[str, float]) -> None:
    """Fill ``result.attention`` and ``result.finetuned`` (a CheckpointResult) when asked for."""
    from umae_eval.pipeline.run import timed

    s = result.subject
    with timed(times, f"attention_statistics:{s.name}"):
        result.attention = attention_stage(s, data, config, progress)
    if config.finetuned_heads:
        with timed(times, f"finetuned_classifier:{s.name}"):
            result.finetuned = finetuned_stage(s, data, config, spec, progress)


def side_json(results: Sequence[Any]) -> dict[str, Any]:
    """results.json's ``finetuned_classifiers`` and ``attention_statistics`` (only those measured),
    apart from the frozen-feature results."""
    out: dict[str, Any] = {}
    for key, attr in (("finetuned_classifiers", "finetuned"), ("attention_statistics", "attention")):
        part = {r.name: getattr(r, attr).to_json() for r in results if getattr(r, attr) is not None}
        if part:
            out[key] = part
    return out
