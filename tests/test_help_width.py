"""``--help`` at 80 (and 60) columns never cuts an option name or a word: every command's help
rendered by the installed ``umae`` console script in a subprocess, as a user's terminal shows it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> dict[str, list[str]]:
    """Every command (the root as '') and the option names it declares, from click's own objects."""
    from umae_eval.cli import app

    root = typer.main.get_command(app)
    pairs = [("", root), *sorted(root.commands.items())]  # type: ignore[attr-defined]
    return {name: [o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")]
            for name, cmd in pairs}


def _render_all(width: int) -> dict[str, str]:
    exe = shutil.which("umae")
    assert exe, "the umae console script is not installed"
    env = {**os.environ, "COLUMNS": str(width), "PYTHONPATH": str(ROOT), "TERM": "dumb",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("NO_COLOR", None)
    # all commands at once: each one is an interpreter start-up
    procs = {name: subprocess.Popen([exe, *([name] if name else []), "--help"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for name in _commands()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, (name, stderr)
        out[name] = stdout
    return out


def _check(width: int) -> None:
    helps = _render_all(width)
    commands = _commands()
    assert len(commands) >= 11  # the root and its ten commands
    for name, options in commands.items():
        text = helps[name]
        assert options, name
        tokens = set(re.findall(r"-[-\w]+", text))
        cut = [o for o in options if o not in tokens]
        assert not cut, f"umae {name} --help at {width} columns cuts {cut}"
        assert "…" not in text, f"umae {name} --help at {width} columns cuts a word:\n" + \
            "\n".join(line for line in text.splitlines() if "…" in line)
        assert max(len(line) for line in text.splitlines()) <= width, name


def test_help_at_80_columns_keeps_every_option_name_whole() -> None:
    _check(80)


@pytest.mark.slow  # eleven more interpreter start-ups
def test_help_at_60_columns_keeps_every_option_name_whole() -> None:
    _check(60)


def test_the_check_sees_a_cut_name() -> None:
    """Without the fix (typer's own table) the same check finds a cut option name: the test can fail."""
    code = (
        "import typer.rich_utils as r, rich.table as t, sys\n"
        "from umae_eval import cli\n"
        "r.Table = t.Table\n"
        "sys.argv = ['umae', 'probe', '--help']\n"
        "cli.main()\n"
    )
    env = {**os.environ, "COLUMNS": "60", "PYTHONPATH": str(ROOT), "TERM": "dumb"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert re.search(r"--[\w-]+…", proc.stdout), proc.stdout[-2000:]  # e.g. '--max-train-per…'
    names = {o for o in _commands()["probe"] if o.startswith("--")}
    assert names - set(re.findall(r"-[-\w]+", proc.stdout))  # the whole-name check above would fail
