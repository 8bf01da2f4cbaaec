"""U-MAE minus MAE over pre-training seeds, from one `umae compare` output folder per seed.

Each folder holds a `umae compare` of one MAE and one U-MAE encoder pre-trained with the same seed
(run with the protocol-matrix options; `STEP=matrix` of scripts/cifar10_study.sh). The method and
the seed of every checkpoint are read from the checkpoint's own metadata in results.json (lambda
0 is MAE, lambda > 0 is U-MAE), never from its label. For every measure of the protocol matrix,
the last block's effective rank and RankMe, and the count of blocks where U-MAE's effective rank is
higher, it writes the mean and spread over seeds and a t interval of the paired difference
(umae_eval/pipeline/seeds.py), to `<out>/seeds.json`, `seeds.csv` and `seeds.md`.

    python scripts/study_seeds.py /root/umae-runs/matrix/seed0 /root/umae-runs/matrix/seed1 \\
        --out reports/cifar10-mae-vs-umae-cpu/seeds --study-json umae_eval/demo/encoders/study.json

(`--study-json` rewrites the demo's copy of the table, which `umae demo` quotes.)

A seed may come in several folders (the attentive probe is run apart: hours on CPU); each
measure must come from one of them.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from umae_eval.pipeline.seeds import SeedDifference, seed_difference  # noqa: E402

# Measures in the order of the table, with the paper's claim they test (None: the paper says nothing).
CLAIMS = {
    "linear_accuracy": "Table 1: U-MAE above MAE (linear probe)",
    "knn_accuracy@20": "Sec. 4.1: U-MAE above MAE (kNN)",
    "mean_classifier_accuracy": "Sec. 4.1: U-MAE above MAE (mean classifier)",
    "attentive_accuracy": None,
    "linear_accuracy@best_block": None,
    "linear_accuracy@1%": None,
    "knn_accuracy@1%": None,
    "linear_accuracy@10%": None,
    "knn_accuracy@10%": None,
    "effective_rank": "Fig. 1b: U-MAE's effective rank higher",
    "rankme": None,
}


def _method(meta: dict) -> str | None:
    lam = meta.get("lam")
    if lam is None:
        return None
    return "MAE" if float(lam) == 0.0 else "U-MAE"


def read_folder(folder: Path) -> tuple[int, dict[str, dict[str, float]], dict]:
    """-> (seed, {method: {measure: value}}, provenance) of one compare folder."""
    res = json.loads((folder / "results.json").read_text())
    by_name: dict[str, tuple[str, int]] = {}
    prov = {"folder": str(folder), "command_line": res.get("command_line"), "checkpoints": []}
    for c in res["settings"]["checkpoints"]:
        meta = c.get("metadata") or {}
        method = _method(meta)
        if method is None:
            continue
        by_name[c["name"]] = (method, int(meta["seed"]))
        prov["checkpoints"].append({"name": c["name"], "method": method, "seed": int(meta["seed"]),
                                    "lam": meta.get("lam"), "epoch": meta.get("epoch"),
                                    "sha256": c.get("sha256")})
    seeds = {s for _, s in by_name.values()}
    methods = sorted(m for m, _ in by_name.values())
    if len(seeds) != 1 or methods != ["MAE", "U-MAE"]:
        raise SystemExit(f"{folder}: expected one MAE and one U-MAE checkpoint of one seed, "
                         f"found {sorted(by_name.values())}")
    values: dict[str, dict[str, float]] = {"MAE": {}, "U-MAE": {}}
    with open(folder / "protocol_matrix.csv") as f:
        for row in csv.DictReader(f):
            if row["checkpoint"] in by_name:
                values[by_name[row["checkpoint"]][0]][row["protocol"]] = float(row["accuracy"])
    # the ranks (the same test features in every folder of a seed) are read from the folder that
    # holds the mean classifier, the matrix's own; a folder of the attentive probe alone adds only it
    primary = any("mean_classifier_accuracy" in v for v in values.values())
    with open(folder / "collapse.csv") as f:
        for row in csv.DictReader(f):
            if row["checkpoint"] in by_name and primary:
                m = by_name[row["checkpoint"]][0]
                values[m]["effective_rank"] = float(row["effective_rank"])
                values[m]["rankme"] = float(row["rankme"])
    layers = folder / "layers.csv"
    if layers.exists() and primary:
        ranks: dict[str, dict[int, float]] = {"MAE": {}, "U-MAE": {}}
        with open(layers) as f:
            for row in csv.DictReader(f):
                if row["checkpoint"] in by_name and row["metric"] == "effective_rank":
                    ranks[by_name[row["checkpoint"]][0]][int(row["block"])] = float(row["estimate"])
        blocks = sorted(set(ranks["MAE"]) & set(ranks["U-MAE"]))
        if blocks:
            prov["blocks_umae_rank_higher"] = sum(ranks["U-MAE"][b] > ranks["MAE"][b] for b in blocks)
            prov["blocks"] = len(blocks)
    return seeds.pop(), values, prov


def aggregate(folders: list[Path]) -> tuple[list[SeedDifference], list[dict]]:
    per_seed = {}
    provs = []
    for folder in folders:
        seed, values, prov = read_folder(folder)
        # a seed may come in several folders (the attentive probe runs apart from the rest of
        # the matrix), but a measure only once
        have = per_seed.setdefault(seed, {"MAE": {}, "U-MAE": {}})
        for method, measures in values.items():
            twice = sorted(set(measures) & set(have[method]))
            if twice:
                raise SystemExit(f"{folder}: seed {seed} {method} {', '.join(twice)} already read from another folder")
            have[method].update(measures)
        provs.append(prov)
    seeds = sorted(per_seed)
    rows = []
    for measure in CLAIMS:
        have = [s for s in seeds if measure in per_seed[s]["MAE"] and measure in per_seed[s]["U-MAE"]]
        if not have:
            continue
        rows.append(seed_difference(measure, have, [per_seed[s]["MAE"][measure] for s in have],
                                    [per_seed[s]["U-MAE"][measure] for s in have]))
    return rows, provs


def _fmt(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None or x != x else f"{x:.{nd}f}"


def markdown(rows: list[SeedDifference]) -> str:
    head = ("| measure | seeds | MAE mean (sd) | U-MAE mean (sd) | U-MAE - MAE per seed | "
            "mean difference, 95% t interval over seeds | verdict |\n|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        diffs = ", ".join(f"{y - x:+.2f}" for x, y in zip(r.a, r.b))
        lines.append(f"| {r.measure} | {','.join(map(str, r.seeds))} | {_fmt(r.mean_a)} ({_fmt(r.sd_a)}) | "
                     f"{_fmt(r.mean_b)} ({_fmt(r.sd_b)}) | {diffs} | {r.mean_diff:+.2f} "
                     f"({_fmt(r.lo)} to {_fmt(r.hi)}) | {r.verdict} |")
    return head + "\n".join(lines) + "\n"


#: The fields of a row that `umae demo` quotes from study.json's `seeds` section, in this order.
STUDY_FIELDS = ("measure", "seeds", "mean_a", "sd_a", "mean_b", "sd_b", "mean_diff", "sd_diff", "lo", "hi",
                "verdict", "a", "b")


def seeds_section(rows: list[dict], out: Path) -> dict:
    """study.json's `seeds` section from seeds.json's rows: where the table lives, the interval, one
    row per measure."""
    counts = sorted({len(row["seeds"]) for row in rows})
    over = (f"{counts[0]} pre-training seeds" if len(counts) == 1 else
            f"the pre-training seeds each row lists ({counts[0]}-{counts[-1]})")
    return {"source": str(out), "interval": f"Student t over {over} of the paired (same-seed) differences",
            "rows": [{k: row[k] for k in STUDY_FIELDS} for row in rows]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="umae compare output folders, one per seed")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--study-json", type=Path,
                    help="also rewrite this study.json's `seeds` section (what `umae demo` quotes), e.g. "
                         "umae_eval/demo/encoders/study.json")
    args = ap.parse_args()
    rows, provs = aggregate(args.folders)
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"command_line": " ".join(sys.argv), "inputs": provs,
           "interval": "Student t over pre-training seeds of the paired (same-seed) differences",
           "claims": {k: v for k, v in CLAIMS.items() if v}, "rows": [r.to_json() for r in rows]}
    (args.out / "seeds.json").write_text(json.dumps(doc, indent=1) + "\n")
    with open(args.out / "seeds.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["measure", "seeds", "mae_mean", "mae_sd", "umae_mean", "umae_sd", "diff_mean", "diff_sd",
                    "lo", "hi", "per_seed_diffs", "verdict"])
        for r in rows:
            w.writerow([r.measure, " ".join(map(str, r.seeds)), r.mean_a, r.sd_a, r.mean_b, r.sd_b, r.mean_diff,
                        r.sd_diff, r.lo, r.hi, " ".join(f"{y - x:.4f}" for x, y in zip(r.a, r.b)), r.verdict])
    (args.out / "seeds.md").write_text(markdown(rows))
    if args.study_json is not None:
        from umae_eval.provenance import atomic_write_json

        study = json.loads(args.study_json.read_text())
        study["seeds"] = seeds_section(doc["rows"], args.out)  # the rows just written to seeds.json
        atomic_write_json(args.study_json, study)
    print(markdown(rows))
    for p in provs:
        if "blocks" in p:
            print(f"{p['folder']}: U-MAE's effective rank higher at {p['blocks_umae_rank_higher']} of {p['blocks']} blocks")


if __name__ == "__main__":
    main()
