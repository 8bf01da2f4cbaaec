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

Modules: the run's options and result (:mod:`trainer.run_config`), its setup and resume
(:mod:`trainer.run_setup`), one optimiser step (:mod:`trainer.step`), the online figures
(:mod:`trainer.online_eval`), the checks before a run (:mod:`trainer.resume_checks`); this module
runs the epochs and writes the checkpoints. Every name moved out is still importable from here.

Example
-------
>>> from trainer.loop import TrainConfig, train_run
>>> result = train_run(TrainConfig(data="demo", preset="tiny-test", out="runs/t", epochs=1))  # doctest: +SKIP
>>> result.final["loss"]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from trainer.batches import augment_batch, augment_seed, epoch_permutation
from trainer.checkpoint import LAST, checkpoint_name, metadata, rng_state, save_checkpoint, update_last
from trainer.distributed import DistInfo, all_reduce_mean, cleanup_distributed, setup_distributed
from trainer.flops import flops_per_image
from trainer.losses import paper_form_warning, paper_over_code
from trainer.runlock import hold_run_lock, release_run_lock
from trainer.runlog import read_metrics, record_epoch
from trainer.schedule import set_lr
from trainer.stepinfo import StepInfo  # noqa: F401  (re-exported: the displays' type)
# Re-exported: the pieces split out of this module are still importable from trainer.loop.
from trainer.online_eval import OnlineEvaluator  # noqa: F401
from trainer.resume_checks import SCHEDULE_FIELDS, _check_resume_compatible, check_out_dir  # noqa: F401
from trainer.run_config import (  # noqa: F401  (re-exported: callers import them from trainer.loop)
    RESIDENT_LIMIT_BYTES,
    Precision,
    TrainConfig,
    TrainResult,
    _autocast,
    _fixed_subset,
    _seed_everything,
    autocast_dtype,
    resolve_device,
    resolve_preset,
)
from trainer.step import _Running, accumulate_gradients  # noqa: F401
from trainer.run_setup import RunSetup
from umae_eval.errors import UmaeError
from umae_eval.oom import memory_stage
from umae_eval.progress import ProgressFactory, null_progress
from umae_eval.provenance import versions


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
        if dist_info.rank == 0 and Path(config.out).is_dir():
            hold_run_lock(Path(config.out))  # before last.pth is read: one process per run folder
        return _Run(config, dist_info, progress, on_step, on_epoch, on_note).run()
    finally:
        release_run_lock(Path(config.out))
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_det_warn)
        if dist_info.world_size > 1:
            cleanup_distributed()


class _Run(RunSetup):
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
        with memory_stage("online evaluation"):  # out of memory here: the CLI names --eval-images
            record.update(self.evaluator.evaluate(self.model, probes))
        return record

    def run(self) -> TrainResult:
        t0 = time.perf_counter()
        self._versions = versions()
        self._setup()
        p, c = self.preset, self.c
        history: list[dict[str, Any]] = []
        while self.epoch < p.epochs:
            with memory_stage("training"):  # the CLI names the batch options for this stage
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
                record_epoch(self.run_dir, record, history, epoch=self.epoch, epochs=p.epochs,
                             save_every=c.save_every, save=lambda: self._save(numbered=True), on_epoch=self.on_epoch)
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
