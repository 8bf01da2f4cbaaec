"""One evaluation pipeline under ``probe``, ``collapse-report``, ``compare`` and ``demo``.

    checkpoints + images --features--> per checkpoint: probes / spectrum / masked views / maps
        + training curves --> summary (intervals, paired differences, paper numbers)
        --> one :class:`AnalysisResults`

The commands parse options into an :class:`AnalysisConfig`, call :func:`run_analysis` and hand
the results to :func:`umae_eval.report.analysis.analysis_report`. Nothing here prints: progress
goes through ``progress`` and one-line status messages through ``notify``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from umae_eval.analysis import DataSubset, FeatureSet, Subject, subset_indices
from umae_eval.errors import UmaeError
from umae_eval.feature_subjects import ENCODER_SETTINGS, skipped_notes
from umae_eval.pipeline.collapse import (
    FeatureMap,
    rank_resamples,
    SpectrumStats,
    ViewGeometry,
    feature_maps,
    masked_view_geometry,
    spectrum_stats,
    umap_compiles,
)
from umae_eval.pipeline.curves import eval_images, read_training_curves
from umae_eval.pipeline.extra_metrics import pair_sets, representation_json, representation_stage
from umae_eval.pipeline.intervals import DEFAULT_BOOTSTRAP
from umae_eval.pipeline.layers import LAYER_METHODS, BlockResult, LayerSummary, summarise_layers, sweep_blocks
from umae_eval.pipeline.map_classes import choose_map_classes
from umae_eval.pipeline.matrix import ProtocolMatrix
from umae_eval.pipeline.metric_sentences import representation_notes
from umae_eval.pipeline.protocol_probes import attentive_into, headline_k
from umae_eval.pipeline.protocols import fc_norm_notes, headline_names, protocol_matrix
from umae_eval.pipeline.probing import ProbeSummary, run_probes
from umae_eval.pipeline.recipe import Recipe, recipe_of
from umae_eval.pipeline.reference import Reference, reference_for
from umae_eval.pipeline.side_stages import side_json, side_stages
from umae_eval.pipeline.sources import subject_features
from umae_eval.pipeline.summary import Summary, build_summary, main_metric
from umae_eval.oom import memory_stage
from umae_eval.progress import ProgressFactory, null_progress


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


@contextmanager
def timed(store: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall time of the block to ``store[key]`` (seconds); an out-of-memory error inside
    is labelled with the stage (the key before ':'), so the CLI can name the option to lower."""
    t0 = time.perf_counter()
    try:
        with memory_stage(key.split(":", 1)[0]):
            yield
    finally:
        store[key] = store.get(key, 0.0) + time.perf_counter() - t0


def _quiet(message: str) -> None:
    return None


def run_analysis(
    subjects: Sequence[Subject],
    data: DataSubset,
    config: AnalysisConfig,
    *,
    spec: str,
    progress: ProgressFactory = null_progress,
    notify: Callable[[str], None] = _quiet,
    timings: dict[str, float] | None = None,
) -> AnalysisResults:
    """Features -> probes / spectrum / masked views / maps -> summary, for every subject.

    ``spec`` is the ``--data`` text (recorded in the data settings); ``timings`` (optional)
    already holds the load times and receives one entry per stage and checkpoint.
    """
    if not 0.0 <= config.mask_ratio < 1.0:
        raise UmaeError(f"--mask-ratio {config.mask_ratio}: must be in [0, 1), e.g. --mask-ratio 0.75")
    if not config.methods and not config.collapse:
        raise ValueError("run_analysis needs probes (config.methods) or the collapse stage")
    times = timings if timings is not None else {}
    t_start = time.perf_counter()
    from umae_eval.features import resolve_device

    probe_device = str(resolve_device(config.device))
    if "umap" in config.embed and umap_compiles():
        notify("UMAP compiles its code on first use: about 15 s before the first map")
    # refused here, before any feature is computed, when --map-classes exceeds the data's classes
    map_classes = choose_map_classes(len(data.images.class_names), config.map_classes, config.seed) \
        if config.embed else None
    view_idx = subset_indices(len(data.y_test), config.max_views, config.seed + 2)
    # features read from files (--features) come with no images: nothing to view
    x_views = data.x_test if view_idx is None or data.x_test is None else data.x_test[view_idx]
    results: list[CheckpointResult] = []
    # test features (main block) and every block read, for CKA / mutual kNN between checkpoints
    extra_tests: dict[str, np.ndarray] = {}
    extra_blocks: dict[str, FeatureSet] = {}
    for s in subjects:
        recipe = recipe_of(s.info.layout, s.info.metadata)
        every, blocks, main, spec = subject_features(
            s, data, config, with_train=bool(config.methods) or bool(config.label_fractions or config.shots),
            progress=progress, times=times)
        r = CheckpointResult(s, recipe, spec=spec)
        sweep = len(blocks) > 1
        fs = every.block(main)
        if sweep:
            methods = tuple(m for m in (config.methods or LAYER_METHODS) if m in LAYER_METHODS)
            notify(f"{s.name}: layer-wise analysis of blocks {', '.join(map(str, blocks))} "
                   f"({', '.join(methods)}, effective rank, RankMe)")
            with timed(times, f"layers:{s.name}"):
                r.blocks = sweep_blocks(every, methods=methods, ks=config.ks, temperature=config.temperature,
                                        protocol=config.protocol, backend=config.backend, seed=config.seed,
                                        device=probe_device, probe_path=config.probe_path, rank_boot=min(config.n_boot, 200), progress=progress)
        pooled = tuple(m for m in config.methods if m in LAYER_METHODS)  # probes of pooled features
        if pooled and r.blocks and r.blocks[-1].probes is not None and set(pooled) <= set(methods):
            r.probes = r.blocks[-1].probes  # the main block's probes: the same features, settings and seed
        elif pooled:
            notify(f"{s.name}: probing ({', '.join(pooled)}) on {len(data.y_train)} train / "
                   f"{len(data.y_test)} test features")
            with timed(times, f"probes:{s.name}"):
                r.probes = run_probes(fs, methods=pooled, ks=config.ks, temperature=config.temperature,
                                      protocol=config.protocol, backend=config.backend, seed=config.seed,
                                      device=probe_device, probe_path=config.probe_path, progress=progress)
        if "attentive" in config.methods:
            with timed(times, f"attentive:{s.name}"):
                r.probes = attentive_into(r.probes, s, data, fs, main, config, probe_device, notify, progress)
        if config.label_fractions or config.shots:
            from umae_eval.pipeline.protocol_probes import lowshot_stage

            notify(f"{s.name}: low-shot probes ({', '.join([f'{100 * f:g}%' for f in config.label_fractions] + [f'{k}-shot' for k in config.shots])}, "
                   f"{config.draws} draws, linear and kNN)")
            with timed(times, f"lowshot:{s.name}"):
                r.lowshot_result, r.lowshot = lowshot_stage(
                    fs, fractions=config.label_fractions, shots=config.shots, draws=config.draws, seed=config.seed,
                    k=headline_k(config.ks), temperature=config.temperature, backend=config.backend,
                    device=probe_device, progress=progress)
        if config.collapse:
            with timed(times, f"spectrum:{s.name}"):
                r.spectrum = spectrum_stats(fs.test)
            with timed(times, f"rank_intervals:{s.name}"):
                r.rank_resamples = rank_resamples(fs.test, config.n_boot, config.seed, progress)
            if s.encoder is not None:  # features from files: no encoder to view masked images with
                with timed(times, f"masked_views:{s.name}"):
                    r.views = masked_view_geometry(s, x_views, mask_ratio=config.mask_ratio, seed=config.seed,
                                                   pool=config.pool, device=config.device,  # type: ignore[arg-type]
                                                   batch_size=config.batch_size, progress=progress, block=main,
                                                   final_norm=config.final_norm)
            with timed(times, f"representation_metrics:{s.name}"):
                r.extra, r.block_extra = representation_stage(s, fs, data, config, r.probes, progress, every=every,
                                                              block_results=r.blocks)
                if r.extra is not None:
                    extra_tests[s.name], extra_blocks[s.name] = fs.test, every
            for method in config.embed:
                notify(f"{s.name}: {method} map of up to {config.per_class} test images per class")
                with timed(times, f"map_{method}:{s.name}"):
                    # rows of fs.test are the subset's test images (less any a lazy set could not decode)
                    index = data.test_idx if len(fs.y_test) == len(data.y_test) else None
                    r.maps.extend(feature_maps(fs, methods=(method,), per_class=config.per_class,
                                               seed=config.seed, test_index=index, progress=progress,
                                               classes=map_classes, class_names=data.images.class_names))
            if s.name not in config.table_only:
                r.curves = read_training_curves(s.info.run_dir)
                r.eval_images = eval_images(s.info.run_dir)
        side_stages(r, data, config, spec, progress, times)  # attention statistics, a fine-tuned head
        results.append(r)
    data_settings = data.settings(spec)  # after the features: a lazy set adds its notes (transform, skips)
    for r in results:
        r.reference = reference_for(data_settings, r.subject.info.to_json()["arch"], r.recipe.method,
                                    epochs=r.recipe.epochs, mask_ratio=r.recipe.mask_ratio,
                                    protocol=config.protocol if config.methods else None)
    with timed(times, "summary"):
        summary = build_summary(
            [r.name for r in results], {r.name: r.recipe for r in results},
            {r.name: r.probes for r in results if r.probes is not None},
            {r.name: {k: v for k, v in r.collapse_scalars().items() if k in ("effective_rank", "rankme")}
             for r in results},
            {r.name: r.spectrum.dim for r in results if r.spectrum is not None},
            {r.name: r.reference for r in results}, data_settings, n_boot=config.n_boot, seed=config.seed,
            rank_resamples={r.name: r.rank_resamples for r in results if r.rank_resamples is not None},
            table_only=config.table_only)
    layers = None
    if any(r.blocks for r in results):
        with timed(times, "layers_summary"):
            layers = summarise_layers({r.name: r.blocks for r in results if r.blocks}, n_boot=config.n_boot,
                                      seed=config.seed, n_test=int(data_settings["n_test"]))
        summary.notes.extend(layers.sentences())
    summary.notes.extend(fc_norm_notes(results, config.pool))
    summary.notes.extend(skipped_notes([r.subject for r in results], config.collapse))
    with timed(times, "protocol_matrix"):
        matrix = protocol_matrix(results, layers, config)
    if matrix is not None and len(results) > 1 and len(matrix.protocols) > len(headline_names(results)):
        summary.notes.extend(matrix.sentences())  # the headline probes' sentences are said above already
    summary.notes.extend(representation_notes({r.name: r.extra for r in results if r.extra is not None},
                                              config.table_only))
    with timed(times, "representation_pairs"):
        pairs = pair_sets(extra_tests, n_boot=config.n_boot, seed=config.seed, blocks=extra_blocks)
    times["pipeline"] = time.perf_counter() - t_start
    return AnalysisResults(results, data_settings, config, summary, list(data.images.class_names), times,
                           layers, matrix, representation_pairs=pairs)
