r"""Row blocks of a feature array too large to copy: the out-of-core probes' reading and sizing.

A feature array ``(N, D)`` (an ``np.memmap`` of float16 from the feature store, any ndarray,
or a tensor) is read ``block_rows`` rows at a time and converted to float32 on the probe's
device one block at a time, so a float16 store stays float16 on disk and nothing of size
``N x D`` in float32 (or ``N x classes``) is ever held.

Memory model (bytes; ``N`` train rows, ``M`` test rows, ``D`` dims, ``C`` classes, float32):

- in-memory linear probe ('fast'): the float32 train copy, its standardised copy and the
  fit-split copy (``3 N D``), the logits / probabilities / gradient of the loss (``3 N C``):
  :func:`linear_memory_bytes` ``= 4 (3 N D + 3 N C + 2 M D)``; measured 2.9 GB at
  N = 131,072, D = 768, C = 1000, the formula gives 2.9 GB;
- in-memory kNN: the float32 train copy and its normalised copy, and one similarity chunk:
  :func:`knn_memory_bytes` ``= 4 (2 N D + 2 M D) + 256 MiB``;
- blocked paths: ``O(block_rows (D + C))`` plus the selection subset (linear), or the queries
  and their running top-k (kNN), whatever ``N`` is.

``path='auto'`` takes the blocked path when the in-memory estimate exceeds
:data:`MEMORY_BUDGET_BYTES` (4 GiB): at D = 768 and C = 1000 that is about N > 190,000 rows
for the linear probe and N > 290,000 for kNN (50k queries).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch

from umae_eval.errors import UmaeError
from umae_eval.metrics._inputs import ArrayLike

ProbePath = Literal["auto", "memory", "blocked"]

#: In-memory estimate above which ``path='auto'`` reads the features in blocks.
MEMORY_BUDGET_BYTES = 4 << 30

#: Rows per block: 32,768 x 768 float32 is 96 MiB, its 1000-class logits 128 MiB.
DEFAULT_BLOCK_ROWS = 32768


def linear_memory_bytes(n: int, m: int, d: int, c: int) -> int:
    """Estimated peak bytes of the in-memory 'fast' linear probe (see the module docstring)."""
    return 4 * (3 * n * d + 3 * n * c + 2 * m * d)


def knn_memory_bytes(n: int, m: int, d: int) -> int:
    """Estimated peak bytes of the in-memory kNN search (see the module docstring)."""
    return 4 * (2 * n * d + 2 * m * d) + (1 << 28)


def resolve_path(path: str, estimate_bytes: int) -> Literal["memory", "blocked"]:
    """``'memory'`` / ``'blocked'`` as asked, or by the memory estimate for ``'auto'``."""
    if path not in ("auto", "memory", "blocked"):
        raise UmaeError(f"path must be one of auto, memory, blocked, got {path!r}")
    if path == "auto":
        return "blocked" if estimate_bytes > MEMORY_BUDGET_BYTES else "memory"
    return path  # type: ignore[return-value]


def check_block_rows(block_rows: int) -> int:
    if isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer)) or block_rows < 1:
        raise UmaeError(f"block_rows must be an integer >= 1, got {block_rows!r}")
    return int(block_rows)


def read_block(x: ArrayLike, start: int, stop: int, device: torch.device,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Rows ``[start, stop)`` of ``x`` as a ``dtype`` tensor ``(stop - start, D)`` on ``device``."""
    if isinstance(x, torch.Tensor):
        return x[start:stop].detach().to(device=device, dtype=dtype)
    # a copy of the (small) block: a read-only memmap view would make torch warn
    return torch.from_numpy(np.array(x[start:stop])).to(device=device, dtype=dtype)


def iter_blocks(x: ArrayLike, block_rows: int, device: torch.device) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, rows (B, D) float32)`` for consecutive blocks of ``x``, in order."""
    n = int(x.shape[0])
    for start in range(0, n, block_rows):
        yield start, read_block(x, start, min(n, start + block_rows), device)


def gather_rows(x: ArrayLike, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows ``rows`` (sorted int indices) of ``x`` as a float32 tensor ``(len(rows), D)``."""
    if isinstance(x, torch.Tensor):
        return x[torch.from_numpy(rows).to(x.device)].detach().to(device=device, dtype=torch.float32)
    return torch.from_numpy(np.ascontiguousarray(x[rows])).to(device=device, dtype=torch.float32)


def column_stats(x: ArrayLike, block_rows: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std ``(D,)`` of ``x`` in one streamed pass (float64, Chan's merge).

    Per block: its mean and sum of squared deviations, in float32 (a block's deviations from its
    own mean are small, so float32 loses nothing the probe could see, and it is about 3x faster
    than converting every block to float64), then merged pairwise in float64 (Chan, Golub &
    LeVeque 1979), so that large means do not cancel the variance as ``E[x^2] - E[x]^2`` would.
    """
    count = 0
    mean = m2 = None
    for _, blk in iter_blocks(x, block_rows, device):
        nb = blk.shape[0]
        mb32 = blk.mean(dim=0)
        m2b = (blk - mb32).square_().sum(dim=0).to(torch.float64)  # never in place: blk may be the caller's tensor
        mb = mb32.to(torch.float64)
        if mean is None:
            mean, m2, count = mb, m2b, nb
            continue
        delta = mb - mean
        total = count + nb
        mean = mean + delta * (nb / total)
        m2 = m2 + m2b + delta.square() * (count * nb / total)
        count = total
    assert mean is not None and m2 is not None
    return mean, (m2 / count).sqrt()
