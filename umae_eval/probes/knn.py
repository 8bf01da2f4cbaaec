"""Weighted k-nearest-neighbour classifier on cosine similarity (the InstDisc / DINO kNN probe).

Each test feature votes with its ``k`` most cosine-similar training features, neighbour ``j``
adding ``exp(s_j / T)`` to its class (Wu et al., CVPR 2018 "InstDisc"; Caron et al., ICCV 2021
"DINO", ``T = 0.07``, ``k = 20``). Two search backends give the same neighbours:

- ``'faiss'``: ``faiss.IndexFlatIP`` (exact inner product) on L2-normalised float32 features;
- ``'torch'``: a plain matmul + ``topk`` over test-row chunks, on any device (GPU included).

``'auto'`` picks torch for CUDA tensors and faiss otherwise (torch if faiss is missing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from umae_eval.errors import UmaeError
from umae_eval.metrics._inputs import (
    ArrayLike,
    accuracy_percent,
    check_choice,
    check_features,
    check_positive,
    check_probe_inputs,
    check_same_dim,
    to_tensor,
)
from umae_eval.probes.blocks import DEFAULT_BLOCK_ROWS, ProbePath, check_block_rows, knn_memory_bytes, resolve_path
from umae_eval.probes.knn_blocked import canonical_topk, knn_search_blocked, normalize_rows
from umae_eval.probes.result import ProbeResult

__all__ = ["KnnBackend", "knn_accuracy", "knn_probe", "knn_search"]

KnnBackend = Literal["auto", "faiss", "torch"]

#: Similarity matrix entries per torch chunk (~256 MiB in float32).
_CHUNK_ELEMENTS = 1 << 26


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _resolve_backend(backend: str, *arrays: ArrayLike) -> Literal["faiss", "torch"]:
    check_choice(backend, ("auto", "faiss", "torch"), "backend")
    if backend == "faiss":
        if not _faiss_available():
            raise UmaeError("backend='faiss' needs the faiss-cpu package (pip install faiss-cpu), "
                            "or use backend='torch'")
        return "faiss"
    if backend == "torch":
        return "torch"
    on_cuda = any(isinstance(a, torch.Tensor) and a.is_cuda for a in arrays)
    return "torch" if on_cuda or not _faiss_available() else "faiss"


def _check_k(k: int, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UmaeError(f"{name} must be an integer >= 1, got {k!r}")
    return int(k)


def _normalized(x: ArrayLike, device: torch.device | str | None = None) -> torch.Tensor:
    return normalize_rows(to_tensor(x, device=device, dtype=torch.float32))


def knn_search(train_x: ArrayLike, test_x: ArrayLike, k: int,
               backend: KnnBackend = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    r"""The ``k`` most cosine-similar training rows of each test row, most similar first.

    .. math::
        s_{ij} = \frac{x_i^\top t_j}{\lVert x_i\rVert\,\lVert t_j\rVert}, \qquad
        \mathcal{N}_k(j) = \operatorname{top-}k_i\; s_{ij}

    Parameters
    ----------
    train_x : ndarray or Tensor, shape (N, D)
    test_x : ndarray or Tensor, shape (M, D)
    k : int
        Clipped to N.
    backend : {'auto', 'faiss', 'torch'}

    Returns
    -------
    (similarities, indices) : Tensor (M, k) float32, Tensor (M, k) int64
        On the device of ``train_x`` for ``'torch'``, on the CPU for ``'faiss'``; ordered by
        similarity, ties by lower train index (:func:`~umae_eval.probes.knn_blocked.canonical_topk`).
    """
    check_features(train_x, "train_x")
    check_features(test_x, "test_x")
    check_same_dim(train_x, test_x, ("train_x", "test_x"))
    k = min(_check_k(k), int(train_x.shape[0]))
    which = _resolve_backend(backend, train_x, test_x)
    if which == "faiss":
        import faiss

        base = _normalized(train_x, "cpu").numpy()
        query = _normalized(test_x, "cpu").numpy()
        index = faiss.IndexFlatIP(base.shape[1])
        index.add(np.ascontiguousarray(base))
        sims, idx = index.search(np.ascontiguousarray(query), k)
        return canonical_topk(torch.from_numpy(sims), torch.from_numpy(idx.astype(np.int64)), k)
    base_t = _normalized(train_x)
    query_t = _normalized(test_x, base_t.device)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, base_t.shape[0]))
    sims_out, idx_out = [], []
    for start in range(0, query_t.shape[0], chunk):
        s, i = torch.topk(query_t[start:start + chunk] @ base_t.T, k, dim=1, largest=True, sorted=True)
        sims_out.append(s)
        idx_out.append(i)
    return canonical_topk(torch.cat(sims_out), torch.cat(idx_out), k)


def _vote(sims: torch.Tensor, neighbour_labels: torch.Tensor, k: int, temperature: float,
          num_classes: int) -> np.ndarray:
    """``argmax_c sum_{j <= k} exp(s_j / T) [y_j = c]`` for each row (ties -> lower class)."""
    weights = torch.exp(sims[:, :k].to(torch.float64) / temperature)
    votes = torch.zeros(sims.shape[0], num_classes, dtype=torch.float64, device=sims.device)
    votes.scatter_add_(1, neighbour_labels[:, :k], weights)
    return votes.argmax(dim=1).cpu().numpy()


def knn_probe(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, test_y: ArrayLike,
              ks: Sequence[int] = (10, 20, 200), temperature: float = 0.07,
              backend: KnnBackend = "auto", num_classes: int | None = None,
              report_k: int | None = None, path: ProbePath = "auto", block_rows: int = DEFAULT_BLOCK_ROWS,
              device: str | torch.device | None = None, return_neighbours: bool = False) -> ProbeResult:
    r"""Weighted kNN accuracy for several ``k`` from one search at ``max(ks)``.

    .. math::
        \hat y(t) = \arg\max_c \sum_{i \in \mathcal{N}_k(t)} \exp(s_i / T)\,[y_i = c]

    with ``s_i`` the cosine similarity of training feature ``i`` to ``t`` and ``\mathcal{N}_k``
    its ``k`` nearest neighbours (InstDisc, Wu et al. 2018; DINO, Caron et al. 2021:
    ``T = 0.07``, ``k = 20``; ``k = 200`` is InstDisc's). Each ``k`` is clipped to the training
    size (recorded in ``settings['ks_effective']``).

    Parameters
    ----------
    train_x : ndarray or Tensor, shape (N, D)
    train_y : ndarray or Tensor, shape (N,)
    test_x : ndarray or Tensor, shape (M, D)
    test_y : ndarray or Tensor, shape (M,)
    ks : sequence of int, default (10, 20, 200)
    temperature : float, default 0.07
    backend : {'auto', 'faiss', 'torch'}, default 'auto'
    num_classes : int, optional
        Default ``max(train_y, test_y) + 1``.
    report_k : int, optional
        Which ``k`` fills ``accuracy``: default 20 if in ``ks``, else ``ks[0]``.
    path : {'auto', 'memory', 'blocked'}, default 'auto'
        'blocked' reads the train features in row blocks of ``block_rows``, float32 per block,
        with a running top-k merge (:mod:`umae_eval.probes.knn_blocked`; same neighbours);
        'auto' takes it when the in-memory search's estimated memory exceeds 4 GiB
        (:mod:`umae_eval.probes.blocks`). Recorded in ``settings['path']``.
    block_rows : int, default 32768
    device : str or torch.device, optional
        Where the blocked search computes (default: the train tensor's device, else the CPU).
    return_neighbours : bool, default False
        Also put the ``(M, max(ks))`` int64 train indices of the neighbours in
        ``extras['neighbours']`` (not JSON-sized for large M: pop it before writing).

    Returns
    -------
    ProbeResult
        ``method='knn'``, ``accuracy`` (percent) at ``report_k``,
        ``extras['accuracy_by_k'] = {k: percent}``.

    Examples
    --------
    >>> x = np.array([[1.0, 0.0], [0.9, 0.2], [0.0, 1.0], [0.2, 0.9]])
    >>> y = np.array([0, 0, 1, 1])
    >>> knn_probe(x, y, np.array([[1.0, 0.1]]), np.array([0]), ks=(1, 3)).extras["accuracy_by_k"]
    {1: 100.0, 3: 100.0}
    """
    if isinstance(ks, (int, np.integer)) or len(ks) == 0:
        raise UmaeError(f"ks must be a non-empty sequence of integers >= 1, got {ks!r}")
    ks_list = [_check_k(k, "each k in ks") for k in ks]
    check_positive(temperature, "temperature")
    if report_k is None:
        report_k = 20 if 20 in ks_list else ks_list[0]
    elif report_k not in ks_list:
        raise UmaeError(f"report_k={report_k} is not one of ks={ks_list}")
    tr, ytr, te, yte, c = check_probe_inputs(train_x, train_y, test_x, test_y, num_classes)
    n_train = int(tr.shape[0])
    k_max = min(max(ks_list), n_train)
    route = resolve_path(path, knn_memory_bytes(n_train, int(te.shape[0]), int(tr.shape[1])))
    check_choice(backend, ("auto", "faiss", "torch"), "backend")
    if route == "blocked":
        if backend == "faiss":
            raise UmaeError("path='blocked' searches with torch (matmul + top-k per block); "
                            "use backend='torch' or 'auto', or path='memory' for faiss")
        block_rows = check_block_rows(block_rows)
        dev = torch.device(device) if device is not None else (
            tr.device if isinstance(tr, torch.Tensor) else torch.device("cpu"))
        which = "torch"
        sims, idx = knn_search_blocked(tr, te, k_max, block_rows, dev)
    else:
        which = _resolve_backend(backend, tr, te)
        sims, idx = knn_search(tr, te, k_max, backend=which)
    labels = torch.from_numpy(ytr).to(idx.device)[idx]
    by_k: dict[int, float] = {}
    preds: dict[str, np.ndarray] = {}
    for k in ks_list:
        pred = _vote(sims, labels, min(k, n_train), temperature, c)
        by_k[k] = accuracy_percent(pred, yte)
        preds[f"knn_accuracy@{k}"] = np.asarray(pred, dtype=np.int64)
    return ProbeResult(
        method="knn",
        accuracy=by_k[report_k],
        settings={"k": report_k, "ks": ks_list, "ks_effective": [min(k, n_train) for k in ks_list],
                  "temperature": float(temperature), "backend": which, "backend_requested": backend,
                  "similarity": "cosine", "weighting": "exp(similarity / temperature)",
                  "num_classes": c, "num_train": n_train, "num_test": int(te.shape[0]),
                  "dim": int(tr.shape[1]), "path": route,
                  **({"block_rows": block_rows} if route == "blocked" else {})},
        extras={"accuracy_by_k": by_k, **({"neighbours": idx.cpu().numpy()} if return_neighbours else {})},
        test_predictions=preds,
    )


def knn_accuracy(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, test_y: ArrayLike,
                 k: int = 20, temperature: float = 0.07, backend: KnnBackend = "auto",
                 num_classes: int | None = None) -> float:
    """Weighted kNN test accuracy (percent) at one ``k``; see :func:`knn_probe` for the formula.

    Defaults ``k = 20``, ``T = 0.07`` are DINO's (Caron et al. 2021).
    """
    _check_k(k)
    return knn_probe(train_x, train_y, test_x, test_y, ks=(k,), temperature=temperature,
                     backend=backend, num_classes=num_classes).accuracy
