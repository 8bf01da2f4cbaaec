"""The encoders an analysis compares: :class:`Subject` (a display name + a loaded encoder),
:func:`display_names` and :func:`load_subjects`.

Apart from :mod:`umae_eval.analysis` (the images and their features) because naming and
loading checkpoints shares nothing with subsets and feature caches; ``umae reconstruct`` needs
only the names. :mod:`umae_eval.analysis` re-exports all three, so old imports keep working.

Example::

    subjects = load_subjects([Path("mae.pth"), Path("u-mae.pth")], labels=["MAE", "U-MAE"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from umae_eval.errors import UmaeError

__all__ = ["Subject", "display_names", "load_subjects"]


@dataclass
class Subject:
    """One encoder under analysis: a short display name and the loaded encoder."""

    name: str
    encoder: Any  # umae_eval.checkpoints.LoadedEncoder

    @property
    def info(self) -> Any:
        """The ``EncoderInfo`` (path, layout, arch, sha256, mean/std, run_dir)."""
        return self.encoder.info

    def settings(self) -> dict[str, Any]:
        """JSON-safe description for results.json: name + the encoder info (sha256, layout, arch)."""
        return {"name": self.name, **self.info.to_json()}


def display_names(paths: Sequence[Path], labels: Sequence[str] | None = None,
                  from_metadata: Sequence[str | None] | None = None) -> list[str]:
    """Short unique names: ``--label`` values when given, else names from the checkpoints'
    metadata (``from_metadata``, e.g. ``U-MAE λ=0.01 e200``), else file stems.

    Names that collide get their parent folder (``run1/checkpoint``, ``U-MAE λ=0.01 e200 (run1)``),
    and any that still collide get ``#2``, ``#3``...
    """
    if labels:
        if len(labels) != len(paths):
            raise UmaeError(f"--label was given {len(labels)} time(s) for {len(paths)} checkpoint(s); "
                            "give one --label per checkpoint, in the same order")
        names = [str(x) for x in labels]
    else:
        meta = list(from_metadata) if from_metadata else [None] * len(paths)
        base = [m or Path(p).stem for p, m in zip(paths, meta)]
        names = []
        for p, m, b in zip(paths, meta, base):
            folder = Path(p).resolve().parent.name
            if base.count(b) == 1:
                names.append(b)
            else:
                names.append(f"{b} ({folder})" if m else f"{folder}/{b}")
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def load_subjects(
    paths: Sequence[Path],
    *,
    labels: Sequence[str] | None = None,
    trust_pickle: bool = False,
    random_init: bool = False,
    seed: int = 0,
    arch_overrides: Mapping[str, Any] | None = None,
    norm: tuple[Sequence[float], Sequence[float]] | None = None,
) -> list[Subject]:
    """Load each checkpoint (any supported layout); optionally add an untrained twin of the first.

    ``arch_overrides`` and ``norm`` go to :func:`umae_eval.checkpoints.load_encoder` for every file.

    ``random_init`` adds ``random_init_encoder`` with the first checkpoint's architecture and
    normalisation, named ``random init`` (Fig. 1b's baseline).
    """
    from umae_eval.checkpoints import load_encoder, random_init_encoder

    if not paths:
        raise UmaeError("no checkpoint given; pass one or more checkpoint files, e.g. umae probe mae.pth --data demo")
    for p in paths:
        if not Path(p).exists():
            raise UmaeError(f"checkpoint not found: {p} (check the path)")
    from umae_eval.checkpoints.naming import metadata_name

    display_names(paths, labels)  # a wrong --label count is refused before anything loads
    encoders = [load_encoder(Path(p), trust_pickle=trust_pickle,
                             arch_overrides=dict(arch_overrides) if arch_overrides else None, norm=norm)
                for p in paths]
    names = display_names(paths, labels, [metadata_name(e.info) for e in encoders])
    subjects = [Subject(n, e) for n, e in zip(names, encoders)]
    if random_init:
        first = subjects[0].info
        enc = random_init_encoder(first.arch, seed=seed, mean=first.mean, std=first.std)
        name = "random init"
        while name in names:
            name += "'"
        subjects.append(Subject(name, enc))
    return subjects
