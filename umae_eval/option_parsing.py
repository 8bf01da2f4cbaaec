"""Option text into values: comma lists, choices, ``--norm``, ``--label``, ``--out`` and the
analysis options as one :class:`umae_eval.pipeline.AnalysisConfig` (:func:`analysis_config`).

Apart from :mod:`umae_eval.options` (the typer declarations: one name, default and help per
flag) because these are plain functions that raise :class:`UmaeError` with the option's name
and are tested without typer; :mod:`umae_eval.options` re-exports every name here, and commands
keep importing them from there (a command imports only ``umae_eval.options``).

Example
-------
>>> parse_choices("knn,mean,knn", PROBE_METHODS, "--methods")
('knn', 'mean')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from umae_eval.errors import UmaeError

if TYPE_CHECKING:
    from umae_eval.pipeline import AnalysisConfig

__all__ = [
    "MAP_METHODS",
    "PROBE_METHODS",
    "analysis_config",
    "check_choice",
    "check_encoder",
    "check_labels",
    "check_visible_patches",
    "data_options",
    "loader_options",
    "out_dir_for",
    "parse_choices",
    "parse_embed",
    "parse_final_norm",
    "parse_fractions",
    "parse_ints",
    "parse_norm",
]

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
    return _comma_numbers(
        text, int, lambda t: f"{option}: {t!r} is not an integer (e.g. {option} 10,20,200)",
        lambda v, t: f"{option}: {v} is below the minimum {minimum}" if v < minimum else None,
        f"{option} is empty; give a comma list of integers, e.g. 10,20,200")


def _comma_numbers(text: str, convert: Callable[[str], Any], not_a_number: Callable[[str], str],
                   problem: Callable[[Any, str], str | None], empty: str) -> tuple[Any, ...]:
    """The comma-list loop --k, --shots, --index and --label-fraction share: blanks skipped,
    each item converted and checked (the messages are the option's own), repeats dropped in order."""
    out = []
    for t in str(text).split(","):
        t = t.strip()
        if not t:
            continue
        try:
            v = convert(t)
        except ValueError:
            raise UmaeError(not_a_number(t)) from None
        message = problem(v, t)
        if message is not None:
            raise UmaeError(message)
        out.append(v)
    if not out:
        raise UmaeError(empty)
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
    return _comma_numbers(
        text, float, lambda t: f"--label-fraction: {t!r} is not a number (e.g. --label-fraction 0.01,0.1)",
        lambda v, t: None if 0.0 < v <= 1.0
        else f"--label-fraction {t}: a fraction of the train labels lies in (0, 1], e.g. 0.01 for 1%",
        "--label-fraction is empty; give fractions such as 0.01,0.1")


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
