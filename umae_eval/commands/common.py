"""Options shared by every command, so each flag has one name, one default, one help text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        help="Dataset: 'demo', a cifar-10-batches-py / cifar-100-python folder, an ImageFolder "
        "folder or .tar/.tar.gz with train/ and test/ (or val/) (Tiny ImageNet and ImageNet's "
        "Kaggle layout are recognised), WebDataset shards (a folder of train-NNNNNN.tar + "
        "val-NNNNNN.tar, or 'train-{000000..000099}.tar'), or an .npz with x_train, y_train, "
        "x_test, y_test.",
    ),
]
DataModeOpt = Annotated[
    str,
    typer.Option(
        "--data-mode",
        help="auto (ImageFolders over UMAE_MEMORY_LIMIT_GB=2 decoded, and WebDataset shards, are "
        "read lazily: decoded per item in worker processes; smaller sets are decoded into memory "
        "once and cached), memory, or lazy.",
    ),
]
WorkersOpt = Annotated[
    Optional[int],
    typer.Option("--workers", min=0, help="DataLoader workers that decode a lazy dataset (default: one per "
                 "core, at most 8; 0 decodes in the main process)."),
]
SkipBadOpt = Annotated[
    bool,
    typer.Option("--skip-bad-images", help="Lazy datasets: leave undecodable images out (counted in "
                 "results.json) instead of stopping at the first one."),
]
MaxTrainPerClassOpt = Annotated[
    Optional[int],
    typer.Option("--max-train-per-class", min=1, help="Probe on at most N train images per class (seeded, "
                 "class-balanced): quick probes on big train splits."),
]
FeatureDtypeOpt = Annotated[
    str,
    typer.Option("--feature-dtype", help="Lazy datasets: float32 or float16 features in the on-disk store "
                 "(half the disk; probes read them as float32)."),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto (CUDA if available), cpu, or cuda[:N].")
]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed for every random choice.")]
OutOpt = Annotated[
    Optional[Path],
    typer.Option("--out", help="Output folder (default: reports/<command>-<date>/)."),
]
TrustPickleOpt = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Allow full unpickling of checkpoints that need it. Only for files you trust: "
        "unpickling can run arbitrary code.",
    ),
]
NumHeadsOpt = Annotated[
    Optional[int],
    typer.Option(
        "--num-heads",
        min=1,
        help="Attention heads of the checkpoint's ViT, for a width that is not a multiple of 64 "
        "(otherwise inferred: width/64, 16 for width 1280).",
    ),
]
NormOpt = Annotated[
    Optional[str],
    typer.Option(
        "--norm",
        help="Input normalisation: imagenet, cifar-recipe (mean = std = 0.5), or 'M,M,M/S,S,S'. "
        "Default: the checkpoint's own (umae checkpoints record it), else ImageNet's.",
    ),
]


def parse_norm(text: str | None) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``--norm`` as (mean, std): a name from ``NORMALISATIONS`` or 'M,M,M/S,S,S'; None keeps the default."""
    from umae_eval.errors import UmaeError
    from umae_eval.preprocess import NORMALISATIONS

    if text is None:
        return None
    name = text.strip().lower()
    if name in NORMALISATIONS:
        return NORMALISATIONS[name]
    try:
        mean_txt, std_txt = name.split("/")
        mean = tuple(float(v) for v in mean_txt.split(","))
        std = tuple(float(v) for v in std_txt.split(","))
    except ValueError:
        mean, std = (), ()
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise UmaeError(f"--norm {text!r}: give {', '.join(NORMALISATIONS)} or three means and three "
                        "positive stds as 'M,M,M/S,S,S', e.g. --norm 0.5,0.5,0.5/0.5,0.5,0.5")
    return mean, std


def loader_options(num_heads: int | None, norm: str | None) -> dict[str, Any]:
    """Keyword arguments for ``load_encoder`` from ``--num-heads`` and ``--norm``."""
    return {
        "arch_overrides": {"num_heads": num_heads} if num_heads else None,
        "norm": parse_norm(norm),
    }


def data_options(data_mode: str, workers: int | None, skip_bad_images: bool, max_train_per_class: int | None,
                 feature_dtype: str) -> dict[str, Any]:
    """Keyword arguments for ``analysis.load_data`` from the data options above."""
    return {"mode": data_mode.strip().lower(), "workers": workers, "skip_bad": skip_bad_images,
            "max_train_per_class": max_train_per_class, "feature_dtype": feature_dtype.strip().lower()}
