"""`umae convert`: rewrite a checkpoint of any layout as official MAE, timm or Hugging Face."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from umae_eval.options import NumHeadsOpt, TrustPickleOpt
from umae_eval.progress import console, say, stdout


def convert(
    src: Annotated[Path, typer.Argument(
        metavar="SRC", show_default=False,
        help="Checkpoint file or folder of any layout umae reads (README: Checkpoints).")],
    out: Annotated[Path, typer.Argument(
        metavar="OUT", show_default=False,
        help="What to create (never overwritten): a .pth file (--to official), a .safetensors / "
        ".pth / .bin file (--to timm), or a folder (--to hf).")],
    to: Annotated[str, typer.Option(
        "--to", help="official ({'model': encoder + decoder}, MAE's layout), timm (bare encoder "
        "state dict; the decoder is left out) or hf (Hugging Face ViTMAE folder: config.json + "
        "model.safetensors, ViTMAEForPreTraining with a decoder, else ViTMAEModel).")],
    trust_pickle: TrustPickleOpt = False,
    num_heads: NumHeadsOpt = None,
    decoder_num_heads: Annotated[Optional[int], typer.Option(
        "--decoder-num-heads", min=1, help="Decoder heads for --to hf when the source does not "
        "record them (umae and Hugging Face files do; 16 is assumed for the official 512-wide "
        "decoder).")] = None,
) -> None:
    """Convert a checkpoint between layouts: encoder, and the decoder where the source has one.

    One line says what was read and what was written, and what did not carry over.

    Examples:

      umae convert runs/umae-c10/last.pth umae-c10-hf --to hf

      umae convert facebook-vit-mae-base/ mae_visualize_vit_base.pth --to official

      umae convert mae_pretrain_vit_base.pth vit_base_patch16_224.mae.safetensors --to timm
    """
    from umae_eval.checkpoints.convert import convert_checkpoint

    result = convert_checkpoint(src, out, to.strip().lower(), trust_pickle=trust_pickle,
                                arch_overrides={"num_heads": num_heads} if num_heads else None,
                                decoder_num_heads=decoder_num_heads)
    say(result.summary())
    for line in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    stdout.print(result.out, highlight=False, soft_wrap=True)
