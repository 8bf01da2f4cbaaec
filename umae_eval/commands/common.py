"""Options shared by every command, so each flag has one name, one default, one help text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        help="Dataset: 'demo', a cifar-10-batches-py / cifar-100-python folder, an ImageFolder "
        "folder or .tar.gz with train/ and test/ (or val/), or an .npz with x_train, y_train, "
        "x_test, y_test.",
    ),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto (CUDA if available), cpu, or cuda[:N].")
]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed for every random choice.")]
OutOpt = Annotated[
    Optional[Path],
    typer.Option("--out", help="Output folder (default: reports/<command>-<date>/)."),
]
TrustPickleOpt = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Allow full unpickling of checkpoints that need it. Only for files you trust: "
        "unpickling can run arbitrary code.",
    ),
]
