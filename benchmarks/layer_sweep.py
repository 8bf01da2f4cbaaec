"""Reading every block in one pass against the last block alone (and against one pass per block).

    python benchmarks/layer_sweep.py                 # ViT-S/16 at 224 px, 32 images, 3 rounds
    python benchmarks/layer_sweep.py --quick         # 8 images, 1 round, no JSON
    python benchmarks/layer_sweep.py --md out.md     # also the markdown section for RESULTS.md

Claim (issue 19): the features of all 12 blocks of a ViT-S/16 at 224 px cost at most 1.3x the
time of the last block alone, because one forward pass gives them all
(:func:`umae_eval.readout.encode_readout`). Side by side in one process, on the same images
(random uint8 at 224 px) and an untrained ViT-S/16 (speed does not depend on the weights):

- ``last block``: :func:`umae_eval.features.extract_features` with the default readout (the last
  block's [CLS] after the final norm: ``forward_features``), the simplest honest baseline;
- ``all 12 blocks, one pass``: the same call with ``readout=readout_for('all', 12)``;
- ``12 passes, one per block``: what reading the blocks one at a time would cost (each pass
  stops at its block, as :func:`umae_eval.readout.block_tokens` does).

Each round runs the three in turn (so they share the machine's load); the median over rounds is
reported, and speed only as ratios to ``last block``. Also checks that the all-blocks features'
last block equals the last-block features exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=32, help="images per extraction")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="8 images, one round, no JSON")
    p.add_argument("--json", type=Path, default=None, help="default benchmarks/layer_sweep.json")
    p.add_argument("--md", type=Path, default=None, help="also write the markdown section here")
    return p.parse_args(argv)


sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or loaded from its file
from timing_preamble import prepare  # noqa: E402

ARGS = prepare(_parse, __name__)  # before numpy / torch load: they read the thread counts then

import numpy as np  # noqa: E402
import torch  # noqa: E402

from umae_eval.checkpoints import random_init_encoder  # noqa: E402
from umae_eval.checkpoints.arch import ViTArch  # noqa: E402
from umae_eval.features import extract_features, resolve_device  # noqa: E402
from umae_eval.readout import readout_for  # noqa: E402


def _timed(fn: Any) -> tuple[float, Any]:
    dev = resolve_device(ARGS.device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    out = fn()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t0, out


def run(n: int, rounds: int) -> dict[str, Any]:
    torch.set_num_threads(ARGS.threads)
    arch = ViTArch(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6)
    enc = random_init_encoder(arch, seed=0)
    images = np.random.default_rng(0).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    kw = dict(device=ARGS.device, batch_size=ARGS.batch_size)
    extract_features(enc, images[:2], **kw)  # warm-up (allocator, kernels)
    every = readout_for("all", 12)
    times: dict[str, list[float]] = {"last block": [], "all 12 blocks, one pass": [], "12 passes, one per block": []}
    same = True
    for _ in range(rounds):
        t, last = _timed(lambda: extract_features(enc, images, **kw))
        times["last block"].append(t)
        t, allb = _timed(lambda: extract_features(enc, images, readout=every, **kw))
        times["all 12 blocks, one pass"].append(t)
        same = same and bool(np.array_equal(allb[:, -384:], last))
        t, _ = _timed(lambda: [extract_features(enc, images, readout=readout_for(str(b), 12), **kw)
                               for b in range(12)])
        times["12 passes, one per block"].append(t)
    base = statistics.median(times["last block"])
    rows = [{"method": k, "median_s": statistics.median(v), "ratio_to_last_block": statistics.median(v) / base,
             "runs_s": v} for k, v in times.items()]
    return {"arch": "ViT-S/16 (dim 384, depth 12, 6 heads), untrained", "img_size": 224, "n_images": n,
            "rounds": rounds, "batch_size": ARGS.batch_size, "threads": ARGS.threads,
            "device": str(resolve_device(ARGS.device)), "rows": rows,
            "last_block_columns_equal": same, "torch": torch.__version__, "python": platform.python_version(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def table(res: dict[str, Any]) -> str:
    lines = [f"{res['arch']}, {res['img_size']} px, {res['n_images']} images, batch {res['batch_size']}, "
             f"{res['threads']} threads, {res['device']}, median of {res['rounds']} rounds "
             f"(load average {', '.join(f'{v:.1f}' for v in res['load_average'] or [])})", "",
             "| method | ratio to last block |", "|---|---|"]
    lines += [f"| {r['method']} | {r['ratio_to_last_block']:.2f}x |" for r in res["rows"]]
    lines += ["", f"last block of the one-pass features equals the last-block features exactly: "
                  f"{res['last_block_columns_equal']}"]
    return "\n".join(lines)


def main() -> None:
    n, rounds = (8, 1) if ARGS.quick else (ARGS.n, ARGS.rounds)
    res = run(n, rounds)
    print(table(res))
    if not ARGS.quick:
        path = ARGS.json or Path(__file__).with_name("layer_sweep.json")
        path.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {path}")
    if ARGS.md:
        ARGS.md.write_text(table(res) + "\n")


if __name__ == "__main__":
    main()
