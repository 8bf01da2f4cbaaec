"""Atomic file writes, hashes and version stamps shared by every command's outputs."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(fileobj)`` into a temporary file, then rename.

    A crash mid-write leaves the previous file (or none) in place, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os_error = write_error(exc, path)
        if os_error is not None and os_error is not exc:
            raise os_error from exc
        raise
    return path


def write_error(exc: BaseException, path: str | Path) -> OSError | None:
    """The OS error behind a failed write of ``path``, with ``path`` as its file name, or None.

    Writers that wrap the file object hide the cause: ``torch.save`` on a full disk raises
    ``RuntimeError('... unexpected pos 704 vs 598')`` with the ``OSError(ENOSPC)`` only as its
    context, and a buffered ``write`` raises ``OSError(28)`` without a file name. Both come back
    as one ``OSError(errno, strerror, path)`` that the CLI can explain.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno is not None:
            if cause is exc and cause.filename == str(path):
                return cause
            return OSError(cause.errno, cause.strerror or os.strerror(cause.errno), str(path))
        cause = cause.__cause__ or cause.__context__
    return None


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 text to ``path``."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda fh: fh.write(data))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def to_json(obj: Any) -> str:
    """JSON text for results: numpy scalars/arrays, Paths and dataclasses allowed."""
    return json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n"


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return atomic_write_text(path, to_json(obj))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape a result."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    from importlib import metadata

    for dist in ("umae", "torch", "timm", "numpy", "scikit-learn", "faiss-cpu",
                 "umap-learn", "openTSNE", "pandas", "plotly"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def now_iso() -> str:
    """The current UTC time, ISO 8601, seconds precision."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def default_out_dir(command: str, root: str | Path = "reports") -> Path:
    """``reports/<command>-<YYYYmmdd-HHMMSS>``: where a command writes when --out is not given."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{command}-{stamp}"


_invocation: list[str] = []


def record_command_line(argv: list[str]) -> None:
    """Remember the command line of this process (``umae_eval.cli.main`` calls it once)."""
    _invocation[:] = [str(a) for a in argv]


def command_line() -> list[str]:
    """The recorded command line (``['umae', 'compare', ...]``), or [] when umae was called as a library."""
    return list(_invocation)


def command_line_text(argv: list[str] | None = None) -> str:
    """The command line as one shell-quoted string a reader can paste back."""
    import shlex

    return shlex.join(command_line() if argv is None else argv)


@functools.lru_cache(maxsize=1)
def project_revision() -> dict[str, str]:
    """The umae version and, when it runs from a git checkout, the commit (``-dirty`` with edits).

    ``{'version': '0.1.0', 'revision': 'ac5706f' | 'ac5706f-dirty' | 'unknown (not a git checkout)'}``.
    """
    import subprocess

    out = {"version": versions().get("umae", "unknown")}
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12",
                              "--exclude", "*"], capture_output=True, text=True, timeout=5, check=True)
        out["revision"] = rev.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        out["revision"] = "unknown (not a git checkout)"
    return out


def results_envelope(command: str, settings: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """The common shape of every ``results.json``: command, command line, project revision,
    settings, versions, time, results."""
    return {
        "command": command,
        "command_line": command_line(),
        "project": project_revision(),
        "created": now_iso(),
        "settings": settings,
        "versions": versions(),
        "results": results,
    }
