"""TensorBoard / CSV mirrors of metrics.jsonl: equal to it, and every epoch exactly once after a kill + resume."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from trainer.logsinks import SCALAR_NAMES, RunLoggers, parse_log_kinds, scalars_of
from trainer.runlog import append_metrics, read_metrics, truncate_metrics
from umae_eval.errors import UmaeError

from toy_images import toy_npz

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def read_events(tb_dir: Path) -> list[tuple[str, int, float]]:
    """Every scalar event of every event file in ``tb_dir``: (tag, step, value), duplicates kept."""
    out = []
    for f in sorted(tb_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(f)).Load():
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name == "scalars":
                    out.append((v.tag, int(event.step), float(tensor_util.make_ndarray(v.tensor))))
    return out


def assert_mirrors_metrics(run: Path) -> None:
    events = read_events(run / "tensorboard")
    counts = Counter((tag, step) for tag, step, _ in events)
    assert counts and max(counts.values()) == 1, [k for k, n in counts.items() if n > 1][:5]
    got = {(tag, step): value for tag, step, value in events}
    want = {(tag, int(r["epoch"])): value for r in read_metrics(run) for tag, value in scalars_of(r).items()}
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert math.isclose(got[key], value, rel_tol=1e-6, abs_tol=1e-9), key  # TensorBoard stores float32


def test_scalar_names_are_the_documented_ones() -> None:
    rec = {"epoch": 3, "step": 12, "loss": 0.5, "loss_recon": 0.4, "loss_unif": -3.0, "lam": 0.01, "lr": 1e-3,
           "effective_rank": 7.5, "rankme": 6.0, "linear_accuracy": 40.0, "knn_accuracy": 35.0,
           "mean_classifier_accuracy": 30.0, "img_per_s": 100.0, "unif_form": "code", "resumed": {"from": "x"},
           "flag": True, "bad": float("nan")}
    s = scalars_of(rec)
    assert s["loss/recon"] == 0.4 and s["loss/unif"] == -3.0 and s["rank/effective"] == 7.5
    assert s["probe/linear"] == 40.0 and s["probe/knn"] == 35.0 and s["probe/mean"] == 30.0
    assert s["speed/img_per_s"] == 100.0 and s["lr"] == 1e-3 and s["rank/rankme"] == 6.0
    assert not {"epoch", "step", "unif_form", "resumed", "flag", "bad", "other/flag"} & set(s)
    assert set(SCALAR_NAMES.values()) >= {"loss/recon", "loss/unif", "lr", "rank/effective", "rank/rankme",
                                           "probe/linear", "probe/knn", "probe/mean", "speed/img_per_s"}


def test_parse_log_kinds() -> None:
    assert parse_log_kinds(None) == ("jsonl", "tensorboard")  # tensorboard installed here
    assert parse_log_kinds("csv, TensorBoard") == ("jsonl", "tensorboard", "csv")
    with pytest.raises(UmaeError, match=r"--log 'tb': unknown kind 'tb'; choose from jsonl, tensorboard, csv, wandb"):
        parse_log_kinds("tb")


def test_rebuilt_after_a_resume_drops_the_lost_epochs(tmp_path: Path) -> None:
    """Epochs 1-3 logged, the resume goes back to epoch 1: the new 2-3 replace the old ones, once each."""
    run = tmp_path / "run"
    run.mkdir()
    first = RunLoggers(run, ("jsonl", "tensorboard", "csv"))
    for e in (1, 2, 3):
        rec = {"epoch": e, "step": 4 * e, "loss": 1.0 / e}
        append_metrics(run, rec)
        first.on_epoch(rec)
    first.close()  # a kill: the files stay as they were
    truncate_metrics(run, 1)  # what --resume auto does from an epoch-1 checkpoint
    second = RunLoggers(run, ("jsonl", "tensorboard", "csv"))
    for e in (2, 3, 4):
        rec = {"epoch": e, "step": 4 * e, "loss": 10.0 + e}
        append_metrics(run, rec)
        second.on_epoch(rec)
    second.close()
    assert_mirrors_metrics(run)
    assert [(t, s, v) for t, s, v in read_events(run / "tensorboard") if s == 3] == [("loss/total", 3, 13.0)]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [(int(r["epoch"]), float(r["loss"])) for r in rows] == [(1, 1.0), (2, 12.0), (3, 13.0), (4, 14.0)]


def _train_cmd(data: Path, out: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "umae_eval.cli", "train", "--data", str(data), "--preset", "tiny-test",
            "--epochs", str(epochs), "--lam", "0.01", "--eval-images", "32", "--knn-train-images", "64",
            "--eval-every", "2", "--save-every", "1", "--seed", "3", "--log", "tensorboard,csv", "--out", str(out)]


def test_cli_run_killed_and_resumed_logs_every_epoch_once(tmp_path: Path) -> None:
    """A real `umae train --log tensorboard,csv`, SIGKILLed after 2+ epochs, its last.pth damaged (so the
    resume falls back to an older checkpoint and redoes epochs), then `--resume auto` to the end."""
    data = toy_npz(tmp_path / "toy.npz", seed=0)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    epochs = 6
    child = subprocess.Popen(_train_cmd(data, out, epochs), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        csv_file = out / "metrics.csv"  # written after the TensorBoard flush of the same epoch
        while (not csv_file.is_file() or len(csv_file.read_text().splitlines()) < 3) and child.poll() is None:
            assert time.monotonic() < deadline, "no 2 epochs within 180 s"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
    done = len(read_metrics(out))
    assert done >= 2
    assert len({s for _, s, _ in read_events(out / "tensorboard")}) >= 2  # the first attempt had logged
    (out / "last.pth").write_bytes(b"truncated")  # the resume falls back to checkpoint-<n>.pth
    r = subprocess.run(_train_cmd(data, out, epochs) + ["--resume", "auto"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [m["epoch"] for m in read_metrics(out)] == list(range(1, epochs + 1))
    assert_mirrors_metrics(out)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(row["epoch"]) for row in rows] == list(range(1, epochs + 1))
    # the spectrum of each evaluation epoch (every 2nd) as one image, once
    images = [int(e.step) for f in sorted((out / "tensorboard").glob("events.out.tfevents.*"))
              for e in EventFileLoader(str(f)).Load() for v in e.summary.value if v.tag == "rank/spectrum"]
    assert images == [2, 4, 6]
    spectra = [m["singular_values"] for m in read_metrics(out) if "singular_values" in m]
    assert len(spectra) == 3 and all(s[0] == 1.0 and s == sorted(s, reverse=True) for s in spectra)
    assert [float(row["loss"]) for row in rows] == [m["loss"] for m in read_metrics(out)]


@pytest.mark.slow
def test_finetune_logs_the_same_way(tmp_path: Path) -> None:
    """`umae finetune --log tensorboard,csv`: its records (train loss, lr, test top-1/5) mirrored as well."""
    from umae_eval.cli import main

    out = tmp_path / "ft"
    encoder = ROOT / "umae_eval" / "demo" / "encoders" / "mae-cifar10-vit96x6-p4-e20.pth"
    assert main(["finetune", str(encoder), "--data", "demo", "--preset", "cpu-demo", "--epochs", "1",
                 "--max-train-images", "128", "--eval-images", "32", "--log", "tensorboard,csv",
                 "--out", str(out)]) == 0
    assert_mirrors_metrics(out)
    tags = {tag for tag, _, _ in read_events(out / "tensorboard")}
    assert {"loss/total", "lr", "eval/top1", "eval/top5"} <= tags
    assert (out / "metrics.csv").read_text().splitlines()[0].startswith("epoch,step,loss,lr")


def test_run_logged_logs_each_record_before_the_display_sees_it(tmp_path: Path) -> None:
    """The commands' wrapper: the run gets the display's callbacks, each record reaches metrics.csv before
    the display, and the display is exited and the exception passes when the run raises."""
    from trainer.logsinks import run_logged

    seen: list[tuple[str, Any]] = []

    class Display:
        def __enter__(self) -> "Display":
            seen.append(("enter", None))
            return self

        def __exit__(self, *exc: Any) -> None:
            seen.append(("exit", exc[0]))

        def on_step(self, info: Any) -> None:
            seen.append(("step", info))

        def note(self, text: str) -> None:
            seen.append(("note", text))

        def on_epoch(self, record: dict[str, Any]) -> None:
            rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
            seen.append(("epoch", (record["epoch"], len(rows))))

    def run(progress: Any, on_step: Any, on_epoch: Any, on_note: Any, fail: bool = False) -> str:
        assert progress is not None
        on_step("s1")
        on_note("hello")
        for e in (1, 2):
            rec = {"epoch": e, "loss": 1.0 / e}
            append_metrics(tmp_path, rec)
            on_epoch(rec)
        if fail:
            raise KeyboardInterrupt
        return "done"

    assert run_logged(tmp_path, ("jsonl", "csv"), Display(), run) == "done"
    assert seen == [("enter", None), ("step", "s1"), ("note", "hello"), ("epoch", (1, 1)), ("epoch", (2, 2)),
                    ("exit", None)]
    seen.clear()
    (tmp_path / "metrics.jsonl").unlink()
    with pytest.raises(KeyboardInterrupt):
        run_logged(tmp_path, ("jsonl", "csv"), Display(), lambda **kw: run(**kw, fail=True))
    assert seen[-1] == ("exit", KeyboardInterrupt)
