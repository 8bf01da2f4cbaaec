"""Cost of the attentive (EP) probe against the linear probe on the same frozen tokens.

    python benchmarks/attentive_cost.py            # demo MAE encoder's tokens, 1,000 and 3,000 train images
    python benchmarks/attentive_cost.py --quick    # 300 train images, a smoke run
    python benchmarks/attentive_cost.py --md out.md  # also the markdown section for RESULTS.md

Tokens: the shipped demo MAE encoder (ViT 96 x 6, patch 4, 32 px: 64 patch tokens + [CLS],
96 dims, after the final norm) on the CIFAR-10 sample inside the package (3,000 train / 1,000
test images), stored as float16 as a caller would cache them. At each train size (``n / 10``
train images of every class, ``umae_eval.subsets.balanced_subset``; all 1,000 test images),
each in its own forked process:

- ``linear [CLS]``: the 'fast' linear probe on the [CLS] token (umae's default feature),
- ``linear avg``: the same probe on the mean of the patch tokens,
- ``attentive``: :func:`umae_eval.probes.attentive.attentive_probe` with its defaults (all 65
  tokens, Q = 32, 3 x 2 grid + refit, 30 epochs),

timing CPU seconds (process time) and wall seconds, and the peak resident memory the probe
added (VmHWM at the end minus VmRSS at the start of the child, the token array excluded since
it is already resident). One thread (``--threads``). Timings on a shared machine are noisy:
the load average is recorded and speed is reported as ratios to ``linear [CLS]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,3000", help="train sizes (comma-separated; at most 3000)")
    p.add_argument("--quick", action="store_true", help="one size of 300 train images, no JSON")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None,
                   help="default benchmarks/attentive_cost.json (none with --quick)")
    p.add_argument("--md", type=Path, default=None, help="also write the markdown section here")
    return p.parse_args(argv)


sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or loaded from its file
from timing_preamble import prepare  # noqa: E402

ARGS = prepare(_parse, __name__)  # before numpy / torch load: they read the thread counts then

import numpy as np  # noqa: E402
import torch  # noqa: E402

from umae_eval.checkpoints import load_encoder  # noqa: E402
from umae_eval.data.demo_sample import load_demo  # noqa: E402
from umae_eval.preprocess import to_model_input  # noqa: E402
from umae_eval.probes.attentive import attentive_probe, token_cache_bytes  # noqa: E402
from umae_eval.probes.linear import linear_probe  # noqa: E402
from umae_eval.progress import null_progress  # noqa: E402
from umae_eval.subsets import balanced_subset  # noqa: E402
from umae_eval.provenance import atomic_write_json, atomic_write_text, now_iso, versions  # noqa: E402

ENCODER = Path(__file__).resolve().parents[1] / "umae_eval" / "demo" / "encoders" / "mae-cifar10-vit96x6-p4-e20.pth"


def demo_tokens() -> dict[str, np.ndarray]:
    """All tokens (N, 65, 96) float16 of the demo sample through the demo MAE encoder, eval mode."""
    data = load_demo(True, None, null_progress)
    enc = load_encoder(ENCODER)
    model = enc.model.eval()
    out: dict[str, np.ndarray] = {"y_train": data.y_train, "y_test": data.y_test}
    for split, images in (("train", data.x_train), ("test", data.x_test)):
        parts = []
        with torch.inference_mode():
            for i in range(0, len(images), 250):
                x = to_model_input(torch.from_numpy(images[i:i + 250]), enc.info.arch.img_size, enc.info.mean,
                                   enc.info.std, torch.device("cpu"))
                parts.append(model.forward_features(x).to(torch.float16).numpy())
        out[split] = np.concatenate(parts)
    return out


def _status(field: str) -> int:
    """A VmRSS / VmHWM line of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _child(method: str, tokens: dict[str, np.ndarray], n: int, seed: int, queue: Any) -> None:
    torch.set_num_threads(ARGS.threads)
    rss0 = _status("VmRSS")
    rows = balanced_subset(tokens["y_train"], n // 10, seed)  # the sample is sorted by class
    tr, ytr, te, yte = tokens["train"][rows], tokens["y_train"][rows], tokens["test"], tokens["y_test"]
    t0, c0 = time.perf_counter(), time.process_time()
    if method == "linear [CLS]":
        res = linear_probe(tr[:, 0].astype(np.float32), ytr, te[:, 0].astype(np.float32), yte, seed=seed)
    elif method == "linear avg":
        res = linear_probe(tr[:, 1:].astype(np.float32).mean(1), ytr, te[:, 1:].astype(np.float32).mean(1), yte,
                           seed=seed)
    else:
        res = attentive_probe(tr, ytr, te, yte, seed=seed)
    queue.put({"method": method, "n_train": n, "accuracy": res.accuracy,
               "cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - t0,
               "peak_extra_mb": (_status("VmHWM") - rss0) / 2**20,
               "chosen": {k: v for k, v in res.extras.items() if k.startswith("chosen_")}})


def measure(method: str, tokens: dict[str, np.ndarray], n: int, seed: int) -> dict[str, Any]:
    ctx = mp.get_context("fork")  # the child shares the token pages: only what the probe allocates is new
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(method, tokens, n, seed, queue))
    proc.start()
    row = queue.get()
    proc.join()
    return row


def markdown(result: dict[str, Any]) -> str:
    lines = ["## Attentive probe cost (`benchmarks/attentive_cost.py`)", "",
             f"{result['setup']}. Load average {result['load_before']} before, {result['load_after']} after; "
             f"{result['threads']} thread(s); {result['machine']}.", "",
             "| train images | method | test accuracy (%) | CPU s | wall s | CPU ratio to linear [CLS] "
             "| peak extra memory (MB) |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for n in result["sizes"]:
        rows = [r for r in result["rows"] if r["n_train"] == n]
        base = next(r for r in rows if r["method"] == "linear [CLS]")["cpu_s"]
        for r in rows:
            lines.append(f"| {n} | {r['method']} | {r['accuracy']:.1f} | {r['cpu_s']:.1f} | {r['wall_s']:.1f} | "
                         f"{r['cpu_s'] / base:.1f}x | {r['peak_extra_mb']:.0f} |")
    lines += ["", "Token cache (float16, N x 65 x 96 x 2 bytes): "
              + ", ".join(f"{n}: {token_cache_bytes(n, 65, 96) / 2**20:.1f} MB" for n in result["sizes"]) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    sizes = [300] if ARGS.quick else [int(s) for s in ARGS.sizes.split(",")]
    load_before = os.getloadavg()
    tokens = demo_tokens()
    rows = []
    header = f"{'n':>6} {'method':<14} {'acc %':>6} {'cpu s':>7} {'wall s':>7} {'peak MB':>8}"
    print(header)
    for n in sizes:
        for method in ("linear [CLS]", "linear avg", "attentive"):
            r = measure(method, tokens, n, ARGS.seed)
            rows.append(r)
            print(f"{n:>6} {method:<14} {r['accuracy']:6.1f} {r['cpu_s']:7.1f} {r['wall_s']:7.1f} "
                  f"{r['peak_extra_mb']:8.0f}", flush=True)
    result = {"benchmark": "attentive_cost", "created": now_iso(), "versions": versions(),
              "setup": ("demo MAE encoder (ViT 96 x 6, patch 4) tokens of the CIFAR-10 sample shipped in the "
                        "package, 65 tokens x 96 dims (float16), n/10 train images per class (balanced_subset, "
                        "seed), all 1,000 test images; linear = 'fast' probe defaults, attentive = "
                        "attentive_probe defaults (EP, Q=32, 3 x 2 grid + refit, 30 epochs)"),
              "sizes": sizes, "threads": ARGS.threads, "seed": ARGS.seed,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "load_before": [round(x, 1) for x in load_before],
              "load_after": [round(x, 1) for x in os.getloadavg()], "rows": rows}
    for n in sizes:
        base = next(r for r in rows if r["n_train"] == n and r["method"] == "linear [CLS]")["cpu_s"]
        for r in rows:
            if r["n_train"] == n:
                r["cpu_ratio_to_linear_cls"] = r["cpu_s"] / base
    if not ARGS.quick or ARGS.json:
        path = ARGS.json or Path(__file__).with_name("attentive_cost.json")
        atomic_write_json(path, result)
        print(f"wrote {path}")
    if ARGS.md:
        atomic_write_text(ARGS.md, markdown(result))
        print(f"wrote {ARGS.md}")


if __name__ == "__main__":
    main()
