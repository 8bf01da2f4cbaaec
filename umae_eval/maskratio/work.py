"""What a mask-ratio sweep will do, counted before it starts: the sentence the command prints up
front and the cost of each stage's unit, so one progress bar over the whole sweep has a real ETA.

The costs are counts of the sweep's inner work, not timings: a pair costs its masked views times
the patches compared (``R K L``; three encodings per view in feature space), a label-error image
``R K L C`` (its views against every class mean), a graph ratio ``n^2`` node pairs times the
vector length, a bootstrap series ``B R P`` resampled means. The overall bar advances by the cost
of each finished unit, so its time remaining is measured on work done, stage by stage.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SweepPlan", "sweep_plan"]


@dataclass(frozen=True)
class SweepPlan:
    """Stage description -> (units, cost per unit), in the order the sweep runs them."""

    stages: dict[str, tuple[int, float]]
    summary: str

    @property
    def total(self) -> float:
        return sum(n * c for n, c in self.stages.values())


def sweep_plan(*, space: str, ratios: int, pairs: int, views: int, num_patches: int, n_classes: int,
               label_images: int, graph_nodes: int, n_boot: int, series: int) -> SweepPlan:
    """The work of :func:`~umae_eval.maskratio.sweep.run_sweep` with these settings.

    ``series``: the curves bootstrapped (estimators, times metrics in feature space).
    """
    r, k, ell = ratios, views, num_patches
    per_view = 3.0 if space == "feature" else 1.0
    stages = {
        "intra-class pairs": (pairs, per_view * r * k * ell),
        "inter-class pairs": (pairs, per_view * r * k * ell),
        "bootstrap": (series, float(n_boot * r * pairs)),
        "label error: class means": (n_classes, 1.0),
        "label error: masked views": ((label_images, r * k * ell * n_classes) if space == "pixel"
                                      else (r, float(label_images * k * ell * n_classes))),
        "augmentation graph spectrum": (r, float(graph_nodes) ** 2 * ell),
    }
    summary = (f"work: 2 x {pairs:,} pairs (intra, inter) x {r} ratios x {k} views = {2 * pairs * r * k:,} masked "
               f"view pairs{' (encoded)' if space == 'feature' else ''}; label error {label_images:,} images x "
               f"{k} views x {r} ratios; graph {graph_nodes:,} nodes x {r} ratios; bootstrap {n_boot:,} "
               f"resamples x {series} curves")
    return SweepPlan(stages, summary)
