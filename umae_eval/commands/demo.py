"""`umae demo`: the paper's figures for a trained MAE / U-MAE pair, on a CPU in about a minute.

Analyses the two encoders shipped inside the package (``umae_eval/demo/encoders/``: a ViT
96 x 6 pre-trained as MAE and as U-MAE (lambda 0.01) for 20 epochs on the full real CIFAR-10
train split; provenance beside them) and an untrained encoder of the same architecture on the
embedded CIFAR-10 sample (1,000 test images): mean classifier, linear probe, kNN, singular
spectra (Fig. 1b), effective rank, RankMe, alignment/uniformity, t-SNE (Fig. 3a), and the
effective rank and online accuracy along their training (Fig. 1c / 3b, from the 20-epoch runs'
metrics.jsonl shipped beside them). The report opens with what the full-test-split study of
the same two encoders found; the sample's numbers follow as a consistency check.

A short U-MAE training run on the sample comes first, as a smoke run that shows training
works; it is analysed beside the shipped encoders under the label "smoke run", as a table row
only: no paired verdict and no training curve (its few epochs at 16 px say nothing about the methods).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from umae_eval.errors import UmaeError
from umae_eval.options import DeviceOpt, OutOpt, SeedOpt
from umae_eval.progress import console, say, stdout
from umae_eval.provenance import default_out_dir
from umae_eval.staging import check_writable

#: The smoke run: the p4 recipe at 16 px (16 patches), width 96, depth 4; seconds per epoch on 2 CPU cores.
DEMO_PRESET = "cifar10-vit-tiny-p4"
DEMO_OVERRIDES: dict[str, Any] = {
    "img_size": 16, "embed_dim": 96, "depth": 4, "num_heads": 3,
    "decoder_embed_dim": 96, "decoder_depth": 1, "decoder_num_heads": 3,
}
#: The shipped encoders, in umae_eval/demo/encoders/: (display name, file, folder under curves/
#: holding the training run's metrics.jsonl and config.json, copied from
#: reports/cifar10-mae-vs-umae-cpu/runs/).
SHIPPED = (("MAE (CIFAR-10, 20 ep)", "mae-cifar10-vit96x6-p4-e20.pth", "mae"),
           ("U-MAE (CIFAR-10, 20 ep)", "u-mae-cifar10-vit96x6-p4-e20.pth", "u-mae"))
SMOKE_LABEL = "smoke run (U-MAE, sample)"

EpochsOpt = Annotated[int, typer.Option("--epochs", min=1, help="Epochs of the smoke training run.")]
EmbedOpt = Annotated[str, typer.Option("--embed", help="Feature maps: tsne, umap, tsne,umap or none.")]


def shipped_encoders() -> list[Path]:
    """Paths of the shipped encoders (float16, encoder only, umae metadata)."""
    from importlib import resources

    folder = Path(str(resources.files("umae_eval").joinpath("demo", "encoders")))
    paths = [folder / name for _, name, _ in SHIPPED]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UmaeError(f"{missing[0]}: a shipped demo encoder is missing; reinstall umae or run "
                        "scripts/cifar10_study.sh and scripts/export_demo_encoders.py")
    return paths


def shipped_curves() -> list[Path]:
    """The shipped encoders' training-run folders (metrics.jsonl + config.json), in SHIPPED order."""
    from importlib import resources

    folder = Path(str(resources.files("umae_eval").joinpath("demo", "encoders", "curves")))
    return [folder / sub for _, _, sub in SHIPPED]


def shipped_study() -> dict[str, Any]:
    """umae_eval/demo/encoders/study.json ({} when it is missing or unreadable)."""
    import json
    from importlib import resources

    path = Path(str(resources.files("umae_eval").joinpath("demo", "encoders", "study.json")))
    try:
        study = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return study if isinstance(study, dict) else {}


def study_preface(n_test: int, study: dict[str, Any]) -> Any:
    """What the full-test-split study of the shipped encoders found (``study``: study.json),
    its numbers as tables (over pre-training seeds where it has them), and how to read this
    run's sample numbers beside them."""
    from umae_eval.report.study import finetune_frame, random_init_clause, seed_count, seed_frame
    from umae_eval.report.summary import Preface, study_frame

    seeds = study.get("seeds") or {}
    n_seeds = seed_count(seeds)
    check = (f"The same encoders on the {n_test:,} test images of the sample shipped with umae. Their intervals "
             "cover only the resampling of these test images, not the probe fit and not the pre-training seed "
             f"(these two encoders are seed 0 of the study's {n_seeds}), so they understate the methods' real "
             "uncertainty; where the sample and the full study disagree, the full study is the answer. The smoke "
             "run is a table row only: it is compared with nothing.")
    try:
        preface = Preface(str(study["summary"]), study_frame(study["numbers"]),
                          "Seed 0 (the shipped encoders): accuracy in % on the full 10,000-image CIFAR-10 test split, "
                          "with 95% paired bootstrap intervals over those test images in brackets. Source: "
                          + str(study.get("source", "reports/cifar10-mae-vs-umae-cpu")), check)
    except (KeyError, TypeError, ValueError):
        return Preface("The full-test-split study of these encoders is in reports/cifar10-mae-vs-umae-cpu/.",
                       check=check)
    if seeds.get("rows"):
        preface.seed_table = seed_frame(seeds["rows"])
        preface.seed_caption = (f"Over {n_seeds} pre-training seeds per method, full 10,000-image test split: "
                                "each method's mean (standard deviation) over seeds, and U-MAE − MAE paired by "
                                f"seed with a 95% interval ({seeds.get('interval', 'Student t over seeds')}); "
                                "verdicts are worded for that interval. Source: "
                                + str(seeds.get("source", "reports/cifar10-mae-vs-umae-cpu")))
    finetune = study.get("finetune") or {}
    if finetune.get("rows"):
        preface.finetune_table = finetune_frame(finetune["rows"])
        random = random_init_clause(finetune["rows"])  # named only once the study holds its runs
        preface.finetune_caption = ("Fine-tuning (the whole network, or its last blocks, trained with labels; not a "
                                    f"frozen-feature result) of the seed-0 encoders{random}, "
                                    f"{finetune.get('recipe', 'umae finetune --preset cpu-demo')}, full test split: "
                                    "top-1 in % (mean over fine-tuning seeds), B − A with a 95% paired bootstrap "
                                    "over the test images and a 95% Student t interval over fine-tuning seeds "
                                    "(n/a for one seed). Neither covers pre-training seeds. Source: "
                                    + str(finetune.get("source", "reports/cifar10-mae-vs-umae-cpu/finetune")))
    return preface


def demo(
    epochs: EpochsOpt = 3,
    embed: EmbedOpt = "tsne",
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    out: OutOpt = None,
) -> None:
    """Analyse the shipped MAE and U-MAE encoders and a random init on the embedded CIFAR-10 sample.

    First a short U-MAE training run on the sample (a smoke run: it shows training works), then
    the comparison. Everything lands in one folder: runs/smoke (checkpoint, config.json,
    metrics.jsonl) and the comparison (report.html, results.json, CSVs). Rerunning with the
    same --out continues an unfinished smoke run instead of starting over.

    Example:  umae demo                      (about a minute on 2 CPU cores)

    Example:  umae demo --epochs 10 --embed tsne,umap --out reports/demo-long
    """
    from dataclasses import replace

    from trainer.loop import TrainConfig, train_run
    from umae_eval.analysis import load_data, load_subjects
    from umae_eval.options import analysis_config
    from umae_eval.pipeline import run_analysis, timed
    from umae_eval.progress import TrainDisplay, rich_progress
    from umae_eval.report.analysis import write_analysis
    from umae_eval.report.console import announce, print_analysis
    from umae_eval.report.study import finetune_lines, seed_lines
    from umae_eval.staging import begin_output

    out_dir = Path(out) if out is not None else default_out_dir("demo")
    if out_dir.exists() and not out_dir.is_dir():
        raise UmaeError(f"--out {out_dir} is a file; give a folder")
    check_writable(out_dir)  # a read-only or full disk is refused before the work
    # the comparison's options (--embed ...) are checked before the smoke run, not after it
    analysis = analysis_config(pool="cls", methods="mean,linear,knn", embed=embed, per_class=100, device=device,
                               seed=seed)
    shipped = shipped_encoders()
    say(f"umae demo: the shipped MAE and U-MAE encoders (20 epochs on the full CIFAR-10 train split) "
        f"and a random init, on the embedded sample (3,000 train / 1,000 test), into {out_dir}")
    say(f"[bold]smoke run[/]: U-MAE (lambda 0.01) on the sample for {epochs} epochs, to show training works")
    config = TrainConfig(
        data="demo", preset=DEMO_PRESET, out=out_dir / "runs" / "smoke", lam=0.01, unif_form="code",
        epochs=epochs, warmup_epochs=max(1, epochs // 10), batch_size=256, micro_batch=256, blr=1e-3,
        overrides=dict(DEMO_OVERRIDES), eval_every=epochs, save_every=epochs,
        resume="auto", device=device, seed=seed, eval_images=500, knn_train_images=2000,
        command_line=["umae", "demo"],
    )
    with TrainDisplay(console) as display:
        result = train_run(config, progress=display, on_step=display.on_step, on_epoch=display.on_epoch,
                           on_note=display.note)

    say("[bold]comparing[/] the shipped MAE and U-MAE, an untrained encoder of their architecture, "
        "and the smoke run")
    timings: dict[str, float] = {}
    with timed(timings, "load_checkpoints"):
        subjects = load_subjects([*shipped, result.checkpoint], labels=[*(label for label, _, _ in SHIPPED), SMOKE_LABEL],
                                 random_init=True, seed=seed)
    # Fig. 1c / 3b from the shipped encoders' own 20-epoch runs; the smoke run is not compared
    for subject, run_dir in zip(subjects, shipped_curves()):
        subject.info.run_dir = str(run_dir)
    analysis = replace(analysis, table_only=(SMOKE_LABEL,))
    announce(subjects)
    with timed(timings, "load_data"):
        ds = load_data("demo", seed=seed, progress=rich_progress)
    res = run_analysis(subjects, ds, analysis, spec="demo", progress=rich_progress, notify=say, timings=timings)
    study = shipped_study()
    preface = study_preface(res.summary.n_test, study)
    preface.text += ("\n\nThe smoke run (a few epochs on the 3,000 sample images at 16 px) only shows that "
                     "training works; its numbers say nothing about the methods.")
    stage = begin_output(out_dir)  # merged into out_dir beside runs/ when complete
    written = stage.commit(write_analysis(stage.path, "demo", res, random_init=True, preface=preface,
                                          title="umae demo: MAE vs U-MAE vs an untrained encoder"))
    print_analysis(res, written)
    # the sample's verdicts above rest on 1,000 test images and one seed: the study's follow
    for line in seed_lines(study.get("seeds") or {}) + finetune_lines(study.get("finetune") or {}):
        stdout.print(line, highlight=False, soft_wrap=True, markup=False)
