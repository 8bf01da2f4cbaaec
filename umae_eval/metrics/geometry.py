"""Geometry of features on the sphere: alignment, uniformity, and the U-MAE uniformity term.

Alignment and uniformity are Wang & Isola's (ICML 2020) two properties of contrastive features;
the command layer encodes two masked views of the same images with
``umae_eval.features.encode_masked_views`` and hands the pair ``(z1, z2)`` to these functions.
:func:`umae_uniformity` is the regulariser U-MAE adds to the MAE loss (Zhang et al., NeurIPS
2022, Eq. 10-11), in the form the authors' code computes (``'code'``) or the paper writes
(``'paper'``).

Inputs are ``(N, D)`` numpy arrays or torch tensors (any device); the sums run in float64
torch on the input's device, in row blocks, so memory stays ``O(block * N)``.

Example
-------
>>> import numpy as np
>>> from umae_eval.metrics.geometry import alignment
>>> alignment(np.eye(2), np.eye(2))
0.0
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from umae_eval.metrics._inputs import (
    ArrayLike,
    check_choice,
    check_features,
    check_positive,
    check_same_shape,
    to_tensor,
)

__all__ = ["alignment", "uniformity", "umae_uniformity", "UniformityForm"]

UniformityForm = Literal["code", "paper"]

#: Rows per block in the O(N^2) pair sums.
_BLOCK = 2048


def _normalize(z: torch.Tensor) -> torch.Tensor:
    return z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _as64(x: ArrayLike, name: str, min_rows: int = 1) -> torch.Tensor:
    return to_tensor(check_features(x, name, min_rows=min_rows), dtype=torch.float64)


def alignment(z1: ArrayLike, z2: ArrayLike, alpha: float = 2) -> float:
    r"""Alignment of positive pairs (Wang & Isola 2020, Eq. 4): small = views map close together.

    .. math::
        \mathcal{L}_{align} = \frac{1}{N}\sum_{i=1}^{N}
            \lVert \hat z^{(1)}_i - \hat z^{(2)}_i \rVert_2^{\alpha},
        \qquad \hat z = z / \lVert z \rVert_2

    Row ``i`` of ``z1`` and of ``z2`` are two views (e.g. two random masks) of image ``i``.
    ``alpha = 2`` is Wang & Isola's default. Range ``[0, 2^alpha]``.

    Parameters
    ----------
    z1, z2 : ndarray or Tensor, shape (N, D)
        Paired features; normalised here.
    alpha : float, default 2
        Exponent of the distance, > 0.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> round(alignment(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])), 6)
    2.0
    """
    check_positive(alpha, "alpha")
    a, b = _as64(z1, "z1"), _as64(z2, "z2")
    check_same_shape(a, b, ("z1", "z2"))
    b = b.to(a.device)
    dist = (_normalize(a) - _normalize(b)).norm(dim=1)
    return float(dist.pow(alpha).mean())


def uniformity(z: ArrayLike, t: float = 2) -> float:
    r"""Uniformity (Wang & Isola 2020, Eq. 5): log of the mean Gaussian potential over distinct pairs.

    .. math::
        \mathcal{L}_{uniform} = \log \frac{1}{N(N-1)} \sum_{i \ne j}
            \exp\big(-t \lVert \hat z_i - \hat z_j \rVert_2^2\big)

    on L2-normalised features ``\hat z``; more negative = more uniform on the sphere, 0 = all
    features equal. ``t = 2`` is Wang & Isola's default. Computed with a block-wise log-sum-exp
    over ``\lVert \hat z_i - \hat z_j \rVert^2 = 2 - 2 \hat z_i^\top \hat z_j``, O(N^2 D) time.

    Parameters
    ----------
    z : ndarray or Tensor, shape (N, D), N >= 2
    t : float, default 2
        Temperature of the Gaussian potential, > 0.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> round(uniformity(np.array([[1.0, 0.0], [-1.0, 0.0]])), 6)
    -8.0
    """
    check_positive(t, "t")
    zn = _normalize(_as64(z, "z", min_rows=2))
    n = zn.shape[0]
    blocks = []
    for start in range(0, n, _BLOCK):
        rows = zn[start:start + _BLOCK]
        sq = (2.0 - 2.0 * rows @ zn.T).clamp_min(0.0)
        logits = -t * sq
        idx = torch.arange(rows.shape[0], device=zn.device)
        logits[idx, idx + start] = -math.inf  # drop i == j
        blocks.append(torch.logsumexp(logits.reshape(-1), dim=0))
    total = torch.logsumexp(torch.stack(blocks), dim=0)
    return float(total - math.log(n * (n - 1)))


def umae_uniformity(z: ArrayLike, form: UniformityForm = "code") -> float:
    r"""The U-MAE uniformity term on a batch of features (Zhang et al. 2022, Eq. 11).

    ``'code'`` — what the authors' released code computes (and Table 1 used): L2-normalised
    features, mean over all ``N^2`` pairs *including* the diagonal (each diagonal term is 1):

    .. math::
        \mathcal{L}_{code} = \frac{1}{N^2} \sum_{i,j} (\hat z_i^\top \hat z_j)^2

    ``'paper'`` — Eq. 11 literally: raw features, distinct pairs only:

    .. math::
        \mathcal{L}_{paper} = \frac{1}{N(N-1)} \sum_{i \ne j} (z_i^\top z_j)^2

    Both use ``\sum_{i,j} (z_i^\top z_j)^2 = \lVert Z^\top Z \rVert_F^2``, O(N D^2) time.

    Parameters
    ----------
    z : ndarray or Tensor, shape (N, D)
        Encoder features of (unmasked views of) different images; N >= 2 for ``'paper'``.
    form : {'code', 'paper'}, default 'code'

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> umae_uniformity(np.eye(2), form="code")
    0.5
    >>> umae_uniformity(np.eye(2), form="paper")
    0.0
    """
    check_choice(form, ("code", "paper"), "form")
    x = _as64(z, "z", min_rows=2 if form == "paper" else 1)
    n = x.shape[0]
    if form == "code":
        x = _normalize(x)
    gram = x.T @ x  # (D, D); sum_ij (z_i . z_j)^2 = ||Z^T Z||_F^2
    total = gram.square().sum()
    if form == "code":
        return float(total / (n * n))
    diag = x.square().sum(dim=1).square().sum()
    return float((total - diag) / (n * (n - 1)))
