"""Ship a full umae training checkpoint (encoder + decoder) for `umae reconstruct --demo`.

    python scripts/ship_demo_full.py RUN_CKPT OUT.pth [--config RUN/config.json]

e.g. (the seed-1 study runs; replace the shipped snapshots with the final epoch in one command each)

    python scripts/ship_demo_full.py /root/umae-runs/cifar10-study/mae-s1/last.pth umae_eval/demo/full/mae-s1.pth
    python scripts/ship_demo_full.py /root/umae-runs/cifar10-study/umae-s1/last.pth umae_eval/demo/full/u-mae-s1.pth

Writes OUT.pth = {'model': encoder + decoder, float16; 'umae': the run's metadata + 'shipped'}
(readable by torch.load(weights_only=True), < 2 MB) and updates OUT's entry in
provenance.json beside it: method, lam, seed, epoch trained / planned, norm_pix_loss, source
sha256, data fingerprint, the training command (config.json beside RUN_CKPT, or --config),
file sha256 and size. Refuses (exit 2, nothing written) a file without a decoder or one over 2 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def ship(src: Path, out: Path, config: Path | None = None) -> dict:
    """Write ``out`` and its provenance entry; returns the entry."""
    from umae_eval.errors import UmaeError
    from umae_eval.provenance import atomic_write, atomic_write_json
    from umae_eval.visual.demo_full import MAX_BYTES, slim_checkpoint

    if not src.is_file():
        raise UmaeError(f"{src}: not found; pass a `umae train` checkpoint (runs/<name>/last.pth)")
    raw = src.read_bytes()
    slim = slim_checkpoint(torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True), str(src))
    meta = slim["umae"]
    config = config or src.parent / "config.json"
    command = ""
    if config.is_file():
        command = " ".join(json.loads(config.read_text()).get("command_line", []))
    entry = {
        "method": meta.get("method"), "lam": meta.get("lam"), "unif_form": meta.get("unif_form"),
        "seed": meta.get("seed"), "epoch": meta.get("epoch"),
        "epochs_planned": (meta.get("preset_fields") or {}).get("epochs"),
        "norm_pix_loss": meta.get("norm_pix_loss"), "mask_ratio": meta.get("mask_ratio"),
        "source_checkpoint": str(src), "source_checkpoint_sha256": hashlib.sha256(raw).hexdigest(),
        "data_fingerprint": meta.get("data_fingerprint"), "command": command or "not recorded",
        "what": ("seed-1 study run of the demo encoders' recipe (scripts/cifar10_study.sh STEP=seeds), full "
                 "checkpoint for reconstructions; not the seed-0 encoders the demo's numbers come from"),
        "dtype": "float16, cast from the float32 training weights (model weights only: no optimiser or RNG state)",
    }
    meta["shipped"] = dict(entry)
    buf = io.BytesIO()
    torch.save(slim, buf)
    data = buf.getvalue()
    if len(data) >= MAX_BYTES:
        raise UmaeError(f"{src}: slimmed to {len(data):,} bytes, over the {MAX_BYTES:,}-byte limit of a "
                        "shipped file; ship a smaller model")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: f.write(data))
    entry.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    index = out.parent / "provenance.json"
    entries = json.loads(index.read_text()) if index.is_file() else {}
    entries[out.name] = entry
    # MAE first, then U-MAE by lambda: the order `umae reconstruct --demo` shows them in
    entries = dict(sorted(entries.items(), key=lambda kv: (float(kv[1].get("lam") or 0.0), kv[0])))
    atomic_write_json(index, entries)
    return entry


def main(argv: list[str] | None = None) -> int:
    from umae_eval.errors import UmaeError

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_ckpt", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--config", type=Path, default=None, help="the run's config.json (default: beside RUN_CKPT)")
    args = parser.parse_args(argv)
    try:
        entry = ship(args.run_ckpt, args.out, args.config)
    except UmaeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: {entry['bytes'] / 1e6:.2f} MB, epoch {entry['epoch']} of {entry['epochs_planned']}, "
          f"seed {entry['seed']}, sha256 {entry['sha256'][:12]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
