"""Options shared by the commands, so each flag has one name, one default, one help text,
and the parsing of option text (comma lists, choices) that the commands share.

Commands import their options from here (never from another command); what the options
become (an :class:`umae_eval.pipeline.AnalysisConfig`) is built by :func:`analysis_config`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from umae_eval.errors import UmaeError

if TYPE_CHECKING:
    from umae_eval.pipeline import AnalysisConfig

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


def parse_norm(text: str | None) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``--norm`` as (mean, std): a name from ``NORMALISATIONS`` or 'M,M,M/S,S,S'; None keeps the default."""
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

PROBE_METHODS: tuple[str, ...] = ("mean", "linear", "knn", "attentive")
MAP_METHODS: tuple[str, ...] = ("tsne", "umap")


def check_choice(value: str, allowed: Sequence[str], option: str) -> str:
    """Return ``value`` lower-cased if allowed, else raise a one-line :class:`UmaeError`."""
    v = str(value).strip().lower()
    if v not in allowed:
        raise UmaeError(f"{option} {value!r}: choose one of {', '.join(allowed)}")
    return v


def parse_choices(text: str, allowed: Sequence[str], option: str) -> tuple[str, ...]:
    """Split a comma list (``'mean,knn'``) and check every item is allowed; keep order, no repeats.

    Raises :class:`UmaeError` naming ``option`` and the allowed values on a bad item.
    """
    items = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if not items:
        raise UmaeError(f"{option} is empty; give a comma list of {', '.join(allowed)}")
    bad = [t for t in items if t not in allowed]
    if bad:
        raise UmaeError(f"{option}: unknown value {bad[0]!r}; choose from {', '.join(allowed)} "
                        f"(comma-separated, e.g. {option} {','.join(allowed)})")
    return tuple(dict.fromkeys(items))


def parse_ints(text: str, option: str, minimum: int = 1) -> tuple[int, ...]:
    """Parse a comma list of integers (``'10,20,200'``), each at least ``minimum``."""
    out = []
    for t in str(text).split(","):
        t = t.strip()
        if not t:
            continue
        try:
            v = int(t)
        except ValueError:
            raise UmaeError(f"{option}: {t!r} is not an integer (e.g. {option} 10,20,200)") from None
        if v < minimum:
            raise UmaeError(f"{option}: {v} is below the minimum {minimum}")
        out.append(v)
    if not out:
        raise UmaeError(f"{option} is empty; give a comma list of integers, e.g. 10,20,200")
    return tuple(dict.fromkeys(out))


def parse_embed(embed: str) -> tuple[str, ...]:
    """``'none'`` -> (), else the validated comma list of map methods."""
    if str(embed).strip().lower() in ("none", "no", "off", ""):
        return ()
    return parse_choices(embed, MAP_METHODS, "--embed")


def check_labels(label: Sequence[str] | None) -> None:
    """Refuse an empty ``--label`` or one with control characters (it names rows, files and figures)."""
    for text in label or ():
        if not str(text).strip():
            raise UmaeError(f"--label {text!r}: a display name cannot be empty; give one non-empty "
                            "--label per checkpoint, in order (or none: file stems are used)")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in str(text)):
            raise UmaeError(f"--label {text!r}: control characters (newlines, tabs) are not allowed in a name")


def check_visible_patches(subjects: Sequence[Any], mask_ratio: float) -> None:
    """Refuse a --mask-ratio that leaves a checkpoint's encoder no visible patch (MAE's len_keep rule).

    With none, both masked views are the [CLS] token alone: alignment and uniformity come out 0.0.
    """
    import math

    for s in subjects:
        n = s.info.arch.num_patches
        if int(n * (1 - mask_ratio)) < 1:
            raise UmaeError(f"--mask-ratio {mask_ratio:g} leaves no visible patch of the {n} of {s.name} "
                            f"(int({n} x (1 - {mask_ratio:g})) = 0); use --mask-ratio "
                            f"{math.floor((n - 1) / n * 1e4) / 1e4:g} or lower")


def check_encoder(loaded: Any) -> None:
    """Refuse a loaded encoder whose weights hold NaN or inf, naming the file and the tensors."""
    from umae_eval.checkpoint_checks import nonfinite_tensors

    bad = nonfinite_tensors(loaded.model)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise UmaeError(f"{loaded.info.path}: weights hold NaN or inf values ({shown}); the run diverged "
                        "or the file is corrupted: use an earlier checkpoint of that run")


def out_dir_for(out: Optional[Path], command: str) -> Path:
    """``--out`` or ``reports/<command>-<date>/``; refuses a path that is an existing file."""
    from umae_eval.provenance import default_out_dir

    path = Path(out) if out is not None else default_out_dir(command)
    if path.exists() and not path.is_dir():
        raise UmaeError(f"--out {path} is an existing file; give a folder")
    return path


def parse_final_norm(text: str) -> bool:
    """``--final-norm on|off`` as a bool."""
    return check_choice(text, ("on", "off"), "--final-norm") == "on"


def analysis_config(
    *,
    pool: str,
    layers: str = "last",
    final_norm: str = "on",
    methods: str | None = None,
    k: str = "10,20,200",
    temperature: float = 0.07,
    protocol: str = "fast",
    backend: str = "torch",
    probe_path: str = "auto",
    embed: str | None = None,
    per_class: int = 500,
    map_classes: int | None = None,
    mask_ratio: float = 0.75,
    max_views: int = 2000,
    device: str = "auto",
    batch_size: int = 256,
    seed: int = 0,
    bootstrap: int = 2000,
    label_fraction: str | None = None,
    shots: str | None = None,
    draws: int = 5,
) -> AnalysisConfig:
    """Validate the analysis options into an :class:`~umae_eval.pipeline.AnalysisConfig`.

    ``methods`` None = no probes (collapse-report); ``embed`` None = no collapse stage (probe).
    """
    from umae_eval.pipeline import AnalysisConfig

    probing = methods is not None
    collapse = embed is not None
    if collapse and map_classes is not None and map_classes < 2:
        raise UmaeError(f"--map-classes {map_classes}: a map needs at least 2 classes, e.g. --map-classes 10")
    if collapse and not 0.0 <= mask_ratio < 1.0:
        raise UmaeError(f"--mask-ratio {mask_ratio}: must be in [0, 1), e.g. --mask-ratio 0.75")
    return AnalysisConfig(
        methods=parse_choices(methods, PROBE_METHODS, "--methods") if probing else (),
        ks=parse_ints(k, "--k") if probing else (10, 20, 200),
        temperature=temperature,
        protocol=check_choice(protocol, ("fast", "mae"), "--protocol"),
        backend=check_choice(backend, ("torch", "sklearn"), "--backend"),
        probe_path=check_choice(probe_path, ("auto", "memory", "blocked"), "--probe-path"),
        pool=check_choice(pool, ("cls", "avg", "cls+avg"), "--pool"),
        layers=_check_layers(layers), final_norm=parse_final_norm(final_norm),
        collapse=collapse,
        embed=parse_embed(embed) if collapse else (),
        per_class=per_class, map_classes=map_classes, mask_ratio=mask_ratio, max_views=max_views,
        device=device, batch_size=batch_size, seed=seed, n_boot=bootstrap,
        label_fractions=parse_fractions(label_fraction) if label_fraction else (),
        shots=parse_ints(shots, "--shots") if shots else (), draws=draws,
    )


def _check_layers(text: str) -> str:
    """``--layers`` checked for form here (the blocks are checked against each encoder's depth later)."""
    from umae_eval.readout import parse_layers

    spec = parse_layers(text)
    return spec if isinstance(spec, str) else ",".join(map(str, spec))


def parse_fractions(text: str) -> tuple[float, ...]:
    """``--label-fraction 0.01,0.1``: each a fraction of the train labels in (0, 1]."""
    out = []
    for t in str(text).split(","):
        t = t.strip()
        if not t:
            continue
        try:
            v = float(t)
        except ValueError:
            raise UmaeError(f"--label-fraction: {t!r} is not a number (e.g. --label-fraction 0.01,0.1)") from None
        if not 0.0 < v <= 1.0:
            raise UmaeError(f"--label-fraction {t}: a fraction of the train labels lies in (0, 1], e.g. 0.01 for 1%")
        out.append(v)
    if not out:
        raise UmaeError("--label-fraction is empty; give fractions such as 0.01,0.1")
    return tuple(dict.fromkeys(out))
