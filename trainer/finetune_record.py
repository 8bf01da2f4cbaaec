"""What a fine-tuning run records and reports: checkpoint metadata, ``config.json``, the resume
check, and :class:`FinetuneStep` / :class:`FinetuneResult`.

The checkpoint's ``'umae'`` metadata has what umae's loaders need (``num_heads``, ``norm_eps``,
``qkv_bias``, ``mean``, ``std``: the file loads as the 'umae' layout in ``umae probe`` /
``compare``) plus ``kind='finetune'`` and a ``finetune`` dict saying which data, classes,
pooling, frozen blocks and source encoder the weights were tuned with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trainer.finetune_presets import SCHEDULE_FIELDS
from trainer.run_config import RunResult
from umae_eval.errors import UmaeError


@dataclass(frozen=True)
class FinetuneStep:
    """What the loop reports after each optimiser step (rank 0)."""

    epoch: int
    epochs: int
    step: int
    total_steps: int
    loss: float
    lr: float
    img_per_s: float


@dataclass(frozen=True)
class FinetuneResult(RunResult):
    """A finished (or resumed and finished) fine-tuning run: :class:`RunResult`'s fields, the preset
    fields it used and the encoder it started from."""

    preset: dict[str, Any]
    encoder: dict[str, Any]


def source_name(run: Any) -> str:
    """What was fine-tuned: 'random init' or the source's short name ('MAE e20', its layout)."""
    from umae_eval.checkpoints.naming import metadata_name

    if run.c.random_init:
        return "random init"
    return metadata_name(run.encoder_info) or run.encoder_info.layout


def checkpoint_meta(run: Any) -> dict[str, Any]:
    """The checkpoint's 'umae' metadata: what the umae loaders need, and what was tuned on what."""
    info, arch = run.encoder_info, run.encoder_info.arch
    src = info.metadata if isinstance(info.metadata, dict) else {}
    return {
        "format_version": 1, "kind": "finetune", "preset": run.preset.name,
        # A name the analysis commands show as is and never take for a frozen MAE / U-MAE
        # (their Table 1 rows are linear probes): 'fine-tuned (U-MAE λ=0.01 e20)'.
        "method": f"fine-tuned ({source_name(run)})", "lam": 0.0,
        "img_size": arch.img_size, "patch_size": arch.patch_size, "embed_dim": arch.embed_dim,
        "depth": arch.depth, "num_heads": arch.num_heads, "mlp_ratio": arch.mlp_ratio,
        "norm_eps": arch.norm_eps, "qkv_bias": arch.qkv_bias,
        "mean": list(run.mean), "std": list(run.std), "epoch": run.epoch, "step": run.step,
        "seed": run.c.seed, "data_spec": str(run.c.data), "data_fingerprint": run.data.fingerprint,
        "finetune": {
            "tuned_on": str(run.c.data), "data_fingerprint": run.data.fingerprint,
            "num_classes": run.num_classes, "class_names": list(run.data.class_names),
            "pool": run.preset.pool, "freeze_blocks": run.c.freeze_blocks,
            "random_init": run.c.random_init, "preset_fields": run.preset.to_dict(),
            "source_checkpoint": str(run.c.checkpoint), "source_sha256": info.sha256,
            "source_layout": info.layout, "source_name": source_name(run), "source_lam": src.get("lam"),
            "source_method": src.get("method"), "epochs_done": run.epoch,
            "max_train_images": run.c.max_train_images, "aug_path": run.aug_path,
        },
        "versions": run._versions,
    }


def config_record(run: Any) -> dict[str, Any]:
    """``config.json`` of a fine-tuning run: recipe, encoder, data, augmentation, devices, versions."""
    c, p = run.c, run.preset
    return {
        "kind": "finetune", "preset": p.to_dict(), "lr": run.schedule.base_lr,
        "encoder": {"path": str(c.checkpoint), "layout": run.encoder_info.layout,
                    "sha256": run.encoder_info.sha256, "arch": asdict(run.encoder_info.arch),
                    "random_init": c.random_init, "fresh_keys": run.fresh},
        "freeze_blocks": c.freeze_blocks, "frozen_parameters": len(run.frozen),
        "data": {"spec": str(c.data), "fingerprint": run.data.fingerprint,
                 "train_images": int(len(run.y_train)), "test_images": int(len(run.y_test)),
                 "num_classes": run.num_classes, "max_train_images": c.max_train_images,
                 "eval_images": c.eval_images},
        "augmentation": augment_text(run), "aug_path": run.aug_path,
        "seed": c.seed, "device": str(run.device), "world_size": run.d.world_size,
        "precision": "bf16" if run.amp_dtype is not None else "fp32",
        "steps_per_epoch": run.steps_per_epoch, "total_steps": run.total_steps,
        "micro_batch_per_process": run.per_rank // p.accum_iter,
        "train_config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(c).items()},
        "command_line": list(c.command_line), "versions": run._versions,
    }


def augment_text(run: Any) -> str:
    """Which augmentations the run applies, and where (host workers or the device)."""
    p = run.preset
    parts = []
    if p.crop == "rrc":
        parts.append(f"RandomResizedCrop{tuple(p.crop_scale)} {'bicubic' if run.aug_path == 'host' else 'bilinear'}"
                     f" + flip {p.hflip if run.aug_path == 'host' else 0.5}")
    if p.rand_augment != "none":
        parts.append(f"RandAugment {p.rand_augment}")
    if p.reprob > 0:
        parts.append(f"RandomErasing {p.reprob}")
    if p.mixing:
        parts.append(f"mixup {p.mixup} cutmix {p.cutmix} prob {p.mixup_prob}")
    if p.smoothing > 0:
        parts.append(f"label smoothing {p.smoothing}")
    where = "per image in DataLoader workers (timm)" if run.aug_path == "host" else "batched on the device"
    return (", ".join(parts) or "none") + f"; {where}"


def check_resumable(run: Any, path: Path, meta: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint of another recipe, data, seed, encoder or freeze."""
    ft = meta.get("finetune", {})
    if meta.get("kind") != "finetune":
        raise UmaeError(f"--resume {path}: not a `umae finetune` checkpoint; choose a new --out")
    saved, now = dict(ft.get("preset_fields", {})), run.preset.to_dict()
    for key in sorted(set(saved) | set(now)):
        if key not in SCHEDULE_FIELDS and saved.get(key) != now.get(key):
            raise UmaeError(f"--resume {path}: the checkpoint has {key}={saved.get(key)!r} but this run "
                            f"asks for {now.get(key)!r}; pass the original options (config.json) or a new --out")
    for what, old, new in (("--data", ft.get("data_fingerprint"), run.data.fingerprint),
                           ("--seed", meta.get("seed"), run.c.seed),
                           ("the encoder", ft.get("source_sha256"), run.encoder_info.sha256),
                           ("--freeze-blocks", ft.get("freeze_blocks"), run.c.freeze_blocks),
                           ("--random-init", ft.get("random_init"), run.c.random_init)):
        if old != new:
            raise UmaeError(f"--resume {path}: the checkpoint used other {what}; pass the same or a new --out")
