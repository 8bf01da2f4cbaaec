"""The mask-induced augmentation graph on a small sample of views, and its spectrum.

Beyond the paper's Fig. 2: Theorem 4.2 bounds the U-MAE loss below by
``1/(4L) sum_{i>k} lambda_i^2`` over the eigenvalues of the augmentation graph's normalised
adjacency, and Sec. 4.2 argues that masking more connects the graph (smaller residual
eigenvalues). The true graph (probability that two views share a target view) cannot be
enumerated, so we build a similarity graph on sampled views:

- nodes: ``n`` class-balanced test images x ``K_g`` masked views each (own MAE masks);
- view distance ``d_uv``: pixel space, l2 between the zero-filled masked images (the
  ``masked-image`` distance); feature space, l2 between the encoder's features of the views;
- edge weights, a Gaussian kernel with the median heuristic:
  ``A_uv = exp(-d_uv^2 / (2 h^2))``, ``h = median_{u<v} d_uv`` (recomputed at each rho, so the
  graph's scale follows the shrinking distances), self-loops ``A_uu = 1`` kept;
- ``A_bar = D^-1/2 A D^-1/2`` with ``D = diag(sum_v A_uv)``. The Gaussian kernel is positive
  semi-definite, so the eigenvalues of ``A_bar`` lie in ``[0, 1]`` with ``lambda_1 = 1``.

Reported per rho: the top eigenvalues, the residual ``sum_{i>k} lambda_i^2`` with ``k`` = the
number of classes, its share of ``sum_i lambda_i^2 = ||A_bar||_F^2``, and the share of edge weight
between different images that joins images of the same class (chance ~ 1/k).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["GraphStats", "gaussian_affinity", "normalized_adjacency", "top_eigenvalues", "graph_stats"]


@dataclass
class GraphStats:
    """Spectral summary of one augmentation graph (one rho).

    Attributes
    ----------
    eigenvalues : Tensor, float64, shape (top,)
        Largest eigenvalues of ``A_bar``, descending.
    residual : float
        ``sum_{i>k} lambda_i^2`` over all N eigenvalues sorted descending.
    residual_share : float
        ``residual / sum_i lambda_i^2``.
    bandwidth : float
        Kernel bandwidth ``h``.
    same_class_edge_share : float
        ``sum A_uv [y_u = y_v] / sum A_uv`` over pairs of views of different images.
    same_class_chance : float
        The same share if every such pair had equal weight (a graph blind to class): the share
        of same-class pairs among pairs of views of different images, ``(m - 1) / (n - 1)`` for
        n images, m per class (just below 1/k).
    """

    eigenvalues: Tensor
    residual: float
    residual_share: float
    bandwidth: float
    same_class_edge_share: float
    same_class_chance: float = float("nan")


def _median(values: Tensor) -> float:
    """numpy's median (mean of the two middle values for an even count); torch.median returns
    the lower one and torch.quantile is slow and size-limited."""
    m = values.numel()
    lo = values.kthvalue((m + 1) // 2).values
    hi = values.kthvalue(m // 2 + 1).values if m % 2 == 0 else lo
    return float((lo + hi) / 2)


def gaussian_affinity(dist: Tensor) -> tuple[Tensor, float]:
    """Gaussian kernel with the median heuristic.

    Parameters
    ----------
    dist : Tensor, shape (N, N)
        Symmetric distances, zero diagonal.

    Returns
    -------
    A : Tensor, shape (N, N)
        ``exp(-dist^2 / (2 h^2))``; all ones when ``h = 0`` (every view identical).
    h : float
        Median of the strictly upper-triangular distances (mean of the two middle values when
        their number is even).
    """
    n = dist.shape[0]
    iu = torch.triu_indices(n, n, offset=1, device=dist.device)
    h = _median(dist[iu[0], iu[1]]) if n > 1 else 0.0
    if h <= 0.0:
        return torch.ones_like(dist), h
    return torch.exp(-dist.pow(2) / (2.0 * h * h)), h


def normalized_adjacency(adj: Tensor) -> Tensor:
    """``D^-1/2 A D^-1/2`` with ``D = diag(A 1)``; shape (N, N) as ``adj``."""
    d = adj.sum(1).clamp_min(torch.finfo(adj.dtype).tiny).rsqrt()
    return d[:, None] * adj * d[None, :]


def top_eigenvalues(sym: Tensor, top: int, *, exact_below: int = 600) -> Tensor:
    """The ``top`` largest eigenvalues of a symmetric matrix, descending.

    Up to ``exact_below`` rows: all eigenvalues (``torch.linalg.eigvalsh``). Above: Lanczos
    (``scipy.sparse.linalg.eigsh``, ``which='LA'``), falling back to the full solver if it does
    not converge. Shape (N, N) in, (min(top, N),) float64 out.
    """
    n = sym.shape[0]
    top = min(top, n)
    if n > exact_below and top < n - 1:
        from scipy.sparse.linalg import ArpackNoConvergence, eigsh

        try:
            # A fixed start vector keeps runs bit-for-bit repeatable (ARPACK's default is random).
            vals = eigsh(sym.detach().cpu().double().numpy(), k=top, which="LA",
                         return_eigenvectors=False, tol=1e-10, v0=np.full(n, n ** -0.5))
            return torch.from_numpy(vals.copy()).sort(descending=True).values
        except ArpackNoConvergence:
            pass
    return torch.linalg.eigvalsh(sym.double()).flip(0)[:top].cpu()


def graph_stats(dist: Tensor, labels: Tensor, image_ids: Tensor, k: int, top: int = 20,
                *, exact_below: int = 600) -> GraphStats:
    """Build the Gaussian augmentation graph from view distances and summarise its spectrum.

    The residual uses ``sum_i lambda_i^2 = ||A_bar||_F^2`` (``A_bar`` is symmetric), so only the
    top ``max(top, k)`` eigenvalues are computed:
    ``residual = ||A_bar||_F^2 - sum_{i<=k} lambda_i^2``.

    Parameters
    ----------
    dist : Tensor, shape (N, N)
        Distances between the N views.
    labels : Tensor, int64, shape (N,)
        Class of each view's image.
    image_ids : Tensor, int64, shape (N,)
        Which image each view comes from (pairs of views of one image are left out of the
        same-class edge share).
    k : int
        Eigenvalues kept by k-dimensional features (the number of classes).
    top : int
        Eigenvalues to return.
    exact_below : int
        Graphs up to this many nodes get the full eigen-decomposition (see :func:`top_eigenvalues`).

    Returns
    -------
    GraphStats
    """
    dist64 = dist.to(torch.float64)
    adj, h = gaussian_affinity(dist64)
    a_bar = normalized_adjacency(adj)
    eig = top_eigenvalues(a_bar, max(top, k), exact_below=exact_below)
    total = float(a_bar.pow(2).sum())
    residual = max(total - float(eig[:k].pow(2).sum()), 0.0)
    labels = labels.to(adj.device)
    image_ids = image_ids.to(adj.device)
    other_image = image_ids[:, None] != image_ids[None, :]
    same_class = labels[:, None] == labels[None, :]
    cross_mass = float(adj[other_image].sum())
    share = float(adj[other_image & same_class].sum()) / cross_mass if cross_mass > 0 else float("nan")
    n_cross = int(other_image.sum())
    chance = int((other_image & same_class).sum()) / n_cross if n_cross else float("nan")
    return GraphStats(
        eigenvalues=eig[:top].cpu(), residual=residual,
        residual_share=residual / total if total > 0 else float("nan"),
        bandwidth=h, same_class_edge_share=share, same_class_chance=chance,
    )
