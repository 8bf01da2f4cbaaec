"""What the pipeline measures and returns: :class:`AnalysisConfig` (the options),
:class:`CheckpointResult` (one checkpoint's results) and :class:`AnalysisResults` (all of them,
the summary and the settings, as results.json writes them).

Apart from :mod:`umae_eval.pipeline.run` (the stages in order) because the report, the CSV
frames and the protocol matrix read these types without running anything;
:mod:`umae_eval.pipeline.run` re-exports the three names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from umae_eval.analysis import Subject
from umae_eval.feature_subjects import ENCODER_SETTINGS
from umae_eval.pipeline.collapse import FeatureMap, SpectrumStats, ViewGeometry
from umae_eval.pipeline.extra_metrics import representation_json
from umae_eval.pipeline.intervals import DEFAULT_BOOTSTRAP
from umae_eval.pipeline.layers import BlockResult, LayerSummary
from umae_eval.pipeline.matrix import ProtocolMatrix
from umae_eval.pipeline.probing import ProbeSummary
from umae_eval.pipeline.recipe import Recipe
from umae_eval.pipeline.reference import Reference
from umae_eval.pipeline.side_stages import side_json
from umae_eval.pipeline.summary import Summary, main_metric

__all__ = ["AnalysisConfig", "AnalysisResults", "CheckpointResult"]


@dataclass(frozen=True)
class AnalysisConfig:
    """What to measure. ``methods`` empty = no probes; ``collapse`` False = no spectrum / views / maps."""

    methods: tuple[str, ...] = ("mean", "linear", "knn")
    ks: tuple[int, ...] = (10, 20, 200)
    temperature: float = 0.07
    protocol: str = "fast"
    backend: str = "torch"
    #: ``--probe-path``: auto / memory / blocked (linear probe and kNN; see umae_eval.probes.blocks)
    probe_path: str = "auto"
    pool: str = "cls"
    #: ``--label-fraction`` / ``--shots`` / ``--draws``: the low-shot probes (none by default)
    label_fractions: tuple[float, ...] = ()
    shots: tuple[int, ...] = ()
    draws: int = 5
    #: ``--layers``: 'last', 'all' or '3,6,-1' (resolved per encoder by umae_eval.readout)
    layers: str = "last"
    final_norm: bool = True
    collapse: bool = True
    embed: tuple[str, ...] = ()
    per_class: int = 500
    #: ``--map-classes``: classes a map shows (None: all up to 10, else 10 drawn from the seed)
    map_classes: int | None = None
    mask_ratio: float = 0.75
    max_views: int = 2000
    device: str = "auto"
    batch_size: int = 256
    seed: int = 0
    n_boot: int = DEFAULT_BOOTSTRAP
    #: Checkpoints shown as table rows only: no paired comparison, no training curves (umae demo's smoke run).
    table_only: tuple[str, ...] = ()
    #: compare: attention statistics on N test images (0: off); the heads `umae finetune` files carry
    attention_images: int = 0
    finetuned_heads: bool = False

    def settings(self, n_test: int) -> dict[str, Any]:
        """The options that shaped the results, by their CLI names (for results.json)."""
        from umae_eval.features import resolve_device

        out: dict[str, Any] = {"pool": self.pool, "layers": self.layers,
                               "final_norm": "on" if self.final_norm else "off"}
        if self.methods:
            out.update(methods=list(self.methods), k=list(self.ks), temperature=self.temperature,
                       protocol=self.protocol, backend=self.backend, probe_path=self.probe_path)
        if self.label_fractions or self.shots:
            out.update(label_fraction=list(self.label_fractions), shots=list(self.shots), draws=self.draws)
        if self.collapse:
            out.update(embed=list(self.embed), per_class=self.per_class, map_classes=self.map_classes,
                       mask_ratio=self.mask_ratio,
                       max_views=self.max_views, max_views_used=min(self.max_views, n_test))
        out.update(seed=self.seed, device=str(resolve_device(self.device)), batch_size=self.batch_size,
                   bootstrap_resamples=self.n_boot)
        if self.table_only:
            out["not_compared"] = list(self.table_only)
        if self.attention_images:
            out["attention_images"] = self.attention_images
        return out


@dataclass
class CheckpointResult:
    """Everything measured for one checkpoint."""

    subject: Subject
    recipe: Recipe
    probes: ProbeSummary | None = None
    spectrum: SpectrumStats | None = None
    views: ViewGeometry | None = None
    maps: list[FeatureMap] = field(default_factory=list)
    curves: dict[str, list[float]] | None = None
    eval_images: int | None = None
    reference: Reference | None = None
    #: (R, 2) effective rank and RankMe on R row resamples of the test features (not in JSON)
    rank_resamples: np.ndarray | None = None
    #: the feature spec the main results were measured on: blocks read, main block, pool, final norm
    spec: dict[str, Any] = field(default_factory=dict)
    #: the layer-wise stage (several blocks read): one entry per block
    blocks: list[BlockResult] = field(default_factory=list)
    #: the low-shot stage: the LowShotResult (JSON) and its matrix entries (per-image outcomes)
    lowshot_result: Any = None
    lowshot: list[dict[str, Any]] = field(default_factory=list)
    #: the representation metrics (umae_eval.metrics.suite.MetricSet, with resamples)
    extra: Any = None
    #: the representation metrics of every block read (several blocks): block -> MetricSet
    block_extra: dict[int, Any] = field(default_factory=dict)
    attention: Any = None  # AttentionStats; FinetunedResult: a `umae finetune` file's own head
    finetuned: Any = None

    @property
    def name(self) -> str:
        return self.subject.name

    def collapse_scalars(self) -> dict[str, float]:
        """Spectrum and masked-view scalars by result name (empty without the collapse stage)."""
        out: dict[str, float] = {}
        if self.spectrum is not None:
            out.update(self.spectrum.scalars())
        if self.views is not None:
            out.update(self.views.scalars())
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-safe: accuracies + probe settings, collapse scalars, spectra, map settings, curves."""
        out: dict[str, Any] = {"recipe": self.recipe.to_json(), "feature_spec": dict(self.spec)}
        if self.probes is not None:
            out.update(accuracies=self.probes.accuracies, probes=self.probes.results, seconds=self.probes.seconds)
        if self.spectrum is not None:
            sp = self.spectrum
            out.update(self.collapse_scalars())
            out.update(alpha_req_fit_range=list(sp.alpha_req_fit_range), n_features=sp.n, dim=sp.dim,
                       spectrum_settings=sp.settings,
                       singular_values_centered=sp.singular_values_centered.tolist(),
                       singular_values_raw=sp.singular_values_raw.tolist())
        if self.views is not None:
            out["masked_views"] = {"mask_ratio": self.views.mask_ratio, "n_images": self.views.n_images,
                                   "seed": self.views.seed}
        if self.spectrum is not None or self.maps:
            out["maps"] = [{**m.settings, "knn_accuracy_in_map": m.knn_accuracy} for m in self.maps]
            out["training_curves"] = self.curves
        if self.reference is not None:
            out["paper_reference"] = self.reference.to_json()
        if self.lowshot_result is not None:
            out["lowshot"] = {**self.lowshot_result.to_dict(), "feature_spec": dict(self.spec)}
        if self.extra is not None:
            out["representation_metrics"] = self.extra.to_json()
        if self.block_extra:
            out["representation_metrics_by_block"] = {str(b): ms.to_json() for b, ms in self.block_extra.items()}
        if self.blocks:
            out["layers"] = [{"block": b.block, "feature_spec": {**self.spec, "block": b.block},
                              "ranks": b.ranks, "linear_val_accuracy": b.val_accuracy,
                              **({"accuracies": b.probes.accuracies, "probes": b.probes.results}
                                 if b.probes is not None else {})} for b in self.blocks]
        return out


@dataclass
class AnalysisResults:
    """The pipeline's one result: per-checkpoint results, the summary, the data, the options."""

    checkpoints: list[CheckpointResult]
    data: dict[str, Any]
    config: AnalysisConfig
    summary: Summary
    class_names: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    #: the layer-wise summary (None unless --layers read several blocks)
    layers: LayerSummary | None = None
    #: checkpoint x protocol accuracies with intervals and paired differences (None without probes)
    matrix: ProtocolMatrix | None = None
    #: CKA and mutual kNN per pair of checkpoints ('A vs B' -> MetricSet)
    representation_pairs: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.checkpoints]

    @property
    def ranked_by(self) -> str | None:
        """The accuracy that ranks the checkpoints (None without probes)."""
        first = next((c.probes for c in self.checkpoints if c.probes is not None), None)
        return main_metric(list(first.accuracies)) if first else None

    def settings(self, **extra: Any) -> dict[str, Any]:
        """results.json's ``settings``: checkpoints (sha256, layout, arch, recipe), data, options."""
        ckpts = [{**c.subject.settings(), "recipe": c.recipe.to_json()} for c in self.checkpoints]
        out = {"checkpoints": ckpts, "data": dict(self.data), **self.config.settings(int(self.data["n_test"]))}
        if all(c.subject.encoder is None for c in self.checkpoints):  # --features: nothing read out or masked
            out.update({k: ENCODER_SETTINGS[k] for k in ENCODER_SETTINGS if k in out})
        out.update(extra)
        if self.ranked_by:
            out["ranked_by"] = self.ranked_by
        return out

    def to_json(self) -> dict[str, Any]:
        """results.json's ``results``: the summary, each checkpoint's results, stage timings."""
        out: dict[str, Any] = {"summary": self.summary.to_json()}
        if self.ranked_by:
            out["ranked_by"] = self.ranked_by
            out["ranking"] = [h.name for h in self.summary.headlines]
        out["checkpoints"] = {c.name: c.to_json() for c in self.checkpoints}
        if self.layers is not None:
            out["layers"] = self.layers.to_json()
        if self.matrix is not None:
            out["protocol_matrix"] = self.matrix.to_json()
        sets = {c.name: c.extra for c in self.checkpoints if c.extra is not None}
        if sets:
            out["representation_metrics"] = representation_json(
                sets, self.representation_pairs, {c.name: c.block_extra for c in self.checkpoints if c.block_extra})
        out.update(side_json(self.checkpoints))
        out["timings_s"] = dict(self.timings)
        return out
