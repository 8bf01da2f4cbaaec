"""The report of ``umae reconstruct``: reconstruction grids, attention maps and attention statistics
per checkpoint, the tables behind them and results.json's content.

The page leads with one line per checkpoint saying what its pictures show (pixel target, or
norm-pix un-normalised with which statistics, and how that was decided), then the grids (the
same images and masks for every checkpoint), the attention maps of the same images, the
statistics plots and table; settings in a collapsed section.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from umae_eval.report.visual_figures import (
    attention_figure,
    comparison_figure,
    distance_figure,
    entropy_nmi_figure,
    mode_caption,
    reconstruction_figure,
    settings_footer,
)
from umae_eval.report.writer import HtmlReport, slug
from umae_eval.visual.normpix import MODE_LABELS
from umae_eval.visual.run import STAT_NAMES, CheckpointVisual

COMMAND = "reconstruct"


@dataclass
class Shown:
    """One checkpoint's results and where they came from (``info``: path, name, sha256, layout, archs, mean, std)."""

    name: str
    info: dict[str, Any]
    visual: CheckpointVisual


def norm_pix_sentence(s: Shown) -> str:
    """What this checkpoint's pictures show, in one sentence."""
    v = s.visual.norm_pix
    modes = sorted({p.mode for p in s.visual.panels}, key=list(MODE_LABELS).index)
    target = ("normalised-pixel (norm_pix_loss) target" if v.norm_pix else
              "pixel target" if v.norm_pix is False else "target undetermined, shown as pixels")
    shown = "; ".join(MODE_LABELS[m] for m in modes)
    return f"{s.name}: {target} ({v.source}: {v.detail}). Shown: {shown}."


def mse_table(shown: Sequence[Shown], rows: np.ndarray, labels: Sequence[str]) -> pd.DataFrame:
    """One row per checkpoint, mask ratio, display mode and image: both masked-patch MSEs."""
    out = []
    for s in shown:
        for p in s.visual.panels:
            for j, row in enumerate(rows):
                out.append({"checkpoint": s.name, "image_index": int(row), "label": labels[j],
                            "mask_ratio": p.mask_ratio, "display": p.mode,
                            "mse_target": float(p.mse_target[j]), "mse_pixels": float(p.mse_pixels[j])})
    return pd.DataFrame(out)


def stats_table(shown: Sequence[Shown]) -> pd.DataFrame:
    """One row per checkpoint, block and head: each statistic's mean and bootstrap interval."""
    out = []
    for s in shown:
        st = s.visual.stats
        depth, heads = st["distance"].mean.shape
        for b in range(depth):
            for h in range(heads):
                row: dict[str, Any] = {"checkpoint": s.name, "block": b + 1, "head": h + 1}
                for name in STAT_NAMES:
                    row[name] = float(st[name].mean[b, h])
                    row[f"{name}_lo"] = float(st[name].lo[b, h])
                    row[f"{name}_hi"] = float(st[name].hi[b, h])
                row["n_images"] = s.visual.n_stat_images
                out.append(row)
    return pd.DataFrame(out)


def results_dict(shown: Sequence[Shown], rows: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """results.json's ``results``: per checkpoint the verdict, per-image MSEs and the statistics."""
    out: dict[str, Any] = {"images": [{"index": int(r), "label": lab} for r, lab in zip(rows, labels)],
                           "checkpoints": []}
    for s in shown:
        v = s.visual
        out["checkpoints"].append({
            **s.info, "norm_pix": v.norm_pix.to_json(),
            "reconstructions": [{"mask_ratio": p.mask_ratio, "display": p.mode,
                                 "display_meaning": MODE_LABELS[p.mode],
                                 "mse_target": [float(x) for x in p.mse_target],
                                 "mse_pixels": [float(x) for x in p.mse_pixels],
                                 "mean_mse_target": float(np.mean(p.mse_target))} for p in v.panels],
            "attention": {"n_images": v.n_stat_images,
                          **{name: {"mean": v.stats[name].mean.tolist(), "lo": v.stats[name].lo.tolist(),
                                    "hi": v.stats[name].hi.tolist()} for name in STAT_NAMES},
                          "per_block": {name: {"mean": v.block_stats[name].mean.tolist(),
                                               "lo": v.block_stats[name].lo.tolist(),
                                               "hi": v.block_stats[name].hi.tolist()} for name in STAT_NAMES}},
        })
    return out


def _add_side_by_side(rep: HtmlReport, shown: Sequence[Shown], row_labels: Sequence[str],
                      fig_settings: dict[str, Any]) -> None:
    """One figure per mask ratio with every checkpoint on the same masks (first display mode each)."""
    if len(shown) < 2:
        return
    for ratio in dict.fromkeys(p.mask_ratio for p in shown[0].visual.panels):
        named = [(s.name, next(p for p in s.visual.panels if p.mask_ratio == ratio)) for s in shown]
        first = named[0][1].mask
        if any(p.mask.shape != first.shape or not np.array_equal(p.mask, first) for _, p in named):
            return  # different patch grids: no shared masks to compare on
        footer = settings_footer({**fig_settings, "mask_ratio": ratio})
        fig = comparison_figure(named, row_labels, f"Side by side on the same masks, mask ratio {ratio:g}", footer)
        rep.add_image_figure(f"Side by side, mask ratio {ratio:g}", fig, level=3,
                             name=f"side-by-side-{ratio:g}".replace(".", "p"),
                             caption="The same images and masks for every checkpoint; MSE: each checkpoint's "
                                     "training loss on the hidden patches. " + mode_caption([p.mode for _, p in named]),
                             settings={**fig_settings, "mask_ratio": ratio})


def reconstruct_report(shown: Sequence[Shown], rows: np.ndarray, labels: Sequence[str], settings: dict[str, Any],
                       tables: dict[str, pd.DataFrame]) -> HtmlReport:
    """The page (see the module docstring)."""
    rep = HtmlReport("MAE reconstructions and attention", command=COMMAND)
    ratios = settings["mask_ratios"]
    fig_settings = {"seed": settings["seed"], "mask_ratios": ratios, "data": settings["data"]["source"],
                    "split": settings["split"], "images": len(rows)}
    row_labels = [f"#{r}\n{lab}" for r, lab in zip(rows, labels)]
    rep.add_heading("Summary")
    rep.add_text(f"{len(rows)} {settings['split']} images of {settings['data']['source']}, masks seeded with "
                 f"seed {settings['seed']} (the trainer's noise for that seed; the same masks for every "
                 f"checkpoint with the same patch grid, nested across ratios {', '.join(f'{r:g}' for r in ratios)}). "
                 "MSE under each reconstruction: the checkpoint's own training loss on the hidden patches "
                 "(normalised pixels for norm-pix checkpoints).")
    rep.add_sentences([norm_pix_sentence(s) for s in shown], verdict=True)
    if settings.get("demo"):
        rep.add_sentences(list(settings["demo"]))  # --demo: which runs and epochs these are
    rep.add_table("Masked-patch MSE (mean over the images shown)",
                  tables["reconstruction_mse"].groupby(["checkpoint", "mask_ratio", "display"], sort=False)
                  [["mse_target", "mse_pixels"]].mean().reset_index(),
                  caption="mse_target: the training loss on the hidden patches; mse_pixels: the picture shown "
                          "against the original, pixels in [0, 1] (with 'true' display it uses the target's "
                          "statistics).", settings=fig_settings)
    rep.add_heading("Reconstructions")
    _add_side_by_side(rep, shown, row_labels, fig_settings)
    for s in shown:
        footer = settings_footer({**fig_settings, "checkpoint": s.name, "sha256": s.info["sha256"][:12]})
        fig = reconstruction_figure(s.visual.panels, row_labels, f"{s.name}: original, masked, reconstruction, "
                                    "reconstruction + visible", footer)
        modes = [p.mode for p in s.visual.panels]
        leak = " THE 'true' PANELS LEAK THE TARGET: they use the hidden patches' own statistics." \
            if "true" in modes else ""
        rep.add_image_figure(f"Reconstructions: {s.name}", fig, level=3, name=f"reconstruction-{slug(s.name)}",
                             caption=mode_caption(modes) + leak, settings={**fig_settings, "sha256": s.info["sha256"][:12]})
    rep.add_heading("Attention maps")
    rep.add_text("Attention of the encoder on the whole image (no mask): rollout (head-mean attention plus the "
                 "identity for the residual, rows renormalised, multiplied over blocks; Abnar & Zuidema 2020) "
                 "and the last block's [CLS] attention per head (DINO's visualize_attention.py), each map scaled "
                 "to its own maximum.")
    for s in shown:
        footer = settings_footer({**fig_settings, "checkpoint": s.name, "sha256": s.info["sha256"][:12]})
        originals = s.visual.panels[0].original
        fig = attention_figure(originals, s.visual.rollout, s.visual.cls_attention, row_labels,
                               f"{s.name}: attention", footer)
        rep.add_image_figure(f"Attention: {s.name}", fig, level=3, name=f"attention-{slug(s.name)}",
                             settings={**fig_settings, "sha256": s.info["sha256"][:12]})
    rep.add_heading("Attention statistics")
    n_stat = shown[0].visual.n_stat_images
    note = (f"{n_stat} {settings['split']} images (seed {settings['seed']}); 95% bootstrap over images, "
            f"B={settings['bootstrap']}")
    stat_settings = {"stat_images": n_stat, "bootstrap": settings["bootstrap"], "seed": settings["seed"],
                     "data": settings["data"]["source"]}
    rep.add_text("Mean attention distance (Dosovitskiy et al. 2021; Park et al. ICLR 2023): per patch query, the "
                 "attention-weighted pixel distance to the keys ([CLS] dropped, rows renormalised), averaged over "
                 "queries. Entropy in nats of the [CLS] row and of the patch rows over the patches. NMI: mutual "
                 "information between query and key under a uniform query prior over sqrt(H(Q) H(K)); near 0 = "
                 "every query attends alike (attention collapse). Intervals: 95% percentile bootstrap over images.")
    rep.add_figure("Mean attention distance against depth", distance_figure([(s.name, s.visual.stats["distance"])
                                                                             for s in shown], note),
                   caption="A dot per head and block, bars: 95% bootstrap interval over images.",
                   settings=stat_settings, name="attention-distance", level=3)
    rep.add_figure("Attention entropy and NMI per block", entropy_nmi_figure([(s.name, s.visual.block_stats)
                                                                               for s in shown], note),
                   caption="Head-averaged per image, then the mean and 95% bootstrap interval over images.",
                   settings=stat_settings, name="attention-entropy-nmi", level=3)
    with rep.collapsed("Attention statistics per head (also attention_stats.csv)"):
        rep.add_table("", tables["attention_stats"][["checkpoint", "block", "head", "distance", "distance_lo",
                                                     "distance_hi", "cls_entropy", "patch_entropy", "nmi"]],
                      level=3)
    with rep.collapsed("Settings and versions"):
        flat = {k: v for k, v in settings.items() if k not in ("data", "checkpoints", "versions", "demo")}
        flat.update({f"data.{k}": v for k, v in settings["data"].items()})
        for i, ck in enumerate(settings["checkpoints"]):
            flat.update({f"checkpoint{i + 1}.{k}": v for k, v in ck.items()})
        rep.add_settings(flat)
        rep.add_settings(settings["versions"], title="Versions")
    return rep
