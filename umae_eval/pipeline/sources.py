"""The features stage of one subject: where its features come from.

An encoder's features are computed from the images (through the feature cache / store, every
block ``--layers`` reads from one pass); a subject read from files (``--features``,
:class:`umae_eval.feature_subjects.FeatureSubject`, ``encoder`` None) hands over its arrays as
they are. Either way the later stages get one :class:`~umae_eval.analysis.FeatureSet` and the
feature spec results.json records.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from umae_eval.analysis import DataSubset, FeatureSet, Subject, compute_features
from umae_eval.errors import UmaeError
from umae_eval.progress import ProgressFactory
from umae_eval.readout import readout_for


def subject_features(s: Subject, data: DataSubset, config: Any, *, with_train: bool, progress: ProgressFactory,
                     times: dict[str, float]) -> tuple[FeatureSet, tuple[int, ...], int, dict[str, Any]]:
    """``(every block's features, blocks read, main block, feature spec)`` of subject ``s``.

    ``config`` is the :class:`~umae_eval.pipeline.results.AnalysisConfig`; the train split is
    computed when ``with_train`` or several blocks are read (the layer-wise probes need it).
    """
    from umae_eval.pipeline.protocols import feature_spec
    from umae_eval.pipeline.run import timed

    if s.encoder is None:  # features read from files: no model to run, one fixed read-out
        return s.feature_set(data, with_train=with_train), (0,), 0, s.feature_spec()  # type: ignore[attr-defined]
    depth = s.info.arch.depth
    readout = readout_for(config.layers, depth, config.final_norm)
    blocks = tuple(readout.resolved(depth))
    main = blocks[-1]  # the deepest block read carries the main results
    with timed(times, f"features:{s.name}"):
        every = compute_features(s, data, pool=config.pool, device=config.device, batch_size=config.batch_size,
                                 with_train=with_train or len(blocks) > 1, progress=progress,
                                 readout=None if readout.is_default(depth) else readout)
    _check_finite(s, every)
    return every, blocks, main, feature_spec(blocks, main, config, s)


def _check_finite(s: Subject, every: FeatureSet, rows: int = 1 << 16) -> None:
    """Refuse NaN / infinite features here, naming the checkpoint (the metrics' own check can only
    name the array, which does not say which of several checkpoints made it). In row chunks, so
    the check never holds an (N, D) mask."""
    for split, x in (("train", every.train), ("test", every.test)):
        if x is None:
            continue
        for start in range(0, len(x), rows):
            if not np.isfinite(x[start:start + rows]).all():
                raise UmaeError(
                    f"{s.info.path}: its features of the {split} images hold NaN or infinity although its "
                    "weights are finite (checked when loaded); look at the input side: --norm (a std of 0 "
                    "divides by zero) and the checkpoint's LayerNorm eps (0 gives NaN on a flat image), or "
                    "weights so large that the activations overflow float32")
