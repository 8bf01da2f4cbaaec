"""One evaluation pipeline under ``probe``, ``collapse-report``, ``compare`` and ``demo``.

    checkpoints + images --features--> per checkpoint: probes / spectrum / masked views / maps
        + training curves --> summary (intervals, paired differences, paper numbers)
        --> one :class:`AnalysisResults`

The commands parse options into an :class:`AnalysisConfig`, call :func:`run_analysis` and hand
the results to :func:`umae_eval.report.analysis.analysis_report`. Nothing here prints: progress
goes through ``progress`` and one-line status messages through ``notify``. The types it fills
(:class:`AnalysisConfig`, :class:`CheckpointResult`, :class:`AnalysisResults`) are in
:mod:`umae_eval.pipeline.results`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from umae_eval.analysis import DataSubset, FeatureSet, Subject, subset_indices
from umae_eval.errors import UmaeError
from umae_eval.feature_subjects import skipped_notes
from umae_eval.pipeline.collapse import (
    feature_maps,
    masked_view_geometry,
    rank_resamples,
    spectrum_stats,
    umap_compiles,
)
from umae_eval.pipeline.curves import eval_images, read_training_curves
from umae_eval.pipeline.extra_metrics import pair_sets, representation_stage
from umae_eval.pipeline.layers import LAYER_METHODS, summarise_layers, sweep_blocks
from umae_eval.pipeline.map_classes import choose_map_classes
from umae_eval.pipeline.metric_sentences import representation_notes
from umae_eval.pipeline.protocol_probes import attentive_into, headline_k
from umae_eval.pipeline.protocols import fc_norm_notes, headline_names, protocol_matrix
from umae_eval.pipeline.probing import run_probes
from umae_eval.pipeline.recipe import recipe_of
from umae_eval.pipeline.reference import reference_for
from umae_eval.pipeline.results import AnalysisConfig, AnalysisResults, CheckpointResult
from umae_eval.pipeline.side_stages import side_stages
from umae_eval.pipeline.sources import subject_features
from umae_eval.pipeline.summary import build_summary
from umae_eval.oom import memory_stage
from umae_eval.progress import ProgressFactory, null_progress

# the result types live in pipeline.results; named here so that imports from this module keep
# working. The stage functions above stay imported by name: tests replace them on this module.
__all__ = ["AnalysisConfig", "AnalysisResults", "CheckpointResult", "run_analysis", "timed"]


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
