"""`umae finetune`: fine-tune any encoder umae loads end to end with MAE's recipe.

Parses the options, checks the preset, ``--out`` and the checkpoint before anything is written,
calls :func:`trainer.finetune.finetune_run` with a live display and writes ``results.json``.
"""

from __future__ import annotations

import functools
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from umae_eval.errors import UmaeError
from umae_eval.options import DataModeOpt, DataOpt, DeviceOpt, SeedOpt, TrustPickleOpt
from umae_eval.progress import FinetuneDisplay, console, null_progress, say, stdout


def finetune(
    checkpoint: Annotated[str, typer.Argument(
        metavar="CKPT", help="Encoder to fine-tune: any file or folder umae loads (official MAE, "
        "U-MAE, umae, timm, Hugging Face ViTMAE, ...).")],
    data: DataOpt,
    preset: Annotated[str, typer.Option(
        "--preset", help="Recipe: vit-base-in1k, vit-large-in1k (MAE FINETUNE.md), cifar10-vit-tiny "
        "(IcarusWizard/MAE's classifier, Table 1), cpu-demo (the 96x6 demo encoders on a CPU).")],
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Epochs (default: the preset's).")] = None,
    warmup_epochs: Annotated[Optional[int], typer.Option("--warmup-epochs", min=0)] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", min=1, help="Effective batch per optimiser step, all processes together; "
        "lr = blr x batch / 256.")] = None,
    accum_iter: Annotated[Optional[int], typer.Option(
        "--accum-iter", min=1, help="Micro-steps accumulated into one optimiser step.")] = None,
    blr: Annotated[Optional[float], typer.Option("--blr", min=0.0, help="Base lr per 256 images.")] = None,
    pool: Annotated[Optional[str], typer.Option(
        "--pool", help="avg (mean of patch tokens -> fc_norm -> head, MAE's default) or cls.")] = None,
    clip_grad: Annotated[Optional[float], typer.Option(
        "--clip-grad", min=0.0, help="Clip the gradient norm (0: off, MAE's default).")] = None,
    freeze_blocks: Annotated[int, typer.Option(
        "--freeze-blocks", min=0, help="Partial fine-tuning (MAE Sec. 4.3): freeze the patch embedding, "
        "[CLS], positions and the first K blocks; the last depth-K blocks, the norm and the head train.")] = 0,
    random_init: Annotated[bool, typer.Option(
        "--random-init", help="Use CKPT's architecture and normalisation only; weights from timm's "
        "init (the from-scratch baseline).")] = False,
    eval_every: Annotated[int, typer.Option(
        "--eval-every", min=0, help="Test top-1/top-5 every N epochs and at the end (0: never).")] = 1,
    save_every: Annotated[int, typer.Option("--save-every", min=1, help="Checkpoint every N epochs.")] = 1,
    eval_images: Annotated[Optional[int], typer.Option(
        "--eval-images", min=1, help="Evaluate on a fixed seeded subset of the test split (default: all).")] = None,
    max_train_images: Annotated[Optional[int], typer.Option(
        "--max-train-images", min=1, help="Train on a fixed seeded subset of this many images.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Run folder (default: runs/finetune-<preset>-<date>/); must be empty unless --resume.")] = None,
    resume: Annotated[Optional[str], typer.Option(
        "--resume", help="auto (continue from --out's last.pth if there is one) or a checkpoint path.")] = None,
    aug_path: Annotated[str, typer.Option(
        "--aug-path", help="auto, host (timm transforms per image in workers: RandAugment possible) or "
        "device (batched crop/flip/erasing on the device; no RandAugment).")] = "auto",
    workers: Annotated[int, typer.Option("--workers", min=0, help="DataLoader workers of the host path.")] = 2,
    precision: Annotated[str, typer.Option("--precision", help="auto (bf16 on CUDA), bf16 or fp32.")] = "auto",
    trust_pickle: TrustPickleOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    data_mode: DataModeOpt = "auto",
    set_fields: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="FIELD=VALUE", help="Override any fine-tuning preset field, repeatable, e.g. "
        "--set drop_path=0.2 --set rand_augment=none --set mixup=0 --set crop_scale=0.35,1.")] = None,
    log: Annotated[Optional[str], typer.Option(
        "--log", metavar="KINDS", help="Logs beside metrics.jsonl, comma-separated: tensorboard (event files in "
        "<out>/tensorboard), csv (<out>/metrics.csv), wandb (an offline Weights & Biases run in <out>/wandb; "
        "`wandb sync` uploads it). Default: tensorboard when the package is installed.")] = None,
) -> None:
    """Fine-tune an encoder with a new head (MAE's recipe) and write runs/<name>/.

    metrics.jsonl: per epoch train loss, lr, img/s; test_top1 / test_top5 every --eval-every epochs.
    Checkpoints hold the tuned ViT (timm names, head included): `umae probe` / `compare` load them.

    Examples:

      umae finetune umae_eval/demo/encoders/mae-cifar10-vit96x6-p4-e20.pth --data demo --preset cpu-demo --epochs 1 --out runs/ft-demo

      umae finetune runs/c10-mae/last.pth --data ../data/cifar10-jpeg.tar.gz --preset cpu-demo --out runs/ft-mae

      umae finetune runs/c10-mae/last.pth --data ../data/cifar10-jpeg.tar.gz --preset cpu-demo --random-init --out runs/ft-scratch

      umae finetune mae_pretrain_vit_base.pth --data /data/imagenet --preset vit-base-in1k --out runs/ft-b

      umae finetune CKPT --data demo --preset cpu-demo --freeze-blocks 4 --out runs/partial   (last 2 of 6 blocks train)

      umae finetune ... --out runs/ft-mae --resume auto   (continue after a stop, same options)

      umae finetune ... --log tensorboard,csv --out runs/ft-mae   then: tensorboard --logdir runs/

      umae finetune ... --log wandb --out runs/ft-mae   then: wandb sync runs/ft-mae/wandb/offline-run-*

    Several GPUs: torchrun --nproc_per_node 8 -m umae_eval.cli finetune CKPT --data ... --preset vit-base-in1k
    """
    from trainer.finetune import FinetuneConfig, finetune_run, resolve_finetune_preset
    from trainer.finetune_model import load_source_encoder
    from trainer.finetune_presets import parse_finetune_set
    from trainer.logsinks import parse_log_kinds, run_logged
    from trainer.loop import check_out_dir

    log_kinds = parse_log_kinds(log)

    precision = precision.strip().lower()
    if precision not in ("auto", "bf16", "fp32"):
        raise UmaeError(f"--precision {precision!r}: choose one of auto, bf16, fp32")
    aug_path = aug_path.strip().lower()
    if aug_path not in ("auto", "host", "device"):
        raise UmaeError(f"--aug-path {aug_path!r}: choose one of auto, host, device")
    if out is None:
        if resume == "auto":
            raise UmaeError("--resume auto needs --out RUN_FOLDER (the folder holding last.pth)")
        out = Path("runs") / f"finetune-{preset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    config = FinetuneConfig(
        checkpoint=checkpoint, data=data, preset=preset, out=out, epochs=epochs, warmup_epochs=warmup_epochs,
        batch_size=batch_size, accum_iter=accum_iter, blr=blr,
        pool=pool.strip().lower() if pool else None, clip_grad=clip_grad,
        overrides=parse_finetune_set(preset, set_fields or []), freeze_blocks=freeze_blocks,
        random_init=random_init, eval_every=eval_every, save_every=save_every, resume=resume,
        trust_pickle=trust_pickle, device=device, seed=seed, precision=precision, aug_path=aug_path,
        workers=workers, data_mode=data_mode.strip().lower(), max_train_images=max_train_images,
        eval_images=eval_images, command_line=["umae", *sys.argv[1:]],
    )
    # Bad input is refused before the display opens and before anything is written.
    resolve_finetune_preset(config)
    check_out_dir(out, resume)
    loaded = load_source_encoder(checkpoint, freeze_blocks, trust_pickle)
    say(f"{'architecture of ' if random_init else ''}{checkpoint}: {loaded.info.layout}, "
        f"{loaded.info.arch.describe()}" + (", random init" if random_init else ""))
    if os.environ.get("RANK", "0") != "0":
        finetune_run(config, progress=null_progress)
        return
    result = run_logged(out, log_kinds, FinetuneDisplay(console), functools.partial(finetune_run, config))
    _write_results(result)
    stdout.print(_final_table(result))
    stdout.print(str(result.run_dir), highlight=False, soft_wrap=True)


def _final_table(result: Any) -> Table:
    table = Table(title=f"fine-tune {result.run_dir}", show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("encoder", f"{result.encoder['path']} ({result.encoder['layout']})")
    table.add_row("epochs / steps", f"{result.epochs} / {result.steps}")
    for key in ("loss", "test_top1", "test_top5", "img_per_s"):
        if result.final.get(key) is not None:
            table.add_row(key, f"{result.final[key]:,.4f}" if key == "loss" else f"{result.final[key]:,.2f}")
    table.add_row("checkpoint", str(result.checkpoint))
    return table


def _write_results(result: Any) -> None:
    """``results.json`` in the run folder: settings, versions, final figures, checkpoint hash."""
    from trainer.runlog import read_config
    from umae_eval.provenance import atomic_write_json, results_envelope, sha256_file

    results = {"epochs": result.epochs, "steps": result.steps, "final": result.final, "wall_s": result.wall_s,
               "checkpoint": str(result.checkpoint), "checkpoint_sha256": sha256_file(result.checkpoint),
               "resumed_from": str(result.resumed_from) if result.resumed_from else None,
               "encoder": result.encoder, "preset": result.preset}
    atomic_write_json(result.run_dir / "results.json",
                      results_envelope("finetune", read_config(result.run_dir), results))
