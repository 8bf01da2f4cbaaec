"""Orchestration shared by ``umae probe``, ``umae collapse-report`` and ``umae compare``.

For one checkpoint (a :class:`Subject`: a display name + a ``LoadedEncoder``) and one
``ImageSet``: features (cached on disk) -> probes / spectrum / masked-view geometry / maps ->
plain result dataclasses. Nothing here prints, writes files or builds figures; progress goes
through the ``progress`` factory and user errors are raised as :class:`UmaeError`.

Example::

    images = load_dataset("demo")
    subject = load_subjects([Path("mae.pth")])[0]
    fs = compute_features(subject, images, pool="cls", device="cpu", batch_size=256)
    probes = run_probes(fs, methods=("mean", "knn"), ks=(10, 20, 200), temperature=0.07)
    spectrum = spectrum_stats(fs.test)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from umae_eval.errors import UmaeError
from umae_eval.progress import ProgressFactory, null_progress

Pool = Literal["cls", "avg"]
ProbeMethod = Literal["mean", "linear", "knn"]
MapMethod = Literal["tsne", "umap"]

PROBE_METHODS: tuple[str, ...] = ("mean", "linear", "knn")
MAP_METHODS: tuple[str, ...] = ("tsne", "umap")


# --------------------------------------------------------------------------- option parsing


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


# --------------------------------------------------------------------------- checkpoints


@dataclass
class Subject:
    """One encoder under analysis: a short display name and the loaded encoder."""

    name: str
    encoder: Any  # umae_eval.checkpoints.LoadedEncoder

    @property
    def info(self) -> Any:
        """The ``EncoderInfo`` (path, layout, arch, sha256, mean/std, run_dir)."""
        return self.encoder.info

    def settings(self) -> dict[str, Any]:
        """JSON-safe description for results.json: name + the encoder info (sha256, layout, arch)."""
        return {"name": self.name, **self.info.to_json()}


def display_names(paths: Sequence[Path], labels: Sequence[str] | None = None,
                  from_metadata: Sequence[str | None] | None = None) -> list[str]:
    """Short unique names: ``--label`` values when given, else names from the checkpoints'
    metadata (``from_metadata``, e.g. ``U-MAE λ=0.01 e200``), else file stems.

    Names that collide get their parent folder (``run1/checkpoint``, ``U-MAE λ=0.01 e200 (run1)``),
    and any that still collide get ``#2``, ``#3``...
    """
    if labels:
        if len(labels) != len(paths):
            raise UmaeError(f"--label was given {len(labels)} time(s) for {len(paths)} checkpoint(s); "
                            "give one --label per checkpoint, in the same order")
        names = [str(x) for x in labels]
    else:
        meta = list(from_metadata) if from_metadata else [None] * len(paths)
        base = [m or Path(p).stem for p, m in zip(paths, meta)]
        names = []
        for p, m, b in zip(paths, meta, base):
            folder = Path(p).resolve().parent.name
            if base.count(b) == 1:
                names.append(b)
            else:
                names.append(f"{b} ({folder})" if m else f"{folder}/{b}")
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def load_subjects(
    paths: Sequence[Path],
    *,
    labels: Sequence[str] | None = None,
    trust_pickle: bool = False,
    random_init: bool = False,
    seed: int = 0,
    arch_overrides: Mapping[str, Any] | None = None,
    norm: tuple[Sequence[float], Sequence[float]] | None = None,
) -> list[Subject]:
    """Load each checkpoint (any supported layout); optionally add an untrained twin of the first.

    ``arch_overrides`` and ``norm`` go to :func:`umae_eval.checkpoints.load_encoder` for every file.

    ``random_init`` adds ``random_init_encoder`` with the first checkpoint's architecture and
    normalisation, named ``random init`` (Fig. 1b's baseline).
    """
    from umae_eval.checkpoints import load_encoder, random_init_encoder

    if not paths:
        raise UmaeError("no checkpoint given; pass one or more checkpoint files, e.g. umae probe mae.pth --data demo")
    for p in paths:
        if not Path(p).exists():
            raise UmaeError(f"checkpoint not found: {p} (check the path)")
    from umae_eval.checkpoints.naming import metadata_name

    display_names(paths, labels)  # a wrong --label count is refused before anything loads
    encoders = [load_encoder(Path(p), trust_pickle=trust_pickle,
                             arch_overrides=dict(arch_overrides) if arch_overrides else None, norm=norm)
                for p in paths]
    names = display_names(paths, labels, [metadata_name(e.info) for e in encoders])
    subjects = [Subject(n, e) for n, e in zip(names, encoders)]
    if random_init:
        first = subjects[0].info
        enc = random_init_encoder(first.arch, seed=seed, mean=first.mean, std=first.std)
        name = "random init"
        while name in names:
            name += "'"
        subjects.append(Subject(name, enc))
    return subjects


# --------------------------------------------------------------------------- data and features


def subset_indices(n: int, max_n: int | None, seed: int) -> np.ndarray | None:
    """Sorted random indices of ``max_n`` of ``n`` items (seeded), or None to keep them all."""
    if max_n is None or max_n <= 0 or max_n >= n:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_n, replace=False))


#: Side of the pixels a lazy set hands to code that asks for plain images (``x_train``/``x_test``):
#: the in-memory path's size for ImageFolders of mixed sizes.
LAZY_PIXEL_SIZE = 224


@dataclass
class DataSubset:
    """The images a command analyses: an ``ImageSet`` or ``LazyImageSet`` and optional subsets.

    For a lazy set, ``x_train`` / ``x_test`` are :class:`~umae_eval.data.lazy.LazyArray` views
    (indexing decodes only the rows asked for) and :meth:`pixels` gives the rows at a model's
    input side with that model's evaluation transform.
    """

    images: Any  # umae_eval.data.ImageSet | umae_eval.data.lazy.LazyImageSet
    train_idx: np.ndarray | None = None
    test_idx: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    workers: int | None = None  # lazy path: DataLoader workers (None: default_workers())
    feature_dtype: str = "float32"  # lazy path: dtype of the on-disk feature store

    @property
    def lazy(self) -> bool:
        return bool(getattr(self.images, "lazy", False))

    def pixels(self, split: str, size: int | None = None) -> Any:
        """The split's (subset) images: an ndarray (in memory) or a LazyArray decoded at ``size``
        with :func:`umae_eval.data.transforms.eval_rule` (lazy)."""
        idx = self.train_idx if split == "train" else self.test_idx
        if not self.lazy:
            x = self.images.x_train if split == "train" else self.images.x_test
            return x if idx is None else x[idx]
        from umae_eval.data.transforms import eval_rule

        side = LAZY_PIXEL_SIZE if size is None else int(size)
        rule = "fit" if size is None else eval_rule(side)
        return self.images.view(split, side, rule).take(idx)

    @property
    def x_train(self) -> Any:
        return self.pixels("train")

    @property
    def x_test(self) -> Any:
        return self.pixels("test")

    @property
    def y_train(self) -> np.ndarray:
        y = np.asarray(self.images.y_train)
        return y if self.train_idx is None else y[self.train_idx]

    @property
    def y_test(self) -> np.ndarray:
        y = np.asarray(self.images.y_test)
        return y if self.test_idx is None else y[self.test_idx]

    def key(self, split: str) -> str:
        """Cache key of a split's images: dataset fingerprint + which subset."""
        idx = self.train_idx if split == "train" else self.test_idx
        tag = "all" if idx is None else f"sub{len(idx)}-{_digest(idx)}"
        return f"{self.images.fingerprint}-{split}-{tag}"

    def settings(self, spec: str) -> dict[str, Any]:
        """JSON-safe description: spec, source, format, fingerprint, sizes, subsets, data mode."""
        im = self.images
        out = {
            "spec": spec,
            "source": str(getattr(im, "source", spec)),
            "format": str(getattr(im, "format", "")),
            "data_mode": "lazy" if self.lazy else "memory",
            "fingerprint": str(im.fingerprint),
            "fingerprint_method": str(getattr(im, "fingerprint_method", "sha256 of every pixel, label and class name")),
            "image_size": None if self.lazy else list(im.x_train.shape[1:3]),
            "n_classes": len(im.class_names),
            "class_names": list(im.class_names),
            **_ids_and_notes(im),
            "layout": str(getattr(im, "layout", getattr(im, "format", ""))),
            "n_train": int(len(self.y_train)),
            "n_test": int(len(self.y_test)),
            "n_train_available": int(len(im.y_train)),
            "n_test_available": int(len(im.y_test)),
        }
        if self.notes:
            out["notes"] = [*out.get("notes", []), *self.notes]
        return out


def _ids_and_notes(im: Any) -> dict[str, Any]:
    """The source's class ids (wnids) where they differ from the names, and the loader's notes."""
    out: dict[str, Any] = {}
    ids = list(getattr(im, "class_ids", None) or [])
    if ids and ids != list(im.class_names):
        out["class_ids"] = ids
    if getattr(im, "notes", ()):
        out["notes"] = list(im.notes)
    return out


def _digest(idx: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(idx, dtype=np.int64).tobytes()).hexdigest()[:12]


def load_data(spec: str, *, max_train: int | None = None, max_test: int | None = None, seed: int = 0,
              progress: ProgressFactory = null_progress, mode: str = "auto",
              max_train_per_class: int | None = None, skip_bad: bool = False,
              workers: int | None = None, feature_dtype: str = "float32") -> DataSubset:
    """Open ``spec`` with :func:`umae_eval.data.choose.open_dataset` (in memory or lazy) and
    draw the optional subsets: ``max_train`` / ``max_test`` images (seeded), or
    ``max_train_per_class`` train images of each class (seeded, class-balanced)."""
    from umae_eval.data.choose import open_dataset

    images = open_dataset(spec, mode=mode, skip_bad=skip_bad, progress=progress)
    if len(images.y_train) == 0 or len(images.y_test) == 0:
        raise UmaeError(f"--data {spec}: needs both a train and a test split with images")
    train_idx = subset_indices(len(images.y_train), max_train, seed)
    notes: list[str] = []
    if max_train_per_class is not None:
        from umae_eval.subsets import balanced_subset

        y = np.asarray(images.y_train)
        base = np.arange(len(y)) if train_idx is None else train_idx
        pick = balanced_subset(y[base], int(max_train_per_class), seed)
        train_idx = base[pick]
        notes.append(f"train subset: at most {max_train_per_class} images per class (seed {seed}), "
                     f"{len(train_idx)} of {len(y)}")
    if feature_dtype not in ("float32", "float16"):
        raise UmaeError(f"--feature-dtype {feature_dtype!r}: choose float32 or float16")
    return DataSubset(images, train_idx, subset_indices(len(images.y_test), max_test, seed + 1), notes,
                      workers, feature_dtype)


@dataclass
class FeatureSet:
    """Frozen-encoder features of the train and test images, float32 ``(N, D)``."""

    train: np.ndarray | None
    test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    pool: str
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # lazy path: transform, stores, skipped images


def default_workers() -> int:
    """DataLoader workers for the lazy path: one per core, at most 8."""
    import os

    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def compute_features(
    subject: Subject,
    data: DataSubset,
    *,
    pool: Pool = "cls",
    device: str = "auto",
    batch_size: int = 256,
    with_train: bool = True,
    workers: int | None = None,
    feature_dtype: str | None = None,
    progress: ProgressFactory = null_progress,
) -> FeatureSet:
    """Train and test features of one encoder (through the on-disk feature cache / store).

    ``with_train=False`` skips the training split (``FeatureSet.train`` is then None): the
    collapse measures and maps use test features only. A lazy set is decoded per item in
    ``workers`` DataLoader processes (default :func:`default_workers`) with the encoder's
    evaluation transform, and its features go to a resumable on-disk store; images that could
    not be decoded (with ``skip_bad``) are left out of both features and labels.
    """
    from umae_eval.features import cached_features

    t0 = time.perf_counter()
    feats: dict[str, np.ndarray | None] = {"train": None}
    labels = {"train": data.y_train, "test": data.y_test}
    splits = ("train", "test") if with_train else ("test",)
    extra: dict[str, Any] = {}
    for split in splits:
        label = _labelled(progress, f"{subject.name}: {split} features")
        if data.lazy:
            from umae_eval.lazy_features import lazy_features

            view = data.pixels(split, subject.encoder.info.arch.img_size)
            n_workers = workers if workers is not None else data.workers
            out = lazy_features(subject.encoder, view, images_key=data.key(split), pool=pool, device=device,
                                batch_size=batch_size,
                                workers=default_workers() if n_workers is None else n_workers,
                                feature_dtype=feature_dtype or data.feature_dtype, progress=label)
            feats[split] = out.features
            if not out.ok.all():
                labels[split] = labels[split][out.ok]
                feats[split] = out.features[out.ok]
                extra.setdefault("skipped_images", {})[split] = int((~out.ok).sum())
                _note(data, f"{split}: {int((~out.ok).sum())} undecodable images left out (--skip-bad-images)")
            _note(data, f"lazy path: images decoded per item with the transform {view.transform}")
            extra["transform"] = view.transform
            extra.setdefault("stores", {})[split] = out.store
            if out.warning:
                extra.setdefault("warnings", []).append(out.warning)
        else:
            feats[split] = np.asarray(cached_features(
                subject.encoder, data.pixels(split), images_key=data.key(split), pool=pool, device=device,
                batch_size=batch_size, progress=label), dtype=np.float32)
    assert feats["test"] is not None
    return FeatureSet(feats["train"], feats["test"], labels["train"], labels["test"], pool,
                      time.perf_counter() - t0, extra)


def _note(data: DataSubset, line: str) -> None:
    if line not in data.notes:
        data.notes.append(line)


def _labelled(progress: ProgressFactory, prefix: str) -> ProgressFactory:
    """A progress factory whose task descriptions start with ``prefix``."""

    @contextmanager
    def wrapped(description: str, total: int | None = None) -> Iterator[Any]:
        with progress(f"{prefix} ({description})" if description else prefix, total) as adv:
            yield adv

    return wrapped


# --------------------------------------------------------------------------- probes


@dataclass
class ProbeSummary:
    """Accuracies (percent) of the probes run on one encoder, with their settings."""

    accuracies: dict[str, float]
    results: list[dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=dict)


def knn_column(k: int) -> str:
    """The result/column name of kNN accuracy at ``k`` (``knn_accuracy@20``)."""
    return f"knn_accuracy@{k}"


def run_probes(
    fs: FeatureSet,
    *,
    methods: Sequence[str] = PROBE_METHODS,
    ks: Sequence[int] = (10, 20, 200),
    temperature: float = 0.07,
    protocol: str = "fast",
    backend: str = "torch",
    seed: int = 0,
    device: str = "cpu",
    progress: ProgressFactory = null_progress,
) -> ProbeSummary:
    """Run the requested probes on frozen features; accuracies in percent.

    Names: ``mean_classifier_accuracy``, ``linear_accuracy``, ``knn_accuracy@<k>``.
    """
    from umae_eval.probes.knn import knn_probe
    from umae_eval.probes.linear import linear_probe
    from umae_eval.probes.mean import mean_classifier

    if fs.train is None:
        raise ValueError("run_probes needs training features: compute_features(..., with_train=True)")
    acc: dict[str, float] = {}
    results: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    for method in methods:
        t0 = time.perf_counter()
        if method == "mean":
            r = mean_classifier(fs.train, fs.y_train, fs.test, fs.y_test)
            acc["mean_classifier_accuracy"] = float(r.accuracy)
        elif method == "linear":
            r = linear_probe(fs.train, fs.y_train, fs.test, fs.y_test, backend=backend, protocol=protocol,
                             seed=seed, device=device, progress=progress)
            acc["linear_accuracy"] = float(r.accuracy)
        elif method == "knn":
            # one neighbour search at max(k); each k is clipped to the training size (settings['ks_effective'])
            r = knn_probe(fs.train, fs.y_train, fs.test, fs.y_test, ks=tuple(ks), temperature=temperature)
            for k, v in r.extras["accuracy_by_k"].items():
                acc[knn_column(int(k))] = float(v)
        else:  # parse_choices keeps this unreachable from the CLI
            raise UmaeError(f"--methods: unknown probe {method!r}; choose from {', '.join(PROBE_METHODS)}")
        seconds[method] = time.perf_counter() - t0
        results.append(r.to_dict() if hasattr(r, "to_dict") else {"method": method, "accuracy": r.accuracy})
    for name, v in acc.items():
        if not (0.0 <= v <= 100.0) or math.isnan(v):
            raise RuntimeError(f"{name} = {v} is not a percentage; a probe returned a fraction or NaN")
    return ProbeSummary(acc, results, seconds)


# --------------------------------------------------------------------------- spectrum


@dataclass
class SpectrumStats:
    """Dimensional-collapse measures of one feature matrix (N, D)."""

    singular_values_centered: np.ndarray
    singular_values_raw: np.ndarray
    effective_rank: float
    rankme: float
    alpha_req: float
    alpha_req_r2: float
    alpha_req_fit_range: tuple[int, int]
    feature_std: float
    n: int
    dim: int
    settings: dict[str, Any] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """The scalar measures, by their result names."""
        return {
            "effective_rank": self.effective_rank,
            "rankme": self.rankme,
            "alpha_req": self.alpha_req,
            "alpha_req_r2": self.alpha_req_r2,
            "feature_std": self.feature_std,
        }


def spectrum_stats(features: np.ndarray) -> SpectrumStats:
    """Singular values (centred and raw, normalised to the largest), effective rank (centred),
    RankMe (raw), alpha-ReQ and the normalised feature std of ``features`` (N, D).

    A thin wrapper of :func:`umae_eval.metrics.spectrum.spectrum_summary`.
    """
    from umae_eval.metrics.spectrum import spectrum_summary

    summ = spectrum_summary(features)
    return SpectrumStats(
        singular_values_centered=np.asarray(summ.singular_values, dtype=np.float64),
        singular_values_raw=np.asarray(summ.singular_values_raw, dtype=np.float64),
        effective_rank=float(summ.effective_rank),
        rankme=float(summ.rankme),
        alpha_req=float(summ.alpha.alpha),
        alpha_req_r2=float(summ.alpha.r2),
        alpha_req_fit_range=tuple(int(v) for v in summ.alpha.fit_range),  # type: ignore[arg-type]
        feature_std=float(summ.feature_std),
        n=int(summ.num_samples),
        dim=int(summ.dim),
        settings=dict(summ.settings),
    )


# --------------------------------------------------------------------------- masked views


@dataclass
class ViewGeometry:
    """Alignment and uniformity of two random masked views of the same test images."""

    alignment: float
    uniformity: float
    umae_uniformity_code: float
    umae_uniformity_paper: float
    mask_ratio: float
    n_images: int
    seed: int
    seconds: float = 0.0

    def scalars(self) -> dict[str, float]:
        return {"alignment": self.alignment, "uniformity": self.uniformity,
                "umae_uniformity_code": self.umae_uniformity_code,
                "umae_uniformity_paper": self.umae_uniformity_paper}


def masked_view_geometry(
    subject: Subject,
    images: np.ndarray,
    *,
    mask_ratio: float = 0.75,
    seed: int = 0,
    pool: Pool = "cls",
    device: str = "auto",
    batch_size: int = 256,
    progress: ProgressFactory = null_progress,
) -> ViewGeometry:
    """Encode two independently masked views of each image and measure their geometry.

    ``images`` are uint8 (N, H, W, 3). View 1 uses a generator seeded with ``seed``, view 2
    with ``seed + 1``. Alignment/uniformity follow Wang & Isola; the U-MAE uniformity value is
    given in both forms (``code``: normalised features, whole batch incl. diagonal;
    ``paper``: Eq. 11, off-diagonal pairs) over view 1.
    """
    import torch

    from umae_eval.features import encode_masked_views, resolve_device
    from umae_eval.metrics.geometry import alignment, umae_uniformity, uniformity
    from umae_eval.preprocess import to_model_input

    if not 0.0 <= mask_ratio < 1.0:
        raise UmaeError(f"--mask-ratio {mask_ratio}: must be in [0, 1), e.g. --mask-ratio 0.75")
    t0 = time.perf_counter()
    dev = resolve_device(device)
    info = subject.info
    model = subject.encoder.model.to(dev).eval()
    gens = []
    for s in (seed, seed + 1):
        g = torch.Generator(device=dev)
        g.manual_seed(int(s))
        gens.append(g)
    z1, z2 = [], []
    with progress(f"{subject.name}: masked views (ratio {mask_ratio:g})", total=len(images)) as advance:
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                x = to_model_input(images[start:start + batch_size], info.arch.img_size, info.mean, info.std,
                                   device=dev)
                z1.append(encode_masked_views(model, x, mask_ratio, generator=gens[0], pool=pool).float().cpu())
                z2.append(encode_masked_views(model, x, mask_ratio, generator=gens[1], pool=pool).float().cpu())
                advance(len(x))
    a = torch.cat(z1)
    b = torch.cat(z2)
    return ViewGeometry(
        alignment=float(alignment(a, b)),
        uniformity=float(uniformity(a)),
        umae_uniformity_code=float(umae_uniformity(a, "code")),
        umae_uniformity_paper=float(umae_uniformity(a, "paper")),
        mask_ratio=float(mask_ratio),
        n_images=int(len(a)),
        seed=int(seed),
        seconds=time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------- maps


@dataclass
class FeatureMap:
    """A 2-D map (t-SNE or UMAP) of a class-balanced subset of test features."""

    method: str
    coords: np.ndarray
    labels: np.ndarray
    settings: dict[str, Any]
    seconds: float = 0.0


def umap_compiles() -> bool:
    """True when UMAP will compile its numba code on first use in this process (~15 s)."""
    from umae_eval.embed import umap_needs_compile

    return bool(umap_needs_compile())


def feature_maps(
    fs: FeatureSet,
    *,
    methods: Sequence[str] = ("tsne",),
    per_class: int = 500,
    seed: int = 0,
    progress: ProgressFactory = null_progress,
) -> list[FeatureMap]:
    """t-SNE/UMAP maps of up to ``per_class`` test features of each class."""
    from umae_eval.embed import class_balanced_subset, embed

    out = []
    if not methods:
        return out
    idx = np.asarray(class_balanced_subset(fs.y_test, per_class=per_class, seed=seed))
    for method in methods:
        t0 = time.perf_counter()
        res = embed(fs.test[idx], method=method, seed=seed, progress=progress)
        settings = {"method": method, "per_class": per_class, "n_points": int(len(idx)), "seed": seed,
                    "features": f"test split, pool={fs.pool}", **dict(getattr(res, "settings", {}) or {})}
        out.append(FeatureMap(method, np.asarray(res.coords), fs.y_test[idx], settings, time.perf_counter() - t0))
    return out


# --------------------------------------------------------------------------- training curves


def read_training_curves(run_dir: str | Path | None) -> dict[str, list[float]] | None:
    """Columns of ``<run_dir>/metrics.jsonl`` (epoch, effective_rank, knn_accuracy, ...), or None.

    Rows are sorted by epoch; a column holds the values of the rows that have it, aligned with
    ``'<column>:epoch'``. Lines that are not JSON objects (e.g. a torn last line) are skipped.
    """
    if run_dir is None:
        return None
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), (int, float)):
            rows.append(row)
    if not rows:
        return None
    rows.sort(key=lambda r: r["epoch"])
    cols: dict[str, list[float]] = {"epoch": [float(r["epoch"]) for r in rows]}
    keys = ("loss", "loss_recon", "loss_unif", "lr", "effective_rank", "rankme", "knn_accuracy",
            "mean_classifier_accuracy", "linear_accuracy")
    for key in keys:
        pts = [(float(r["epoch"]), float(r[key])) for r in rows
               if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        if pts:
            cols[f"{key}:epoch"] = [p[0] for p in pts]
            cols[key] = [p[1] for p in pts]
    return cols


def curve_for(curves: Mapping[str, Mapping[str, list[float]]], metric: str) -> dict[str, dict[str, list[float]]]:
    """``{run: {'epoch': [...], metric: [...]}}`` for the runs that logged ``metric``."""
    return {name: {"epoch": list(c[f"{metric}:epoch"]), metric: list(c[metric])}
            for name, c in curves.items() if metric in c}


# --------------------------------------------------------------------------- timing


@contextmanager
def timed(store: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall time of the block to ``store[key]`` (seconds)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        store[key] = store.get(key, 0.0) + time.perf_counter() - t0
