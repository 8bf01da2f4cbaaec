"""Pieces shared by the checkpoint-analysis commands (probe, collapse-report, compare).

Their common options (checkpoints, pooling, labels, subsets), loading and announcing the
checkpoints, the settings recorded in results.json and the report, and the console output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from umae_eval import analysis as A
from umae_eval.commands.common import loader_options
from umae_eval.errors import UmaeError
from umae_eval.progress import console, say, stdout

CkptsArg = Annotated[list[Path], typer.Argument(
    metavar="CKPT", show_default=False,
    help="Checkpoint file(s) or folder(s): official MAE (encoder or full), U-MAE, umae, timm "
    "(.pth/.bin/.safetensors), a Hugging Face ViTMAE folder or file (README: Checkpoints).")]
PoolOpt = Annotated[str, typer.Option("--pool", help="Feature: cls ([CLS] after the final norm, MAE's "
                                                     "linear-probe feature) or avg (mean of patch tokens).")]
LabelOpt = Annotated[Optional[list[str]], typer.Option(
    "--label", help="Display name of a checkpoint; repeat once per checkpoint, in order (default: from "
    "its metadata, e.g. 'U-MAE λ=0.01 e200' for umae and U-MAE files, else the file name).")]
MaxTrainOpt = Annotated[Optional[int], typer.Option(
    "--max-train", min=1, help="Use a seeded random subset of this many training images (default: all).")]
MaxTestOpt = Annotated[Optional[int], typer.Option(
    "--max-test", min=1, help="Use a seeded random subset of this many test images (default: all).")]


def check_choice(value: str, allowed: Sequence[str], option: str) -> str:
    """Return ``value`` lower-cased if allowed, else raise a one-line :class:`UmaeError`."""
    v = str(value).strip().lower()
    if v not in allowed:
        raise UmaeError(f"{option} {value!r}: choose one of {', '.join(allowed)}")
    return v


def resolve_device_name(device: str) -> str:
    """The device actually used, as a string (``'auto'`` resolved)."""
    from umae_eval.features import resolve_device

    return str(resolve_device(device))


def base_settings(subjects: Sequence[A.Subject], data: A.DataSubset, spec: str, **extra: Any) -> dict[str, Any]:
    """Settings shared by every analysis command: checkpoints (sha256, layout, arch), data, extras."""
    return {
        "checkpoints": [s.settings() for s in subjects],
        "data": data.settings(spec),
        **extra,
    }


def report_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A flat view of ``settings`` for the report's settings table (checkpoints get their own table)."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if key == "checkpoints":
            continue
        if key == "data" and isinstance(value, Mapping):
            for k, v in value.items():
                if k in ("class_names", "class_ids") and isinstance(v, list) and len(v) > 20:
                    v = v[:20] + [f"... ({len(v)} classes)"]
                flat[f"data.{k}"] = v
        else:
            flat[key] = value
    return flat


def checkpoints_table(subjects: Sequence[A.Subject]) -> pd.DataFrame:
    """One row per checkpoint: name, layout, architecture, parameters, sha256, path, run dir."""
    rows = []
    for s in subjects:
        info = s.info
        rows.append({
            "checkpoint": s.name,
            "layout": info.layout,
            "architecture": info.arch.describe(),
            "params (M)": round(info.n_params / 1e6, 3),
            "sha256": info.sha256,
            "mean/std": f"{tuple(round(v, 4) for v in info.mean)} / {tuple(round(v, 4) for v in info.std)}",
            "path": info.path,
            "run dir": info.run_dir or "",
        })
    return pd.DataFrame(rows)


def add_common_sections(report: Any, settings: Mapping[str, Any], subjects: Sequence[A.Subject]) -> None:
    """Settings table, checkpoints table and versions table at the top of a report."""
    from umae_eval.provenance import versions

    report.add_settings(report_settings(settings))
    report.add_table("Checkpoints", checkpoints_table(subjects), float_format="{:.3f}",
                     caption="sha256 of each file's bytes and the layout detected when loading it.")
    report.add_settings(versions(), title="Versions")


def provenance(settings: Mapping[str, Any]) -> dict[str, str]:
    """Which checkpoints (layout + sha256 prefix) and library versions produced a figure/table."""
    from umae_eval.provenance import versions

    v = versions()
    ckpts = "; ".join(f"{c['name']}: {c['layout']} sha256 {str(c['sha256'])[:12]}"
                      for c in settings.get("checkpoints", []))
    return {"checkpoints": ckpts,
            "versions": ", ".join(f"{k} {v[k]}" for k in ("umae", "torch", "timm") if k in v)}


def settings_line(settings: Mapping[str, Any], keys: Sequence[str]) -> str:
    """``'pool=cls · seed=0 · data=demo'``: the settings a figure depends on, for its subtitle."""
    parts = []
    for k in keys:
        v = settings.get(k)
        if isinstance(v, Mapping):
            v = v.get("spec", v)
        if isinstance(v, (list, tuple)):
            v = ",".join(map(str, v))
        parts.append(f"{k}={v}")
    return " · ".join(parts)


def _short_header(column: str) -> str:
    """Terminal column headers: ``knn_accuracy@20`` -> ``kNN@20``, ``linear_accuracy`` -> ``linear``."""
    if column.startswith("knn_accuracy@"):
        return "kNN@" + column.split("@", 1)[1]
    return {"mean_classifier_accuracy": "mean clf", "linear_accuracy": "linear",
            "effective_rank": "eff. rank", "alignment": "align", "uniformity": "unif"}.get(column, column)


def print_outputs(title: str, df: pd.DataFrame, written: Mapping[str, Path], float_format: str = "{:.2f}") -> None:
    """A rich table of the main numbers and the paths written, on stdout."""
    table = Table(title=title)
    for col in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[col])
        table.add_column(_short_header(str(col)), justify="right" if numeric else "left",
                         no_wrap=col == "checkpoint", overflow="fold")
    for _, row in df.iterrows():
        table.add_row(*[float_format.format(v) if isinstance(v, float) else str(v) for v in row.tolist()])
    stdout.print(table)
    for key, path in written.items():
        stdout.print(f"{key}: {path}", highlight=False, soft_wrap=True)


def check_labels(label: Sequence[str] | None) -> None:
    """Refuse an empty ``--label`` or one with control characters (it names rows, files and figures)."""
    for text in label or ():
        if not str(text).strip():
            raise UmaeError(f"--label {text!r}: a display name cannot be empty; give one non-empty "
                            "--label per checkpoint, in order (or none: file stems are used)")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in str(text)):
            raise UmaeError(f"--label {text!r}: control characters (newlines, tabs) are not allowed in a name")


def check_visible_patches(subjects: Sequence[A.Subject], mask_ratio: float) -> None:
    """Refuse a --mask-ratio that leaves a checkpoint's encoder no visible patch (MAE's len_keep rule).

    With none, both masked views are the [CLS] token alone: alignment and uniformity come out 0.0.
    """
    for s in subjects:
        n = s.info.arch.num_patches
        if int(n * (1 - mask_ratio)) < 1:
            raise UmaeError(f"--mask-ratio {mask_ratio:g} leaves no visible patch of the {n} of {s.name} "
                            f"(int({n} x (1 - {mask_ratio:g})) = 0); use --mask-ratio "
                            f"{math.floor((n - 1) / n * 1e4) / 1e4:g} or lower")


def load_subjects_announced(ckpts: Sequence[Path], *, label: Sequence[str] | None, trust_pickle: bool,
                            seed: int, num_heads: int | None, norm: str | None,
                            random_init: bool = False, mask_ratio: float | None = None) -> list[A.Subject]:
    """Load the checkpoints and say what each one is, one line each (layout, arch, params, sha256).

    ``mask_ratio`` (commands that encode masked views) is checked against every encoder first.
    """
    check_labels(label)
    subjects = A.load_subjects(ckpts, labels=label, trust_pickle=trust_pickle, random_init=random_init,
                               seed=seed, **loader_options(num_heads, norm))
    for s in subjects:
        check_encoder(s.encoder)
    if mask_ratio is not None:
        check_visible_patches(subjects, mask_ratio)
    for s in subjects:
        say(f"{s.name}: {s.info.summary()}")
        warn_metadata_conflicts(s.encoder)
    return subjects


def check_encoder(loaded: Any) -> None:
    """Refuse a loaded encoder whose weights hold NaN or inf, naming the file and the tensors."""
    from umae_eval.checkpoint_checks import nonfinite_tensors

    bad = nonfinite_tensors(loaded.model)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise UmaeError(f"{loaded.info.path}: weights hold NaN or inf values ({shown}); the run diverged "
                        "or the file is corrupted: use an earlier checkpoint of that run")


def warn_metadata_conflicts(loaded: Any) -> None:
    """One warning line when the file's metadata contradicts its weights (the weights are used)."""
    from umae_eval.checkpoint_checks import metadata_conflicts

    conflicts = metadata_conflicts(loaded.info.layout, loaded.info.metadata or {}, loaded.info.arch)
    if conflicts:
        console.print(f"[yellow]warning:[/] {escape(str(loaded.info.path))}: its metadata contradicts its "
                      f"weights ({escape('; '.join(conflicts))}); the model is built from the weights: check "
                      "the file", highlight=False, soft_wrap=True)


def out_dir_for(out: Optional[Path], command: str) -> Path:
    """``--out`` or ``reports/<command>-<date>/``; refuses a path that is an existing file."""
    from umae_eval.provenance import default_out_dir

    path = Path(out) if out is not None else default_out_dir(command)
    if path.exists() and not path.is_dir():
        raise UmaeError(f"--out {path} is an existing file; give a folder")
    return path
