"""`--features PATH`: every format read to the same arrays (float16 kept, memory-mapped where the
format allows), provenance, and every bad input refused with its exact one line and exit code 2.

The error table runs ``umae_eval.cli.main`` in process (exact stderr line, exit code, nothing left
in the working folder); a few cases also run through the installed ``umae`` command.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from feature_files import CLASS_NAMES, WRITERS, planted, write_npy_folder, write_npz, write_safetensors, write_store_pair
from umae_eval.cli import main
from umae_eval.errors import UmaeError
from umae_eval.feature_input import load_features, row_blocks

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"npz": True, "npz-compressed": False, "npy-folder": True, "safetensors": True, "feature-store": True}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_every_format_reads_the_same_arrays(tmp_path: Path, fmt: str) -> None:
    a = planted(seed=1, n_train=150, n_test=70)
    path = WRITERS[fmt](tmp_path, a, CLASS_NAMES)
    fi = load_features(path)
    assert fi.train_x.dtype == np.float16 and fi.test_x.dtype == np.float16  # never upcast on reading
    assert isinstance(fi.train_x, np.memmap) is MAPPED[fmt]
    if MAPPED[fmt]:
        assert not fi.train_x.flags.writeable  # read-only: nothing can write into the user's file
    for k, attr in (("train_features", "train_x"), ("test_features", "test_x")):
        np.testing.assert_array_equal(np.asarray(getattr(fi, attr)), a[k])
    np.testing.assert_array_equal(fi.train_y, a["train_labels"])
    np.testing.assert_array_equal(fi.test_y, a["test_labels"])
    assert fi.train_y.dtype == np.int64 and fi.class_names == CLASS_NAMES and fi.n_classes == 4 and fi.dim == 16
    p = fi.provenance
    assert p["format"] == fmt.replace("npz-compressed", "npz") and p["path"] == str(path)
    assert p["shapes"] == {"train_features": [150, 16], "train_labels": [150], "test_features": [70, 16],
                           "test_labels": [70]}
    assert p["dtype"] == "float16" and p["memory_mapped"] is MAPPED[fmt] and p["class_names_given"]
    for f in p["files"]:
        assert f["sha256"] == _sha(Path(f["path"])) and f["bytes"] == Path(f["path"]).stat().st_size


def test_class_names_default_to_indices_and_float32_stays_float32(tmp_path: Path) -> None:
    a = planted(seed=2, n_train=40, n_test=20, dtype="float32")
    fi = load_features(write_npz(tmp_path / "a.npz", a))
    assert fi.class_names == ["0", "1", "2", "3"] and not fi.provenance["class_names_given"]
    assert fi.train_x.dtype == np.float32


def test_row_blocks_cover_every_row_as_float32(tmp_path: Path) -> None:
    a = planted(seed=3, n_train=70, n_test=20)
    fi = load_features(write_npz(tmp_path / "a.npz", a))
    blocks = list(row_blocks(fi.train_x, rows=32))
    assert [s for s, _ in blocks] == [0, 32, 64] and all(b.dtype == np.float32 for _, b in blocks)
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), a["train_features"].astype(np.float32))


def test_nan_scan_over_several_blocks_of_a_member_inside_an_npz(tmp_path: Path) -> None:
    """The scan reads a memmap by file offset, block by block: the rows it reads are the array's rows."""
    from umae_eval.feature_formats import read_features
    from umae_eval.feature_input import _check_finite, _native_blocks

    a = planted(seed=8, n_train=300, n_test=20)
    fi = load_features(write_npz(tmp_path / "a.npz", a))
    assert isinstance(fi.train_x, np.memmap) and fi.train_x.offset > 0
    got = list(_native_blocks(fi.train_x, 64))
    assert [s for s, _ in got] == [0, 64, 128, 192, 256]
    np.testing.assert_array_equal(np.concatenate([b for _, b in got]), a["train_features"])
    a["train_features"][[130, 299], 5] = np.inf
    a["train_features"][131, 0] = np.nan
    bad = np.load(write_npz(tmp_path / "b.npz", a), mmap_mode="r")["train_features"]  # npz: loaded in memory
    with pytest.raises(UmaeError, match=r"has 3 row\(s\) with NaN or inf \(first: row 130\)"):
        _check_finite(read_features(tmp_path / "b.npz").arrays["train_features"], "train_features",
                      tmp_path / "b.npz", rows=64)  # the stored member, memory-mapped: read by file offset
    with pytest.raises(UmaeError, match=r"has 3 row\(s\) with NaN or inf \(first: row 130\)"):
        _check_finite(bad, "train_features", tmp_path / "b.npz", rows=64)


def test_store_pair_drops_rows_the_store_marks_invalid(tmp_path: Path) -> None:
    a = planted(seed=4, n_train=100, n_test=50)
    path = write_store_pair(tmp_path / "s", a, invalid={"train": [3, 70]}, chunk_rows=32)
    fi = load_features(path)
    keep = np.setdiff1d(np.arange(100), [3, 70])
    np.testing.assert_array_equal(np.asarray(fi.train_x), a["train_features"][keep])
    np.testing.assert_array_equal(fi.train_y, a["train_labels"][keep])
    assert fi.provenance["notes"] == ["train: 2 rows the store marks invalid (undecodable images) left out "
                                      "with their labels"]
    assert fi.provenance["store_keys"]["test"]["split"] == "test"


def test_whole_float_labels_are_accepted(tmp_path: Path) -> None:
    a = planted(seed=5, n_train=40, n_test=20)
    a["train_labels"] = a["train_labels"].astype(np.float32)
    fi = load_features(write_npz(tmp_path / "a.npz", a))
    assert fi.train_y.dtype == np.int64


# --------------------------------------------------------------------------- bad inputs


def _with(**changes: Callable[[dict], None]) -> Callable[[Path], str]:
    """A setup writing planted features changed by ``changes['edit'](arrays)`` as an .npz."""
    def setup(tmp: Path) -> str:
        a = planted(seed=6, n_train=40, n_test=20)
        names = changes.get("names")
        if "edit" in changes:
            changes["edit"](a)
        write_npz(tmp / "f.npz", a, names)  # type: ignore[arg-type]
        return str(tmp / "f.npz")
    return setup


def _nan(a: dict) -> None:
    a["train_features"][[5, 9, 30], 2] = np.nan


def _inf(a: dict) -> None:
    a["test_features"][11, 0] = np.inf


def _narrow(a: dict) -> None:
    a["test_features"] = a["test_features"][:, :8]


def _short_labels(a: dict) -> None:
    a["train_labels"] = a["train_labels"][:-1]


def _half(a: dict) -> None:
    a["train_labels"] = a["train_labels"].astype(np.float64)
    a["train_labels"][7] = 1.5


def _negative(a: dict) -> None:
    a["test_labels"][4] = -1


def _big_label(a: dict) -> None:
    a["train_labels"][12] = 9


def _str_labels(a: dict) -> None:
    a["test_labels"] = np.array([str(v) for v in a["test_labels"]])


def _int_features(a: dict) -> None:
    a["train_features"] = a["train_features"].astype(np.int32)
    a["test_features"] = a["test_features"].astype(np.int32)


def _three_d(a: dict) -> None:
    a["train_features"] = a["train_features"].reshape(40, 4, 4)


def _missing(tmp: Path) -> str:
    a = planted(seed=6, n_train=40, n_test=20)
    np.savez(tmp / "f.npz", train_features=a["train_features"], train_labels=a["train_labels"],
             test_features=a["test_features"], y_test=a["test_labels"])
    return str(tmp / "f.npz")


def _pickled(tmp: Path) -> str:
    a = planted(seed=6, n_train=40, n_test=20)
    np.savez(tmp / "f.npz", **a, class_names=np.array(["a", None, 3], dtype=object))
    return str(tmp / "f.npz")


def _pickled_compressed(tmp: Path) -> str:
    a = planted(seed=6, n_train=40, n_test=20)
    a["train_labels"] = a["train_labels"].astype(object)
    np.savez_compressed(tmp / "f.npz", **a)
    return str(tmp / "f.npz")


def _text_file(tmp: Path) -> str:
    (tmp / "f.csv").write_text("a,b\n1,2\n")
    return str(tmp / "f.csv")


def _truncated(tmp: Path) -> str:
    write_npz(tmp / "f.npz", planted(seed=6, n_train=40, n_test=20))
    data = (tmp / "f.npz").read_bytes()
    (tmp / "f.npz").write_bytes(data[: len(data) // 2])
    return str(tmp / "f.npz")


def _empty_folder(tmp: Path) -> str:
    (tmp / "feats").mkdir()
    (tmp / "feats" / "readme.txt").write_text("x")
    return str(tmp / "feats")


def _folder_no_test_labels(tmp: Path) -> str:
    p = write_npy_folder(tmp / "feats", planted(seed=6, n_train=40, n_test=20))
    (p / "test_labels.txt").unlink()
    return str(p)


def _bf16(tmp: Path) -> str:
    import torch
    from safetensors.torch import save_file

    a = planted(seed=6, n_train=40, n_test=20)
    save_file({k: torch.from_numpy(v.astype(np.float32) if "features" in k else v).to(
        torch.bfloat16 if "features" in k else torch.int64) for k, v in a.items()}, str(tmp / "f.safetensors"))
    return str(tmp / "f.safetensors")


def _safetensors_missing(tmp: Path) -> str:
    a = planted(seed=6, n_train=40, n_test=20)
    del a["test_labels"]
    write_safetensors(tmp / "f.safetensors", a)
    return str(tmp / "f.safetensors")


def _incomplete_store(tmp: Path) -> str:
    p = write_store_pair(tmp / "s", planted(seed=6, n_train=40, n_test=20), chunk_rows=16)
    man = json.loads((p / "train" / "manifest.json").read_text())
    del man["chunks"]["1"]
    man["complete"] = False
    (p / "train" / "manifest.json").write_text(json.dumps(man))
    return str(p)


def _npz(tmp: Path) -> str:
    return _with()(tmp)


#: (id, setup -> the path, extra argv, the exact stderr line with {p} for the path)
CASES = [
    ("not-found", lambda t: str(t / "nope.npz"), [], "error: --features {p}: not found (check the path)"),
    ("missing-key", _missing, [],
     "error: --features {p}: no test_labels array(s); it holds: test_features, train_features, train_labels, "
     "y_test; save the arrays train_features, train_labels, test_features, test_labels (README: --features)"),
    ("nan-rows", _with(edit=_nan), [],
     "error: --features {p}: train_features has 3 row(s) with NaN or inf (first: row 5); drop or fix them "
     "before saving, e.g. keep = np.isfinite(x).all(axis=1); x, y = x[keep], y[keep]"),
    ("inf-row", _with(edit=_inf), [],
     "error: --features {p}: test_features has 1 row(s) with NaN or inf (first: row 11); drop or fix them "
     "before saving, e.g. keep = np.isfinite(x).all(axis=1); x, y = x[keep], y[keep]"),
    ("width-mismatch", _with(edit=_narrow), [],
     "error: --features {p}: train_features are 16 wide but test_features are 8 wide; save both splits' "
     "features from the same encoder and readout"),
    ("label-count", _with(edit=_short_labels), [],
     "error: --features {p}: train_labels has shape (39,) but train_features has 40 rows; give one class "
     "index per row"),
    ("non-integer-labels", _with(edit=_half), [],
     "error: --features {p}: train_labels are not integers (row 7 holds 1.5); save class indices 0..C-1 as "
     "integers, e.g. y.astype(np.int64)"),
    ("string-labels", _with(edit=_str_labels), [],
     "error: --features {p}: test_labels are <U1; save class indices 0..C-1 as integers, e.g. y.astype(np.int64)"),
    ("negative-label", _with(edit=_negative), [],
     "error: --features {p}: test_labels hold -1 at row 4; labels must be class indices 0..C-1"),
    ("label-out-of-range", _with(edit=_big_label, names=CLASS_NAMES), [],
     "error: --features {p}: train_labels hold 9 at row 12 but class_names lists 4 classes; labels must be "
     "0..3, or list every class name"),
    ("integer-features", _with(edit=_int_features), [],
     "error: --features {p}: train_features are int32; save floating-point features (float16 or float32)"),
    ("3d-features", _with(edit=_three_d), [],
     "error: --features {p}: train_features must be 2-D (rows, features), got shape (40, 4, 4); pool or "
     "flatten each image's feature to one row"),
    ("pickle-npz", _pickled, [],
     "error: --features {p}: class_names holds Python objects (a pickle); umae never unpickles feature files: "
     "save numbers (float features, integer labels) and class names as a str array, e.g. "
     "np.array(names, dtype=str)"),
    ("pickle-compressed-npz", _pickled_compressed, [],
     "error: --features {p}: train_labels holds Python objects (a pickle); umae never unpickles feature files: "
     "save numbers (float features, integer labels) and class names as a str array, e.g. "
     "np.array(names, dtype=str)"),
    ("unknown-format", _text_file, [],
     "error: --features {p}: not an .npz, .safetensors, or a folder of .npy files or feature stores; save the "
     "arrays train_features, train_labels, test_features, test_labels (README: --features), e.g. "
     "np.savez(path, train_features=..., ...)"),
    ("truncated-npz", _truncated, [],
     "error: --features {p}: unreadable npz (BadZipFile: File is not a zip file); write it again (a truncated "
     "or damaged file)"),
    ("folder-without-features", _empty_folder, [],
     "error: --features {p}: a folder without train_features.npy / test_features.npy or train/ and test/ "
     "feature stores (it holds: readme.txt); save the arrays train_features, train_labels, test_features, "
     "test_labels (README: --features)"),
    ("folder-without-test-labels", _folder_no_test_labels, [],
     "error: --features {p}: no test_labels.npy or test_labels.txt in {p}; it holds: test_features.npy, "
     "train_features.npy, train_labels.npy; save the arrays train_features, train_labels, test_features, "
     "test_labels (README: --features)"),
    ("safetensors-bf16", _bf16, [],
     "error: --features {p}: train_features is BF16, which numpy cannot read; save float16 or float32 (e.g. "
     "tensor.float() or tensor.half() before save_file)"),
    ("safetensors-missing-key", _safetensors_missing, [],
     "error: --features {p}: no test_labels tensor(s); it holds: test_features, train_features, train_labels; "
     "save the arrays train_features, train_labels, test_features, test_labels (README: --features)"),
    ("incomplete-store", _incomplete_store, [],
     "error: feature store {p}/train is incomplete (1 of 3 chunks missing); run the extraction again to "
     "finish it"),
    ("with-layers", _npz, ["--layers", "3"],
     "error: --layers 3 reads blocks of an encoder; features read with --features have none: drop --layers"),
    ("with-pool", _npz, ["--pool", "avg"],
     "error: --pool avg pools an encoder's tokens; features read with --features have none: drop --pool"),
    ("with-data", _npz, ["--data", "demo"],
     "error: --data demo with --features: the labels come from the features file; drop --data"),
    ("with-attentive", _npz, ["--methods", "mean,attentive"],
     "error: --methods attentive trains on an encoder's patch tokens; features read with --features are "
     "pooled: drop attentive from --methods"),
    ("with-checkpoint", _npz, ["mae.pth"],
     "error: checkpoints (mae.pth) and --features were both given; analyse either checkpoints with --data or "
     "features from files with --features, not both"),
    ("label-count-option", _npz, ["--label", "a", "--label", "b"],
     "error: --label was given 2 time(s) for 1 checkpoint(s); give one --label per checkpoint, in the same order"),
]


def _argv(cmd: str, path: str, extra: list[str]) -> list[str]:
    return [cmd, "--features", path, *extra, "--out", "out"]


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_features_exact_line_exit_2_nothing_written(tmp_path: Path, case, capsys, monkeypatch) -> None:
    _, setup, extra, expected = case
    path = setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    rc = main(_argv("probe", path, extra))
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().splitlines() == [expected.format(p=path)]
    assert _snapshot(tmp_path) == before  # no --out, no hidden stage, no reports/


def test_refusals_of_collapse_and_compare_options(tmp_path: Path, capsys, monkeypatch) -> None:
    path = _npz(tmp_path)
    monkeypatch.chdir(tmp_path)
    for argv, line in (
        (["collapse-report", "--features", path, "--random-init"],
         "error: --random-init adds an untrained encoder of a checkpoint's architecture; features read with "
         "--features have none: drop --random-init"),
        (["compare", "--features", path, "--mask-ratio", "0.5"],
         "error: --mask-ratio 0.5 masks images for the masked views, which need an encoder; features read with "
         "--features have none: drop --mask-ratio"),
        (["probe"], "error: no checkpoint given; pass CKPT file(s) and --data, e.g. umae probe mae.pth "
                    "--data demo, or features saved from your own pipeline with --features PATH"),
        (["probe", "mae.pth"], "error: --data is required with checkpoints, e.g. --data demo; or give --features "
                               "PATH instead of checkpoints"),
    ):
        assert main(argv) == 2
        assert capsys.readouterr().err.strip().splitlines() == [line]
    assert not (tmp_path / "reports").exists()


def test_compare_refuses_features_of_other_images(tmp_path: Path, capsys, monkeypatch) -> None:
    a = planted(seed=7, n_train=40, n_test=20)
    b = {k: v.copy() for k, v in a.items()}
    b["test_labels"][[3, 8]] = b["test_labels"][[8, 3]] + 0  # two test rows in another order
    if b["test_labels"][3] == a["test_labels"][3]:
        b["test_labels"][3] = (b["test_labels"][3] + 1) % 4
    pa, pb = write_npz(tmp_path / "a.npz", a), write_npz(tmp_path / "b.npz", b)
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--features", str(pa), "--features", str(pb), "--out", "out"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --features {pb}: its test_labels differ from {pa}'s (first difference at row 3); compared "
        "features must be of the same images in the same order"]
    assert not (tmp_path / "out").exists()


def test_load_features_raises_umae_error(tmp_path: Path) -> None:
    with pytest.raises(UmaeError, match=r"row\(s\) with NaN or inf \(first: row 5\)"):
        load_features(_with(edit=_nan)(tmp_path))


# --------------------------------------------------------------------------- the installed command


SUBPROCESS_CASES = [pytest.param(CASES[2], id="nan-rows"),
                    pytest.param(CASES[12], id="pickle-npz", marks=pytest.mark.slow),
                    pytest.param(CASES[9], id="label-out-of-range", marks=pytest.mark.slow),
                    pytest.param(CASES[4], id="width-mismatch", marks=pytest.mark.slow),
                    pytest.param(CASES[1], id="missing-key", marks=pytest.mark.slow)]


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_installed_umae_exit_2_one_line(tmp_path: Path, case) -> None:
    _, setup, extra, expected = case
    path = setup(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(["umae", *_argv("probe", path, extra)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [expected.format(p=path)]
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()
