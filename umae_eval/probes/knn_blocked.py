r"""Exact cosine kNN search over row blocks of the train features, with a running top-k merge.

The train features ``(N, D)`` (a float16 ``np.memmap`` included) are read once, one block of
``block_rows`` rows at a time, converted to float32 and L2-normalised per block on the device;
the normalised queries ``(M, D)`` and their running top-k ``(M, k)`` are the only things held
whole. Per block and query chunk: ``s = q @ x_blk^T``, ``torch.topk`` of the block, then a
merge with the running list under the tie rule :func:`canonical_topk` (similarity descending,
ties -> lower train index), the rule :func:`~umae_eval.probes.knn.knn_search` applies to its
in-memory result too, so both return the same neighbours whenever their similarities agree
bit for bit (float32 dot products of the same rows).
"""

from __future__ import annotations

import torch

from umae_eval.metrics._inputs import ArrayLike
from umae_eval.probes.blocks import iter_blocks

#: Similarity entries per (query chunk x train block) product (~256 MiB in float32).
_CHUNK_ELEMENTS = 1 << 26


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """``x / max(||x||, 1e-12)`` per row, the normalisation of the in-memory search."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def canonical_topk(sims: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``k`` of each row of candidates ``(Q, K)`` ordered by similarity desc, then index asc.

    Exact ties at the k-th place inside one block's ``torch.topk`` (duplicate train rows) are
    whichever ``torch.topk`` keeps, as in the in-memory search.
    """
    by_index = torch.argsort(idx, dim=1)
    sims, idx = sims.gather(1, by_index), idx.gather(1, by_index)
    order = torch.sort(sims, dim=1, descending=True, stable=True).indices[:, :k]
    return sims.gather(1, order), idx.gather(1, order)


def knn_search_blocked(train_x: ArrayLike, test_x: ArrayLike, k: int, block_rows: int,
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` (<= N) most cosine-similar train rows of each test row, read in train blocks.

    Parameters
    ----------
    train_x : ndarray (memmap) or Tensor, shape (N, D)
    test_x : ndarray or Tensor, shape (M, D)
    k : int
    block_rows : int
    device : torch.device

    Returns
    -------
    (similarities, indices) : Tensor (M, k) float32, Tensor (M, k) int64 on ``device``
    """
    query = torch.cat([normalize_rows(b) for _, b in iter_blocks(test_x, block_rows, device)])
    m = query.shape[0]
    run_s = torch.full((m, 0), float("-inf"), device=device)
    run_i = torch.zeros((m, 0), dtype=torch.int64, device=device)
    for start, blk in iter_blocks(train_x, block_rows, device):
        base = normalize_rows(blk)
        kb = min(k, base.shape[0])
        chunk = max(1, _CHUNK_ELEMENTS // base.shape[0])
        new_s, new_i = [], []
        for q0 in range(0, m, chunk):
            s, i = torch.topk(query[q0:q0 + chunk] @ base.T, kb, dim=1, largest=True, sorted=True)
            cs = torch.cat([run_s[q0:q0 + chunk], s], dim=1)
            ci = torch.cat([run_i[q0:q0 + chunk], i + start], dim=1)
            s, i = canonical_topk(cs, ci, min(k, ci.shape[1]))
            new_s.append(s)
            new_i.append(i)
        run_s, run_i = torch.cat(new_s), torch.cat(new_i)
    return run_s, run_i
