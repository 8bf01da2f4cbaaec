r"""Low-shot probes: seeded, class-balanced, nested subsets of train; linear and kNN on each.

Protocol (as semi-supervised and self-supervised papers report it: SimCLR / BYOL / DINO's 1% and
10% ImageNet labels; DINOv2 ``eval/log_regression.py`` for the regularisation sweep; efficient
probing's low-shot tables): a probe is trained on a small labelled subset of the training
split and scored on the whole test split, for several seeded draws of the subset; umae reports
the mean and spread over draws beside each draw's accuracy and test predictions (from which
the caller draws intervals over test images).

Subsets (:func:`lowshot_subsets`):

- ``fractions`` (``0.01`` -> name ``'1%'``): ``k = round(f * N / C)`` images of every class,
  ``N`` training images over the ``C`` classes present (class-balanced: every class the same
  count, even when train is not);
- ``shots`` (``5`` -> ``'5-shot'``): ``k`` images of every class.

Draw ``d`` shuffles each class's training indices once with ``numpy.random.default_rng((seed,
d))`` and every subset of that draw takes the first ``k`` of each class's shuffle. So the
subsets of one draw are nested (1-shot in 5-shot in 10-shot, 1% in 10%, and any two by their
per-class count), and draw ``d`` is the same whatever the number of draws asked for.

Probes (:func:`lowshot_probes`): the 'fast' linear probe (:func:`~umae_eval.probes.linear.
linear_probe`: weight decay chosen on a stratified validation split of the *subset*, refit on
the subset) and the weighted kNN (:func:`~umae_eval.probes.knn.knn_probe`, ``k = 20``,
``T = 0.07``, ``k`` clipped to the subset size). A subset with one image per class has no
validation split, so the linear probe uses the single weight decay ``single_shot_weight_decay``
there (recorded in the settings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from umae_eval.errors import UmaeError
from umae_eval.metrics._inputs import ArrayLike, check_labels, resolve_num_classes
from umae_eval.probes.knn import knn_probe
from umae_eval.probes.linear import linear_probe
from umae_eval.probes.result import ProbeResult, _jsonable
from umae_eval.progress import ProgressFactory, null_progress

__all__ = ["LowShotEntry", "LowShotResult", "LowShotSubset", "lowshot_probes", "lowshot_subsets"]

#: The methods :func:`lowshot_probes` runs, and the test-prediction key each one fills.
_METHODS = {"linear": "linear_accuracy", "knn": "knn_accuracy"}


@dataclass(frozen=True)
class LowShotSubset:
    """One draw of one low-shot subset of the training split.

    Attributes
    ----------
    name : str
        ``'1%'``, ``'10%'``, ``'5-shot'``, ...
    kind : str
        ``'fraction'`` or ``'shots'``.
    value : float
        The fraction (0.01) or the shots per class (5).
    per_class : int
        Images of each class in the subset.
    draw : int
        0-based draw number.
    seed : int
        The seed of :func:`lowshot_subsets`; the draw's shuffle is seeded with ``(seed, draw)``.
    indices : ndarray, shape (per_class * C,), int64
        Sorted row indices into the training split.
    """

    name: str
    kind: str
    value: float
    per_class: int
    draw: int
    seed: int
    indices: np.ndarray = field(repr=False)


def _name(kind: str, value: float) -> str:
    return f"{100 * value:g}%" if kind == "fraction" else f"{int(value)}-shot"


def lowshot_subsets(y_train: ArrayLike, *, fractions: Sequence[float] = (), shots: Sequence[int] = (),
                    draws: int = 5, seed: int = 0) -> list[LowShotSubset]:
    """Seeded, class-balanced, nested low-shot subsets of the training split.

    See the module docstring for the rule. Subsets are listed draw by draw, each draw in the
    order fractions then shots, as given.

    Parameters
    ----------
    y_train : ndarray or Tensor, shape (N,)
        Training labels.
    fractions : sequence of float in (0, 1]
        Label fractions (0.01 = 1%): ``round(f * N / C)`` images per class.
    shots : sequence of int >= 1
        Images per class.
    draws : int, default 5
    seed : int, default 0

    Returns
    -------
    list of LowShotSubset
        ``draws * (len(fractions) + len(shots))`` subsets.

    Raises
    ------
    UmaeError
        A fraction or shot count out of range, a fraction that rounds to 0 images per class, or
        a class with fewer training images than a subset asks for.

    Examples
    --------
    >>> y = np.repeat(np.arange(3), 10)
    >>> [(s.name, s.draw, len(s.indices)) for s in lowshot_subsets(y, fractions=(0.1,), shots=(2,), draws=1)]
    [('10%', 0, 3), ('2-shot', 0, 6)]
    """
    y = check_labels(y_train, len(y_train) if hasattr(y_train, "__len__") else -1, "y_train", "train features")
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
        raise UmaeError(f"draws must be an integer >= 1, got {draws!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UmaeError(f"seed must be an integer >= 0, got {seed!r}")
    if len(fractions) == 0 and len(shots) == 0:
        raise UmaeError("lowshot_subsets needs at least one label fraction or one shot count")
    classes, counts = np.unique(y, return_counts=True)
    n, c = len(y), len(classes)
    specs: list[tuple[str, float, int]] = []
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float, np.floating)) or not (0.0 < f <= 1.0):
            raise UmaeError(f"each label fraction must lie in (0, 1] (0.01 = 1% of the labels), got {f!r}")
        k = int(round(f * n / c))
        if k < 1:
            raise UmaeError(f"label fraction {f:g} of {n} training images over {c} classes is {f * n / c:.2g} "
                            f"images per class; ask for at least {c / (2 * n):.2g} (or use shots)")
        specs.append(("fraction", float(f), k))
    for s in shots:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
            raise UmaeError(f"each shot count must be an integer >= 1 (images per class), got {s!r}")
        specs.append(("shots", int(s), int(s)))
    k_max = max(k for _, _, k in specs)
    if counts.min() < k_max:
        worst = int(classes[np.argmin(counts)])
        kind, value, _ = max(specs, key=lambda sp: sp[2])
        raise UmaeError(f"low-shot subset {_name(kind, value)} asks for {k_max} training images per class but "
                        f"class {worst} has only {int(counts.min())}; ask for fewer")
    members = [np.flatnonzero(y == cl) for cl in classes]
    out: list[LowShotSubset] = []
    for d in range(int(draws)):
        rng = np.random.default_rng((int(seed), d))
        shuffled = [m[rng.permutation(len(m))] for m in members]
        for kind, value, k in specs:
            idx = np.sort(np.concatenate([s[:k] for s in shuffled])).astype(np.int64)
            out.append(LowShotSubset(_name(kind, value), kind, value, k, d, int(seed), idx))
    return out


@dataclass
class LowShotEntry:
    """One (subset name, method): its accuracy on every draw and their summary.

    ``accuracies[d]`` and ``test_predictions[d]`` ((M,) int64) belong to draw ``draws[d]``;
    ``std`` is the sample standard deviation over draws (0 for one draw).
    """

    subset: str
    method: str
    per_class: int
    draws: list[int]
    accuracies: list[float]
    results: list[ProbeResult] = field(repr=False)

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else 0.0

    @property
    def test_predictions(self) -> list[np.ndarray]:
        """Per draw, the predicted class of every test row, (M,) int64."""
        if self.method == "linear":
            return [r.test_predictions["linear_accuracy"] for r in self.results]
        return [r.test_predictions[f"knn_accuracy@{r.settings['k']}"] for r in self.results]

    def to_dict(self) -> dict[str, Any]:
        per_draw = []
        for d, r in zip(self.draws, self.results):
            item: dict[str, Any] = {"draw": d, "accuracy": r.accuracy, "num_train": r.settings["num_train"]}
            if self.method == "linear":
                item["chosen_weight_decay"] = r.extras.get("chosen_weight_decay")
            else:
                item["k_effective"] = r.settings["ks_effective"][0]
            per_draw.append(item)
        return {"subset": self.subset, "method": self.method, "per_class": self.per_class,
                "result_name": f"{_METHODS[self.method]}@{self.subset}",
                "accuracies": list(self.accuracies), "mean": self.mean, "std": self.std,
                "min": float(min(self.accuracies)), "max": float(max(self.accuracies)),
                "per_draw": per_draw, "probe_settings": self.results[0].settings}


@dataclass
class LowShotResult:
    """Every (subset, method) of a low-shot evaluation, with the settings that produced it."""

    entries: list[LowShotEntry]
    settings: dict[str, Any]

    def get(self, subset: str, method: str) -> LowShotEntry:
        """The entry of one subset name (``'1%'``) and method (``'linear'``)."""
        for e in self.entries:
            if e.subset == subset and e.method == method:
                return e
        raise KeyError((subset, method))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: settings and per entry the per-draw accuracies, mean, std, min, max."""
        return {"settings": _jsonable(self.settings), "results": [_jsonable(e.to_dict()) for e in self.entries]}


def lowshot_probes(train_x: ArrayLike, y_train: ArrayLike, test_x: ArrayLike, y_test: ArrayLike,
                   subsets: Sequence[LowShotSubset], *, methods: Sequence[str] = ("linear", "knn"),
                   seed: int = 0, k: int = 20, temperature: float = 0.07,
                   single_shot_weight_decay: float = 1e-3, linear_options: Mapping[str, Any] | None = None,
                   knn_backend: str = "auto", num_classes: int | None = None,
                   progress: ProgressFactory = null_progress) -> LowShotResult:
    """Run the linear probe and / or kNN on every low-shot subset; test on all of test.

    Parameters
    ----------
    train_x : ndarray or Tensor, shape (N, D)
    y_train : ndarray or Tensor, shape (N,)
    test_x : ndarray or Tensor, shape (M, D)
    y_test : ndarray or Tensor, shape (M,)
    subsets : sequence of LowShotSubset
        From :func:`lowshot_subsets` on ``y_train``.
    methods : sequence of {'linear', 'knn'}, default ('linear', 'knn')
    seed : int, default 0
        The linear probe's seed (its validation split within a subset).
    k, temperature : int, float, default 20, 0.07
        kNN (DINO's values); ``k`` is clipped to the subset size.
    single_shot_weight_decay : float, default 1e-3
        The linear probe's one weight decay on subsets with one image per class (no
        validation split is possible there).
    linear_options : mapping, optional
        Further keyword arguments of :func:`~umae_eval.probes.linear.linear_probe`
        (``weight_decays``, ``val_fraction``, ``backend``, ``device``, ...).
    knn_backend : {'auto', 'faiss', 'torch'}, default 'auto'
    num_classes : int, optional
        Default ``max(y_train, y_test) + 1`` (so a subset's probe scores every class).
    progress : ProgressFactory, default null_progress

    Returns
    -------
    LowShotResult
        One :class:`LowShotEntry` per (subset name, method), subsets in first-seen order.
    """
    if isinstance(methods, str) or len(methods) == 0:
        raise UmaeError(f"methods must be a non-empty sequence of 'linear' / 'knn', got {methods!r}")
    for m in methods:
        if m not in _METHODS:
            raise UmaeError(f"low-shot method must be one of 'linear', 'knn', got {m!r}")
    if len(subsets) == 0:
        raise UmaeError("lowshot_probes needs at least one subset (from lowshot_subsets)")
    n = int(train_x.shape[0])
    ytr = check_labels(y_train, n, "y_train", "train_x")
    yte = check_labels(y_test, int(test_x.shape[0]), "y_test", "test_x")
    c = resolve_num_classes(num_classes, ytr, yte)
    for s in subsets:
        if len(s.indices) and (s.indices.min() < 0 or s.indices.max() >= n):
            raise UmaeError(f"low-shot subset {s.name} (draw {s.draw}) indexes row {int(s.indices.max())} "
                            f"but train_x has {n} rows; make the subsets from these labels")
    lin_opts = dict(linear_options or {})
    for reserved in ("seed", "num_classes", "progress"):
        if reserved in lin_opts:
            raise UmaeError(f"linear_options must not set {reserved!r}; lowshot_probes sets it")
    names = list(dict.fromkeys(s.name for s in subsets))
    runs: dict[tuple[str, str], list[tuple[LowShotSubset, ProbeResult]]] = {}
    with progress("low-shot probes: subsets x draws", total=len(subsets) * len(methods)) as advance:
        for s in subsets:
            rows = torch.from_numpy(s.indices) if isinstance(train_x, torch.Tensor) else s.indices
            xs, ys = train_x[rows], ytr[s.indices]
            for m in methods:
                if m == "linear":
                    opts = dict(lin_opts)
                    if s.per_class < 2:
                        opts.update(weight_decays=(single_shot_weight_decay,), val_fraction=0.0)
                    r = linear_probe(xs, ys, test_x, yte, seed=seed, num_classes=c, **opts)
                else:
                    r = knn_probe(xs, ys, test_x, yte, ks=(k,), temperature=temperature, backend=knn_backend,
                                  num_classes=c)
                runs.setdefault((s.name, m), []).append((s, r))
                advance(1)
    entries = [LowShotEntry(name, m, runs[(name, m)][0][0].per_class, [s.draw for s, _ in runs[(name, m)]],
                            [r.accuracy for _, r in runs[(name, m)]], [r for _, r in runs[(name, m)]])
               for name in names for m in methods]
    draws = sorted({s.draw for s in subsets})
    settings = {"protocol": "class-balanced seeded subsets of train, nested within a draw; probes scored on "
                            "all of test; mean and sample std over draws",
                "subsets": [{"name": name, "per_class": next(s.per_class for s in subsets if s.name == name),
                             "kind": next(s.kind for s in subsets if s.name == name),
                             "value": next(s.value for s in subsets if s.name == name)} for name in names],
                "draws": draws, "subset_seed": sorted({s.seed for s in subsets}), "methods": list(methods),
                "seed": seed, "num_classes": c,
                "num_train_full": n, "num_test": int(len(yte)),
                "knn": {"k": k, "temperature": temperature, "backend": knn_backend},
                "linear": {"options": lin_opts, "single_shot_weight_decay": single_shot_weight_decay,
                           "single_shot_rule": "one image per class: no validation split, one weight decay"}}
    return LowShotResult(entries, settings)
