"""What a pre-training run is asked to do and what it returns (``TrainConfig``, ``TrainResult``),
and the choices made from them before a run starts: preset, device, precision, seeding.

Split out of :mod:`trainer.loop` (code moved unchanged); ``trainer.loop`` re-exports every name.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from trainer.distributed import (
    DistInfo,
)
from trainer.presets import Preset, get_preset, method_defaults
from umae_eval.errors import UmaeError


Precision = Literal["auto", "bf16", "fp32"]

#: Train splits up to this many bytes live on the device (CIFAR-10: 150 MB); larger ones stream.
RESIDENT_LIMIT_BYTES = 4 << 30


@dataclass
class TrainConfig:
    """Everything one pre-training run needs. ``None`` means "the preset's value".

    Attributes
    ----------
    data : str
        Dataset spec for :func:`umae_eval.data.load_dataset` ('demo', CIFAR folder, ImageFolder...).
    preset : str
        A name from :data:`trainer.presets.PRESETS`.
    out : path
        The run folder (created; must be empty unless resuming).
    method, lam, unif_form, epochs, warmup_epochs, batch_size, micro_batch, blr, mask_ratio
        Preset overrides. ``lam = 0`` is plain MAE; the paper's U-MAE uses ``lam = 0.01``.
    overrides : dict
        Any other preset field (e.g. ``{'img_size': 16, 'depth': 4}``).
    min_lr : float
        Floor of the cosine schedule.
    eval_every : int
        Online kNN and mean-classifier accuracy every N epochs and at the last epoch (0: never).
        Effective rank and RankMe are computed every epoch.
    save_every : int
        Write ``checkpoint-<epoch>.pth`` every N epochs (and at the end); ``last.pth`` follows.
    save_every_steps : int
        Also refresh ``last.pth`` every N optimiser steps inside an epoch (0: never).
    resume : {None, 'auto'} or path
        'auto': continue from ``out/last.pth`` if present; a path: that checkpoint.
    init : path, optional
        Start a new run from this checkpoint's weights (any layout umae reads; encoder, and the
        decoder when it fits): :func:`trainer.init_from.init_from_checkpoint`. Ignored when
        ``resume='auto'`` finds a checkpoint to continue.
    trust_pickle : bool
        Let ``init`` unpickle a file that needs it (only for files you trust).
    device : str
        'auto', 'cpu', 'cuda', 'cuda:N' (under torchrun, each rank uses ``cuda:LOCAL_RANK``).
    seed : int
        Seeds the batch order, augmentation, masking and the model's initialisation.
    compile : bool
        ``torch.compile`` the model.
    deterministic : bool
        ``torch.use_deterministic_algorithms(True)`` for the run (restored afterwards).
    precision : {'auto', 'bf16', 'fp32'}
        'auto' = bf16 autocast on CUDA, fp32 on the CPU.
    stream : bool
        Stream the train split through a DataLoader even when it would fit on the device.
    workers : int
        DataLoader workers when streaming.
    max_train_images : int, optional
        Train on a fixed seeded subset of this many images (quick runs, the demo).
    eval_images : int
        Held-out test images whose features give effective rank, RankMe and the probes' test set.
    knn_train_images : int
        Train images (fixed subset) whose features the kNN and mean classifier fit.
    eval_batch : int
        Images per forward pass when extracting evaluation features.
    command_line : list of str
        Recorded in ``config.json``.
    """

    data: str
    preset: str
    out: str | Path
    method: str | None = None
    lam: float | None = None
    unif_form: str | None = None
    epochs: int | None = None
    warmup_epochs: int | None = None
    batch_size: int | None = None
    micro_batch: int | None = None
    blr: float | None = None
    mask_ratio: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    min_lr: float = 0.0
    eval_every: int = 1
    save_every: int = 1
    save_every_steps: int = 0
    resume: str | None = None
    init: str | None = None
    trust_pickle: bool = False
    device: str = "auto"
    seed: int = 0
    compile: bool = False
    deterministic: bool = False
    precision: Precision = "auto"
    stream: bool = False
    workers: int = 4
    data_mode: str = "auto"
    max_train_images: int | None = None
    eval_images: int = 1000
    knn_train_images: int = 5000
    eval_batch: int = 256
    command_line: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunResult:
    """What a finished training or fine-tuning call produced (:class:`TrainResult`, ``FinetuneResult``).

    Attributes
    ----------
    run_dir : Path
        The run folder.
    checkpoint : Path
        ``run_dir/last.pth`` (a copy of the final checkpoint).
    epochs, steps : int
        Completed epochs and optimiser steps.
    final : dict
        The last ``metrics.jsonl`` record (empty when no epoch completed in this call).
    history : list of dict
        The records this call wrote.
    resumed_from : Path or None
        The checkpoint this call started from.
    wall_s : float
        Seconds this call took.
    """

    run_dir: Path
    checkpoint: Path
    epochs: int
    steps: int
    final: dict[str, Any]
    history: list[dict[str, Any]]
    resumed_from: Path | None
    wall_s: float


@dataclass(frozen=True)
class TrainResult(RunResult):
    """What a finished pre-training run produced: :class:`RunResult`'s fields, then these.

    Attributes
    ----------
    flops_per_image : int
        Analytic training FLOPs per image (forward + backward, :mod:`trainer.flops`).
    preset : dict
        The preset fields the run used.
    init : dict or None
        :meth:`trainer.init_from.InitReport.to_json` when this call started from ``--init``.
    """

    flops_per_image: int
    preset: dict[str, Any]
    init: dict[str, Any] | None = None


# --------------------------------------------------------------------------- set-up helpers


def resolve_preset(config: TrainConfig) -> Preset:
    """The run's preset: the named one, SimMIM defaults if asked, then the config's overrides."""
    given = {
        "lam": config.lam, "unif_form": config.unif_form, "epochs": config.epochs,
        "warmup_epochs": config.warmup_epochs, "batch_size": config.batch_size,
        "micro_batch": config.micro_batch, "blr": config.blr, "mask_ratio": config.mask_ratio,
        **config.overrides,
    }
    base: dict[str, Any] = method_defaults(config.method) if config.method else {}
    merged = {**base, **{k: v for k, v in given.items() if v is not None}}
    if "epochs" in merged and "warmup_epochs" not in merged:
        # a shorter run keeps the preset's warm-up share, never more epochs than it has
        base_preset = get_preset(config.preset)
        share = base_preset.warmup_epochs / base_preset.epochs
        merged["warmup_epochs"] = min(int(round(share * merged["epochs"])), merged["epochs"])
    if merged.get("batch_size") is not None and "micro_batch" not in merged:
        mb = get_preset(config.preset).micro_batch
        if mb is not None and (merged["batch_size"] % mb or mb > merged["batch_size"]):
            merged["micro_batch"] = merged["batch_size"]  # the preset's micro-batch does not fit: none
    return get_preset(config.preset, **merged)


def resolve_device(spec: str, dist_info: DistInfo) -> torch.device:
    """The device for ``--device`` (torchrun ranks always use their own ``cuda:LOCAL_RANK``)."""
    if dist_info.world_size > 1:
        return dist_info.device
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise UmaeError(f"--device {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UmaeError(f"--device {spec}: CUDA is not available on this machine; use --device cpu")
    return device


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """bf16 for 'bf16', or 'auto' on CUDA; None (fp32) otherwise."""
    if precision == "fp32":
        return None
    if precision == "bf16" or device.type == "cuda":
        return torch.bfloat16
    return None


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)


def _fixed_subset(n: int, k: int, seed: int, salt: int) -> np.ndarray:
    """The first ``min(k, n)`` indices of a seeded permutation of ``range(n)``, sorted."""
    rng = np.random.default_rng([seed, salt])
    return np.sort(rng.permutation(n)[: min(k, n)])


# --------------------------------------------------------------------------- one step
