"""2-D maps of features: t-SNE (the paper's Fig. 3a) and UMAP, plus class-balanced subsets.

The library never prints. UMAP compiles its numba kernels on the first call in a process
(about ``UMAP_COMPILE_SECONDS``); a caller that wants to say so on screen asks
:func:`umap_needs_compile` first::

    if method == "umap" and umap_needs_compile():
        say(f"UMAP compiles on first use: ~{UMAP_COMPILE_SECONDS} s")
    result = embed(features[idx], "umap", seed=0)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from umae_eval.errors import UmaeError
from umae_eval.metrics._inputs import ArrayLike, check_choice, check_features, check_labels, to_numpy64
from umae_eval.progress import ProgressFactory, null_progress

__all__ = [
    "EmbedMethod",
    "EmbeddingResult",
    "TSNE_DEFAULTS",
    "UMAP_COMPILE_SECONDS",
    "UMAP_DEFAULTS",
    "class_balanced_subset",
    "embed",
    "umap_needs_compile",
]

EmbedMethod = Literal["tsne", "umap"]

#: Rough first-call cost of UMAP in a fresh process (numba JIT), seconds, on a laptop CPU.
UMAP_COMPILE_SECONDS = 15

#: t-SNE defaults: perplexity 30 and PCA initialisation (van der Maaten & Hinton 2008;
#: Kobak & Berens 2019 for PCA init), one or two threads.
TSNE_DEFAULTS: dict[str, Any] = {"perplexity": 30.0, "initialization": "pca", "n_jobs": 1}

#: UMAP defaults (McInnes et al. 2018, the umap-learn defaults).
UMAP_DEFAULTS: dict[str, Any] = {"n_neighbors": 15, "min_dist": 0.1, "metric": "euclidean"}

_umap_compiled = False


@dataclass
class EmbeddingResult:
    """A 2-D map of N features.

    Attributes
    ----------
    coords : ndarray, shape (N, 2)
        float64 map coordinates, row ``i`` for feature ``i``.
    method : str
        ``'tsne'`` or ``'umap'``.
    settings : dict
        Everything that fixes the map: implementation and version, seed, perplexity /
        n_neighbors, min_dist, initialisation, N and D.
    """

    coords: np.ndarray = field(repr=False)
    method: str
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"coords": self.coords.tolist(), "method": self.method, "settings": dict(self.settings)}


def umap_needs_compile() -> bool:
    """True until a UMAP map has been computed in this process (the next call compiles, ~15 s)."""
    return not _umap_compiled


def class_balanced_subset(labels: ArrayLike, per_class: int = 500, seed: int = 0) -> np.ndarray:
    """Indices of up to ``per_class`` samples of every class, drawn without replacement.

    A class with fewer samples contributes all of them. The draw is seeded
    (``numpy.random.default_rng(seed)``) and the returned indices are sorted.
    500 per class gives the 5,000-point maps of 10 classes used for Fig. 3a-style plots.

    Parameters
    ----------
    labels : ndarray or Tensor, shape (N,)
        Integer class indices >= 0.
    per_class : int, default 500
    seed : int, default 0

    Returns
    -------
    ndarray of int64, shape (M,)

    Examples
    --------
    >>> class_balanced_subset(np.array([0, 0, 0, 1]), per_class=2).size
    3
    """
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise UmaeError(f"per_class must be an integer >= 1, got {per_class!r}")
    shape = tuple(getattr(labels, "shape", np.shape(labels)))
    y = check_labels(labels, int(shape[0]) if len(shape) == 1 else -1, "labels", "labels")
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        picks.append(idx if len(idx) <= per_class else rng.choice(idx, size=per_class, replace=False))
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)


def _tsne(x: np.ndarray, seed: int, options: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    opts = {**TSNE_DEFAULTS, **options}
    implementation = opts.pop("implementation", "auto")
    check_choice(implementation, ("auto", "opentsne", "sklearn"), "implementation")
    max_perplexity = (x.shape[0] - 1) / 3.0
    if opts["perplexity"] > max_perplexity:  # both libraries need N > 3 * perplexity
        opts["perplexity"] = max_perplexity
    if implementation in ("auto", "opentsne"):
        try:
            import openTSNE
        except ImportError:
            if implementation == "opentsne":
                raise UmaeError("t-SNE with implementation='opentsne' needs the openTSNE package "
                                "(pip install openTSNE)") from None
        else:
            tsne = openTSNE.TSNE(n_components=2, random_state=seed, verbose=False, **opts)
            coords = np.asarray(tsne.fit(x), dtype=np.float64)
            return coords, {"implementation": "openTSNE", "version": openTSNE.__version__, **opts}
    import sklearn
    from sklearn.manifold import TSNE

    sk_opts = dict(opts)
    sk_opts["init"] = sk_opts.pop("initialization")
    coords = TSNE(n_components=2, random_state=seed, **sk_opts).fit_transform(x)
    return np.asarray(coords, dtype=np.float64), {"implementation": "scikit-learn", "version": sklearn.__version__,
                                                  **sk_opts}


def _umap(x: np.ndarray, seed: int, options: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    global _umap_compiled
    try:
        import umap
    except ImportError:
        raise UmaeError("UMAP maps need the umap-learn package (pip install umap-learn)") from None
    opts = {**UMAP_DEFAULTS, **options}
    opts["n_neighbors"] = int(min(opts["n_neighbors"], x.shape[0] - 1))
    with warnings.catch_warnings():
        # umap warns that a random_state forces a single thread: that is what we ask for.
        warnings.simplefilter("ignore", UserWarning)
        reducer = umap.UMAP(n_components=2, random_state=seed, **opts)
        coords = reducer.fit_transform(x)
    _umap_compiled = True
    from importlib import metadata

    return np.asarray(coords, dtype=np.float64), {"implementation": "umap-learn",
                                                  "version": metadata.version("umap-learn"), **opts}


def embed(features: ArrayLike, method: EmbedMethod, seed: int = 0, progress: ProgressFactory = null_progress,
          **options: Any) -> EmbeddingResult:
    r"""A seeded 2-D map of the features by t-SNE or UMAP.

    t-SNE minimises :math:`\mathrm{KL}(P \Vert Q)` between Gaussian input affinities of
    perplexity 30 and Student-t map affinities (van der Maaten & Hinton 2008), through openTSNE
    (FFT-accelerated, faster than scikit-learn at 5-10k points) with PCA initialisation, or
    scikit-learn's ``TSNE`` when openTSNE is missing (or ``implementation='sklearn'``). The
    perplexity is lowered to ``(N - 1) / 3`` for tiny inputs. UMAP uses umap-learn with
    ``n_neighbors = 15`` (at most N - 1), ``min_dist = 0.1`` (McInnes et al. 2018); its first
    call in a process compiles for about ``UMAP_COMPILE_SECONDS`` (see
    :func:`umap_needs_compile`). Both are deterministic for a given seed on one machine.

    Parameters
    ----------
    features : ndarray or Tensor, shape (N, D), N >= 5
        Typically a :func:`class_balanced_subset` of the features.
    method : {'tsne', 'umap'}
    seed : int, default 0
    progress : ProgressFactory, default null_progress
        Shows one indeterminate task while the map is computed.
    **options
        Passed to the library, overriding the defaults (``perplexity``, ``n_jobs``,
        ``n_neighbors``, ``min_dist``, ...); t-SNE also takes
        ``implementation='auto'|'opentsne'|'sklearn'``.

    Returns
    -------
    EmbeddingResult
        ``coords`` ``(N, 2)``, ``method`` and ``settings``.
    """
    check_choice(method, ("tsne", "umap"), "method")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UmaeError(f"seed must be an integer >= 0, got {seed!r}")
    x = to_numpy64(check_features(features, "features", min_rows=5))
    label = "t-SNE map" if method == "tsne" else "UMAP map"
    with progress(f"{label} of {x.shape[0]} points", total=None) as advance:
        try:
            coords, settings = (_tsne if method == "tsne" else _umap)(x, int(seed), dict(options))
        except TypeError as exc:  # an option the library does not know
            raise UmaeError(f"{label}: bad option ({exc})") from None
        advance(1)
    settings.update({"seed": int(seed), "num_samples": int(x.shape[0]), "dim": int(x.shape[1])})
    return EmbeddingResult(coords=coords, method=method, settings=settings)
