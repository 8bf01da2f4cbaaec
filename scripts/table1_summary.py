"""Write the Table 1 comparison (umae vs the paper) from a finished reproduce_table1.sh run.

    python scripts/table1_summary.py runs/table1-cifar10-vit-tiny-p2 --out reports/cifar10-vit-tiny-p2

Copies the light results (compare/results.json, both metrics.jsonl and config.json) into --out
and writes table.md there: linear / mean-classifier / kNN accuracy, effective rank and RankMe of
MAE and U-MAE next to the paper's CIFAR-10 ViT-Tiny row (linear 59.6 vs 68.9), with the epochs
run, the device and the wall time taken from the runs themselves. No weights, no HTML.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

PAPER_LINEAR = {"MAE": 59.6, "U-MAE": 68.9}  # Table 1, CIFAR-10, ViT-Tiny, 2000 epochs
RUNS = {"MAE": "mae", "U-MAE": "umae"}


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarise(run_root: Path, out: Path) -> str:
    compare = json.loads((run_root / "compare" / "results.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(run_root / "compare" / "results.json", out / "compare-results.json")
    lines = ["| method | epochs | device | train wall (h) | linear | paper linear | mean clf | kNN@20 | "
             "effective rank | RankMe |", "|---|---|---|---|---|---|---|---|---|---|"]
    for label, folder in RUNS.items():
        run = run_root / folder
        shutil.copy2(run / "metrics.jsonl", out / f"{folder}-metrics.jsonl")
        shutil.copy2(run / "config.json", out / f"{folder}-config.json")
        config = json.loads((run / "config.json").read_text())
        records = _records(run / "metrics.jsonl")
        wall_h = sum(r.get("train_s", 0.0) for r in records) / 3600
        ck = compare["results"]["checkpoints"][label]
        acc = ck["accuracies"]
        lines.append(
            f"| {label} | {records[-1]['epoch'] if records else 0} | {config.get('device', '?')} | {wall_h:.2f} | "
            f"{acc.get('linear_accuracy', float('nan')):.1f} | {PAPER_LINEAR[label]} | "
            f"{acc.get('mean_classifier_accuracy', float('nan')):.1f} | {acc.get('knn_accuracy@20', float('nan')):.1f} | "
            f"{ck['effective_rank']:.1f} | {ck['rankme']:.1f} |")
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_root", type=Path, help="the OUT folder of reproduce_table1.sh")
    parser.add_argument("--out", type=Path, default=Path("reports/cifar10-vit-tiny-p2"))
    args = parser.parse_args()
    print(summarise(args.run_root, args.out))


if __name__ == "__main__":
    main()
