"""`umae train`: pre-train MAE / U-MAE (or SimMIM / U-SimMIM) and write a run folder.

Parses the options, builds a :class:`trainer.loop.TrainConfig`, calls
:func:`trainer.loop.train_run` with a rich progress display, and prints the run folder and the
final figures. Everything else lives in ``trainer/``.
"""

from __future__ import annotations

import functools
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.table import Table

from umae_eval.errors import UmaeError, set_interrupt_hint
from umae_eval.options import (
    DataModeOpt,
    DataOpt,
    DeviceOpt,
    SeedOpt,
    TrustPickleOpt,
)
from umae_eval.progress import TrainDisplay, console, null_progress, say, stdout

if TYPE_CHECKING:  # the trainer (and torch) load only when the command runs
    from trainer.loop import TrainResult


_UNIF_FORMS = ("code", "paper", "released")
_METHODS = ("mae", "simmim")
_PRECISIONS = ("auto", "bf16", "fp32")


def _default_out(preset: str, method: str, lam: float) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    tag = f"{method}" if lam == 0 else f"u{method}-lam{lam:g}"
    return Path("runs") / f"{preset}-{tag}-{stamp}"


def _resolve_out(out: Optional[Path], resume: Optional[str], preset: str, method: str, lam: float) -> Path:
    if out is not None:
        return out
    if resume is None:
        return _default_out(preset, method, lam)
    if resume == "auto":
        raise UmaeError("--resume auto needs --out RUN_FOLDER (the folder holding last.pth)")
    p = Path(resume)
    return p if p.is_dir() else p.parent


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    v = value.strip().lower()
    if v not in allowed:
        raise UmaeError(f"{option} {value!r}: choose one of {', '.join(allowed)}")
    return v


def _final_table(result: TrainResult) -> Table:
    table = Table(title=f"run {result.run_dir}", show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("epochs / steps", f"{result.epochs} / {result.steps}")
    for key in ("loss", "loss_recon", "loss_unif", "effective_rank", "rankme", "linear_accuracy",
                "knn_accuracy", "mean_classifier_accuracy", "img_per_s"):
        value = result.final.get(key)
        if value is None:
            continue
        unit = " %" if key.endswith("accuracy") else ""
        table.add_row(key, f"{value:,.4f}{unit}" if key.startswith("loss") else f"{value:,.2f}{unit}")
    table.add_row("checkpoint", str(result.checkpoint))
    table.add_row("metrics", str(result.run_dir / "metrics.jsonl"))
    return table


def train(
    data: DataOpt,
    preset: Annotated[str, typer.Option(
        "--preset", help="Recipe: cifar10-vit-tiny-p2 (Table 1 CIFAR-10), cifar10-vit-tiny-p4, "
        "vit-base-p16, vit-large-p16, tiny-test (seconds, for tests).")],
    lam: Annotated[float, typer.Option(
        "--lam", min=0.0, help="Uniformity weight lambda: 0 = plain MAE; the paper's U-MAE uses 0.01.")] = 0.0,
    unif_form: Annotated[str, typer.Option(
        "--unif-form", help="Uniformity loss: code (the released formula done right: [CLS] after "
        "the final norm, L2-normalised, mean squared cosine over the global batch, diagonal "
        "included, DDP gradient correct); released (bit-equal to the released U-MAE code: the "
        "final norm applied twice, and under DDP lambda acts as lambda / GPUs, so its 0.01 on 8 "
        "GPUs was 0.00125 with code); paper (Eq. 11: raw features, off-diagonal pairs, "
        "10^3-10^4 x larger, so lambda 0.01 does not carry over).")] = "code",
    method: Annotated[str, typer.Option(
        "--method", help="mae, or simmim (mask ratio 0.6 unless --mask-ratio).")] = "mae",
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Epochs (default: the preset's).")] = None,
    warmup_epochs: Annotated[Optional[int], typer.Option(
        "--warmup-epochs", min=0, help="Linear warm-up epochs (default: the preset's share of --epochs).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", min=1, help="Effective batch per optimiser step, all processes together "
        "(default: the preset's; lr = blr x batch / 256).")] = None,
    micro_batch: Annotated[Optional[int], typer.Option(
        "--micro-batch", min=1, help="Images per forward/backward on one process; gradients "
        "accumulate up to --batch-size (default: the preset's).")] = None,
    blr: Annotated[Optional[float], typer.Option("--blr", min=0.0, help="Base learning rate per 256 images.")] = None,
    min_lr: Annotated[float, typer.Option("--min-lr", min=0.0, help="Floor of the cosine schedule.")] = 0.0,
    mask_ratio: Annotated[Optional[float], typer.Option(
        "--mask-ratio", min=0.0, max=0.99, help="Fraction of patches removed (default: the preset's).")] = None,
    img_size: Annotated[Optional[int], typer.Option(
        "--img-size", min=4, help="Train at this image side instead of the preset's.")] = None,
    eval_every: Annotated[int, typer.Option(
        "--eval-every", min=0, help="Online kNN and mean-classifier accuracy every N epochs and at "
        "the end (0: never); effective rank and RankMe are logged every epoch.")] = 1,
    save_every: Annotated[int, typer.Option(
        "--save-every", min=1, help="Write checkpoint-<epoch>.pth every N epochs (and at the end).")] = 1,
    save_every_steps: Annotated[int, typer.Option(
        "--save-every-steps", min=0, help="Also refresh last.pth every N steps inside an epoch (0: never).")] = 0,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Run folder (default: runs/<preset>-<method>-<date>/); must be empty unless --resume.")] = None,
    resume: Annotated[Optional[str], typer.Option(
        "--resume", help="auto (continue from --out's last.pth if there is one) or a checkpoint path.")] = None,
    init: Annotated[Optional[str], typer.Option(
        "--init", metavar="CKPT", help="Start from the weights of any checkpoint umae reads (official "
        "MAE, U-MAE, umae, timm, Hugging Face ViTMAE folder, ...): its encoder, and its decoder when it "
        "fits the preset; one line says which tensors came from the file and which are new.")] = None,
    trust_pickle: TrustPickleOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    compile: Annotated[bool, typer.Option(
        "--compile", help="torch.compile the model (slow start, faster steps).")] = False,
    deterministic: Annotated[bool, typer.Option(
        "--deterministic", help="Deterministic kernels (bit-reproducible on one CPU/GPU; slower).")] = False,
    precision: Annotated[str, typer.Option(
        "--precision", help="auto (bf16 autocast on CUDA, fp32 on CPU), bf16 or fp32.")] = "auto",
    stream: Annotated[bool, typer.Option(
        "--stream", help="Stream images through a DataLoader instead of keeping them on the device.")] = False,
    workers: Annotated[int, typer.Option("--workers", min=0, help="DataLoader workers with --stream and "
                                         "for lazy datasets (which decode and augment per item).")] = 4,
    data_mode: DataModeOpt = "auto",
    max_train_images: Annotated[Optional[int], typer.Option(
        "--max-train-images", min=1, help="Train on a fixed seeded subset of this many images.")] = None,
    eval_images: Annotated[int, typer.Option(
        "--eval-images", min=2, help="Held-out test images for the per-epoch figures.")] = 1000,
    knn_train_images: Annotated[int, typer.Option(
        "--knn-train-images", min=1, help="Train images the online linear probe, kNN and mean classifier fit.")] = 5000,
    set_fields: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="FIELD=VALUE", help="Override any preset field, repeatable, e.g. --set depth=4 "
        "--set embed_dim=96 --set norm_pix_loss=true --set mean=0.5,0.5,0.5 (wins over the flags above).")] = None,
    log: Annotated[Optional[str], typer.Option(
        "--log", metavar="KINDS", help="Logs beside metrics.jsonl, comma-separated: tensorboard (event files in "
        "<out>/tensorboard), csv (<out>/metrics.csv), wandb (an offline Weights & Biases run in <out>/wandb; "
        "`wandb sync` uploads it). Default: tensorboard when the package is installed.")] = None,
) -> None:
    """Pre-train MAE or U-MAE and write runs/<name>/: config.json, metrics.jsonl, checkpoints.

    Checkpoints: official MAE layout + a 'umae' metadata dict, torch.load(weights_only=True) safe.

    metrics.jsonl: per epoch loss terms, lr, img/s, effective_rank and rankme; every --eval-every epochs linear_accuracy, knn_accuracy and mean_classifier_accuracy.

    Examples:

      umae train --data demo --preset tiny-test --epochs 2 --max-train-images 512 --out runs/smoke

      umae train --data ./cifar-10-batches-py --preset cifar10-vit-tiny-p2 --lam 0.01 --out runs/umae-c10

      umae train ... --out runs/umae-c10 --resume auto   (continue after a stop, same options)

      umae train ... --log tensorboard,csv --out runs/umae-c10   then: tensorboard --logdir runs/

      umae train ... --log wandb --out runs/umae-c10   then: wandb sync runs/umae-c10/wandb/offline-run-*

      umae train --data /data/in100 --preset vit-base-p16 --lam 0.01 --init mae_visualize_vit_base.pth --out runs/in100-umae   (continue the official ViT-B MAE with U-MAE's term)

      umae train --data demo --preset tiny-test --init ./vit-mae-folder --out runs/from-hf   (a Hugging Face ViTMAE folder)

      umae train --data demo --preset cifar10-vit-tiny-p4 --img-size 16 --set embed_dim=96 --set depth=4 --out runs/small

    Several GPUs (DDP; --batch-size is the total over all processes; rank 0 writes the files):

      torchrun --nproc_per_node 8 -m umae_eval.cli train --data /data/in100 --preset vit-base-p16 --lam 0.01 --out runs/in100

    Several nodes: add --nnodes N --node_rank R --master_addr HOST --master_port 29500 to torchrun.
    """
    from trainer.logsinks import parse_log_kinds, run_logged
    from trainer.loop import TrainConfig, check_out_dir, resolve_preset, train_run

    log_kinds = parse_log_kinds(log)
    unif_form = _choice(unif_form, _UNIF_FORMS, "--unif-form")
    method = _choice(method, _METHODS, "--method")
    precision = _choice(precision, _PRECISIONS, "--precision")
    run_dir = _resolve_out(out, resume, preset, method, lam)
    config = TrainConfig(
        data=data, preset=preset, out=run_dir, method=method, lam=lam, unif_form=unif_form,
        epochs=epochs, warmup_epochs=warmup_epochs, batch_size=batch_size, micro_batch=micro_batch,
        blr=blr, mask_ratio=mask_ratio,
        overrides={**({"img_size": img_size} if img_size else {}), **parse_set_fields(preset, set_fields or [])},
        min_lr=min_lr, eval_every=eval_every, save_every=save_every, save_every_steps=save_every_steps,
        resume=resume, init=init, trust_pickle=trust_pickle, device=device, seed=seed, compile=compile, deterministic=deterministic,
        precision=precision,  # type: ignore[arg-type]
        stream=stream, workers=workers, data_mode=data_mode.strip().lower(), max_train_images=max_train_images,
        eval_images=eval_images,
        knn_train_images=knn_train_images, command_line=["umae", *sys.argv[1:]],
    )
    # Refuse a bad preset or a taken --out before the progress display opens, so the error is
    # the only thing printed.
    chosen = resolve_preset(config)
    from trainer.sizing import check_model_fits, free_memory

    check_model_fits(chosen, *free_memory(device))  # before torch is asked for the tensors
    check_out_dir(run_dir, resume)
    if init is not None and resume not in (None, "auto"):
        raise UmaeError("--init starts a new run and --resume continues one; pass only one of them")
    if init is not None and not (resume == "auto" and (run_dir / "last.pth").is_file()):
        from trainer.init_from import init_from_checkpoint
        from trainer.model import build_model

        # Read and check the file now, so a misfit is the only thing printed; the run repeats it.
        say(init_from_checkpoint(build_model(chosen), chosen, init, trust_pickle=trust_pickle).summary())
    main_rank = os.environ.get("RANK", "0") == "0"
    if not main_rank:
        train_run(config, progress=null_progress)
        return
    try:
        result = run_logged(run_dir, log_kinds, TrainDisplay(console), functools.partial(train_run, config))
    except BaseException:  # shown only if Ctrl-C or SIGTERM stopped it (the CLI prints the line);
        # BaseException: a signal landing inside C code may surface as another exception type
        set_interrupt_hint(_interrupted_hint(run_dir))
        raise
    _write_results(result)
    stdout.print(_final_table(result))
    stdout.print(str(result.run_dir), highlight=False, soft_wrap=True)


def _interrupted_hint(run_dir: Path) -> str:
    """What an interrupted run leaves: its last complete checkpoint, and how to continue from it."""
    if (run_dir / "last.pth").is_file():
        return (f"{run_dir} keeps its last complete checkpoint; continue with the same options and "
                f"`--out {run_dir} --resume auto`")
    return f"no checkpoint was written yet; {run_dir} can be removed, or resumed from the start with --resume auto"


def parse_set_fields(preset: str, items: list[str]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` items as preset overrides, each value parsed as its field's type.

    bool: true/false/1/0/yes/no; tuples: comma-separated numbers; an int field takes an integer.
    Unknown fields and unparsable values are refused with one line naming the valid choices.
    """
    import dataclasses

    from trainer.presets import get_preset

    current = dataclasses.asdict(get_preset(preset))
    out: dict[str, Any] = {}
    for item in items:
        field, sep, text = item.partition("=")
        field, text = field.strip(), text.strip()
        if not sep or not field:
            raise UmaeError(f"--set {item!r}: write FIELD=VALUE, e.g. --set depth=4")
        if field == "name" or field not in current:
            fields = ", ".join(k for k in current if k != "name")
            raise UmaeError(f"--set {field}: not a preset field; fields: {fields}")
        old = current[field]
        try:
            if isinstance(old, bool):
                low = text.lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                value: Any = low in ("true", "1", "yes")
            elif isinstance(old, int):
                value = int(text)
            elif isinstance(old, float):
                value = float(text)
            elif isinstance(old, tuple):
                value = tuple(float(v) for v in text.split(","))
            elif old is None:  # an optional int (micro_batch)
                value = None if text.lower() == "none" else int(text)
            else:
                value = text
        except ValueError:
            kind = "comma-separated numbers" if isinstance(old, tuple) else type(old).__name__
            raise UmaeError(f"--set {field}={text}: expected {kind} (the preset has {old!r})") from None
        out[field] = value
    return out


def _uniformity_record(config: dict[str, Any]) -> dict[str, Any]:
    """Which uniformity form ran, what it computes, and the lambda it really had."""
    from trainer.losses import UNIF_FORM_DESCRIPTIONS, effective_lambda

    form, lam, world = config["unif_form"], float(config["lam"]), int(config.get("world_size", 1))
    return {"form": form, "lam": lam, "world_size": world,
            "effective_lam": effective_lambda(lam, form, world),
            "description": UNIF_FORM_DESCRIPTIONS[form]}


def _write_results(result: TrainResult) -> None:
    """``results.json`` in the run folder, like every other command: settings, versions, figures, hashes."""
    from trainer.runlog import read_config
    from umae_eval.provenance import atomic_write_json, results_envelope, sha256_file

    results = {
        "epochs": result.epochs,
        "steps": result.steps,
        "final": result.final,
        "wall_s": result.wall_s,
        "flops_per_image": result.flops_per_image,
        "checkpoint": str(result.checkpoint),
        "checkpoint_sha256": sha256_file(result.checkpoint),
        "resumed_from": str(result.resumed_from) if result.resumed_from else None,
        "uniformity": _uniformity_record(read_config(result.run_dir)),
        "init": result.init,
    }
    atomic_write_json(result.run_dir / "results.json", results_envelope("train", read_config(result.run_dir), results))
