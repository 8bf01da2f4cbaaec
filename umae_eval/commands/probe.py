"""`umae probe`: mean classifier, linear probe and kNN on frozen features of each checkpoint.

Also holds the pieces the analysis commands share (options, settings, console output), which
``collapse_report`` and ``compare`` import from here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import pandas as pd
import typer
from rich.table import Table

from umae_eval import analysis as A
from umae_eval.commands.common import (
    BatchSizeOpt,
    DataOpt,
    DeviceOpt,
    NormOpt,
    NumHeadsOpt,
    OutOpt,
    SeedOpt,
    TrustPickleOpt,
    loader_options,
)
from umae_eval.errors import UmaeError
from umae_eval.progress import rich_progress, say, stdout

# --------------------------------------------------------------------------- shared options

CkptsArg = Annotated[list[Path], typer.Argument(
    metavar="CKPT", show_default=False,
    help="Checkpoint file(s): official MAE (encoder or full), U-MAE, timm (.pth/.bin/.safetensors) or umae.")]
PoolOpt = Annotated[str, typer.Option("--pool", help="Feature: cls ([CLS] after the final norm, MAE's "
                                                     "linear-probe feature) or avg (mean of patch tokens).")]
LabelOpt = Annotated[Optional[list[str]], typer.Option(
    "--label", help="Display name of a checkpoint; repeat once per checkpoint, in order (default: file stem).")]
MaxTrainOpt = Annotated[Optional[int], typer.Option(
    "--max-train", min=1, help="Use a seeded random subset of this many training images (default: all).")]
MaxTestOpt = Annotated[Optional[int], typer.Option(
    "--max-test", min=1, help="Use a seeded random subset of this many test images (default: all).")]
MethodsOpt = Annotated[str, typer.Option("--methods", help="Probes to run, comma-separated: mean, linear, knn.")]
KOpt = Annotated[str, typer.Option("--k", help="Neighbour counts of the kNN probe, comma-separated.")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", min=1e-6,
                                               help="Temperature of the weighted kNN vote (InstDisc/DINO).")]
ProtocolOpt = Annotated[str, typer.Option("--protocol", help="Linear probe recipe: fast (quick, default) or "
                                                             "mae (the MAE paper's BatchNorm + LARS recipe).")]
BackendOpt = Annotated[str, typer.Option("--backend", help="Linear probe backend: torch or sklearn.")]



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
                if k == "class_names" and isinstance(v, list) and len(v) > 20:
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


def load_subjects_announced(ckpts: Sequence[Path], *, label: Sequence[str] | None, trust_pickle: bool,
                            seed: int, num_heads: int | None, norm: str | None,
                            random_init: bool = False) -> list[A.Subject]:
    """Load the checkpoints and say what each one is, one line each (layout, arch, params, sha256)."""
    subjects = A.load_subjects(ckpts, labels=label, trust_pickle=trust_pickle, random_init=random_init,
                               seed=seed, **loader_options(num_heads, norm))
    for s in subjects:
        say(f"{s.name}: {s.info.summary()}")
    return subjects


def out_dir_for(out: Optional[Path], command: str) -> Path:
    """``--out`` or ``reports/<command>-<date>/``; refuses a path that is an existing file."""
    from umae_eval.provenance import default_out_dir

    path = Path(out) if out is not None else default_out_dir(command)
    if path.exists() and not path.is_dir():
        raise UmaeError(f"--out {path} is an existing file; give a folder")
    return path


# --------------------------------------------------------------------------- probe work


def probe_options(methods: str, k: str, protocol: str, backend: str, pool: str) -> dict[str, Any]:
    """Validate the probe options; returns methods (tuple), ks (tuple), protocol, backend, pool."""
    return {
        "methods": A.parse_choices(methods, A.PROBE_METHODS, "--methods"),
        "ks": A.parse_ints(k, "--k"),
        "protocol": check_choice(protocol, ("fast", "mae"), "--protocol"),
        "backend": check_choice(backend, ("torch", "sklearn"), "--backend"),
        "pool": check_choice(pool, ("cls", "avg"), "--pool"),
    }


def accuracy_frame(per_ckpt: Mapping[str, A.ProbeSummary], subjects: Sequence[A.Subject]) -> pd.DataFrame:
    """One row per checkpoint: name, layout, sha256 prefix, then each accuracy column (percent)."""
    rows = []
    for s in subjects:
        if s.name not in per_ckpt:
            continue
        rows.append({"checkpoint": s.name, "layout": s.info.layout, "sha256": s.info.sha256[:12],
                     **per_ckpt[s.name].accuracies})
    return pd.DataFrame(rows)


def add_probe_sections(report: Any, acc: pd.DataFrame, settings: Mapping[str, Any]) -> None:
    """The accuracy table and bar chart."""
    from umae_eval.report import figures as F

    fig_settings = {k: settings[k] for k in ("pool", "methods", "k", "temperature", "protocol", "backend", "seed")
                    if k in settings}
    fig_settings["data"] = settings["data"]["spec"]
    fig_settings["n_train/n_test"] = f"{settings['data']['n_train']}/{settings['data']['n_test']}"
    fig_settings.update(provenance(settings))
    report.add_table("Accuracy (%)", acc,
                     caption="Test accuracy of probes on frozen features: mean classifier (cosine to "
                             "class means, Sec. 4.1), linear probe, weighted kNN per k.",
                     settings=fig_settings)
    cols = [c for c in acc.columns if c.endswith("accuracy") or "accuracy@" in c]
    per = {row["checkpoint"]: {c: row[c] for c in cols} for _, row in acc.iterrows()}
    report.add_figure("Accuracy by probe", F.accuracy_figure(
        per, settings_line=settings_line(settings, ("pool", "protocol", "seed", "data"))), settings=fig_settings)


def run_probe_stage(subjects: Sequence[A.Subject], data: A.DataSubset, opts: Mapping[str, Any], *,
                    temperature: float, device: str, batch_size: int, seed: int,
                    timings: dict[str, float]) -> tuple[dict[str, A.FeatureSet], dict[str, A.ProbeSummary]]:
    """Features + probes for each subject, with progress on screen and stage timings recorded."""
    feats: dict[str, A.FeatureSet] = {}
    probes: dict[str, A.ProbeSummary] = {}
    probe_device = resolve_device_name(device)
    for s in subjects:
        with A.timed(timings, f"features:{s.name}"):
            feats[s.name] = A.compute_features(s, data, pool=opts["pool"], device=device,
                                               batch_size=batch_size, progress=rich_progress)
        say(f"{s.name}: probing ({', '.join(opts['methods'])}) on {len(data.y_train)} train / "
            f"{len(data.y_test)} test features")
        with A.timed(timings, f"probes:{s.name}"):
            probes[s.name] = A.run_probes(feats[s.name], methods=opts["methods"], ks=opts["ks"],
                                          temperature=temperature, protocol=opts["protocol"],
                                          backend=opts["backend"], seed=seed, device=probe_device,
                                          progress=rich_progress)
    return feats, probes


# --------------------------------------------------------------------------- the command


def probe(
    ckpts: CkptsArg,
    data: DataOpt,
    pool: PoolOpt = "cls",
    methods: MethodsOpt = "mean,linear,knn",
    k: KOpt = "10,20,200",
    temperature: TemperatureOpt = 0.07,
    protocol: ProtocolOpt = "fast",
    backend: BackendOpt = "torch",
    device: DeviceOpt = "auto",
    batch_size: BatchSizeOpt = 256,
    seed: SeedOpt = 0,
    max_train: MaxTrainOpt = None,
    max_test: MaxTestOpt = None,
    label: LabelOpt = None,
    out: OutOpt = None,
    trust_pickle: TrustPickleOpt = False,
    num_heads: NumHeadsOpt = None,
    norm: NormOpt = None,
) -> None:
    """Probe frozen features: mean classifier, linear probe, kNN (accuracy in %).

    Writes results.json, accuracy.csv and report.html into --out.

    Example:  umae probe mae.pth umae.pth --data ../shared/data/cifar10-jpeg.tar.gz --k 10,20,200
    """
    t_start = time.perf_counter()
    opts = probe_options(methods, k, protocol, backend, pool)
    out_dir = out_dir_for(out, "probe")
    timings: dict[str, float] = {}
    with A.timed(timings, "load_checkpoints"):
        subjects = load_subjects_announced(ckpts, label=label, trust_pickle=trust_pickle, seed=seed,
                                           num_heads=num_heads, norm=norm)
    with A.timed(timings, "load_data"):
        ds = A.load_data(data, max_train=max_train, max_test=max_test, seed=seed, progress=rich_progress)
    _, probes = run_probe_stage(subjects, ds, opts, temperature=temperature, device=device,
                                batch_size=batch_size, seed=seed, timings=timings)

    settings = base_settings(subjects, ds, data, pool=opts["pool"], methods=list(opts["methods"]),
                             k=list(opts["ks"]), temperature=temperature, protocol=opts["protocol"],
                             backend=opts["backend"], seed=seed, device=resolve_device_name(device),
                             batch_size=batch_size)
    acc = accuracy_frame(probes, subjects)
    timings["total"] = time.perf_counter() - t_start
    results = {
        "checkpoints": {name: {"accuracies": p.accuracies, "probes": p.results, "seconds": p.seconds}
                        for name, p in probes.items()},
        "timings_s": timings,
    }
    from umae_eval.report.writer import HtmlReport, write_outputs

    report = HtmlReport("umae probe: frozen-feature accuracy", command="probe")
    add_common_sections(report, settings, subjects)
    add_probe_sections(report, acc, settings)
    written = write_outputs(out_dir, "probe", settings, results, {"accuracy": acc}, report)
    print_outputs("Accuracy (%)", acc.drop(columns=["sha256"]), written)
