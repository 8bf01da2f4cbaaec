"""`--log wandb`: an offline W&B run equal to metrics.jsonl, its id kept and every epoch once after a
kill + `--resume auto`, nothing sent; and the refusals (no wandb, a bad WANDB_MODE).

The offline run is read back from its ``.wandb`` file: W&B's record log (a LevelDB-style log of
32 KiB blocks, each chunk with a CRC-32, a length and a type) holding ``wandb_internal_pb2.Record``
protobufs. wandb 0.31 no longer ships a Python reader of it (its Go core writes and syncs it), so
the framing is read here and checked by its CRC, and the records are parsed by wandb's own
protobuf classes.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from trainer.logsinks import parse_log_kinds, scalars_of
from trainer.runlog import read_metrics
from trainer.wandb_log import RUN_ID_FILE, offline_run_dirs, wandb_mode
from umae_eval.errors import UmaeError

from toy_images import toy_npz

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
ENV.pop("WANDB_MODE", None)
needs_wandb = pytest.mark.skipif(__import__("importlib").util.find_spec("wandb") is None,
                                 reason="wandb is not installed (pip install umae[wandb])")


def wandb_records(path: Path) -> list[Any]:
    """Every record of a ``.wandb`` file, in order (each chunk's CRC checked)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert struct.unpack("<4sHB", data[:7]) == (b":W&B", 0xBEE1, 0)  # ident, magic, version
    pos, buf, out = 7, b"", []
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding up to the block's end
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + n]
        pos += 7 + n
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc, f"bad CRC at byte {pos}"
        buf = chunk if kind in (1, 2) else buf + chunk  # full / first, then middle / last
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            out.append(record)
    return out


def offline_history(run: Path) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """The one offline W&B folder of the run: its id, its history rows (user keys, step), its config."""
    run_id = (run / RUN_ID_FILE).read_text().strip()
    folders = offline_run_dirs(run, run_id)
    assert len(folders) == 1, folders
    records = wandb_records(folders[0] / f"run-{run_id}.wandb")
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert [r.run_id for r in runs] == [run_id]
    config = {u.key: json.loads(u.value_json) for u in runs[0].config.update}
    rows = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            row: dict[str, Any] = {}
            for i in r.history.item:  # a key, or a path of keys
                path = [i.key] if i.key else list(i.nested_key)
                node = row
                for part in path[:-1]:
                    node = node.setdefault(part, {})
                node[path[-1]] = json.loads(i.value_json)
            assert row["_step"] == r.history.step.num
            rows.append({k: v for k, v in row.items() if not k.startswith("_") or k == "_step"})
    return run_id, rows, config


def assert_history_is_metrics(run: Path) -> list[dict[str, Any]]:
    """Each epoch once, at step = epoch, with every scalar of metrics.jsonl under its TensorBoard name."""
    _, rows, _ = offline_history(run)
    steps = Counter(row["_step"] for row in rows)
    assert max(steps.values()) == 1, steps
    metrics = read_metrics(run)
    assert [row["_step"] for row in rows] == [int(m["epoch"]) for m in metrics]
    for row, m in zip(rows, metrics):
        want = scalars_of(m)
        assert {k: v for k, v in row.items() if k not in ("_step", "rank/spectrum")} == pytest.approx(want, rel=1e-12)
        assert ("rank/spectrum" in row) == ("singular_values" in m)
    return rows


def test_wandb_mode_is_offline_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode() == "offline"
    for given, mode in (("online", "online"), (" Disabled ", "disabled"), ("dryrun", "offline"), ("", "offline")):
        monkeypatch.setenv("WANDB_MODE", given)
        assert wandb_mode() == mode
    monkeypatch.setenv("WANDB_MODE", "cloud")
    with pytest.raises(UmaeError, match=r"^WANDB_MODE='cloud': choose offline \(the default when unset\), online "
                                        r"or disabled$"):
        wandb_mode()


def test_log_wandb_without_the_package_exits_2(tmp_path: Path) -> None:
    """A wandb that fails to import (shadowed here, so this runs whether or not it is installed)."""
    shadow = tmp_path / "shadow" / "wandb"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no wandb here')\n")
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(shadow.parent), ENV["PYTHONPATH"]])}
    # `umae finetune` refuses it through the same parse_log_kinds, first thing too.
    r = subprocess.run(["umae", "train", "--data", "demo", "--preset", "tiny-test", "--log", "tensorboard,wandb",
                        "--out", str(tmp_path / "run")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == ["error: --log wandb: the wandb package is not installed; `pip install umae[wandb]` "
                     "(or pip install wandb), or drop wandb from --log"], r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "run").exists()


# Run in a child: no socket other than a local one may be opened by the Python side (the telemetry
# of wandb 0.31 posts to the W&B server from an offline run unless the process settings are set).
_REBUILD_SCRIPT = """
import atexit, socket, sys
attempts = []
atexit.register(lambda: print("NETWORK", attempts))  # registered first: runs after wandb's own exit hooks
_getaddrinfo, _connect = socket.getaddrinfo, socket.socket.connect
def getaddrinfo(*a, **k):
    attempts.append(("getaddrinfo", a[:2]))
    raise OSError("no network in this test")
def connect(self, address):
    if self.family != socket.AF_UNIX:
        attempts.append(("connect", address))
        raise OSError("no network in this test")
    return _connect(self, address)
socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect

from pathlib import Path
from trainer.logsinks import RunLoggers
from trainer.runlog import append_metrics, truncate_metrics, write_config
run = Path(sys.argv[1])
write_config(run, {"preset": "tiny-test", "lam": 0.01})
spectrum = [1.0, 0.5, 0.25, 0.1]
first = RunLoggers(run, ("jsonl", "wandb"))
for e in (1, 2, 3):
    rec = {"epoch": e, "step": 4 * e, "loss": 1.0 / e, "loss_unif": -e, "lr": 1e-3 * e}
    append_metrics(run, rec)
    first.on_epoch(rec)
first.close(failed=True)  # the run stopped
print("FIRST", sorted(p.name for p in (run / "wandb").glob("offline-run-*")))
truncate_metrics(run, 1)  # what --resume auto does from an epoch-1 checkpoint
second = RunLoggers(run, ("jsonl", "wandb"))
for e in (2, 3, 4):
    rec = {"epoch": e, "step": 4 * e, "loss": 10.0 + e, "effective_rank": 5.5,
           **({"singular_values": spectrum} if e == 4 else {})}
    append_metrics(run, rec)
    second.on_epoch(rec)
second.close()
"""


@needs_wandb
def test_offline_run_rebuilt_after_a_resume_keeps_its_id(tmp_path: Path) -> None:
    """Epochs 1-3 logged, the resume goes back to epoch 1: one offline folder, same id, epochs 1-4 once each,
    the redone 2-3 with their new values, the spectrum as an image, the config; no network."""
    run = tmp_path / "run"
    run.mkdir()
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(_REBUILD_SCRIPT), str(run)], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "NETWORK []" in r.stdout, r.stdout
    run_id = (run / RUN_ID_FILE).read_text().strip()
    assert len(run_id) == 8 and run_id.isalnum()
    assert f"-{run_id}'" in r.stdout.split("FIRST", 1)[1].splitlines()[0]  # the first attempt had its folder
    got_id, rows, config = offline_history(run)
    assert got_id == run_id
    rows = assert_history_is_metrics(run)
    assert [(row["_step"], row["loss/total"]) for row in rows] == [(1, 1.0), (2, 12.0), (3, 13.0), (4, 14.0)]
    image = rows[-1]["rank/spectrum"]
    assert image["_type"] == "image-file" and image["format"] == "png" and image["width"] == 400
    png = offline_run_dirs(run, run_id)[0] / "files" / image["path"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert config["preset"] == "tiny-test" and config["lam"] == 0.01


def _train_cmd(data: Path, out: Path, epochs: int) -> list[str]:
    return ["umae", "train", "--data", str(data), "--preset", "tiny-test", "--epochs", str(epochs), "--lam", "0.01",
            "--eval-images", "32", "--knn-train-images", "64", "--eval-every", "2", "--save-every", "1",
            "--seed", "3", "--log", "csv,wandb", "--out", str(out)]


@needs_wandb
@pytest.mark.slow
def test_cli_run_killed_and_resumed_keeps_the_wandb_run(tmp_path: Path) -> None:
    """A real `umae train --log csv,wandb` SIGKILLed after 2+ epochs, its last.pth damaged (the resume falls
    back to an older checkpoint and redoes epochs), then `--resume auto`: the same W&B id, every epoch once."""
    data = toy_npz(tmp_path / "toy.npz", seed=0)
    out = tmp_path / "run"
    epochs = 5
    child = subprocess.Popen(_train_cmd(data, out, epochs), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        csv_file = out / "metrics.csv"  # written after W&B has been handed the same epoch
        while (not csv_file.is_file() or len(csv_file.read_text().splitlines()) < 3) and child.poll() is None:
            assert time.monotonic() < deadline, "no 2 epochs within 240 s"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
    assert len(read_metrics(out)) >= 2
    run_id = (out / RUN_ID_FILE).read_text().strip()
    assert len(offline_run_dirs(out, run_id)) == 1
    (out / "last.pth").write_bytes(b"truncated")  # the resume falls back to checkpoint-<n>.pth
    r = subprocess.run(_train_cmd(data, out, epochs) + ["--resume", "auto"], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [m["epoch"] for m in read_metrics(out)] == list(range(1, epochs + 1))
    assert offline_history(out)[0] == run_id
    rows = assert_history_is_metrics(out)
    assert [row["_step"] for row in rows] == list(range(1, epochs + 1))
    assert [row["_step"] for row in rows if "rank/spectrum" in row] == [2, 4, 5]
    assert {"loss/recon", "loss/unif", "lr", "rank/effective", "rank/rankme", "probe/knn", "probe/mean",
            "speed/img_per_s"} <= set(rows[1])


def test_parse_log_kinds_takes_wandb() -> None:
    if __import__("importlib").util.find_spec("wandb") is None:
        pytest.skip("wandb is not installed (pip install umae[wandb])")
    assert parse_log_kinds("wandb, csv") == ("jsonl", "csv", "wandb")


@needs_wandb
@pytest.mark.slow
def test_finetune_logs_to_wandb_the_same_way(tmp_path: Path) -> None:
    """`umae finetune --log wandb`: its records (train loss, lr, test top-1/5) in the offline run, once each."""
    out = tmp_path / "ft"
    encoder = ROOT / "umae_eval" / "demo" / "encoders" / "mae-cifar10-vit96x6-p4-e20.pth"
    r = subprocess.run(["umae", "finetune", str(encoder), "--data", "demo", "--preset", "cpu-demo", "--epochs", "2",
                        "--max-train-images", "128", "--eval-images", "32", "--log", "wandb", "--out", str(out)],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = assert_history_is_metrics(out)
    assert [row["_step"] for row in rows] == [1, 2]
    assert {"loss/total", "lr", "eval/top1", "eval/top5"} <= set(rows[-1])
    from trainer.runlog import read_config

    config = offline_history(out)[2]
    assert config["preset"] == read_config(out)["preset"] and config["preset"]["epochs"] == 2
