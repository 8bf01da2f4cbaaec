"""Process-group setup under torchrun and an all-gather whose gradient is correct.

U-MAE's uniformity term is computed over the *global* batch, so features are all-gathered
across ranks. Every rank then computes the same loss ``L(F_1, ..., F_W)``; the gradient that
reaches rank r's features must be ``sum_s dL_s/dF_r`` (= ``W * dL/dF_r``), which DDP's
gradient averaging (divide by W) turns into exactly the single-process gradient.

The released U-MAE code's gather returns only ``dL_r/dF_r`` (the local slice, not summed), so
under DDP its effective lambda is divided by the world size. :func:`gather_with_grad` does not
have that defect; ``tests/trainer/test_ddp_gather.py`` checks 2 ranks x B == 1 rank x 2B.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from umae_eval.errors import UmaeError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands.

    Attributes
    ----------
    rank, world_size, local_rank : int
        Global rank, number of processes, rank on this node (0, 1, 0 when not distributed).
    device : torch.device
        ``cuda:<local_rank>`` when CUDA is available, else ``cpu``.
    is_main : bool
        ``rank == 0``: the process that logs and writes files.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool


def is_distributed() -> bool:
    """True when a process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise UmaeError(f"environment variable {name}={raw!r} is not an integer (set by torchrun)") from exc


def setup_distributed(timeout_s: float = 1800.0) -> DistInfo:
    """Initialise the default process group from torchrun's environment, if any.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and torchrun's ``MASTER_ADDR`` /
    ``MASTER_PORT`` through ``init_method='env://'``). With ``WORLD_SIZE`` > 1 it joins the
    group with NCCL on CUDA or gloo on CPU and selects ``cuda:<LOCAL_RANK>``; otherwise it
    sets nothing up and returns rank 0 of 1. Calling it twice is harmless.

    Returns
    -------
    DistInfo
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    cuda = torch.cuda.is_available()
    if world_size > 1:
        if cuda:
            if local_rank >= torch.cuda.device_count():
                raise UmaeError(
                    f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) are visible"
                )
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group(
                backend="nccl" if cuda else "gloo",
                init_method="env://",
                rank=rank,
                world_size=world_size,
                timeout=timedelta(seconds=timeout_s),
            )
        rank, world_size = dist.get_rank(), dist.get_world_size()
    else:
        rank, world_size, local_rank = 0, 1, 0
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device, is_main=rank == 0)


def cleanup_distributed() -> None:
    """Destroy the default process group if one was initialised (no-op otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True on rank 0, or when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return True


def all_reduce_mean(t: Tensor) -> Tensor:
    """Mean of ``t`` over ranks (a new tensor, no gradient); ``t`` itself when not distributed.

    Parameters
    ----------
    t : Tensor, any shape
        Same shape on every rank (for logging: a loss, an accuracy).
    """
    if not is_distributed():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; backward sums the incoming gradient over ranks, keeps this rank's rows."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        world = dist.get_world_size()
        rank = dist.get_rank()
        x = x.contiguous()
        # Row counts may differ between ranks (a short last batch): share them, pad, trim.
        n_local = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
        counts = [torch.zeros_like(n_local) for _ in range(world)]
        dist.all_gather(counts, n_local)
        sizes = [int(c.item()) for c in counts]
        n_max = max(sizes)
        if x.shape[0] < n_max:
            pad = x.new_zeros((n_max - x.shape[0],) + tuple(x.shape[1:]))
            x_pad = torch.cat([x, pad], dim=0)
        else:
            x_pad = x
        parts = [torch.empty_like(x_pad) for _ in range(world)]
        dist.all_gather(parts, x_pad)
        ctx.sizes = sizes
        ctx.rank = rank
        return torch.cat([p[:s] for p, s in zip(parts, sizes)], dim=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return total[start : start + ctx.sizes[ctx.rank]]


def gather_with_grad(x: Tensor) -> Tensor:
    """All-gather rows across ranks with the correct gradient.

    Forward: ``out = cat([x_0, ..., x_{W-1}], dim=0)`` (rank order). Backward on rank r:
    ``dx_r = (sum_s g_s)[rows of rank r]`` where ``g_s`` is rank s's gradient w.r.t. ``out``
    (an all-reduce SUM, then this rank's slice). With DDP's averaging, W ranks of batch B give
    the same parameter gradients as one process of batch W*B. Identity when not distributed.

    Parameters
    ----------
    x : Tensor, shape (B, D)
        Local rows (B may differ between ranks).

    Returns
    -------
    Tensor, shape (sum_r B_r, D)
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


class _GatherLocalGrad(_GatherWithGrad):
    """The released U-MAE gather: the same forward; backward keeps this rank's rows of its own
    gradient without summing over ranks (so DDP's averaging divides the term by the world size)."""

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]].contiguous()


def gather_released(x: Tensor) -> Tensor:
    """All-gather rows as the released U-MAE code does, for ``--unif-form released``.

    Forward as :func:`gather_with_grad`. Backward on rank r: ``dx_r = g_r[rows of rank r]``,
    rank r's own gradient only; after DDP's mean over ranks the uniformity gradient is
    ``1 / world_size`` of the correct one (the released code's effective lambda). Identity when
    not distributed, where both gathers agree.

    Parameters
    ----------
    x : Tensor, shape (B, D)

    Returns
    -------
    Tensor, shape (sum_r B_r, D)
    """
    if not is_distributed():
        return x
    return _GatherLocalGrad.apply(x)


def gather_for(unif_form: str) -> Callable[[Tensor], Tensor]:
    """The gather a uniformity form uses under DDP: :func:`gather_released` for 'released'."""
    return gather_released if unif_form == "released" else gather_with_grad
