"""Setting up a pre-training run: check the options, open the data, build the model and optimiser,
restore a checkpoint to resume from (or take ``--init`` weights), and write ``config.json``.

``RunSetup`` is the first half of :class:`trainer.loop._Run` (its ``_setup`` and the resume
helpers), split out of :mod:`trainer.loop` with the code moved unchanged; the loop keeps the
epochs, steps and checkpoints.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer.batches import (
    LazyStreamedImages,
    LazyTrainImages,
    ResidentImages,
    StreamedImages,
    steps_per_epoch,
)
from trainer.checkpoint import (
    load_resume_point,
    remove_stale_temp_files,
    set_rng_state,
)
from trainer.distributed import (
    gather_for,
)
from trainer.flops import flops_per_image
from trainer.model import build_model
from trainer.runlog import (
    note_resume,
    truncate_metrics,
    write_config,
)
from trainer.schedule import CosineSchedule, build_optimizer, scaled_lr
from trainer.runlock import hold_run_lock
from umae_eval.errors import UmaeError
from umae_eval.progress import null_progress
from umae_eval.provenance import versions
from trainer.online_eval import OnlineEvaluator
from trainer.resume_checks import _check_resume_compatible, check_out_dir
from trainer.run_config import (
    RESIDENT_LIMIT_BYTES,
    _fixed_subset,
    _seed_everything,
    autocast_dtype,
    resolve_device,
    resolve_preset,
)
from trainer.step import _Running


class RunSetup:
    """The setup half of a run; :class:`trainer.loop._Run` sets the attributes it reads
    (``c``, ``d``, ``progress``, ``on_note``, ``run_dir``, ``main``) before calling ``_setup``."""

    c: Any
    d: Any
    progress: Any
    on_note: Any
    run_dir: Path
    main: bool

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
            hold_run_lock(self.run_dir)  # a new run: before config.json (released by train_run)
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
