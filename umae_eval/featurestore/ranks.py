"""Which process am I, and the few collectives a multi-process extraction needs.

Under torchrun every rank runs the same extraction; rank ``r`` of ``W`` computes the missing
chunks ``i`` with ``i % W == r``. The coordination is three points: rank 0 prepares the store
(create, or open + verify) and broadcasts the outcome; the ranks compute; they exchange their
outcome (an error on one rank is raised on all, instead of leaving the others at a barrier) and
rank 0 merges the part manifests, then everyone re-opens the merged store.

The collectives run over gloo (a CPU group) whatever the default backend is, so they never need
a CUDA device and work the same on a laptop and under NCCL training launches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from umae_eval.errors import UmaeError


@dataclass
class Ranks:
    """This process's place: ``rank`` of ``world_size``, and the CPU group to talk over."""

    rank: int = 0
    world_size: int = 1
    group: Any = None
    owns_default_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (``obj`` itself with one process)."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order."""
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def close(self) -> None:
        """Destroy the process group if this module created it."""
        if self.owns_default_group and dist.is_initialized():
            dist.destroy_process_group()


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise UmaeError(f"environment variable {name}={raw!r} is not an integer (set by torchrun)") from None


def resolve_ranks(rank: int | None = None, world_size: int | None = None,
                  timeout_s: float = 1800.0) -> Ranks:
    """Find this process's rank: an initialised process group, else torchrun's environment.

    With ``RANK``/``WORLD_SIZE`` set (torchrun) but no process group yet, a gloo group is
    initialised from the environment (``MASTER_ADDR``/``MASTER_PORT``) and destroyed by
    :meth:`Ranks.close`. Explicit ``rank``/``world_size`` must agree with the group.

    Raises
    ------
    UmaeError
        Explicit values that contradict the group, or several processes without a way to meet.
    """
    if dist.is_available() and dist.is_initialized():
        r, w = dist.get_rank(), dist.get_world_size()
        if (rank is not None and rank != r) or (world_size is not None and world_size != w):
            raise UmaeError(f"rank/world_size {rank}/{world_size} contradict the process group "
                            f"({r}/{w}); omit them under torchrun")
        if w == 1:
            return Ranks()
        group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
        return Ranks(r, w, group)
    w = world_size if world_size is not None else _env_int("WORLD_SIZE")
    r = rank if rank is not None else _env_int("RANK")
    if w is None or w == 1:
        if r not in (None, 0):
            raise UmaeError(f"rank {r} given with a world size of 1")
        return Ranks()
    if r is None or not 0 <= r < w:
        raise UmaeError(f"rank must be in [0, {w}) for world size {w}, got {r} (set by torchrun)")
    if not os.environ.get("MASTER_ADDR") or not os.environ.get("MASTER_PORT"):
        raise UmaeError(f"world size {w} but MASTER_ADDR/MASTER_PORT are not set: launch the "
                        "processes with torchrun, or init torch.distributed yourself")
    dist.init_process_group("gloo", init_method="env://", rank=r, world_size=w,
                            timeout=timedelta(seconds=timeout_s))
    return Ranks(r, w, None, owns_default_group=True)


def rank_device(spec: str | torch.device) -> str | torch.device:
    """``'auto'`` under torchrun means this rank's GPU (``cuda:LOCAL_RANK``), not cuda:0."""
    local = _env_int("LOCAL_RANK")
    if spec == "auto" and local is not None and torch.cuda.is_available():
        return f"cuda:{local % torch.cuda.device_count()}"
    return spec
