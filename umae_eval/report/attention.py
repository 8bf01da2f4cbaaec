"""The attention-statistics section of the compare report and ``attention_stats.csv``.

From each checkpoint's :class:`~umae_eval.pipeline.attention.AttentionStats`: the distance-vs-depth
plot of Park et al. (ICLR 2023), a dot per head, one colour per checkpoint (the report's colour
roles); entropy and NMI per block; the per-head table (collapsed) and the CSV. Both figures go to
figures/ like every compare figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from umae_eval.pipeline.attention import STAT_NAMES

_DEFINITIONS = (
    "Mean attention distance (Dosovitskiy et al. 2021, Fig. 7; Park et al., ICLR 2023): per patch query, the "
    "attention-weighted pixel distance to the keys ([CLS] dropped, rows renormalised), averaged over queries; "
    "masked-image models keep it local in late blocks, contrastive ones do not. Entropy in nats of the [CLS] row "
    "and of the patch rows over the patches. NMI: mutual information between query and key under a uniform query "
    "prior over sqrt(H(Q) H(K)); near 0 = every query attends alike (attention collapse). Whole test images, no "
    "mask; intervals: 95% percentile bootstrap over images.")


def attention_frame(res: Any) -> pd.DataFrame:
    """One row per checkpoint, block and head: each statistic with its interval, images, resamples."""
    rows = []
    for c in res.checkpoints:
        a = c.attention
        if a is None:
            continue
        depth, heads = a.stats["distance"].mean.shape
        for b in range(depth):
            for h in range(heads):
                row: dict[str, Any] = {"checkpoint": c.name, "block": b + 1, "head": h + 1}
                for name in STAT_NAMES:
                    s = a.stats[name]
                    row.update({name: float(s.mean[b, h]), f"{name}_lo": float(s.lo[b, h]),
                                f"{name}_hi": float(s.hi[b, h])})
                row.update(n_images=a.n_images, bootstrap_resamples=a.n_boot, seed=a.seed,
                           patch_size=c.subject.info.arch.patch_size, img_size=c.subject.info.arch.img_size)
                rows.append(row)
    return pd.DataFrame(rows)


def add_attention_section(rep: Any, res: Any, settings: Mapping[str, Any], prov: Mapping[str, str],
                          colors: Mapping[str, str]) -> None:
    """The section (absent with ``--attention-images 0``)."""
    from umae_eval.report.visual_figures import distance_figure, entropy_nmi_figure

    shown = [c for c in res.checkpoints if c.attention is not None]
    if not shown:
        return
    a0 = shown[0].attention
    note = (f"{a0.n_images} test images (seed {a0.seed}) · 95% bootstrap over images, B={a0.n_boot} · "
            f"data={settings['data']['spec']}")
    fig_settings = {"attention_images": a0.n_images, "bootstrap": a0.n_boot, "seed": a0.seed,
                    "data": settings["data"]["spec"], "fingerprint": str(settings["data"]["fingerprint"])[:16], **prov}
    rep.add_heading("Attention statistics")
    rep.add_text(_DEFINITIONS)
    sizes = {(c.subject.info.arch.img_size, c.subject.info.arch.patch_size) for c in shown}
    if len(sizes) > 1:
        rep.add_text("The checkpoints differ in input or patch size: distances are in pixels of each model's own "
                     "input, so compare them as fractions of the input side.")
    rep.add_figure("Mean attention distance against depth", distance_figure(
        [(c.name, c.attention.stats["distance"]) for c in shown], note, colors=colors),
        caption="A dot per head and block (spread sideways within a block), bars: 95% bootstrap interval over "
                "images; one colour per checkpoint.", settings=fig_settings, name="attention-distance", level=3)
    rep.add_figure("Attention entropy and NMI per block", entropy_nmi_figure(
        [(c.name, c.attention.block_stats) for c in shown], note, colors=colors),
        caption="Head-averaged per image, then the mean and 95% bootstrap interval over images.",
        settings=fig_settings, name="attention-entropy-nmi", level=3)
    with rep.collapsed("Attention statistics per head (also attention_stats.csv)", level=3):
        rep.add_table("", attention_frame(res)[["checkpoint", "block", "head", "distance", "distance_lo",
                                                "distance_hi", "cls_entropy", "patch_entropy", "nmi"]], level=3)


def attention_lines(res: Any) -> list[str]:
    """One terminal line per checkpoint: head-mean attention distance in the first and last block."""
    out = []
    for c in res.checkpoints:
        a = c.attention
        if a is None:
            continue
        d = a.block_stats["distance"]
        out.append(f"{c.name}: mean attention distance {d.mean[0]:.1f} px in block 1 -> {d.mean[-1]:.1f} px in "
                   f"block {len(d.mean)} [{d.lo[-1]:.1f}, {d.hi[-1]:.1f}] ({a.n_images} test images)")
    return out
