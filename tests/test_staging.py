"""Staged outputs (umae_eval.staging) and the one-line OS error messages (umae_eval.errors)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from umae_eval.errors import UmaeError, os_error_message
from umae_eval.staging import StagedOutput, begin_output, check_writable, discard_open_stages, user_path


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_new_out_appears_only_on_commit(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out"
    stage = begin_output(out)
    assert not out.exists() and stage.path.parent == out.parent
    (stage.path / "results.json").write_text("{}")
    (stage.path / "sub").mkdir()
    (stage.path / "sub" / "x.csv").write_text("1")
    written = stage.commit({"results": stage.path / "results.json", "x": stage.path / "sub" / "x.csv"})
    assert written == {"results": out / "results.json", "x": out / "sub" / "x.csv"}
    assert (out / "results.json").read_text() == "{}" and (out / "sub" / "x.csv").read_text() == "1"
    assert _hidden(out.parent) == []
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700


def test_existing_out_keeps_other_files_and_replaces_namesakes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "last.pth").write_text("checkpoint")
    (out / "results.json").write_text("old")
    with StagedOutput(out) as stage:
        (stage.path / "results.json").write_text("new")
        (stage.path / "runs").mkdir()
        (stage.path / "runs" / "note.txt").write_text("n")
    assert (out / "results.json").read_text() == "new"
    assert (out / "runs" / "last.pth").read_text() == "checkpoint"
    assert (out / "runs" / "note.txt").read_text() == "n"
    assert _hidden(tmp_path) == []


def test_a_failure_leaves_nothing_not_even_the_parents_it_made(tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir()
    out = tmp_path / "kept" / "new1" / "new2" / "out"
    with pytest.raises(ValueError), StagedOutput(out) as stage:
        (stage.path / "half.csv").write_text("1,2")
        raise ValueError("work failed")
    assert sorted(os.listdir(tmp_path)) == ["kept"] and os.listdir(tmp_path / "kept") == []


def test_cli_discards_open_stages(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stage = begin_output(out)
    (stage.path / "a.csv").write_text("1")
    assert user_path(str(stage.path / "a.csv")) == str(out / "a.csv")
    discard_open_stages()
    assert list(tmp_path.iterdir()) == []
    assert user_path(str(stage.path / "a.csv")) == str(stage.path / "a.csv")


def test_stages_of_killed_processes_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    stale = tmp_path / f".out.partial-{dead.stdout.strip()}-abc"
    stale.mkdir()
    (stale / "accuracy.csv").write_text("half")
    alive = tmp_path / f".out.partial-{os.getppid()}-xyz"  # a live process: not ours to remove
    alive.mkdir()
    begin_output(out).commit()
    assert not stale.exists() and alive.exists() and out.is_dir()


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_a_file_is_refused_as_out(tmp_path: Path, where: str) -> None:
    f = tmp_path / "f.txt"
    f.write_text("x")
    out = f if where == "file" else f / "sub"
    for check in (begin_output, check_writable):
        with pytest.raises(UmaeError, match="--out .*f.txt.* file; give a folder"):
            check(out)
    assert sorted(os.listdir(tmp_path)) == ["f.txt"]


def test_check_writable_names_out_not_its_helper_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import umae_eval.staging as S

    def full(folder: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / ".umae-write-check"))

    monkeypatch.setattr(S, "_probe_write", full)
    with pytest.raises(UmaeError) as e:
        check_writable(tmp_path / "run")
    assert str(e.value).startswith(f"--out {tmp_path / 'run'}: no space left on the device; free some space")
    with pytest.raises(UmaeError, match="--out .*out: no space left"):
        begin_output(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("code, words", [
    (errno.EACCES, "permission denied; choose a folder you can write to"),
    (errno.EROFS, "read-only file system; write to a folder on a writable disk"),
    (errno.ENOSPC, "no space left on the device; free some space"),
    (errno.ENOTDIR, "a part of this path is a file, not a folder"),
    (errno.ELOOP, "symlink loop); remove or fix the looping symlink"),
    (errno.EMFILE, "too many open files; raise the limit (e.g. `ulimit -n 4096`)"),
])
def test_os_error_message_names_path_problem_and_fix(code: int, words: str) -> None:
    msg = os_error_message(OSError(code, os.strerror(code), "/data/x.pth"))
    assert msg.startswith("/data/x.pth: ") and words in msg and "\n" not in msg


def test_os_error_message_without_a_path_or_a_known_errno() -> None:
    assert os_error_message(OSError(errno.ENOSPC, "No space")).startswith("a file: no space left")
    assert "Exec format error" in os_error_message(OSError(errno.ENOEXEC, "Exec format error", "/x"))
    assert os_error_message(OSError(errno.EXDEV, "x", "/a", None, "/b")).startswith("/a -> /b: ")
