"""The feature source for features read from files: subjects and data without an encoder or images.

The pipeline's flow is data -> model -> features -> metrics; with ``--features`` the first two
are skipped: a :class:`FeatureSubject` stands where a checkpoint's ``Subject`` stands (a name and
where its numbers came from, but ``encoder`` None) and hands the pipeline its
:class:`umae_eval.analysis.FeatureSet` from a :class:`umae_eval.feature_input.FeatureInput`;
a :class:`FeatureData` stands where the images' ``DataSubset`` stands (labels, class names,
seeded subsets, the data settings for results.json). The stages that need an encoder (masked
views, LiDAR, token Fourier, attentive probe, block read-outs) check ``subject.encoder is None``
and are skipped with the reason in :data:`SKIPPED_STAGES`.

Example::

    fi = load_features(Path("feats.npz"))
    subjects = [FeatureSubject("my encoder", None, fi)]
    data = feature_data([("feats.npz", fi)], max_train=None, max_test=None, seed=0)
    res = run_analysis(subjects, data, config, spec="feats.npz")
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from umae_eval.analysis import FeatureSet, Subject, subset_indices
from umae_eval.feature_input import FeatureInput

#: What results.json and the report say of each stage that needs an encoder.
SKIPPED_STAGES: dict[str, str] = {
    "masked_views": "alignment / uniformity of two masked views need the encoder (features were read from files)",
    "lidar": "LiDAR encodes masked and augmented views of images: no encoder behind features read from files",
    "fourier": "the token Fourier profile needs patch tokens: features read from files are pooled",
}
#: Settings of an analysis that describe an encoder's read-out or its masked views, as recorded for
#: features read from files (the options produced none of the numbers: the read-out is the file's).
ENCODER_SETTINGS: dict[str, str | None] = {
    "pool": "as saved (--features)", "layers": "as saved (--features)", "final_norm": "as saved (--features)",
    "mask_ratio": None, "max_views": None, "max_views_used": None, "batch_size": None}


@dataclass
class FeatureArch:
    """What a report row shows as the architecture of features read from files."""

    dim: int
    dtype: str
    depth: int = 0

    def describe(self) -> str:
        return f"features D={self.dim} {self.dtype} (no encoder)"


@dataclass
class FeatureFileInfo:
    """The ``EncoderInfo`` fields the pipeline and the report read, for features from files.

    ``sha256`` is the file's hash for a one-file format, else the sha256 of the lines
    ``'<sha256>  <file name>'`` of every file read, in order (each file's own hash is in
    ``provenance['files']``).
    """

    path: str
    arch: FeatureArch
    sha256: str
    provenance: dict[str, Any]
    layout: str = "features"
    n_params: int = 0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None
    note: str = ""

    def summary(self) -> str:
        p = self.provenance
        shapes = p["shapes"]
        return (f"features ({p['format']}): train {shapes['train_features'][0]} x {self.arch.dim}, test "
                f"{shapes['test_features'][0]} x {self.arch.dim}, {self.arch.dtype}"
                f"{', memory-mapped' if p['memory_mapped'] else ''}, sha256 {str(self.sha256)[:12]}")

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "layout": self.layout, "arch": {}, "n_params": 0, "sha256": self.sha256,
                "features": dict(self.provenance)}


def combined_sha256(files: Sequence[dict[str, Any]]) -> str | None:
    """One hash for the files of an input (see :class:`FeatureFileInfo`); None when not hashed."""
    if any(f.get("sha256") is None for f in files):
        return None
    if len(files) == 1:
        return str(files[0]["sha256"])
    text = "".join(f"{f['sha256']}  {f['path'].rsplit('/', 1)[-1]}\n" for f in files)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class FeatureSubject(Subject):
    """A subject whose features come from files: ``encoder`` is None, ``source`` holds them."""

    source: FeatureInput | None = None

    @property
    def info(self) -> FeatureFileInfo:  # type: ignore[override]
        src = self.source
        assert src is not None
        p = src.provenance
        return FeatureFileInfo(p["path"], FeatureArch(src.dim, str(src.dtype)),
                               combined_sha256(p["files"]) or "not hashed", p)

    def feature_spec(self) -> dict[str, Any]:
        """results.json's ``feature_spec``: the features as given, nothing read from an encoder."""
        assert self.source is not None
        return {"source": "features file", "path": self.source.provenance["path"],
                "format": self.source.provenance["format"], "dim": self.source.dim,
                "dtype": str(self.source.dtype)}

    def feature_set(self, data: FeatureData, with_train: bool = True) -> FeatureSet:
        """The (subset) train and test rows, as the file holds them (a memmap stays one when
        no subset is drawn; a subset is an in-memory copy in the file's dtype)."""
        src = self.source
        assert src is not None
        train = None
        if with_train:
            train = src.train_x if data.train_idx is None else np.asarray(src.train_x[data.train_idx])
        test = src.test_x if data.test_idx is None else np.asarray(src.test_x[data.test_idx])
        return FeatureSet(train, test, data.y_train, data.y_test, "given", 0.0,
                          {"source": dict(src.provenance)})


@dataclass
class FeatureData:
    """Labels, class names and subsets of features read from files (where images would be)."""

    class_names: list[str]
    y_train_all: np.ndarray
    y_test_all: np.ndarray
    sources: list[dict[str, Any]]
    train_idx: np.ndarray | None = None
    test_idx: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    lazy: bool = False
    x_test: Any = None  # no images: the stages that need them are skipped

    @property
    def images(self) -> Any:
        return SimpleNamespace(class_names=self.class_names)

    @property
    def y_train(self) -> np.ndarray:
        return self.y_train_all if self.train_idx is None else self.y_train_all[self.train_idx]

    @property
    def y_test(self) -> np.ndarray:
        return self.y_test_all if self.test_idx is None else self.y_test_all[self.test_idx]

    def fingerprint(self) -> str:
        """One hash of the files read (figures' provenance lines quote its start)."""
        text = "".join(f"{f['sha256']}  {f['path']}\n" for s in self.sources for f in s["files"])
        return hashlib.sha256(text.encode()).hexdigest()

    def settings(self, spec: str) -> dict[str, Any]:
        """results.json's ``data``: where the features came from, sizes, classes, subsets."""
        out: dict[str, Any] = {
            "spec": spec, "source": "features", "format": ", ".join(sorted({s["format"] for s in self.sources})),
            "features": [dict(s) for s in self.sources],
            "fingerprint": self.fingerprint(),
            "fingerprint_method": "sha256 of the lines '<sha256>  <path>' of every feature file read",
            "n_classes": len(self.class_names), "class_names": list(self.class_names),
            "class_names_given": any(s.get("class_names_given") for s in self.sources),
            "n_train": int(len(self.y_train)), "n_test": int(len(self.y_test)),
            "n_train_available": int(len(self.y_train_all)), "n_test_available": int(len(self.y_test_all)),
            "skipped_stages": dict(SKIPPED_STAGES),
        }
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def feature_data(inputs: Sequence[tuple[str, FeatureInput]], class_names: list[str], *, max_train: int | None,
                 max_test: int | None, seed: int, max_train_per_class: int | None = None) -> FeatureData:
    """The data of one or more inputs of the same images (checked by ``check_same_labels``), with
    the seeded subsets ``load_data`` draws for images (same seeds, same rule)."""
    first = inputs[0][1]
    train_idx = subset_indices(len(first.train_y), max_train, seed)
    notes: list[str] = []
    if max_train_per_class is not None:
        from umae_eval.subsets import balanced_subset

        base = np.arange(len(first.train_y)) if train_idx is None else train_idx
        train_idx = base[balanced_subset(first.train_y[base], int(max_train_per_class), seed)]
        notes.append(f"train subset: at most {max_train_per_class} rows per class (seed {seed}), "
                     f"{len(train_idx)} of {len(first.train_y)}")
    for _, fi in inputs:
        notes.extend(n for n in fi.provenance.get("notes", []) if n not in notes)
    return FeatureData(list(class_names), first.train_y, first.test_y, [fi.provenance for _, fi in inputs],
                       train_idx, subset_indices(len(first.test_y), max_test, seed + 1), notes)


def skipped_notes(subjects: Sequence[Any], collapse: bool) -> list[str]:
    """The summary's sentence on the encoder-only stages, when a subject was read from files."""
    if not collapse or all(s.encoder is not None for s in subjects):
        return []
    return ["Features read from files (--features): masked-view alignment / uniformity, LiDAR and the token "
            "Fourier profile need an encoder and were not measured."]
