"""`umae finetune` throughput against a plain timm + torch loop with the same recipe, side by side.

Both train the same architecture from the same encoder on the same images for one epoch with the
preset's recipe (AdamW with layer-wise lr decay, drop path, mixup/cutmix/smoothing, timm's train
transform with RandAugment and RandomErasing):

- ``umae``: :func:`trainer.finetune.finetune_run` (seeded per-item transforms, seeded mixup,
  checkpoint at the end; evaluation off).
- ``plain``: what a straightforward script does: ``timm.create_model``-style ViT, timm's
  ``param_groups_layer_decay`` (timm's own implementation of the same rule), a DataLoader over a
  Dataset applying ``timm.data.create_transform``, ``timm.data.Mixup`` and
  ``SoftTargetCrossEntropy``, eager fp32 on the CPU / bf16 autocast on CUDA.

Reported: images/s of the training steps and the ratio umae / plain from one run (absolute figures
depend on the machine and its load; quote the ratio). The two runs alternate ``--repeats`` times.

Usage::

    python benchmarks/finetune_speed.py --images 256 --batch-size 64 --json benchmarks/finetune_speed.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from umae_eval.compat import ensure_timm_importable  # noqa: E402

ensure_timm_importable()
from timm.data import Mixup, create_transform  # noqa: E402
from timm.loss import SoftTargetCrossEntropy  # noqa: E402
from timm.optim import param_groups_layer_decay  # noqa: E402

from trainer.finetune import FinetuneConfig, finetune_run  # noqa: E402
from trainer.finetune_model import build_finetune_model, load_pretrained  # noqa: E402
from trainer.finetune_presets import get_finetune_preset  # noqa: E402
from umae_eval.checkpoints import load_encoder  # noqa: E402
from umae_eval.data import load_dataset  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "umae_eval" / "demo" / "encoders" / "mae-cifar10-vit96x6-p4-e20.pth"


class _Items(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray, transform: object) -> None:
        self.x, self.y, self.t = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.t(Image.fromarray(self.x[i])), int(self.y[i])  # type: ignore[operator]


def plain_epoch(ckpt: str, x: np.ndarray, y: np.ndarray, preset_name: str, batch: int, workers: int) -> float:
    """One epoch of the plain loop; returns images/s of the training steps."""
    p = get_finetune_preset(preset_name, batch_size=batch)
    loaded = load_encoder(ckpt)
    arch, mean, std = loaded.info.arch, loaded.info.mean, loaded.info.std
    model = build_finetune_model(arch, p, 10)
    load_pretrained(model, loaded.model.state_dict(), ckpt)
    groups = param_groups_layer_decay(model, weight_decay=p.weight_decay, layer_decay=p.layer_decay,
                                      no_weight_decay_list=list(model.no_weight_decay()))
    opt = torch.optim.AdamW(groups, lr=p.blr * batch / 256, betas=p.betas)
    transform = create_transform(input_size=arch.img_size, is_training=True, scale=p.crop_scale, auto_augment=None,
                                 interpolation="bicubic", re_prob=p.reprob, re_mode="pixel", re_count=1,
                                 mean=mean, std=std)  # RandAugment left out: Pillow >= 11 needs umae's fix
    loader = torch.utils.data.DataLoader(_Items(x, y, transform), batch_size=batch, shuffle=True,
                                         num_workers=workers, drop_last=True)
    mixup = Mixup(mixup_alpha=p.mixup, cutmix_alpha=p.cutmix, label_smoothing=p.smoothing, num_classes=10)
    crit = SoftTargetCrossEntropy()
    model.train()
    t0, n = time.perf_counter(), 0
    for xb, yb in loader:
        xb, tb = mixup(xb, yb)
        loss = crit(model(xb), tb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        n += len(xb)
    return n / (time.perf_counter() - t0)


def umae_epoch(ckpt: str, images: int, preset_name: str, batch: int, workers: int) -> float:
    """One epoch of `umae finetune` (evaluation off); returns images/s of the training steps."""
    with tempfile.TemporaryDirectory() as tmp:
        r = finetune_run(FinetuneConfig(checkpoint=ckpt, data="demo", preset=preset_name, out=Path(tmp) / "r",
                                        epochs=1, batch_size=batch, workers=workers, max_train_images=images,
                                        eval_every=0, overrides={"rand_augment": "none"}))
    return float(r.final["img_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(DEMO))
    ap.add_argument("--preset", default="cpu-demo")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = load_dataset("demo")
    keep = np.sort(np.random.default_rng([0, 1]).permutation(len(data.y_train))[: a.images])
    x, y = data.x_train[keep], data.y_train[keep]
    rows = []
    for rep in range(a.repeats):
        u = umae_epoch(a.checkpoint, a.images, a.preset, a.batch_size, a.workers)
        pl = plain_epoch(a.checkpoint, x, y, a.preset, a.batch_size, a.workers)
        rows.append({"repeat": rep, "umae_img_per_s": u, "plain_img_per_s": pl, "ratio": u / pl})
    print(f"{'repeat':>6} {'umae img/s':>11} {'plain img/s':>12} {'umae/plain':>11}")
    for r in rows:
        print(f"{r['repeat']:>6} {r['umae_img_per_s']:>11.1f} {r['plain_img_per_s']:>12.1f} {r['ratio']:>11.2f}")
    out = {"settings": {**vars(a), "json": str(a.json), "threads": torch.get_num_threads(),
                        "device": "cpu", "note": "RandAugment off in both (the plain loop cannot run it "
                        "on Pillow >= 11); same recipe otherwise"},
           "rows": rows, "median_ratio": float(np.median([r["ratio"] for r in rows]))}
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
