"""`umae demo` end to end, with the model shrunk so the test stays fast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from umae_eval.cli import main
from umae_eval.commands import demo as demo_cmd


@pytest.fixture
def tiny_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_cmd, "DEMO_OVERRIDES", {
        "img_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 2,
        "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2,
    })


def test_demo_trains_both_models_and_compares_them(tiny_demo: None, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "1", "--embed", "none", "--out", str(out), "--device", "cpu"]) == 0

    for folder, lam in (("mae", 0.0), ("u-mae", 0.01)):
        run = out / "runs" / folder
        assert (run / "last.pth").is_file()
        config = json.loads((run / "config.json").read_text())
        assert json.dumps(config).count(str(lam)) >= 1
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in records] == [1]
        assert records[0]["lam"] == lam

    results = json.loads((out / "results.json").read_text())
    assert results["command"] == "compare"
    assert set(results["results"]["ranking"]) == {"MAE", "U-MAE", "random init"}
    for name in ("MAE", "U-MAE"):
        accs = results["results"]["checkpoints"][name]["accuracies"]
        assert accs and all(0.0 <= v <= 100.0 for v in accs.values())
    html = (out / "report.html").read_text()
    assert "U-MAE" in html and "plotly" in html.lower()

    # A second call with the same --out continues the finished runs instead of training again.
    mtime = (out / "runs" / "mae" / "last.pth").stat().st_mtime_ns
    assert main(["demo", "--epochs", "1", "--embed", "none", "--out", str(out), "--device", "cpu"]) == 0
    assert (out / "runs" / "mae" / "last.pth").stat().st_mtime_ns == mtime


def test_demo_refuses_a_file_as_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert main(["demo", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err
