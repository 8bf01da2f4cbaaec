"""`umae reconstruct`: MAE reconstructions (four panels, seeded masks shared by every checkpoint,
norm-pix aware), attention maps of the same images, and attention statistics per block and head."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from umae_eval.errors import UmaeError
from umae_eval.options import (
    DataModeOpt,
    DataOpt,
    LabelOpt,
    NormOpt,
    NumHeadsOpt,
    OutOpt,
    SeedOpt,
    TrustPickleOpt,
    loader_options,
    parse_ints,
)
from umae_eval.progress import rich_progress, say, stdout

COMMAND = "reconstruct"

ImagesOpt = Annotated[int, typer.Option("--images", min=1, help="How many images to show (seeded at random, "
                                                                "or spread over --class).")]
IndexOpt = Annotated[Optional[str], typer.Option("--index", help="Show these images of the split, e.g. 0,7,42 "
                                                                 "(wins over --images and --class).")]
ClassOpt = Annotated[Optional[str], typer.Option("--class", help="Show images of these classes (names or "
                                                                 "ids, comma list), taken in turn.")]
SplitOpt = Annotated[str, typer.Option("--split", help="test or train.")]
RatiosOpt = Annotated[str, typer.Option("--mask-ratio", help="Mask ratio(s), comma list, each in (0, 1); the "
                                                             "masks are nested across ratios.")]
UnnormOpt = Annotated[Optional[str], typer.Option(
    "--unnormalise", help="For checkpoints trained on normalised pixels (norm_pix_loss): visible (default: "
    "the nearest visible patches' statistics), raw (as predicted), true (the hidden patches' own statistics: "
    "LEAKS THE TARGET, labelled so); a comma list draws one grid each.")]
DecoderHeadsOpt = Annotated[Optional[int], typer.Option(
    "--decoder-num-heads", min=1, help="Heads of the decoder when the file does not record them.")]
StatImagesOpt = Annotated[int, typer.Option(
    "--stat-images", min=1, help="Images (seeded, from the split) behind the attention statistics.")]
BootOpt = Annotated[int, typer.Option("--bootstrap", min=10, help="Bootstrap resamples of the images "
                                                                  "(attention statistics' intervals).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")]
OptionalCkpts = Annotated[Optional[list[Path]], typer.Argument(
    metavar="[CKPT]...", show_default=False,
    help="Checkpoint file(s) or folder(s) with the MAE decoder (official full / visualize, U-MAE, umae, "
    "Hugging Face ViTMAEForPreTraining); or none with --demo.")]
DemoOpt = Annotated[bool, typer.Option(
    "--demo", help="Use the shipped full checkpoints (encoder + decoder) of the seed-1 study runs of the "
    "demo's recipe, MAE and U-MAE (umae_eval/demo/full/, their epochs in provenance.json).")]


def reconstruct(
    ckpts: OptionalCkpts = None,
    data: DataOpt = "demo",
    images: ImagesOpt = 8,
    index: IndexOpt = None,
    class_: ClassOpt = None,
    split: SplitOpt = "test",
    mask_ratio: RatiosOpt = "0.75",
    seed: SeedOpt = 0,
    unnormalise: UnnormOpt = None,
    stat_images: StatImagesOpt = 64,
    bootstrap: BootOpt = 1000,
    label: LabelOpt = None,
    decoder_num_heads: DecoderHeadsOpt = None,
    num_heads: NumHeadsOpt = None,
    norm: NormOpt = None,
    trust_pickle: TrustPickleOpt = False,
    batch_size: BatchOpt = 64,
    data_mode: DataModeOpt = "auto",
    out: OutOpt = None,
    demo: DemoOpt = False,
) -> None:
    """Reconstructions (original, masked, reconstruction, reconstruction + visible), attention maps
    and attention statistics of MAE checkpoints that carry their decoder, side by side.

    The masks are seeded (the trainer's noise for --seed) and the same for every checkpoint.
    Checkpoints trained on normalised pixels are detected (metadata, official file names, or
    their outputs) and un-normalised with the visible patches' statistics unless asked otherwise.

    Example:  umae reconstruct runs/mae/last.pth runs/umae/last.pth --data ../shared/data/cifar10-jpeg.tar.gz --images 8 --mask-ratio 0.75,0.9

    Example:  umae reconstruct mae_visualize_vit_base.pth --data imagenet-val/ --class 1,207 --images 4

    Example:  umae reconstruct hf-vit-mae/ --data demo --index 0,1,2,3 --unnormalise visible,true

    Example:  umae reconstruct --demo   (the shipped seed-1 MAE and U-MAE runs on the demo images)
    """
    from umae_eval.analysis import display_names
    from umae_eval.checkpoints import load_encoder, read_checkpoint
    from umae_eval.checkpoints.naming import metadata_name
    from umae_eval.data.choose import open_dataset
    from umae_eval.options import check_choice, parse_choices
    from umae_eval.provenance import default_out_dir, versions
    from umae_eval.report import write_outputs
    from umae_eval.report.reconstruct import Shown, mse_table, reconstruct_report, results_dict, stats_table
    from umae_eval.staging import begin_output
    from umae_eval.visual.images import read_rows, select_images
    from umae_eval.visual.mae_model import build_mae
    from umae_eval.visual.normpix import MODES
    from umae_eval.visual.demo_full import demo_full_checkpoints
    from umae_eval.visual.run import VisualConfig, visualise

    t0 = time.perf_counter()
    ratios = _parse_ratios(mask_ratio)
    split = check_choice(split.strip().lower(), ("test", "train"), "--split")
    modes = parse_choices(unnormalise, MODES, "--unnormalise") if unnormalise else None
    rows_given = list(parse_ints(index, "--index", minimum=0)) if index else None
    classes = [c.strip() for c in class_.split(",") if c.strip()] if class_ else None
    paths, notes = _checkpoints(ckpts, demo)
    if notes and not label:
        label = [d.label for d in demo_full_checkpoints()]
    for p in paths:
        if not Path(p).exists():
            raise UmaeError(f"checkpoint not found: {p} (check the path)")
    display_names(paths, label)  # a wrong --label count is refused before anything loads
    parsed = [read_checkpoint(p, trust_pickle=trust_pickle) for p in paths]
    overrides = loader_options(num_heads, norm)
    maes = [build_mae(pc, arch_overrides=overrides.get("arch_overrides"), decoder_num_heads=decoder_num_heads)
            for pc in parsed]  # an encoder-only file stops here, with its one line
    infos = [load_encoder(p, trust_pickle=trust_pickle, **overrides).info for p in paths]
    names = display_names(paths, label, [metadata_name(i) for i in infos])
    for info in infos:
        say(info.summary())
    for note in notes:
        say(note)
    stage = begin_output(Path(out) if out is not None else default_out_dir(COMMAND))

    ds = open_dataset(data, mode="lazy" if data_mode.strip().lower() == "auto" else data_mode.strip().lower(),
                      progress=rich_progress)
    labels_all = ds.y_test if split == "test" else ds.y_train
    rows = select_images(labels_all, ds.class_names, n=images, index=rows_given, classes=classes, seed=seed)
    side = max(m.arch.img_size for m in maes)
    shown_images = read_rows(ds, split, rows, side)
    stat_rows = select_images(labels_all, ds.class_names, n=min(stat_images, len(labels_all)), seed=seed + 1)
    stat_pixels = read_rows(ds, split, stat_rows, side)
    labels = [str(ds.class_names[int(labels_all[r])]) for r in rows]
    config = VisualConfig(mask_ratios=tuple(ratios), seed=seed, modes=modes, batch_size=batch_size, n_boot=bootstrap)

    shown = []
    for path, name, loaded, info in zip(paths, names, maes, infos):
        say(f"{name}: {loaded.arch.describe()} + {loaded.decoder_arch.describe()}")
        vis = visualise(loaded, str(path), shown_images, stat_pixels, mean=info.mean, std=info.std, config=config,
                        progress=rich_progress)
        shown.append(Shown(name=name, visual=vis, info={
            "name": name, "path": str(path), "layout": info.layout, "sha256": info.sha256,
            "arch": info.arch.describe(), "decoder": loaded.decoder_arch.describe(), "mean": list(info.mean),
            "std": list(info.std)}))

    settings: dict[str, Any] = {
        "data": {"source": ds.source, "format": ds.format, "fingerprint": ds.fingerprint,
                 "class_names": list(ds.class_names)},
        "split": split, "image_indices": [int(r) for r in rows], "selection": (
            "--index" if rows_given else f"--class {','.join(classes)}" if classes else f"seeded random, seed {seed}"),
        "mask_ratios": ratios, "seed": seed,
        "masking": "MAE's rule: keep int(L(1-rho)) patches with the smallest U[0,1] noise; noise = torch.rand(N, L) "
                   "after manual_seed(seed) (the trainer's stream), one draw for every ratio and checkpoint",
        "unnormalise": list(modes) if modes else ["visible"],
        "stat_images": len(stat_rows), "stat_image_indices": [int(r) for r in stat_rows],
        "bootstrap": bootstrap, "device": "cpu", "batch_size": batch_size,
        "checkpoints": [s.info for s in shown], "versions": versions(),
    }
    if notes:
        settings["demo"] = notes
    tables = {"reconstruction_mse": mse_table(shown, rows, labels), "attention_stats": stats_table(shown)}
    results = results_dict(shown, rows, labels)
    results["timings"] = {"total_s": time.perf_counter() - t0}
    report = reconstruct_report(shown, rows, labels, settings, tables)
    written = stage.commit(write_outputs(stage.path, COMMAND, settings, results, tables, report))
    for s in shown:
        stdout.print(f"{s.name}: " + "; ".join(
            f"rho={p.mask_ratio:g} [{p.mode}] masked-patch MSE {p.mse_target.mean():.4f}" for p in s.visual.panels),
            highlight=False, soft_wrap=True, markup=False)
    for key, path in written.items():
        stdout.print(f"{key}: {path}", highlight=False, soft_wrap=True)
    say(f"done in {time.perf_counter() - t0:.1f} s")


def _checkpoints(ckpts: list[Path] | None, demo: bool) -> tuple[list[Path], list[str]]:
    """The files to show and, with --demo, the sentences saying what they are."""
    from umae_eval.visual.demo_full import demo_full_checkpoints, demo_sentences

    if demo and ckpts:
        raise UmaeError("--demo shows the shipped checkpoints; give either --demo or checkpoint files, not both")
    if demo:
        shipped = demo_full_checkpoints()
        return [d.path for d in shipped], demo_sentences(shipped)
    if not ckpts:
        raise UmaeError("no checkpoint given; pass files with the MAE decoder, e.g. umae reconstruct "
                        "runs/mae/last.pth, or --demo for the shipped ones")
    return list(ckpts), []


def _parse_ratios(text: str) -> list[float]:
    out = []
    for part in text.split(","):
        try:
            r = float(part)
        except ValueError:
            raise UmaeError(f"--mask-ratio {text!r}: give numbers in (0, 1), comma-separated, e.g. 0.75,0.9") from None
        if not 0.0 < r < 1.0:
            raise UmaeError(f"--mask-ratio {r:g}: each ratio must be in (0, 1), e.g. 0.75")
        out.append(r)
    return out


__all__ = ["reconstruct"]
