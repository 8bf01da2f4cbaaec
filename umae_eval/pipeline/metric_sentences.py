"""Sentences for the paired differences of the representation metrics (compare's summary).

Each sentence gives ``b`` minus ``a`` (the later checkpoint minus the earlier, as ``umae compare
mae.pth u-mae.pth`` gives U-MAE minus MAE) with its 95% paired bootstrap interval and the one
verdict wording of :func:`umae_eval.pipeline.intervals.noise_verdict`: the interval covers
resampling the test images only (the LiDAR and Fourier subsets for theirs), not the masks, the
probe fit or the pre-training seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from umae_eval.metrics.suite import MetricSet
from umae_eval.pipeline.intervals import noise_verdict

#: Words for each metric with paired differences, in the summary's sentences.
DIFFERENCE_WORDS: dict[str, str] = {
    "participation_ratio": "Participation ratio", "stable_rank": "Stable rank",
    "collapse_std_ratio": "Collapse std x sqrt(D)", "rankme_paper": "RankMe (paper convention)",
    "rankme_pca": "RankMe (centred PCA convention)", "alpha_req": "alpha-ReQ",
    "lidar_masked": "LiDAR over masked views", "lidar_augmented": "LiDAR over augmented views",
    "fourier_high": "Token high-frequency log-amplitude (last block)",
}


def _num(x: float, scale: float) -> str:
    """``x`` with a precision fitting ``scale`` (the largest magnitude in the sentence)."""
    digits = 1 if scale >= 10 else 2 if scale >= 1 else 3
    out = f"{x:.{digits}f}"
    return out[1:] if out.startswith("-") and float(out) == 0 else out


def difference_sentences(rows: Sequence[dict[str, Any]], sets: Mapping[str, MetricSet]) -> list[str]:
    """One sentence per paired difference of :func:`metric_differences` (``b`` minus ``a``).

    E.g. 'LiDAR over masked views: U-MAE minus MAE is +12.4 (95% interval 10.6 to 14.4): beyond
    test-image noise at 100 test images.' The count is the images resampled for that metric (the
    LiDAR and Fourier subsets for theirs); the verdict is :func:`~umae_eval.pipeline.intervals.noise_verdict`'s.
    """
    out = []
    for r in rows:
        st = sets[r["a"]].settings
        n = {"lidar_masked": st.get("lidar_images"), "lidar_augmented": st.get("lidar_images"),
             "fourier_high": st.get("fourier_images")}.get(r["metric"]) or st.get("n", 0)
        scale = max(abs(r["difference"]), abs(r["lo"]), abs(r["hi"]))
        sign = "+" if r["difference"] > 0 and float(_num(r["difference"], scale)) != 0 else ""
        out.append(f"{DIFFERENCE_WORDS.get(r['metric'], r['metric'])}: {r['b']} minus {r['a']} is "
                   f"{sign}{_num(r['difference'], scale)} (95% interval {_num(r['lo'], scale)} to "
                   f"{_num(r['hi'], scale)}): {noise_verdict(bool(r['beyond_noise']), int(n))}.")
    return out


def representation_notes(sets: Mapping[str, MetricSet], table_only: Sequence[str] = ()) -> list[str]:
    """The summary's sentences on the representation metrics: one per paired difference between
    checkpoints that are compared (not ``table_only``), then a word on multiple comparisons."""
    from umae_eval.pipeline.extra_metrics import metric_differences

    kept = {n: ms for n, ms in sets.items() if n not in table_only}
    if len(kept) < 2:
        return []
    rows = metric_differences(dict(kept))
    out = difference_sentences(rows, kept)
    if len(out) > 3:
        out.append(f"{len(out)} representation-metric differences, each a marginal 95% interval not corrected for "
                   "multiple comparisons (about 1 in 20 'beyond' verdicts can be chance); several of them measure "
                   "the same spectrum, so they are not independent evidence.")
    return out
