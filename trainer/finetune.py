"""End-to-end fine-tuning with MAE's recipe: ``finetune_run(config) -> FinetuneResult``.

Any encoder :func:`umae_eval.checkpoints.load_encoder` reads (or, with ``random_init``, its
architecture with timm's init) gets a new head (:mod:`trainer.finetune_model`) and trains end to
end: AdamW with layer-wise lr decay (:mod:`trainer.lrd`), per-step warm-up + cosine
(:class:`trainer.schedule.CosineSchedule`), drop path, mixup/cutmix/label smoothing and
RandAugment/RandomErasing (:mod:`trainer.finetune_data`), optional gradient clipping, bf16
autocast on CUDA. The run folder holds ``config.json``, ``metrics.jsonl`` (train loss, lr,
test top-1/top-5 every ``eval_every`` epochs) and atomic checkpoints (:mod:`trainer.checkpoint`)
whose ``model`` is the tuned ViT under timm names (encoder, ``fc_norm``, ``head``): umae's
loaders read it as the 'umae' layout. Batch order, augmentation and mixup depend only on
(seed, epoch, step, image) and every checkpoint stores the RNG states, so ``resume='auto'``
continues bit-exactly on the CPU. Under torchrun every rank trains (DDP); rank 0 evaluates and
writes.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from trainer.batches import ResidentImages, epoch_permutation, rank_indices, steps_per_epoch, augment_seed
from trainer.checkpoint import (LAST, checkpoint_name, load_resume_point, remove_stale_temp_files, rng_state,
                                save_checkpoint, set_rng_state, update_last)
from trainer.distributed import all_reduce_mean, cleanup_distributed, setup_distributed
from trainer.finetune_data import (TrainItems, device_batch, evaluate, host_epoch, make_mixup, mix,
                                   train_criterion, train_transform)
from trainer.finetune_model import build_finetune_model, freeze_blocks, load_pretrained, load_source_encoder
from trainer.finetune_presets import FinetunePreset, get_finetune_preset
from trainer.finetune_record import FinetuneResult, FinetuneStep, check_resumable, checkpoint_meta, config_record
from trainer.loop import autocast_dtype, check_out_dir, resolve_device
from trainer.lrd import build_lrd_optimizer, set_scaled_lr
from trainer.runlog import note_resume, read_metrics, record_epoch, truncate_metrics, write_config
from trainer.schedule import CosineSchedule, scaled_lr
from umae_eval.errors import UmaeError
from umae_eval.oom import memory_stage
from umae_eval.progress import ProgressFactory, null_progress
from umae_eval.provenance import versions

@dataclass
class FinetuneConfig:
    """One fine-tuning run. ``None`` means "the preset's value".

    Attributes
    ----------
    checkpoint : str
        Any file or folder :func:`umae_eval.checkpoints.load_encoder` reads.
    data, preset, out : str
        Dataset spec, a name of :data:`trainer.finetune_presets.FINETUNE_PRESETS`, run folder.
    epochs, warmup_epochs, batch_size, accum_iter, blr, pool, clip_grad
        Preset overrides; ``overrides`` any other field.
    freeze_blocks : int
        Freeze the embeddings and the first K blocks (:func:`trainer.finetune_model.freeze_blocks`).
    random_init : bool
        Use only the checkpoint's architecture and normalisation; weights from timm's init.
    aug_path : {'auto', 'host', 'device'}
        'auto': 'device' when the preset has no RandAugment and the data is in memory, else 'host'.
    eval_images : int or None
        Evaluate on a fixed seeded subset of the test split (None: all of it).
    """

    checkpoint: str
    data: str
    preset: str
    out: str | Path
    epochs: int | None = None
    warmup_epochs: int | None = None
    batch_size: int | None = None
    accum_iter: int | None = None
    blr: float | None = None
    pool: str | None = None
    clip_grad: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    freeze_blocks: int = 0
    random_init: bool = False
    eval_every: int = 1
    save_every: int = 1
    resume: str | None = None
    trust_pickle: bool = False
    device: str = "auto"
    seed: int = 0
    precision: str = "auto"
    aug_path: str = "auto"
    workers: int = 2
    data_mode: str = "auto"
    max_train_images: int | None = None
    eval_images: int | None = None
    eval_batch: int = 256
    command_line: list[str] = field(default_factory=list)


def resolve_finetune_preset(c: FinetuneConfig) -> FinetunePreset:
    """The run's preset: the named one with the config's overrides."""
    given = {"epochs": c.epochs, "warmup_epochs": c.warmup_epochs, "batch_size": c.batch_size,
             "accum_iter": c.accum_iter, "blr": c.blr, "pool": c.pool, "clip_grad": c.clip_grad,
             **c.overrides}
    return get_finetune_preset(c.preset, **given)


def _subset(n: int, k: int | None, seed: int, salt: int) -> np.ndarray | None:
    if k is None or k >= n:
        return None
    return np.sort(np.random.default_rng([seed, salt]).permutation(n)[:k])


def finetune_run(config: FinetuneConfig, progress: ProgressFactory = null_progress,
                 on_step: Callable[[FinetuneStep], None] | None = None,
                 on_epoch: Callable[[dict[str, Any]], None] | None = None,
                 on_note: Callable[[str], None] | None = None) -> FinetuneResult:
    """Fine-tune as ``config`` says, writing the run folder.

    Raises
    ------
    UmaeError
        Bad options, a checkpoint without a loadable encoder, ``freeze_blocks`` above the depth,
        a taken ``out`` without ``resume``, an incompatible checkpoint to resume, or a NaN/Inf
        loss (the last good checkpoint stays; the message says what to change).
    """
    info = setup_distributed()
    try:
        return _Finetune(config, info, progress, on_step, on_epoch, on_note).run()
    finally:
        if info.world_size > 1:
            cleanup_distributed()


class _Finetune:
    def __init__(self, c: FinetuneConfig, d: Any, progress: ProgressFactory,
                 on_step: Callable[[FinetuneStep], None] | None,
                 on_epoch: Callable[[dict[str, Any]], None] | None,
                 on_note: Callable[[str], None] | None) -> None:
        self.c, self.d, self.progress = c, d, progress
        self.on_step, self.on_epoch, self.on_note = on_step, on_epoch, on_note
        self.run_dir, self.main = Path(c.out), d.is_main

    # ---- set-up ----------------------------------------------------------------------------

    def _setup(self) -> None:
        c, d = self.c, self.d
        if c.aug_path not in ("auto", "host", "device"):
            raise UmaeError(f"--aug-path {c.aug_path!r}: choose auto, host or device")
        if c.eval_every < 0 or c.save_every < 1:
            raise UmaeError("--eval-every must be >= 0 and --save-every >= 1")
        p = self.preset = resolve_finetune_preset(c)
        check_out_dir(self.run_dir, c.resume)
        loaded = load_source_encoder(c.checkpoint, c.freeze_blocks, c.trust_pickle)
        self.encoder_info = loaded.info
        arch = loaded.info.arch
        self.mean, self.std = tuple(loaded.info.mean), tuple(loaded.info.std)
        self.img_size = arch.img_size
        self.device = resolve_device(c.device, d)
        self.amp_dtype = autocast_dtype(c.precision, self.device)  # type: ignore[arg-type]
        if p.batch_size % (d.world_size * p.accum_iter):
            raise UmaeError(f"--batch-size {p.batch_size} is not divisible by {d.world_size} processes x "
                            f"--accum-iter {p.accum_iter}")
        self.per_rank = p.batch_size // d.world_size
        if p.mixing and self.per_rank % 2:
            raise UmaeError(f"--batch-size {p.batch_size}: mixup/cutmix need an even batch per process "
                            f"({self.per_rank} here); choose an even one or --set mixup=0 --set cutmix=0")

        from umae_eval.data.choose import open_dataset

        self.data = open_dataset(c.data, mode=c.data_mode, progress=self.progress if self.main else null_progress)
        self.lazy = bool(getattr(self.data, "lazy", False))
        if self.lazy:
            from umae_eval.data.transforms import eval_rule

            x_train = self.data.view("train", self.img_size, eval_rule(self.img_size))
            x_test = self.data.view("test", self.img_size, eval_rule(self.img_size))
        else:
            x_train, x_test = self.data.x_train, self.data.x_test
        y_train, y_test = np.asarray(self.data.y_train), np.asarray(self.data.y_test)
        keep = _subset(len(y_train), c.max_train_images, c.seed, 1)
        if keep is not None:
            x_train = x_train.take(keep) if self.lazy else x_train[keep]
            y_train = y_train[keep]
        keep = _subset(len(y_test), c.eval_images, c.seed, 2)
        if keep is not None:
            x_test = x_test.take(keep) if self.lazy else x_test[keep]
            y_test = y_test[keep]
        self.x_train, self.y_train, self.x_test, self.y_test = x_train, y_train, x_test, y_test
        self.num_classes = max(len(self.data.class_names), int(y_train.max()) + 1)
        self.y_dev = torch.from_numpy(y_train.astype(np.int64)).to(self.device)
        self.steps_per_epoch = steps_per_epoch(len(y_train), p.batch_size)
        self.total_steps = self.steps_per_epoch * p.epochs
        self.schedule = CosineSchedule(scaled_lr(p.blr, p.batch_size), p.warmup_epochs * self.steps_per_epoch,
                                       self.total_steps, min(p.min_lr, scaled_lr(p.blr, p.batch_size)))
        path = c.aug_path
        if path == "auto":
            path = "device" if (p.rand_augment == "none" and not self.lazy) else "host"
        if path == "device" and (self.lazy or p.rand_augment != "none"):
            raise UmaeError("--aug-path device needs in-memory data and a preset without RandAugment "
                            "(--set rand_augment=none); use --aug-path host")
        self.aug_path = path
        if path == "device":
            self.resident = ResidentImages(x_train, self.device)
        else:
            self.items = TrainItems(x_train, train_transform(p, self.img_size, self.mean, self.std), c.seed)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.model = build_finetune_model(arch, p, self.num_classes)
        self.fresh: list[str] = []
        if not c.random_init:
            self.fresh = load_pretrained(self.model, loaded.model.state_dict(), str(c.checkpoint))
        self.frozen = freeze_blocks(self.model, c.freeze_blocks)
        self.model.to(self.device)
        self.train_model: nn.Module = self.model
        if d.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DDP(self.model, device_ids=ids)
        self.optimizer = build_lrd_optimizer(self.model, p.weight_decay, p.layer_decay, arch.depth, p.betas,
                                             self.device)
        self.mixup = make_mixup(p, self.num_classes)
        self.criterion = train_criterion(p)
        torch.manual_seed(c.seed + d.rank)  # drop path's stream

        self.epoch = self.step = self.step_in_epoch = 0
        self.running = {"loss": 0.0, "steps": 0, "images": 0, "train_s": 0.0}
        point = load_resume_point(self.run_dir, c.resume)
        self.resumed_from = point.path
        if point.path is not None and point.checkpoint is not None:
            self._restore(point.path, point.checkpoint)
        if self.main:
            if c.resume is not None and self.run_dir.is_dir():
                remove_stale_temp_files(self.run_dir)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if self.resumed_from is None:
                write_config(self.run_dir, self._config_record())
                truncate_metrics(self.run_dir, 0)
            else:
                truncate_metrics(self.run_dir, self.epoch)
                note_resume(self.run_dir, {"from": str(self.resumed_from), "epoch": self.epoch,
                                           "step": self.step, "command_line": list(c.command_line)})

    def _meta(self) -> dict[str, Any]:
        return checkpoint_meta(self)

    def _config_record(self) -> dict[str, Any]:
        return config_record(self)

    def _restore(self, path: Path, ckpt: dict[str, Any]) -> None:
        check_resumable(self, path, ckpt["umae"])
        self.model.load_state_dict(ckpt["model"], strict=True)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.step_in_epoch = int(ckpt["sampler"]["step_in_epoch"])
        self.running = dict(ckpt["running"])
        if self.d.rank == 0:
            set_rng_state(ckpt["rng"])
        else:
            torch.manual_seed(self.c.seed + self.d.rank + 1_000_003 * self.step)
        if self.epoch > self.preset.epochs:
            raise UmaeError(f"--resume {path}: the checkpoint is at epoch {self.epoch}, past --epochs "
                            f"{self.preset.epochs}; raise --epochs to train further")

    def _save(self) -> Path:
        payload = {"model": self.model.state_dict(), "umae": self._meta(),
                   "optimizer": self.optimizer.state_dict(), "epoch": self.epoch, "step": self.step,
                   "rng": rng_state(), "sampler": {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                                                   "seed": self.c.seed, "num_samples": int(len(self.y_train))},
                   "running": dict(self.running)}
        return update_last(save_checkpoint(self.run_dir / checkpoint_name(self.epoch), payload))

    # ---- training --------------------------------------------------------------------------

    def _batches(self, perm: torch.Tensor) -> Any:
        p, d = self.preset, self.d
        steps = range(self.step_in_epoch, self.steps_per_epoch)
        if self.aug_path == "host":
            self.items.epoch = self.epoch
            yield from host_epoch(self.items, perm, steps, p.batch_size, d.rank, d.world_size, self.c.workers,
                                  self.device)
            return
        perm_dev = perm.to(self.device)
        for k in steps:
            idx = rank_indices(perm_dev, k, p.batch_size, d.rank, d.world_size)
            seed = augment_seed(self.c.seed, self.epoch, k, d.rank)
            yield k, device_batch(self.resident.images[idx], p, self.img_size, self.mean, self.std, seed), idx

    def _nan_error(self, loss: float) -> UmaeError:
        last = self.run_dir / LAST
        kept = f"{last} is intact" if last.exists() else "no checkpoint had been written yet"
        return UmaeError(f"the loss became {loss} at epoch {self.epoch + 1}, step {self.step + 1}; {kept}. "
                         f"Lower --blr (now {self.preset.blr:g}), set --clip-grad 1.0 or train in fp32 "
                         "(--precision fp32), then --resume auto")

    def _train_epoch(self) -> None:
        p, c, d = self.preset, self.c, self.d
        perm = epoch_permutation(len(self.y_train), c.seed, self.epoch)
        self.train_model.train()
        trainable = [q for q in self.model.parameters() if q.requires_grad]
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype
                    else contextlib.nullcontext())
        with self.progress(f"epoch {self.epoch + 1}/{p.epochs}",
                           total=self.steps_per_epoch - self.step_in_epoch) as advance:
            t_last = time.perf_counter()
            for k, x, idx in self._batches(perm):
                x, target = mix(self.mixup, x, self.y_dev[idx], c.seed, self.epoch, k, d.rank)
                lr = self.schedule(self.step)
                set_scaled_lr(self.optimizer, lr)
                total = torch.zeros((), device=self.device)
                chunks = list(zip(x.chunk(p.accum_iter), target.chunk(p.accum_iter)))
                for i, (xc, tc) in enumerate(chunks):
                    sync = (contextlib.nullcontext() if i == len(chunks) - 1 or not hasattr(self.train_model, "no_sync")
                            else self.train_model.no_sync())
                    with sync:
                        with autocast:
                            loss = self.criterion(self.train_model(xc).float(), tc)
                        (loss / len(chunks)).backward()
                    total += loss.detach() / len(chunks)
                value = float(all_reduce_mean(total))
                if not math.isfinite(value):
                    self.optimizer.zero_grad(set_to_none=True)
                    raise self._nan_error(value)
                if p.clip_grad > 0:
                    nn.utils.clip_grad_norm_(trainable, p.clip_grad)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                self.step_in_epoch = k + 1
                now = time.perf_counter()
                dt, t_last = now - t_last, now
                r = self.running
                r["loss"] += value
                r["steps"] += 1
                r["images"] += p.batch_size
                r["train_s"] += dt
                advance(1)
                if self.main and self.on_step is not None:
                    self.on_step(FinetuneStep(self.epoch + 1, p.epochs, self.step, self.total_steps, value, lr,
                                              p.batch_size / dt if dt > 0 else float("inf")))

    def _end_epoch(self) -> dict[str, Any]:
        p, r = self.preset, self.running
        done = self.epoch + 1
        record: dict[str, Any] = {
            "epoch": done, "step": self.step, "loss": r["loss"] / max(r["steps"], 1),
            "lr": self.schedule(self.step - 1), "img_per_s": r["images"] / r["train_s"] if r["train_s"] else None,
            "train_s": r["train_s"],
        }
        if self.c.eval_every > 0 and (done % self.c.eval_every == 0 or done == p.epochs):
            with memory_stage("online evaluation"):  # out of memory here: the CLI names --eval-images
                record.update(evaluate(self.model, self.x_test, self.y_test, self.img_size, self.mean,
                                       self.std, self.device, self.c.eval_batch, self.amp_dtype))
        return record

    def run(self) -> FinetuneResult:
        t0 = time.perf_counter()
        self._versions = versions()
        self._setup()
        history: list[dict[str, Any]] = []
        while self.epoch < self.preset.epochs:
            with memory_stage("training"):  # the CLI names the batch options for this stage
                self._train_epoch()
            record = self._end_epoch() if self.main else {}
            self.epoch += 1
            self.step_in_epoch = 0
            self.running = {"loss": 0.0, "steps": 0, "images": 0, "train_s": 0.0}
            if self.main:
                record_epoch(self.run_dir, record, history, epoch=self.epoch, epochs=self.preset.epochs,
                             save_every=self.c.save_every, save=self._save, on_epoch=self.on_epoch)
        if self.d.world_size > 1:
            dist.barrier()
        records = read_metrics(self.run_dir) if self.main else []
        return FinetuneResult(
            run_dir=self.run_dir, checkpoint=self.run_dir / LAST, epochs=self.epoch, steps=self.step,
            final=records[-1] if records else {}, history=history, resumed_from=self.resumed_from,
            wall_s=time.perf_counter() - t0, preset=self.preset.to_dict(),
            encoder={"path": str(self.c.checkpoint), "layout": self.encoder_info.layout,
                     "sha256": self.encoder_info.sha256, "random_init": self.c.random_init,
                     "arch": self.encoder_info.arch.describe()})
