"""The pre-training loop of MAE / U-MAE (and SimMIM / U-SimMIM): ``train_run(config) -> TrainResult``.

One optimiser step = ``batch_size`` images (summed over ranks), split into micro-batches of
``micro_batch`` whose gradients accumulate. AdamW with MAE's weight-decay exemptions, lr =
``blr * batch_size / 256``, per-step linear warm-up then half-cycle cosine
(:mod:`trainer.schedule`). On CUDA: bf16 autocast, fused AdamW, TF32 matmuls; on the CPU: fp32,
multi-tensor AdamW. Small train splits live on the device as uint8 and are batched and
augmented there; large ones stream through a DataLoader (:mod:`trainer.batches`).

The run folder holds ``config.json``, ``metrics.jsonl`` (:mod:`trainer.runlog`) and checkpoints
(:mod:`trainer.checkpoint`). Under ``torchrun`` every rank trains (DDP; the uniformity term spans
the global batch through :func:`trainer.distributed.gather_with_grad`, or the released code's
:func:`trainer.distributed.gather_released` for ``--unif-form released``) and rank 0 alone
evaluates and writes files.

Determinism: the batch order and augmentation depend only on (seed, epoch, step, rank); masking
noise comes from the global torch RNG, whose state every checkpoint stores. A run resumed from
any checkpoint therefore continues exactly as if never stopped (bit-equal weights on the CPU with
``deterministic=True``).

Example
-------
>>> from trainer.loop import TrainConfig, train_run
>>> result = train_run(TrainConfig(data="demo", preset="tiny-test", out="runs/t", epochs=1))  # doctest: +SKIP
>>> result.final["loss"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from trainer.batches import (
    LazyStreamedImages,
    LazyTrainImages,
    ResidentImages,
    StreamedImages,
    augment_batch,
    augment_seed,
    epoch_permutation,
    steps_per_epoch,
)
from trainer.checkpoint import (
    LAST,
    checkpoint_name,
    load_resume_point,
    metadata,
    remove_stale_temp_files,
    rng_state,
    save_checkpoint,
    set_rng_state,
    update_last,
)
from trainer.distributed import (
    DistInfo,
    all_reduce_mean,
    cleanup_distributed,
    gather_for,
    setup_distributed,
)
from trainer.flops import flops_per_image
from trainer.losses import loss_terms, paper_form_warning, paper_over_code
from trainer.model import build_model
from trainer.presets import Preset, get_preset, method_defaults
from trainer.stepinfo import StepInfo  # noqa: F401  (re-exported: the displays' type)
from trainer.runlog import (
    append_metrics,
    note_resume,
    read_metrics,
    truncate_metrics,
    write_config,
)
from trainer.schedule import CosineSchedule, build_optimizer, scaled_lr, set_lr
from umae_eval.errors import UmaeError
from umae_eval.progress import ProgressFactory, null_progress
from umae_eval.provenance import versions

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
class TrainResult:
    """What a finished run produced.

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
    flops_per_image : int
        Analytic training FLOPs per image (forward + backward, :mod:`trainer.flops`).
    preset : dict
        The preset fields the run used.
    init : dict or None
        :meth:`trainer.init_from.InitReport.to_json` when this call started from ``--init``.
    """

    run_dir: Path
    checkpoint: Path
    epochs: int
    steps: int
    final: dict[str, Any]
    history: list[dict[str, Any]]
    resumed_from: Path | None
    wall_s: float
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


def accumulate_gradients(
    model: nn.Module,
    inputs: Tensor,
    *,
    mask_ratio: float,
    lam: float,
    unif_form: str,
    micro_batch: int | None,
    amp_dtype: torch.dtype | None = None,
    gather: Callable[[Tensor], Tensor] | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """Forward and backward one optimiser step's images, accumulating ``.grad`` over micro-batches.

    Each micro-batch's loss is divided by the number of micro-batches, so the accumulated
    gradient is the mean over the step (for the reconstruction term exactly the whole-batch
    gradient; the uniformity term spans one micro-batch per rank at a time). Under DDP the
    gradient all-reduce runs only on the last micro-batch (``no_sync``).

    Parameters
    ----------
    model : nn.Module
        The model, possibly DDP-wrapped or compiled, in train mode.
    inputs : Tensor, shape (B, 3, S, S)
        Normalised images of this rank.
    mask_ratio, lam, unif_form
        See :func:`trainer.losses.loss_terms`.
    micro_batch : int or None
        Images per forward/backward (None: all B at once).
    amp_dtype : torch.dtype or None
        Autocast dtype (bf16) or None for fp32.
    gather : callable, optional
        Feature all-gather for the uniformity term (DDP).
    noise : Tensor, shape (B, L), optional
        Fixed masking noise (tests); drawn from the global RNG when None.

    Returns
    -------
    Tensor, shape (3,)
        Detached ``[loss, loss_recon, loss_unif]``, the mean over micro-batches (this rank).
    """
    chunks = inputs.split(micro_batch) if micro_batch else (inputs,)
    noise_chunks = noise.split(micro_batch) if (noise is not None and micro_batch) else (noise,) * len(chunks)
    n = len(chunks)
    totals = torch.zeros(3, device=inputs.device)
    for i, (x, nz) in enumerate(zip(chunks, noise_chunks)):
        last = i == n - 1
        sync = contextlib.nullcontext() if (last or not hasattr(model, "no_sync")) else model.no_sync()
        with sync:
            with _autocast(inputs.device, amp_dtype):
                terms = loss_terms(model, x, mask_ratio, lam, unif_form, gather=gather, noise=nz)
            (terms["loss"] / n).backward()
        totals += torch.stack([terms["loss"].detach(), terms["loss_recon"].detach(),
                               terms["loss_unif"].detach()]).float()
    return totals / n


# --------------------------------------------------------------------------- evaluation


class OnlineEvaluator:
    """Features of fixed image subsets and the per-epoch figures computed from them.

    Parameters
    ----------
    test_images : np.ndarray, shape (M, H, W, 3), uint8
        Held-out subset (effective rank, RankMe, probe test set).
    test_labels : np.ndarray, shape (M,)
    train_images : np.ndarray, shape (K, H, W, 3), uint8
        Fixed train subset the probes fit.
    train_labels : np.ndarray, shape (K,)
    preset : Preset
        Image size and normalisation.
    device : torch.device
    amp_dtype : torch.dtype or None
    batch : int
        Images per forward pass.
    """

    def __init__(self, test_images: np.ndarray, test_labels: np.ndarray, train_images: np.ndarray,
                 train_labels: np.ndarray, preset: Preset, device: torch.device,
                 amp_dtype: torch.dtype | None, batch: int = 256) -> None:
        self.test_images, self.test_labels = test_images, test_labels
        self.train_images, self.train_labels = train_images, train_labels
        self.preset, self.device, self.amp_dtype, self.batch = preset, device, amp_dtype, batch

    @torch.no_grad()
    def features(self, model: nn.Module, images: np.ndarray) -> np.ndarray:
        """[CLS] after the final norm of unmasked images, shape (N, D), float32.

        Parameters
        ----------
        model : nn.Module
            The unwrapped model (``forward_encoder`` is called with ``mask_ratio=0`` and the
            identity order, so no RNG is drawn).
        images : np.ndarray, shape (N, H, W, 3), uint8
        """
        was_training = model.training
        model.eval()
        out = []
        L = self.preset.num_patches
        try:
            for start in range(0, len(images), self.batch):
                raw = torch.from_numpy(np.ascontiguousarray(images[start:start + self.batch])).to(self.device)
                x = augment_batch(raw, self.preset.img_size, self.preset.mean, self.preset.std, "none")
                noise = torch.arange(L, device=self.device, dtype=torch.float32).expand(len(raw), L)
                with _autocast(self.device, self.amp_dtype):
                    latent, _, _ = model.forward_encoder(x, 0.0, noise)
                out.append(latent[:, 0].float().cpu())
        finally:
            model.train(was_training)
        return torch.cat(out).numpy()

    def evaluate(self, model: nn.Module, probes: bool) -> dict[str, float]:
        """``effective_rank`` and ``rankme`` of the held-out features; with ``probes`` also
        ``knn_accuracy`` (k=20, T=0.07), ``mean_classifier_accuracy`` (cosine) and
        ``linear_accuracy`` (the 'fast' L-BFGS probe), all percent."""
        from umae_eval.metrics.spectrum import effective_rank, rankme

        test_f = self.features(model, self.test_images)
        out = {"effective_rank": float(effective_rank(test_f, center=True)),
               "rankme": float(rankme(test_f))}
        if probes:
            from umae_eval.probes.knn import knn_accuracy
            from umae_eval.probes.mean import mean_classifier_accuracy

            train_f = self.features(model, self.train_images)
            out["knn_accuracy"] = float(knn_accuracy(train_f, self.train_labels, test_f, self.test_labels,
                                                     k=20, temperature=0.07))
            out["mean_classifier_accuracy"] = float(mean_classifier_accuracy(
                train_f, self.train_labels, test_f, self.test_labels, metric="cosine"))
            # Fig. 3b of the paper plots linear-probe accuracy along training, so the online
            # figures include it: the 'fast' L-BFGS probe (weight decay chosen on a held-out
            # tenth of the probe's train images), deterministic given the features.
            from umae_eval.probes.linear import linear_probe

            out["linear_accuracy"] = float(linear_probe(
                train_f, self.train_labels, test_f, self.test_labels, seed=0).accuracy)
        return out


# --------------------------------------------------------------------------- the run


class _Running:
    """Sums of the current epoch's step figures (restored on a mid-epoch resume)."""

    def __init__(self, state: dict[str, float] | None = None) -> None:
        s = state or {}
        self.loss = float(s.get("loss", 0.0))
        self.loss_recon = float(s.get("loss_recon", 0.0))
        self.loss_unif = float(s.get("loss_unif", 0.0))
        self.steps = int(s.get("steps", 0))
        self.images = int(s.get("images", 0))
        self.train_s = float(s.get("train_s", 0.0))

    def add(self, terms: list[float], images: int, seconds: float) -> None:
        self.loss += terms[0]
        self.loss_recon += terms[1]
        self.loss_unif += terms[2]
        self.steps += 1
        self.images += images
        self.train_s += seconds

    def state(self) -> dict[str, float]:
        return {"loss": self.loss, "loss_recon": self.loss_recon, "loss_unif": self.loss_unif,
                "steps": self.steps, "images": self.images, "train_s": self.train_s}


#: Preset fields a resumed run may change: the learning-rate schedule is recomputed from them
#: (a run extended with more --epochs, or continued with a lower --blr after a NaN).
SCHEDULE_FIELDS = ("epochs", "warmup_epochs", "blr")


def _check_resume_compatible(meta: dict[str, Any], preset: Preset, fingerprint: str, seed: int,
                             path: Path) -> dict[str, list[Any]]:
    """Refuse to resume a checkpoint of another recipe, dataset or seed.

    Returns the schedule fields that change, ``{field: [checkpoint's, now]}``.
    """
    saved = dict(meta.get("preset_fields", {}))
    now = preset.to_dict()
    changes: dict[str, list[Any]] = {}
    for key in sorted(set(saved) | set(now)):
        if key in SCHEDULE_FIELDS:
            if saved.get(key) != now.get(key):
                changes[key] = [saved.get(key), now.get(key)]
            continue
        if saved.get(key) != now.get(key):
            raise UmaeError(
                f"--resume {path}: the checkpoint has {key}={saved.get(key)!r} but this run asks for "
                f"{now.get(key)!r}; pass the original options (see config.json) or a new --out"
            )
    if meta.get("data_fingerprint") != fingerprint:
        raise UmaeError(f"--resume {path}: the checkpoint was trained on other data "
                        f"({meta.get('data_spec')!r}); pass the same --data or a new --out")
    if int(meta.get("seed", seed)) != seed:
        raise UmaeError(f"--resume {path}: the checkpoint used --seed {meta.get('seed')}, not {seed}; "
                        "pass the same --seed")
    return changes


def check_out_dir(run_dir: Path, resume: str | None) -> None:
    """Refuse a file, an unwritable folder, or an existing non-empty run folder unless resuming."""
    from umae_eval.staging import check_writable

    if os.path.lexists(run_dir) and not run_dir.is_dir():
        raise UmaeError(f"--out {run_dir} is an existing file; give a run folder")
    if resume is None and run_dir.exists() and any(run_dir.iterdir()):
        raise UmaeError(f"--out {run_dir} already exists and is not empty; pass --resume auto to "
                        "continue that run, or choose another --out")
    check_writable(run_dir)  # a read-only or full disk is refused now, not after loading the data


def train_run(
    config: TrainConfig,
    progress: ProgressFactory = null_progress,
    on_step: Callable[[StepInfo], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> TrainResult:
    """Pre-train a masked autoencoder as ``config`` says, writing the run folder.

    Parameters
    ----------
    config : TrainConfig
    progress : ProgressFactory
        One bar per epoch (total = steps); silent by default.
    on_step : callable, optional
        Called with a :class:`StepInfo` after every optimiser step (rank 0).
    on_epoch : callable, optional
        Called with each ``metrics.jsonl`` record once written (rank 0).
    on_note : callable, optional
        Called with a one-line message when resuming takes a turn the user should know about
        (an unreadable ``last.pth`` passed over, changed schedule fields, stale files removed).

    Returns
    -------
    TrainResult

    Raises
    ------
    UmaeError
        Bad options, an existing non-empty ``out`` without ``resume``, an incompatible
        checkpoint, or a NaN/Inf loss (naming the epoch and step; the last good checkpoint is
        left as it was).
    """
    dist_info = setup_distributed()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        return _Run(config, dist_info, progress, on_step, on_epoch, on_note).run()
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_det_warn)
        if dist_info.world_size > 1:
            cleanup_distributed()


class _Run:
    """The state of one ``train_run`` call (kept private: the public surface is ``train_run``)."""

    def __init__(self, config: TrainConfig, dist_info: DistInfo, progress: ProgressFactory,
                 on_step: Callable[[StepInfo], None] | None,
                 on_epoch: Callable[[dict[str, Any]], None] | None,
                 on_note: Callable[[str], None] | None = None) -> None:
        self.c = config
        self.on_note = on_note
        self.d = dist_info
        self.progress = progress
        self.on_step = on_step
        self.on_epoch = on_epoch
        self.run_dir = Path(config.out)
        self.main = dist_info.is_main

    # ---- set-up ---------------------------------------------------------------------------

    def _validate(self) -> None:
        c = self.c
        for name in ("eval_every", "save_every_steps"):
            if getattr(c, name) < 0:
                raise UmaeError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(c, name)}")
        if c.init is not None and c.resume not in (None, "auto"):
            raise UmaeError("--init starts a new run and --resume continues one; pass only one of them")
        if c.save_every < 1:
            raise UmaeError(f"--save-every must be >= 1, got {c.save_every}")
        if c.precision not in ("auto", "bf16", "fp32"):
            raise UmaeError(f"--precision must be auto, bf16 or fp32, got {c.precision!r}")
        if c.max_train_images is not None and c.max_train_images < 1:
            raise UmaeError(f"max_train_images must be positive, got {c.max_train_images}")
        if c.eval_images < 2 or c.knn_train_images < 1 or c.eval_batch < 1:
            raise UmaeError("eval_images must be >= 2 and knn_train_images, eval_batch >= 1")

    def _setup(self) -> None:
        c, d = self.c, self.d
        self._validate()
        check_out_dir(self.run_dir, c.resume)
        self.preset = resolve_preset(c)
        p = self.preset
        self.device = resolve_device(c.device, d)
        if self.device.type == "cuda":
            if self.device.index is not None:
                torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.amp_dtype = autocast_dtype(c.precision, self.device)
        if p.batch_size % d.world_size:
            raise UmaeError(f"--batch-size {p.batch_size} is not divisible by the {d.world_size} "
                            "processes; choose a multiple")
        self.per_rank = p.batch_size // d.world_size
        self.micro = p.micro_batch
        if self.micro is not None and self.micro >= self.per_rank:
            self.micro = None
        if self.micro is not None and self.per_rank % self.micro:
            raise UmaeError(f"--micro-batch {self.micro} does not divide the {self.per_rank} images "
                            f"per process (batch {p.batch_size} over {d.world_size} processes)")

        from umae_eval.data.choose import open_dataset

        self.data = open_dataset(c.data, mode=c.data_mode, progress=self.progress if self.main else null_progress)
        self.lazy = bool(getattr(self.data, "lazy", False))
        if self.lazy:
            from umae_eval.data.transforms import eval_rule

            # Train images stay files: decoded (and, for rrc-flip, augmented from the original
            # image) per item in the DataLoader workers; the eval images at the model's size.
            x_train = self.data.view("train", p.img_size, eval_rule(p.img_size))
            x_test = self.data.view("test", p.img_size, eval_rule(p.img_size))
        else:
            x_train, x_test = self.data.x_train, self.data.x_test
        y_train = self.data.y_train
        self.train_index = None
        if c.max_train_images is not None and c.max_train_images < len(x_train):
            self.train_index = _fixed_subset(len(x_train), c.max_train_images, c.seed, 1)
            x_train = x_train.take(self.train_index) if self.lazy else x_train[self.train_index]
            y_train = y_train[self.train_index]
        self.x_train, self.y_train = x_train, y_train
        self.steps_per_epoch = steps_per_epoch(len(x_train), p.batch_size)
        self.total_steps = self.steps_per_epoch * p.epochs
        self.schedule = CosineSchedule(scaled_lr(p.blr, p.batch_size), p.warmup_epochs * self.steps_per_epoch,
                                       self.total_steps, c.min_lr)
        if self.lazy:
            self.stream = True
            self.source = LazyStreamedImages(LazyTrainImages(x_train, p.img_size, p.augment, c.seed),
                                             self.device, c.workers)
        else:
            self.stream = c.stream or x_train.nbytes > RESIDENT_LIMIT_BYTES
            self.source = (StreamedImages(x_train, self.device, c.workers) if self.stream
                           else ResidentImages(x_train, self.device))

        _seed_everything(c.seed + d.rank)
        self.model = build_model(p).to(self.device)
        self.train_model: nn.Module = self.model
        if c.compile:
            self.train_model = torch.compile(self.model)
        if d.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DDP(self.train_model, device_ids=ids)
        self.optimizer = build_optimizer(self.model, self.schedule.base_lr, p.betas, p.weight_decay,
                                         self.device)
        self.gather = gather_for(p.unif_form) if d.world_size > 1 else None

        if self.main:
            test_idx = _fixed_subset(len(x_test), c.eval_images, c.seed, 2)
            knn_idx = _fixed_subset(len(x_train), c.knn_train_images, c.seed, 3)
            self.evaluator = OnlineEvaluator(x_test[test_idx], self.data.y_test[test_idx],
                                             x_train[knn_idx], y_train[knn_idx], p, self.device,
                                             self.amp_dtype, c.eval_batch)

        self.epoch = 0
        self.step = 0
        self.step_in_epoch = 0
        self.running = _Running()
        self.resume_note: dict[str, Any] = {}
        self.schedule_changes: dict[str, list[Any]] = {}
        point = load_resume_point(self.run_dir, c.resume)
        self.resumed_from = point.path
        if point.path is not None and point.checkpoint is not None:
            self._restore(point.path, point.checkpoint)
            self._note_resume_turns(point.path, point.skipped)
        if self.main and c.resume is not None and self.run_dir.is_dir():
            # a kill during a write leaves its temporary file (a checkpoint's worth of bytes)
            removed = remove_stale_temp_files(self.run_dir)
            if removed:
                self.resume_note["removed_temp_files"] = [p.name for p in removed]
                if self.on_note is not None:
                    self.on_note(f"removed {len(removed)} temporary file(s) of interrupted writes from "
                                 f"{self.run_dir}")
        self.init_report = None
        if self.resumed_from is None and c.init is not None:
            from trainer.init_from import init_from_checkpoint

            self.init_report = init_from_checkpoint(self.model, p, c.init, trust_pickle=c.trust_pickle)
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if self.resumed_from is None:
                write_config(self.run_dir, self._config_record())
                truncate_metrics(self.run_dir, 0)  # '--resume auto' before any checkpoint: start over
            else:
                truncate_metrics(self.run_dir, self.epoch)
                note_resume(self.run_dir, {"from": str(self.resumed_from), "epoch": self.epoch,
                                           "step": self.step, "command_line": list(c.command_line),
                                           **self.resume_note})

    def _note_resume_turns(self, path: Path, skipped: list[tuple[Path, str]]) -> None:
        """Say (and keep for config.json and metrics.jsonl) what resuming did beyond loading."""
        say = self.on_note if (self.main and self.on_note is not None) else (lambda _msg: None)
        if skipped:
            self.resume_note["skipped"] = [{"path": str(p), "error": why} for p, why in skipped]
            say(f"{', '.join(p.name for p, _ in skipped)} cannot be read (truncated or corrupted): "
                f"resuming from {path.name}, the newest intact checkpoint (epoch {self.epoch}, step {self.step})")
        if self.schedule_changes:
            self.resume_note["changed"] = self.schedule_changes
            say("resuming with a changed schedule: " + ", ".join(
                f"{k} {old} -> {new}" for k, (old, new) in self.schedule_changes.items()))

    def _restore(self, path: Path, ckpt: dict[str, Any]) -> None:
        self.schedule_changes = _check_resume_compatible(ckpt["umae"], self.preset, self.data.fingerprint,
                                                         self.c.seed, path)
        self.model.load_state_dict(ckpt["model"], strict=True)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        sampler = ckpt["sampler"]
        self.epoch = int(sampler["epoch"])
        self.step_in_epoch = int(sampler["step_in_epoch"])
        self.step = int(ckpt["step"])
        self.running = _Running(ckpt.get("running"))
        if self.d.rank == 0:
            set_rng_state(ckpt["rng"])
        else:  # other ranks' streams were not saved: a fresh, reproducible one per rank and step
            _seed_everything(self.c.seed + self.d.rank + 1_000_003 * self.step)
        if self.epoch > self.preset.epochs:
            raise UmaeError(f"--resume {path}: the checkpoint is at epoch {self.epoch}, past "
                            f"--epochs {self.preset.epochs}; raise --epochs to train further")

    def _config_record(self) -> dict[str, Any]:
        c, p = self.c, self.preset
        return {
            "preset": p.to_dict(),
            "method": p.method,
            "lam": p.lam,
            "unif_form": p.unif_form,
            "lr": self.schedule.base_lr,
            "min_lr": c.min_lr,
            "data": {"spec": str(c.data), "fingerprint": self.data.fingerprint,
                     "format": self.data.format, "description": self.data.describe(),
                     "train_images": int(len(self.x_train)), "test_images": int(len(self.data.y_test)),
                     "max_train_images": c.max_train_images, "data_mode": "lazy" if self.lazy else "memory",
                     "class_names": list(self.data.class_names),
                     "train_transform": (f"decoded per item in workers; {p.augment} at {p.img_size} px"
                                         if self.lazy else "device-resident uint8; augment on the device")},
            "seed": c.seed,
            "device": str(self.device),
            "device_name": (torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
                            else "cpu"),
            "world_size": self.d.world_size,
            "precision": "bf16" if self.amp_dtype is not None else "fp32",
            "batches": ("lazy (decoded per item in workers)" if self.lazy
                        else "streamed" if self.stream else "device-resident"),
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "micro_batch_per_process": self.micro,
            "flops_per_image": flops_per_image(p).to_dict(),
            "train_config": {k: (str(v) if isinstance(v, Path) else v)
                             for k, v in dataclasses.asdict(c).items()},
            "command_line": list(c.command_line),
            "versions": versions(),
            "init": self.init_report.to_json() if self.init_report is not None else None,
        }

    # ---- checkpoints ----------------------------------------------------------------------

    def _payload(self) -> dict[str, Any]:
        p = self.preset
        meta = metadata(p.to_dict(), epoch=self.epoch, step=self.step, data_spec=str(self.c.data),
                        data_fingerprint=self.data.fingerprint, seed=self.c.seed, versions=self._versions)
        return {
            "model": self.model.state_dict(),
            "umae": meta,
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "rng": rng_state(),
            "sampler": {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "seed": self.c.seed,
                        "num_samples": int(len(self.x_train))},
            "running": self.running.state(),
        }

    def _save(self, numbered: bool) -> Path:
        payload = self._payload()
        if numbered:
            path = save_checkpoint(self.run_dir / checkpoint_name(self.epoch), payload)
            return update_last(path)
        return save_checkpoint(self.run_dir / LAST, payload)

    # ---- training -------------------------------------------------------------------------

    def _nan_error(self, terms: list[float]) -> UmaeError:
        last = self.run_dir / LAST
        kept = f"{last} is intact" if last.exists() else "no checkpoint had been written yet"
        return UmaeError(
            f"the loss became {terms[0]} (recon {terms[1]}, unif {terms[2]}) at epoch {self.epoch + 1}, "
            f"step {self.step + 1}; {kept}. Lower --blr (now {self.preset.blr:g}) or train in fp32 "
            "(--precision fp32), then --resume auto"
        )

    def _epoch_steps(self, perm: Tensor) -> Iterator[tuple[int, Tensor]]:
        steps = range(self.step_in_epoch, self.steps_per_epoch)
        return self.source.epoch(perm, steps, self.preset.batch_size, self.d.rank, self.d.world_size)

    def _train_epoch(self) -> None:
        p, c = self.preset, self.c
        perm = epoch_permutation(len(self.x_train), c.seed, self.epoch)
        remaining = self.steps_per_epoch - self.step_in_epoch
        augment = "none" if self.lazy else p.augment  # lazy: augmented in the workers already
        if self.lazy:
            self.source.set_epoch(self.epoch)  # type: ignore[attr-defined]
        gen = torch.Generator(device=self.device) if augment != "none" else None
        self.train_model.train()
        with self.progress(f"epoch {self.epoch + 1}/{p.epochs}", total=remaining) as advance:
            t_last = time.perf_counter()
            for k, raw in self._epoch_steps(perm):
                if gen is not None:
                    gen.manual_seed(augment_seed(c.seed, self.epoch, k, self.d.rank))
                x = augment_batch(raw, p.img_size, p.mean, p.std, augment, gen)  # type: ignore[arg-type]
                lr = self.schedule(self.step)
                set_lr(self.optimizer, lr)
                note = None
                if self.step == 0 and p.unif_form == "paper" and p.lam > 0 and self.main and len(x) > 1:
                    first = x[: max(self.micro or len(x), 2)]
                    self.paper_ratio = paper_over_code(self.model, first, p.mask_ratio, c.seed)
                    note = paper_form_warning(self.paper_ratio, p.lam)
                local = accumulate_gradients(self.train_model, x, mask_ratio=p.mask_ratio, lam=p.lam,
                                             unif_form=p.unif_form, micro_batch=self.micro,
                                             amp_dtype=self.amp_dtype, gather=self.gather)
                terms = all_reduce_mean(local).tolist()  # one host sync per step
                if not all(math.isfinite(t) for t in terms):
                    self.optimizer.zero_grad(set_to_none=True)
                    raise self._nan_error(terms)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                self.step_in_epoch = k + 1
                now = time.perf_counter()
                dt, t_last = now - t_last, now
                self.running.add(terms, p.batch_size, dt)
                advance(1)
                if self.main and self.on_step is not None:
                    self.on_step(StepInfo(
                        epoch=self.epoch + 1, epochs=p.epochs, step=self.step, total_steps=self.total_steps,
                        step_in_epoch=self.step_in_epoch, steps_per_epoch=self.steps_per_epoch,
                        loss=terms[0], loss_recon=terms[1], loss_unif=terms[2], lr=lr,
                        img_per_s=p.batch_size / dt if dt > 0 else float("inf"), note=note))
                if (c.save_every_steps and self.step % c.save_every_steps == 0
                        and self.step_in_epoch < self.steps_per_epoch and self.main):
                    self._save(numbered=False)
                    t_last = time.perf_counter()  # saving is not training time

    def _end_epoch(self) -> dict[str, Any]:
        p, c = self.preset, self.c
        done = self.epoch + 1
        r = self.running
        record: dict[str, Any] = {
            "epoch": done,
            "step": self.step,
            "loss": r.loss / max(r.steps, 1),
            "loss_recon": r.loss_recon / max(r.steps, 1),
            "loss_unif": r.loss_unif / max(r.steps, 1),
            "lam": p.lam,
            "unif_form": p.unif_form,
            "lr": self.schedule(self.step - 1),
            "img_per_s": r.images / r.train_s if r.train_s > 0 else None,
            # Training seconds of this epoch (evaluation excluded), so a run's wall time can be
            # reported from metrics.jsonl alone.
            "train_s": r.train_s,
        }
        if getattr(self, "paper_ratio", None) is not None:  # measured at this run's first step
            record["unif_paper_over_code"] = self.paper_ratio
            self.paper_ratio = None
        probes = c.eval_every > 0 and (done % c.eval_every == 0 or done == p.epochs)
        record.update(self.evaluator.evaluate(self.model, probes))
        return record

    def run(self) -> TrainResult:
        t0 = time.perf_counter()
        self._versions = versions()
        self._setup()
        p, c = self.preset, self.c
        history: list[dict[str, Any]] = []
        while self.epoch < p.epochs:
            self._train_epoch()
            if self.main:
                record = self._end_epoch()
            self.epoch += 1
            self.step_in_epoch = 0
            self.running = _Running()
            if self.main:
                if not history and self.resumed_from is not None:
                    # the first epoch after a resume says what it continued from and what changed
                    turns = {k: v for k, v in self.resume_note.items() if k in ("changed", "skipped")}
                    if turns:
                        record["resumed"] = {"from": self.resumed_from.name, **turns}
                append_metrics(self.run_dir, record)
                history.append(record)
                if self.epoch % c.save_every == 0 or self.epoch == p.epochs:
                    self._save(numbered=True)
                if self.on_epoch is not None:
                    self.on_epoch(record)
        if self.d.world_size > 1:
            dist.barrier()  # rank 0 may still be evaluating / saving
        records = read_metrics(self.run_dir) if self.main else []
        return TrainResult(
            run_dir=self.run_dir,
            checkpoint=self.run_dir / LAST,
            epochs=self.epoch,
            steps=self.step,
            final=records[-1] if records else {},
            history=history,
            resumed_from=self.resumed_from,
            wall_s=time.perf_counter() - t0,
            flops_per_image=flops_per_image(p).train,
            preset=p.to_dict(),
            init=self.init_report.to_json() if self.init_report is not None else None,
        )
