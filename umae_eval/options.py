"""Options shared by the commands, so each flag has one name, one default, one help text,
and the parsing of option text (comma lists, choices) that the commands share.

Commands import their options from here (never from another command); what the options
become (an :class:`umae_eval.pipeline.AnalysisConfig`) is built by :func:`analysis_config`.
The parsing lives in :mod:`umae_eval.option_parsing`, re-exported here so that a command
still imports from this one module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from umae_eval.option_parsing import (
    MAP_METHODS,
    PROBE_METHODS,
    analysis_config,
    check_choice,
    check_encoder,
    check_labels,
    check_visible_patches,
    data_options,
    loader_options,
    out_dir_for,
    parse_choices,
    parse_embed,
    parse_final_norm,
    parse_fractions,
    parse_ints,
    parse_norm,
)

# every option declaration below, and the parsing names re-exported from option_parsing (a command
# imports only this module)
__all__ = [
    "MAP_METHODS", "PROBE_METHODS", "SEED_MAX", "AnalysisCkptsArg", "AnalysisDataOpt", "AttentionImagesOpt",
    "BackendOpt", "BatchSizeOpt", "BootstrapOpt", "CkptsArg", "DataModeOpt", "DataOpt", "DeviceOpt",
    "DrawsOpt", "EmbedOpt", "FeatureDtypeOpt", "FeaturesOpt", "FinalNormOpt", "KOpt", "LabelFractionOpt",
    "LabelOpt", "LayersOpt", "MapClassesOpt", "MaskRatioOpt", "MaxTestOpt", "MaxTrainOpt",
    "MaxTrainPerClassOpt", "MaxViewsOpt", "MethodsOpt", "NormOpt", "NumHeadsOpt", "OutOpt", "PerClassOpt",
    "PoolOpt", "ProbePathOpt", "ProtocolOpt", "RandomInitOpt", "SeedOpt", "ShotsOpt", "SkipBadOpt",
    "TemperatureOpt", "TrustPickleOpt", "WorkersOpt", "analysis_config", "check_choice", "check_encoder",
    "check_labels", "check_visible_patches", "data_options", "loader_options", "out_dir_for",
    "parse_choices", "parse_embed", "parse_final_norm", "parse_fractions", "parse_ints", "parse_norm",
]

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
#: Seeds are offset (by rank, step, split) and handed to torch, numpy and random: 0 .. 2^32 - 1
#: keeps every derived seed inside what each of them accepts.
SEED_MAX = 2**32 - 1
SeedOpt = Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX,
                                      help="Random seed for every random choice (0 to 2^32 - 1).")]
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


# --------------------------------------------------------------------------- checkpoint analysis

CkptsArg = Annotated[list[Path], typer.Argument(
    metavar="CKPT", show_default=False,
    help="Checkpoint file(s) or folder(s): official MAE (encoder or full), U-MAE, umae, timm "
    "(.pth/.bin/.safetensors), a Hugging Face ViTMAE folder or file (README: Checkpoints).")]
#: ``probe`` / ``collapse-report`` / ``compare``: checkpoints and --data, or --features instead.
AnalysisCkptsArg = Annotated[Optional[list[Path]], typer.Argument(
    metavar="CKPT", show_default=False,
    help="Checkpoint file(s) or folder(s): official MAE (encoder or full), U-MAE, umae, timm "
    "(.pth/.bin/.safetensors), a Hugging Face ViTMAE folder or file (README: Checkpoints). "
    "Not with --features.")]
AnalysisDataOpt = Annotated[Optional[str], typer.Option(
    "--data", show_default=False,
    help="Dataset (required with checkpoints): 'demo', a cifar-10-batches-py / cifar-100-python folder, an "
    "ImageFolder folder or .tar/.tar.gz with train/ and test/ (or val/), WebDataset shards, or an .npz with "
    "x_train, y_train, x_test, y_test.")]
FeaturesOpt = Annotated[Optional[list[Path]], typer.Option(
    "--features", show_default=False,
    help="Analyse features from your own pipeline instead of checkpoints (repeat for several, one per "
    "compared encoder, same images): an .npz or .safetensors with train_features, train_labels, "
    "test_features, test_labels (optional class_names), a folder of train_features.npy, test_features.npy "
    "+ train_labels / test_labels (.npy or .txt), or a folder with train/ and test/ umae feature stores "
    "(README: --features).")]
PoolOpt = Annotated[str, typer.Option("--pool", help="Feature: cls ([CLS] after the final norm, MAE's "
                                                     "linear-probe feature), avg (mean of patch tokens, then "
                                                     "the checkpoint's fc_norm if any) or cls+avg (both "
                                                     "concatenated, DINO's linear eval).")]
LayersOpt = Annotated[str, typer.Option("--layers", help="Blocks whose output is read: last, all, or "
                                                         "0-based indices (negative from the end), e.g. "
                                                         "3,6,-1. Several blocks add the layer-wise analysis; "
                                                         "the deepest one is the main feature. One forward pass "
                                                         "reads them all.")]
FinalNormOpt = Annotated[str, typer.Option("--final-norm", help="on: apply the encoder's final LayerNorm to "
                                                                "every block read (MAE's linear-probe feature); "
                                                                "off: the raw block output (efficient-probing's "
                                                                "kNN protocol).")]
AttentionImagesOpt = Annotated[int, typer.Option(
    "--attention-images", min=0, help="Attention statistics (mean attention distance per head and block, "
    "entropy, NMI; Park et al. 2023) on this many seeded test images; 0 turns them off.")]
LabelOpt = Annotated[Optional[list[str]], typer.Option(
    "--label", help="Display name of a checkpoint; repeat once per checkpoint, in order (default: from "
    "its metadata, e.g. 'U-MAE λ=0.01 e200' for umae and U-MAE files, else the file name).")]
MaxTrainOpt = Annotated[Optional[int], typer.Option(
    "--max-train", min=1, help="Use a seeded random subset of this many training images (default: all).")]
MaxTestOpt = Annotated[Optional[int], typer.Option(
    "--max-test", min=1, help="Use a seeded random subset of this many test images (default: all).")]
MethodsOpt = Annotated[str, typer.Option("--methods", help="Probes to run, comma-separated: mean, linear, knn, "
                                                           "attentive (an EP cross-attention head on the main "
                                                           "block's patch tokens; slower).")]
LabelFractionOpt = Annotated[Optional[str], typer.Option(
    "--label-fraction", help="Low-shot probes on these fractions of the train labels, comma-separated "
    "(e.g. 0.01,0.1): seeded class-balanced nested subsets, linear and kNN, --draws draws each.")]
ShotsOpt = Annotated[Optional[str], typer.Option(
    "--shots", help="Low-shot probes with this many train images per class, comma-separated (e.g. 1,5,10).")]
DrawsOpt = Annotated[int, typer.Option("--draws", min=1, help="Seeded draws of each low-shot subset (mean and "
                                                              "spread over draws are reported).")]
KOpt = Annotated[str, typer.Option("--k", help="Neighbour counts of the kNN probe, comma-separated.")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", min=1e-6,
                                               help="Temperature of the weighted kNN vote (InstDisc/DINO).")]
ProtocolOpt = Annotated[str, typer.Option("--protocol", help="Linear probe recipe: fast (quick, default) or "
                                                             "mae (the MAE paper's BatchNorm + LARS recipe).")]
BackendOpt = Annotated[str, typer.Option("--backend", help="Linear probe backend: torch or sklearn.")]
ProbePathOpt = Annotated[str, typer.Option(
    "--probe-path", help="How the linear probe and kNN hold the train features: auto (blocked when the "
                         "in-memory probe would need over 4 GiB), memory, or blocked (row blocks of a "
                         "memory-mapped store, for ImageNet-sized features).")]
EmbedOpt = Annotated[str, typer.Option("--embed", help="Feature maps to draw: tsne, umap, tsne,umap or none.")]
PerClassOpt = Annotated[int, typer.Option("--per-class", min=1, help="Test images per class in each map.")]
MapClassesOpt = Annotated[Optional[int], typer.Option(  # noqa: UP007 (typer reads Optional)
    "--map-classes", metavar="N", show_default=False,
    help="Classes each map shows, drawn from --seed, the same for every checkpoint (the paper's Fig. 3a "
    "shows 10) [default: all up to 10 classes, else 10].")]
RandomInitOpt = Annotated[bool, typer.Option(
    "--random-init", help="Add the first checkpoint's architecture, untrained, as a baseline (Fig. 1b).")]
MaskRatioOpt = Annotated[float, typer.Option(
    "--mask-ratio", help="Mask ratio of the two masked views used for alignment/uniformity.")]
MaxViewsOpt = Annotated[int, typer.Option(
    "--max-views", min=2, help="Test images (seeded subset) encoded as two masked views each.")]
BootstrapOpt = Annotated[int, typer.Option(
    "--bootstrap", min=100, help="Bootstrap resamples of the test images behind each 95% interval "
    "(effective rank and RankMe: at most 200, down to 50 for wide features on many images).")]
