"""The flow `umae probe`, `collapse-report` and `compare` share once their options are parsed.

check the labels and --out -> load and check the checkpoints -> load the data -> run the
pipeline -> write results.json, CSVs, figures/ and report.html (staged, renamed on success) ->
print the tables. The commands keep their option parsing and only call :func:`analyse_checkpoints`;
`umae demo` has its own flow (training first, a fixed data set, a preface).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from umae_eval.pipeline import AnalysisConfig


def analyse_checkpoints(
    command: str,
    title: str,
    config: AnalysisConfig,
    ckpts: Sequence[str],
    data: str,
    *,
    label: Sequence[str] | None,
    out: Path | None,
    trust_pickle: bool,
    loader: dict[str, Any],
    data_opts: dict[str, Any],
    max_train: int | None,
    max_test: int | None,
    random_init: bool | None = None,
) -> None:
    """Run one analysis command end to end.

    ``loader`` / ``data_opts`` come from :func:`umae_eval.options.loader_options` /
    :func:`umae_eval.options.data_options`. ``random_init`` None: the command has no
    ``--random-init`` (probe), so none is added and none is recorded in results.json. The masked
    views' visible patches are checked only where the collapse stage runs.
    """
    from umae_eval.analysis import load_data, load_subjects
    from umae_eval.options import check_encoder, check_labels, check_visible_patches, out_dir_for
    from umae_eval.pipeline import run_analysis, timed
    from umae_eval.progress import rich_progress, say
    from umae_eval.readout import resolve_blocks
    from umae_eval.report.analysis import write_analysis
    from umae_eval.report.console import announce, print_analysis
    from umae_eval.staging import begin_output

    check_labels(label)
    stage = begin_output(out_dir_for(out, command))  # refuses an unwritable --out before the work
    timings: dict[str, float] = {}
    with timed(timings, "load_checkpoints"):
        extra = {} if random_init is None else {"random_init": random_init}
        subjects = load_subjects(ckpts, labels=label, trust_pickle=trust_pickle, seed=config.seed, **extra, **loader)
    if config.collapse:
        check_visible_patches(subjects, config.mask_ratio)
    for s in subjects:
        check_encoder(s.encoder)
        resolve_blocks(config.layers, s.info.arch.depth)  # a --layers block beyond a checkpoint's depth: before the data
    announce(subjects)
    with timed(timings, "load_data"):
        ds = load_data(data, max_train=max_train, max_test=max_test, seed=config.seed, progress=rich_progress,
                       **data_opts)
    res = run_analysis(subjects, ds, config, spec=data, progress=rich_progress, notify=say, timings=timings)
    written = stage.commit(write_analysis(stage.path, command, res, title=title, **extra))
    print_analysis(res, written)


def analyse_features(
    command: str,
    title: str,
    config: AnalysisConfig,
    paths: Sequence[Path],
    *,
    label: Sequence[str] | None,
    out: Path | None,
    max_train: int | None,
    max_test: int | None,
    max_train_per_class: int | None,
) -> None:
    """The same flow from features read from files (``--features``): no checkpoint, no images.

    Each path is one subject (named by ``--label`` or its file stem); several paths must hold
    features of the same images (:func:`umae_eval.feature_input.check_same_labels`). The options
    that need an encoder were refused by :func:`umae_eval.options.check_feature_options`.
    """
    from umae_eval.analysis import display_names
    from umae_eval.feature_input import check_same_labels, load_features
    from umae_eval.feature_subjects import FeatureSubject, feature_data
    from umae_eval.options import check_labels, out_dir_for
    from umae_eval.pipeline import run_analysis, timed
    from umae_eval.progress import rich_progress, say
    from umae_eval.report.analysis import write_analysis
    from umae_eval.report.console import announce, print_analysis
    from umae_eval.staging import begin_output

    check_labels(label)
    names = display_names([Path(p) for p in paths], label)  # a wrong --label count: before any reading
    stage = begin_output(out_dir_for(out, command))
    timings: dict[str, float] = {}
    with timed(timings, "load_features"):
        inputs = [(str(p), load_features(Path(p))) for p in paths]
    class_names = check_same_labels(inputs)
    subjects = [FeatureSubject(n, None, fi) for n, (_, fi) in zip(names, inputs)]
    announce(subjects)
    data = feature_data(inputs, class_names, max_train=max_train, max_test=max_test, seed=config.seed,
                        max_train_per_class=max_train_per_class)
    spec = " ".join(str(p) for p in paths)
    res = run_analysis(subjects, data, config, spec=spec, progress=rich_progress, notify=say,  # type: ignore[arg-type]
                       timings=timings)
    written = stage.commit(write_analysis(stage.path, command, res, title=title))
    print_analysis(res, written)
