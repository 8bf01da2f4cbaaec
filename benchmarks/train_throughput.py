"""Training throughput of umae's fast path against a plain PyTorch baseline, side by side.

For each preset, on the current device, both paths train the same model (a fresh copy each,
same initial weights) on the same images for the same number of steps:

- ``fast``: umae's trainer -- the train split resident on the device as uint8, batches gathered
  and normalised there (:mod:`trainer.batches`), bf16 autocast on CUDA, fused AdamW on CUDA
  (multi-tensor on the CPU), TF32 matmuls, optionally ``torch.compile`` (``--compile``).
- ``plain``: what a straightforward script does -- a ``DataLoader`` over the host images,
  per-batch ``to_model_input`` and a host-to-device copy, eager fp32, single-tensor AdamW.

Both use the same loss (:func:`trainer.losses.loss_terms`) and the same micro-batching, so they
compute the same thing; their steps alternate (fast, plain, fast, ...) so that both see the same
machine load (``tests/trainer/test_loop.py`` checks one step's loss and gradients).
Reported: images/s, ms per optimiser step, the analytic training FLOPs per image
(:mod:`trainer.flops`) and, on a GPU of known peak, MFU. Quote the *ratio* fast/plain, measured
in one run: absolute figures depend on the machine and its load.

Usage::

    python benchmarks/train_throughput.py --preset tiny-test,cifar10-vit-tiny-p4 --steps 5 --batch-size 64
    python benchmarks/train_throughput.py --preset cifar10-vit-tiny-p2 --steps 30 --json out.json   # GPU
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from umae_eval.compat import ensure_timm_importable  # noqa: E402

ensure_timm_importable()  # before timm
from trainer.batches import ResidentImages, augment_batch, epoch_permutation  # noqa: E402
from trainer.flops import flops_per_image, mfu, peak_tflops  # noqa: E402
from trainer.loop import accumulate_gradients, autocast_dtype  # noqa: E402
from trainer.losses import loss_terms  # noqa: E402
from trainer.model import build_model  # noqa: E402
from trainer.presets import Preset, get_preset  # noqa: E402
from trainer.schedule import build_optimizer, scaled_lr  # noqa: E402
from umae_eval.preprocess import to_model_input  # noqa: E402


# --------------------------------------------------------------------------- the plain baseline


class _HostImages(torch.utils.data.Dataset):
    """uint8 images (N, H, W, 3) in host memory, one tensor per item."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.images[i]))


def plain_loader(images: np.ndarray, order: torch.Tensor, batch_size: int,
                 workers: int = 0) -> torch.utils.data.DataLoader:
    """A plain DataLoader over host images visiting ``order`` in batches of ``batch_size``.

    Parameters
    ----------
    images : np.ndarray, shape (N, H, W, 3), uint8
    order : Tensor, shape (M,)
        Indices in visiting order (e.g. :func:`trainer.batches.epoch_permutation`).
    batch_size : int
    workers : int
    """
    return torch.utils.data.DataLoader(_HostImages(images), batch_size=batch_size, sampler=order.tolist(),
                                       num_workers=workers, drop_last=True,
                                       generator=torch.Generator())


def plain_optimizer(model: nn.Module, preset: Preset) -> torch.optim.AdamW:
    """Single-tensor AdamW with umae's parameter groups (the baseline's optimiser)."""
    return build_optimizer(model, scaled_lr(preset.blr, preset.batch_size), preset.betas,
                           preset.weight_decay, torch.device("cpu"), fast=False)


def plain_gradients(model: nn.Module, batch: torch.Tensor, preset: Preset, device: torch.device,
                    micro_batch: int | None) -> torch.Tensor:
    """Eager fp32 forward/backward of one host uint8 batch (B, H, W, 3); returns [loss, recon, unif]."""
    x = to_model_input(batch, preset.img_size, preset.mean, preset.std).to(device)
    chunks = x.split(micro_batch) if micro_batch else (x,)
    totals = torch.zeros(3)
    for chunk in chunks:
        terms = loss_terms(model, chunk, preset.mask_ratio, preset.lam, preset.unif_form)
        (terms["loss"] / len(chunks)).backward()
        totals += torch.stack([terms["loss"].detach(), terms["loss_recon"].detach(),
                               terms["loss_unif"].detach()]).float().cpu()
    return totals / len(chunks)


# --------------------------------------------------------------------------- measuring


@dataclass
class PathTiming:
    """Throughput of one path."""

    path: str
    img_per_s: float
    ms_per_step: float
    mfu: float | None
    final_loss: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _interleaved(steps_by_path: dict[str, Callable[[int], float]], steps: int, warmup: int,
                 device: torch.device) -> dict[str, tuple[float, float]]:
    """Run the paths' steps alternately (A, B, A, B, ...) so that both see the same machine load.

    Returns
    -------
    dict
        path -> (seconds over the timed steps, loss of its last step).
    """
    for i in range(warmup):
        for step in steps_by_path.values():
            step(i)
    spent = {name: 0.0 for name in steps_by_path}
    last = {name: float("nan") for name in steps_by_path}
    for i in range(warmup, warmup + steps):
        for name, step in steps_by_path.items():
            _sync(device)
            t0 = time.perf_counter()
            last[name] = step(i)
            _sync(device)
            spent[name] += time.perf_counter() - t0
    return {name: (spent[name], last[name]) for name in steps_by_path}


def benchmark_preset(preset: Preset, images: np.ndarray, device: torch.device, steps: int, warmup: int,
                     compile_model: bool = False, workers: int = 0, seed: int = 0) -> dict[str, object]:
    """Time the fast and the plain path for one preset, steps interleaved.

    Each path gets its own copy of one freshly initialised model and visits the same images in
    the same order; their steps alternate so that machine load drifts hit both equally.
    """
    torch.manual_seed(seed)
    base = build_model(preset)
    n_needed = (steps + warmup) * preset.batch_size
    reps = -(-n_needed // len(images))
    pool = np.concatenate([images] * reps) if reps > 1 else images
    order = epoch_permutation(len(pool), seed, 0)
    flops = flops_per_image(preset).train
    peak = peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    micro = preset.micro_batch

    # fast path: device-resident uint8, autocast bf16 on CUDA, fused / foreach AdamW
    fast_model = copy.deepcopy(base).to(device)
    fast_train = torch.compile(fast_model) if compile_model else fast_model
    fast_opt = build_optimizer(fast_model, scaled_lr(preset.blr, preset.batch_size), preset.betas,
                               preset.weight_decay, device)
    amp = autocast_dtype("auto", device)
    resident = ResidentImages(pool, device)
    fast_batches = resident.epoch(order, range(steps + warmup), preset.batch_size)

    def fast_step(i: int) -> float:
        _, raw = next(fast_batches)
        x = augment_batch(raw, preset.img_size, preset.mean, preset.std, preset.augment)  # type: ignore[arg-type]
        terms = accumulate_gradients(fast_train, x, mask_ratio=preset.mask_ratio, lam=preset.lam,
                                     unif_form=preset.unif_form, micro_batch=micro, amp_dtype=amp)
        fast_opt.step()
        fast_opt.zero_grad(set_to_none=True)
        return float(terms[0])

    # plain path: DataLoader over host memory, per-batch preprocessing and copy, eager fp32
    plain_model = copy.deepcopy(base).to(device)
    plain_opt = plain_optimizer(plain_model, preset)
    loader_iter = iter(plain_loader(pool, order, preset.batch_size, workers))

    def plain_step(i: int) -> float:
        batch = next(loader_iter)
        terms = plain_gradients(plain_model, batch, preset, device, micro)
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)
        return float(terms[0])

    timed = _interleaved({"fast": fast_step, "plain": plain_step}, steps, warmup, device)
    out: dict[str, PathTiming] = {}
    for name, (seconds, loss) in timed.items():
        ips = steps * preset.batch_size / seconds
        out[name] = PathTiming(name, ips, 1000 * seconds / steps, mfu(ips, flops, peak) if peak else None, loss)
    return {
        "preset": preset.name,
        "batch_size": preset.batch_size,
        "micro_batch": micro,
        "lam": preset.lam,
        "img_size": preset.img_size,
        "patch_size": preset.patch_size,
        "flops_per_image": flops,
        "gflops_per_image": flops / 1e9,
        "peak_tflops": peak,
        "fast": asdict(out["fast"]),
        "plain": asdict(out["plain"]),
        "speedup": out["fast"].img_per_s / out["plain"].img_per_s,
    }


def _images(spec: str, img_size: int, n: int, seed: int) -> np.ndarray:
    if spec == "synthetic":
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, (n, img_size, img_size, 3), dtype=np.uint8)
    from umae_eval.data import load_dataset

    return load_dataset(spec).x_train


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="tiny-test,cifar10-vit-tiny-p4",
                    help="Comma-separated preset names.")
    ap.add_argument("--data", default="demo", help="Dataset spec for load_dataset, or 'synthetic'.")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=5, help="Timed optimiser steps per path.")
    ap.add_argument("--warmup", type=int, default=2, help="Untimed steps first.")
    ap.add_argument("--batch-size", type=int, default=None, help="Override the preset's effective batch.")
    ap.add_argument("--micro-batch", type=int, default=None, help="Override the preset's micro-batch.")
    ap.add_argument("--lam", type=float, default=0.01, help="Uniformity weight (U-MAE) for both paths.")
    ap.add_argument("--workers", type=int, default=0, help="Plain DataLoader workers.")
    ap.add_argument("--compile", action="store_true", help="torch.compile the fast path's model.")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    ap.add_argument("--json", type=Path, default=None, help="Write the results here.")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if (args.device == "auto" and torch.cuda.is_available())
                          else ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    rows = []
    for name in [s.strip() for s in args.preset.split(",") if s.strip()]:
        over: dict[str, object] = {"lam": args.lam, "batch_size": args.batch_size,
                                   "micro_batch": args.micro_batch}
        if args.batch_size and not args.micro_batch:
            mb = get_preset(name).micro_batch
            if mb is None or args.batch_size % mb or mb > args.batch_size:
                over["micro_batch"] = args.batch_size  # one forward per step
        preset = get_preset(name, **over)
        images = _images(args.data, preset.img_size, 4096, 0)
        rows.append(benchmark_preset(preset, images, device, args.steps, args.warmup, args.compile,
                                     args.workers))
        print(f"done {name}", file=sys.stderr, flush=True)

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    header = (f"{'preset':<22} {'batch':>6} {'GFLOP/img':>10} {'fast img/s':>11} {'plain img/s':>12} "
              f"{'fast ms/step':>13} {'plain ms/step':>14} {'speedup':>8} {'MFU fast':>9}")
    print(f"device: {device_name}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(header)
    for r in rows:
        f, p = r["fast"], r["plain"]
        m = f"{100 * f['mfu']:.1f}%" if f["mfu"] is not None else "-"  # type: ignore[index]
        print(f"{r['preset']:<22} {r['batch_size']:>6} {r['gflops_per_image']:>10.4f} {f['img_per_s']:>11.1f} "  # type: ignore[index]
              f"{p['img_per_s']:>12.1f} {f['ms_per_step']:>13.1f} {p['ms_per_step']:>14.1f} "  # type: ignore[index]
              f"{r['speedup']:>7.2f}x {m:>9}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": device_name, "torch": torch.__version__,
                                         "threads": torch.get_num_threads(), "steps": args.steps,
                                         "warmup": args.warmup, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
