"""The fine-tuning runs of the CIFAR-10 study compared on the same test images (issue 21, step 3).

Each folder is a finished `umae finetune` run (`STEP=finetune` of scripts/cifar10_study.sh). Its
last.pth is rebuilt and scored again on the test split, image by image; the top-1 must equal the
run's own results.json (else the script stops: a different data set or code), so the paired
intervals rest on the same numbers the runs reported. The encoder (MAE, U-MAE, random init), the
tuning mode (full, or the last K blocks) and the fine-tuning seed come from the checkpoint's own
metadata, never from the folder's name. Writes `<out>/finetune.json`, `finetune.md` and
`predictions/<folder>.npy` (int8 top-1 class per test image, test-split order), then prints the
tables.

A run whose last.pth is gone (weights are not kept in git; a new machine has only the committed
records) can still be compared with `--reuse`: its predictions and its encoder / tuning / seed are
taken from the earlier output in `--out` (finetune.json and predictions/<folder>.npy, written when the
checkpoint was rescored), and checked again against the folder's results.json.

    python scripts/study_finetune.py /root/umae-runs/cifar10-study/ft-* \\
        --data ../shared/data/cifar10-jpeg.tar.gz --out reports/cifar10-mae-vs-umae-cpu/finetune
    # new runs beside the committed records of earlier ones (no weights)
    python scripts/study_finetune.py reports/cifar10-mae-vs-umae-cpu/finetune/runs/ft-{mae,umae}-* \\
        /root/umae-runs/cifar10-study/ft-random-* --reuse \\
        --data ../shared/data/cifar10-jpeg.tar.gz --out reports/cifar10-mae-vs-umae-cpu/finetune
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from umae_eval.pipeline.finetune_study import (  # noqa: E402
    FinetuneComparison, FinetuneRun, compare_finetune_runs, comparison_json)


def describe(meta: dict) -> tuple[str, str, int]:
    """(encoder, mode, seed) of a fine-tuning checkpoint from its metadata."""
    ft = meta["finetune"]
    if ft.get("random_init"):
        encoder = "random init"
    else:
        encoder = "MAE" if float(ft.get("source_lam") or 0.0) == 0.0 else "U-MAE"
    k = int(ft.get("freeze_blocks") or 0)
    left = int(meta["depth"]) - k
    mode = "full" if k == 0 else ("last block" if left == 1 else f"last {left} blocks")
    return encoder, mode, int(meta["seed"])


def _fmt(iv: dict) -> str:
    return f"{iv['estimate']:.2f} ({iv['lo']:.2f} to {iv['hi']:.2f})"


def markdown(doc: dict) -> str:
    lines = ["| run | encoder | tuning | fine-tuning seed | top-1 % (95% bootstrap over test images) | "
             "epochs | train time (s), per epoch |", "|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        lines.append(f"| {r['name']} | {r['encoder']} | {r['mode']} | {r['seed']} | {_fmt(r['top1'])} | "
                     f"{r['epochs']} | {r['train_s']:.0f} ({', '.join(f'{t:.0f}' for t in r['epoch_train_s'])}) |")
    lines += ["", "| tuning | B - A | fine-tuning seed(s) | A | B | B - A, paired bootstrap over test images | "
              "B - A per seed, t interval over seeds |", "|---|---|---|---|---|---|---|"]
    for p in doc["per_seed"] + doc["pooled"]:
        seeds = ",".join(map(str, p["seeds"]))
        over = "one seed"
        if "over_seeds" in p:
            o = p["over_seeds"]
            per = ", ".join(f"{d:+.2f}" for d in o["diffs"])
            over = f"{per}; {o['mean_diff']:+.2f} ({o['lo']:.2f} to {o['hi']:.2f})"
        lines.append(f"| {p['mode']} | {p['b']} - {p['a']} | {seeds} | {p['a_top1']:.2f} | {p['b_top1']:.2f} | "
                     f"{p['diff']['estimate']:+.2f} ({p['diff']['lo']:+.2f} to {p['diff']['hi']:+.2f}) | {over} |")
    return "\n".join(lines) + "\n"


def _check_top1(folder: Path, correct: np.ndarray, results: dict, how: str) -> None:
    top1, reported = 100.0 * correct.mean(), float(results["results"]["final"]["test_top1"])
    if abs(top1 - reported) > 1e-6:
        raise SystemExit(f"{folder}: {how} top-1 {top1:.2f} differs from results.json's {reported:.2f}: "
                         "another data set or another code version")


def _timing(folder: Path, results: dict) -> dict:
    """The run's record: epochs, steps and times from its own results.json and metrics.jsonl."""
    from trainer.runlog import read_metrics

    res, epochs = results["results"], read_metrics(folder)
    return {"name": folder.name, "folder": str(folder), "epochs": res["epochs"], "steps": res["steps"],
            "wall_s": res["wall_s"], "train_s": sum(float(e.get("train_s", 0.0)) for e in epochs),
            "epoch_train_s": [float(e.get("train_s", 0.0)) for e in epochs], "final": res["final"],
            "command_line": results.get("command_line")}


def _rescored(folder: Path, test: SimpleNamespace, results: dict) -> tuple[FinetuneRun, np.ndarray, dict]:
    """A run's last.pth rebuilt and scored on the test split, checked against its results.json."""
    import torch

    from umae_eval.checkpoints import load_encoder
    from umae_eval.checkpoints.classifier import finetune_record, load_classifier
    from umae_eval.pipeline.finetuned import predict_top5
    from umae_eval.provenance import sha256_file

    info = load_encoder(folder / "last.pth").info
    ft_record = finetune_record(info.metadata)
    if ft_record is None:
        raise SystemExit(f"{folder}/last.pth is not a `umae finetune` checkpoint")
    # the head as trained, scored by compare's own fine-tuned-classifier path
    model = load_classifier(info.path, info.arch, ft_record)
    top, _ = predict_top5(model, test, img_size=info.arch.img_size, mean=info.mean, std=info.std,
                          device=torch.device("cpu"), batch_size=256)
    pred = top[:, 0]
    correct = pred == test.y_test
    _check_top1(folder, correct, results, "rescored")
    encoder, mode, seed = describe(info.metadata)
    ft = info.metadata["finetune"]
    record = {**_timing(folder, results), "checkpoint_sha256": sha256_file(info.path),
              "source_sha256": ft.get("source_sha256"), "preset": ft["preset_fields"]["name"],
              "predictions": "rescored from last.pth"}
    return FinetuneRun(folder.name, encoder, mode, seed, correct), pred.astype(np.int8), record


def _earlier(out: Path) -> dict[str, dict]:
    """Name -> {run, input, predictions path} of every run in an earlier finetune.json under `out`."""
    path = out / "finetune.json"
    if not path.exists():
        raise SystemExit(f"--reuse: {path} not found; it is written by an earlier run of this script with --out {out}")
    doc = json.loads(path.read_text())
    inputs = {r["name"]: r for r in doc["inputs"]}
    return {r["name"]: {"run": r, "input": inputs[r["name"]], "pred": out / "predictions" / f"{r['name']}.npy"}
            for r in doc["runs"] if (out / "predictions" / f"{r['name']}.npy").exists()}


def _reused(folder: Path, old: dict, y_test: np.ndarray, results: dict) -> tuple[FinetuneRun, np.ndarray, dict]:
    """A run compared from its earlier predictions (its checkpoint is gone), checked against results.json."""
    pred = np.load(old["pred"])
    if pred.shape != y_test.shape:
        raise SystemExit(f"{old['pred']}: {pred.shape[0]} predictions for {y_test.shape[0]} test images")
    correct = pred.astype(np.int64) == y_test
    _check_top1(folder, correct, results, "earlier predictions'")
    run = FinetuneRun(folder.name, old["run"]["encoder"], old["run"]["mode"], int(old["run"]["seed"]), correct)
    keep = {k: old["input"].get(k) for k in ("checkpoint_sha256", "source_sha256", "preset")}
    how = str(old["input"].get("predictions", ""))
    if not how.startswith("reused"):
        how = "reused: rescored from last.pth by an earlier run of this script; the checkpoint is no longer on disk"
    record = {**_timing(folder, results), **keep, "predictions": how}
    return run, pred.astype(np.int8), record


def update_study_json(path: Path, doc: dict, out: Path, records: list[dict]) -> None:
    """Rewrite `path`'s `finetune` section from this comparison, numbers rounded to 4 decimals."""
    from umae_eval.provenance import atomic_write_json

    study = json.loads(path.read_text())
    configs = [json.loads((Path(r["folder"]) / "config.json").read_text())["preset"] for r in records]
    presets = sorted({(cfg["name"], r["epochs"]) for cfg, r in zip(configs, records)})
    cfg = configs[0]
    if len(presets) != 1:
        raise SystemExit(f"--study-json: the runs differ in preset or epochs {presets}; one recipe per section")
    rows = [{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in doc["study_rows"]]
    study["finetune"] = {"source": str(out), "recipe": f"umae finetune --preset {presets[0][0]} ({presets[0][1]} "
                                                         f"epochs, batch {cfg['batch_size']}, MAE's augmentation)",
                         "note": doc["note"], "rows": rows}
    atomic_write_json(path, study)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="finished `umae finetune` output folders")
    ap.add_argument("--data", required=True, help="the data set the runs were tuned and tested on")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--study-json", type=Path,
                    help="also rewrite this study.json's `finetune` section (what `umae demo` quotes), e.g. "
                         "umae_eval/demo/encoders/study.json")
    ap.add_argument("--reuse", action="store_true",
                    help="a folder without last.pth takes its predictions from --out's earlier finetune.json")
    args = ap.parse_args()

    import torch

    from umae_eval.data.choose import open_dataset
    from umae_eval.provenance import atomic_write_json

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    data = open_dataset(args.data, mode="memory")
    y_test = np.asarray(data.y_test)
    test = SimpleNamespace(lazy=False, x_test=data.x_test, y_test=y_test)
    earlier = _earlier(args.out) if args.reuse else {}
    runs, records, preds = [], [], {}
    for folder in args.folders:
        results_path = folder / "results.json"
        if not results_path.exists():
            print(f"{folder}: no results.json (run not finished); left out", file=sys.stderr)
            continue
        results = json.loads(results_path.read_text())
        if (folder / "last.pth").exists():
            run, pred, record = _rescored(folder, test, results)
        elif folder.name in earlier:
            run, pred, record = _reused(folder, earlier[folder.name], y_test, results)
        else:
            raise SystemExit(f"{folder}: no last.pth to rescore and no earlier predictions of it in {args.out} "
                             "(pass --reuse, with --out the folder that holds finetune.json and predictions/)")
        runs.append(run)
        preds[folder.name] = pred
        records.append(record)
    if not runs:
        raise SystemExit("no finished fine-tuning run among the folders")
    comp: FinetuneComparison = compare_finetune_runs(runs, n_boot=args.n_boot)
    doc = comparison_json(comp)
    by_name = {r["name"]: r for r in records}
    for r in doc["runs"]:
        r.update({k: by_name[r["name"]][k] for k in ("epochs", "wall_s", "train_s", "epoch_train_s")})
    doc.update(command_line=" ".join(sys.argv), data=args.data, inputs=records,
               note="every run of a method starts from the same pre-trained encoder (seed 0): the intervals "
                    "cover test images and fine-tuning seeds, not pre-training seeds")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "predictions").mkdir(exist_ok=True)
    for name, p in preds.items():
        np.save(args.out / "predictions" / f"{name}.npy", p)
    atomic_write_json(args.out / "finetune.json", doc)
    (args.out / "finetune.md").write_text(markdown(doc))
    if args.study_json is not None:
        update_study_json(args.study_json, doc, args.out, records)
    print(markdown(doc))


if __name__ == "__main__":
    main()
