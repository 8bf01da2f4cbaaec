"""The attention-statistics stage of ``umae compare``: per checkpoint, over the same seeded test
images, the mean attention distance per block and head (the distance-vs-depth plot of Park et
al., ICLR 2023), the [CLS] -> patch and patch -> patch attention entropy and the attention NMI,
each with a 95% percentile-bootstrap interval over images.

The statistics themselves are :func:`umae_eval.visual.run.attention_statistics` (tested against
closed forms in ``tests/test_visual.py``); this stage picks the images and the device and keeps
what the report needs. Off with ``--attention-images 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from umae_eval.progress import ProgressFactory, null_progress
from umae_eval.visual.attention_stats import STAT_NAMES

#: Bootstrap resamples of the images (the per-head intervals need no more).
MAX_BOOT = 1000


@dataclass
class AttentionStats:
    """One checkpoint's attention statistics.

    Attributes
    ----------
    stats : dict of name -> StatSummary
        Per block and head: arrays (depth, H); ``distance`` in pixels of the model input,
        entropies in nats, ``nmi`` in [0, 1].
    block_stats : dict of name -> StatSummary
        Heads averaged per image first, then the mean and interval over images: arrays (depth,).
    test_index : np.ndarray
        Rows of the test split the statistics are over (the same for every checkpoint).
    n_boot, seed : int
        Bootstrap resamples and their seed.
    """

    stats: dict[str, Any]
    block_stats: dict[str, Any]
    test_index: np.ndarray
    n_boot: int
    seed: int

    @property
    def n_images(self) -> int:
        return int(len(self.test_index))

    def to_json(self) -> dict[str, Any]:
        """Every statistic per block and head and per block, with intervals, and the images used."""
        def summary(s: Any) -> dict[str, Any]:
            return {"mean": s.mean.tolist(), "lo": s.lo.tolist(), "hi": s.hi.tolist()}

        return {"n_images": self.n_images, "test_index": [int(i) for i in self.test_index],
                "bootstrap_resamples": self.n_boot, "seed": self.seed, "interval": "95% percentile bootstrap over images",
                "per_head": {n: summary(self.stats[n]) for n in STAT_NAMES},
                "per_block": {n: summary(self.block_stats[n]) for n in STAT_NAMES}}


def attention_rows(n_test: int, n_images: int, seed: int) -> np.ndarray:
    """The test rows the statistics use: ``n_images`` of ``n_test`` (seeded, sorted) or all."""
    from umae_eval.analysis import subset_indices

    idx = subset_indices(n_test, n_images, seed + 11)
    return np.arange(n_test) if idx is None else idx


def attention_stage(subject: Any, data: Any, config: Any,
                    progress: ProgressFactory = null_progress) -> AttentionStats | None:
    """Attention statistics of ``subject``'s encoder on up to ``config.attention_images`` test
    images of ``data`` (a :class:`~umae_eval.analysis.DataSubset`); None when turned off."""
    if config.attention_images <= 0 or subject.encoder is None:  # off, or features read from files
        return None
    from umae_eval.features import resolve_device
    from umae_eval.visual.run import attention_statistics

    info = subject.info
    rows = attention_rows(len(data.y_test), config.attention_images, config.seed)
    # a lazy set decodes these rows at the model's side with its evaluation transform
    pixels = data.pixels("test", size=info.arch.img_size) if data.lazy else data.x_test
    images = np.asarray(pixels[rows])
    dev = resolve_device(config.device)
    model = subject.encoder.model.to(dev).eval()
    n_boot = min(config.n_boot, MAX_BOOT)
    stats, block_stats, _ = attention_statistics(
        model, images, img_size=info.arch.img_size, patch_size=info.arch.patch_size, mean=info.mean,
        std=info.std, n_boot=n_boot, seed=config.seed, progress=progress, device=dev)
    index = rows if data.test_idx is None else np.asarray(data.test_idx)[rows]
    return AttentionStats(stats, block_stats, index, n_boot, config.seed)
