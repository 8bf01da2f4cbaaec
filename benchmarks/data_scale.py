"""How `umae probe`'s memory and time grow with the data: the in-memory path vs the lazy path.

For each size N it writes an ImageFolder of 224-px JPEGs (N train + N/4 val, 10 classes, noise
images with a class colour), then runs the same `umae probe` (a random-init ViT at 224 px saved
in the official MAE layout, kNN only, so the probe itself costs little) once per path, each in
a fresh child process, and records

- peak RSS of the process and, separately, of its DataLoader workers (ru_maxrss),
- wall time, and the feature-extraction rate (img/s) from results.json,
- the model's forward-only rate on the same batch size and input size, measured in the same
  child on pre-made tensors: the bound the extraction can reach when decoding never waits.

The baseline is the simplest honest one: today's in-memory path (`--data-mode memory`), which
decodes every image into one uint8 array. Goals (issue 10): lazy peak RSS flat in N (largest
within 1.2x of the smallest), lazy extraction within 10% of forward-only img/s.

Usage::

    python benchmarks/data_scale.py --sizes 1000,4000,16000 --workers 2
    python benchmarks/data_scale.py --sizes 200,400 --workers 1          # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_folder(root: Path, n_train: int, n_val: int, size: int = 224, seed: int = 0) -> None:
    """An ImageFolder of ``size``-px JPEGs, 10 classes, written once per N."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            k = i % 10
            d = root / split / f"class{k}"
            d.mkdir(parents=True, exist_ok=True)
            x = rng.integers(0, 120, (size // 8, size // 8, 3), dtype=np.uint8)
            x[..., k % 3] += 100
            Image.fromarray(x).resize((size, size), Image.Resampling.BILINEAR).save(d / f"{i:06d}.jpg", quality=90)


def make_checkpoint(path: Path, embed_dim: int, depth: int) -> None:
    import torch

    from umae_eval.checkpoints import encoder_state_dict, random_init_encoder
    from umae_eval.checkpoints.arch import ViTArch

    arch = ViTArch(img_size=224, patch_size=16, embed_dim=embed_dim, depth=depth, num_heads=max(1, embed_dim // 64))
    enc = random_init_encoder(arch, seed=0)
    torch.save({"model": encoder_state_dict(enc.model.state_dict())}, path)


def one_run(args: argparse.Namespace) -> None:
    """Child: run `umae probe` in this process and print one JSON line of measurements."""
    import torch

    torch.set_num_threads(args.threads)
    from umae_eval.cli import main

    out = Path(args.out)
    t0 = time.perf_counter()
    code = main(["probe", args.ckpt, "--data", args.data, "--data-mode", args.mode, "--methods", "knn",
                 "--k", "20", "--device", "cpu", "--batch-size", str(args.batch), "--workers", str(args.workers),
                 "--out", str(out)])
    wall = time.perf_counter() - t0
    res = json.loads((out / "results.json").read_text())
    timings = res["results"]["timings_s"]
    feat_s = sum(v for k, v in timings.items() if k.startswith("features"))
    n = res["settings"]["data"]["n_train"] + res["settings"]["data"]["n_test"]
    # forward-only rate on the same batch and input size: the bound for extraction
    from umae_eval.checkpoints import load_encoder

    enc = load_encoder(args.ckpt).model.eval()
    x = torch.randn(args.batch, 3, 224, 224)
    with torch.inference_mode():
        enc.forward_features(x)
        t1 = time.perf_counter()
        reps = 3
        for _ in range(reps):
            enc.forward_features(x)
        fwd = reps * args.batch / (time.perf_counter() - t1)
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"code": code, "wall_s": wall, "features_s": feat_s, "load_data_s": timings.get("load_data"),
                      "n_images": n, "extract_img_per_s": n / feat_s if feat_s else None,
                      "forward_img_per_s": fwd, "peak_rss_mb": self_rss, "worker_peak_rss_mb": child_rss}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,4000,16000", help="train images per set (val = N/4)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--embed-dim", type=int, default=192)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp dir, removed)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "data_scale.json"))
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ckpt"), ap.add_argument("--data"), ap.add_argument("--mode"), ap.add_argument("--out")
    args = ap.parse_args()
    if args.one:
        one_run(args)
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="umae-data-scale-"))
    ckpt = work / "vit224.pth"
    make_checkpoint(ckpt, args.embed_dim, args.depth)
    rows: list[dict[str, Any]] = []
    for n in [int(s) for s in args.sizes.split(",")]:
        data = work / f"folder-{n}"
        t0 = time.perf_counter()
        if not data.exists():
            make_folder(data, n, max(10, n // 4))
        gen_s = time.perf_counter() - t0
        for mode in ("memory", "lazy"):
            cache = work / f"cache-{n}-{mode}"  # a cold cache per run: nothing decoded before
            env = {**os.environ, "UMAE_CACHE_DIR": str(cache), "OMP_NUM_THREADS": str(args.threads)}
            cmd = [sys.executable, __file__, "--one", "--ckpt", str(ckpt), "--data", str(data), "--mode", mode,
                   "--out", str(work / f"out-{n}-{mode}"), "--threads", str(args.threads), "--batch", str(args.batch),
                   "--workers", str(args.workers)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"run {n} {mode} failed:\n{proc.stderr[-2000:]}")
            rec = json.loads(proc.stdout.strip().splitlines()[-1])
            rec.update(n_train=n, mode=mode, generate_s=gen_s)
            rows.append(rec)
            shutil.rmtree(cache, ignore_errors=True)
            print(f"N={n:>6} {mode:>6}: peak RSS {rec['peak_rss_mb']:7.0f} MB (workers {rec['worker_peak_rss_mb']:5.0f}), "
                  f"wall {rec['wall_s']:6.1f} s, extract {rec['extract_img_per_s'] or 0:6.1f} img/s, "
                  f"forward-only {rec['forward_img_per_s']:6.1f} img/s", flush=True)
    print()
    print(f"{'N train':>8} | {'path':>6} | {'peak RSS MB':>11} | {'workers MB':>10} | {'wall s':>7} | "
          f"{'extract img/s':>13} | {'fwd-only img/s':>14} | {'extract/fwd':>11}")
    for r in rows:
        ratio = (r["extract_img_per_s"] or 0) / r["forward_img_per_s"]
        print(f"{r['n_train']:>8} | {r['mode']:>6} | {r['peak_rss_mb']:>11.0f} | {r['worker_peak_rss_mb']:>10.0f} | "
              f"{r['wall_s']:>7.1f} | {r['extract_img_per_s'] or 0:>13.1f} | {r['forward_img_per_s']:>14.1f} | "
              f"{ratio:>11.2f}")
    lazy = [r for r in rows if r["mode"] == "lazy"]
    flat = lazy[-1]["peak_rss_mb"] / lazy[0]["peak_rss_mb"]
    print(f"\nlazy peak RSS, largest / smallest N: {flat:.2f}x (goal <= 1.2x)")
    from umae_eval.provenance import atomic_write_json, versions

    atomic_write_json(Path(args.json), {
        "benchmark": "data_scale", "rows": rows, "lazy_rss_ratio_largest_smallest": flat,
        "settings": {"sizes": args.sizes, "workers": args.workers, "threads": args.threads, "batch": args.batch,
                     "model": f"random-init ViT {args.embed_dim}x{args.depth}, patch 16, 224 px",
                     "probe": "umae probe --methods knn --k 20", "images": "224-px JPEG, quality 90, 10 classes"},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "versions": versions(), "command": " ".join(sys.argv)})
    print(f"wrote {args.json}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
