"""`umae demo`: the main job on the embedded CIFAR-10 sample, end to end on a CPU in minutes.

Trains a small MAE (lambda 0) and a small U-MAE (lambda 0.01, the released code's uniformity
form) on the 3,000 training images shipped inside the package, then compares them with an
untrained encoder of the same architecture (Fig. 1b's baseline): mean classifier, linear probe,
kNN, singular spectra, effective rank, RankMe, t-SNE, and, from the runs' metrics.jsonl, the
effective rank and online accuracy along training (Fig. 1c / 3b).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from umae_eval.commands.common import DeviceOpt, OutOpt, SeedOpt
from umae_eval.errors import UmaeError
from umae_eval.progress import console, say
from umae_eval.provenance import default_out_dir
from umae_eval.staging import check_writable

#: A ViT small enough to train on the demo in about a minute per model on 2 CPU cores:
#: the p4 recipe at 16 px (16 patches), width 96, depth 4.
DEMO_PRESET = "cifar10-vit-tiny-p4"
DEMO_OVERRIDES: dict[str, Any] = {
    "img_size": 16, "embed_dim": 96, "depth": 4, "num_heads": 3,
    "decoder_embed_dim": 96, "decoder_depth": 1, "decoder_num_heads": 3,
}
#: The two runs the demo trains: (display name, folder, lambda). 0.01 is the paper's U-MAE weight.
DEMO_RUNS = (("MAE", "mae", 0.0), ("U-MAE", "u-mae", 0.01))

EpochsOpt = Annotated[int, typer.Option("--epochs", min=1, help="Pre-training epochs per model.")]
EmbedOpt = Annotated[str, typer.Option("--embed", help="Feature maps: tsne, umap, tsne,umap or none.")]


def demo(
    epochs: EpochsOpt = 10,
    embed: EmbedOpt = "tsne",
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    out: OutOpt = None,
) -> None:
    """Train a small MAE and U-MAE on the embedded CIFAR-10 sample, then compare them.

    Everything lands in one folder: runs/mae and runs/u-mae (checkpoints, config.json,
    metrics.jsonl) and the comparison (report.html, results.json, CSVs). Rerunning with the
    same --out continues unfinished runs instead of starting over.

    Example:  umae demo                      (1-3 minutes on 2 CPU cores)

    Example:  umae demo --epochs 30 --embed tsne,umap --out reports/demo-long
    """
    from trainer.loop import TrainConfig, train_run
    from umae_eval.commands.compare import compare
    from umae_eval.commands.train import TrainDisplay

    out_dir = Path(out) if out is not None else default_out_dir("demo")
    if out_dir.exists() and not out_dir.is_dir():
        raise UmaeError(f"--out {out_dir} is a file; give a folder")
    check_writable(out_dir)  # a read-only or full disk is refused before two training runs
    say(f"umae demo: MAE and U-MAE on the embedded CIFAR-10 sample (3,000 train / 1,000 test), "
        f"{epochs} epochs each, into {out_dir}")
    checkpoints: list[Path] = []
    for label, folder, lam in DEMO_RUNS:
        say(f"[bold]training {label}[/] (lambda {lam:g}, uniformity form 'code')")
        config = TrainConfig(
            data="demo", preset=DEMO_PRESET, out=out_dir / "runs" / folder, lam=lam, unif_form="code",
            epochs=epochs, warmup_epochs=max(1, epochs // 10), batch_size=256, micro_batch=256, blr=1e-3,
            overrides=dict(DEMO_OVERRIDES), eval_every=max(1, epochs // 5), save_every=epochs,
            resume="auto", device=device, seed=seed, eval_images=500, knn_train_images=2000,
            command_line=["umae", "demo"],
        )
        with TrainDisplay(console) as display:
            result = train_run(config, progress=display, on_step=display.on_step, on_epoch=display.on_epoch)
        checkpoints.append(result.checkpoint)

    say("[bold]comparing[/] MAE, U-MAE and an untrained encoder of the same architecture")
    compare(
        checkpoints, data="demo", label=[label for label, _, _ in DEMO_RUNS], random_init=True,
        embed=embed, per_class=100, device=device, seed=seed, out=out_dir,
    )
