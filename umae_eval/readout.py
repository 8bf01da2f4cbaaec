"""Which tokens become the feature: the blocks read, the pooling, the final norm (the feature spec).

umae's default is MAE's linear-probe feature: the last block's [CLS] token after the encoder's
final LayerNorm. The field also reads earlier blocks (DINOv2's linear eval concatenates the last
1 or 4 blocks; SimMIM probes block 8 of ViT-B; Park et al. 2023 find masked-image models'
informative blocks earlier than contrastive ones), pools [CLS] and the patch average together
(DINO's ``cls+avg``), and leaves the final norm out (the kNN figure of MAE in efficient-probing's
logs: 35.6 without, 16.1 with it). A :class:`Readout` says which:

- ``blocks``: 0-based block indices in ascending order (``None`` = the last block). Block ``i``'s
  output is the token sequence after ``model.blocks[i]``.
- ``final_norm``: apply the encoder's final ``norm`` to every block read (DINOv2's
  ``get_intermediate_layers(norm=True)``); off: the raw block output.
- the pooling (``cls``, ``avg``, ``cls+avg``) stays a separate argument, as everywhere in umae:
  ``avg`` is ``fc_norm(mean of the patch tokens)`` (``fc_norm`` the identity when the checkpoint
  has none), ``cls+avg`` concatenates both (width ``2 D``).

All blocks come from one forward pass (:func:`encode_readout`): the blocks run one by one up to
the deepest block read, and each block read is pooled as it goes. The features of ``n`` blocks
lie side by side, block after block: ``(B, n * W)`` with ``W`` = :func:`pool_width`.

Example
-------
>>> parse_layers("3,6,-1")
(3, 6, -1)
>>> resolve_blocks("all", depth=4)
(0, 1, 2, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from umae_eval.errors import UmaeError

POOLS: tuple[str, ...] = ("cls", "avg", "cls+avg")


def check_pool(pool: str) -> None:
    """Refuse a pooling that is not one of :data:`POOLS`."""
    if pool not in POOLS:
        raise UmaeError(f"unknown pooling {pool!r}; use 'cls' ([CLS] token), 'avg' (mean of patch "
                        "tokens) or 'cls+avg' (both, concatenated)")


def pool_width(embed_dim: int, pool: str) -> int:
    """Width of one block's pooled feature: ``D``, or ``2 D`` for ``cls+avg``."""
    check_pool(pool)
    return 2 * int(embed_dim) if pool == "cls+avg" else int(embed_dim)


def parse_layers(text: str) -> str | tuple[int, ...]:
    """``--layers`` text: ``'last'``, ``'all'``, or a comma list of block indices (``'3,6,-1'``).

    Indices are 0-based as in timm (``-1`` = the last block, ``-2`` the one before).
    """
    t = str(text).strip().lower()
    if t in ("last", "all"):
        return t
    out: list[int] = []
    for part in t.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise UmaeError(f"--layers {text!r}: give last, all, or comma-separated block indices "
                            "(0-based, negative from the end), e.g. --layers 3,6,-1") from None
    if not out:
        raise UmaeError(f"--layers {text!r} is empty; give last, all, or e.g. --layers 3,6,-1")
    return tuple(out)


def resolve_blocks(layers: str | Sequence[int], depth: int) -> tuple[int, ...]:
    """Block indices (0-based, ascending, no repeats) that ``layers`` names in a ``depth``-block ViT."""
    spec = parse_layers(layers) if isinstance(layers, str) else tuple(int(v) for v in layers)
    if spec == "last":
        return (depth - 1,)
    if spec == "all":
        return tuple(range(depth))
    out = set()
    for i in spec:
        if not -depth <= i < depth:
            raise UmaeError(f"--layers: block {i} does not exist in a ViT of {depth} blocks; use 0 to "
                            f"{depth - 1} (or -1 to -{depth} from the end)")
        out.add(i % depth)
    return tuple(sorted(out))


@dataclass(frozen=True)
class Readout:
    """Which blocks are read and whether the final norm applies (pooling is passed beside it).

    ``blocks`` None means the last block. :meth:`is_default` is MAE's feature (last block, final
    norm on): every cache and store key of such a readout is the key umae always used.
    """

    blocks: tuple[int, ...] | None = None
    final_norm: bool = True

    def resolved(self, depth: int) -> tuple[int, ...]:
        """The block indices, ``None`` resolved to the last block."""
        return (depth - 1,) if self.blocks is None else tuple(self.blocks)

    def is_default(self, depth: int) -> bool:
        """True for the last block with the final norm: umae's classic feature."""
        return self.final_norm and self.resolved(depth) == (depth - 1,)

    def key(self, depth: int) -> dict[str, object]:
        """What a cache / store key adds for this readout: nothing for the default."""
        if self.is_default(depth):
            return {}
        return {"blocks": list(self.resolved(depth)), "final_norm": bool(self.final_norm)}

    def tag(self, depth: int) -> str:
        """Short readable part of a cache file name (``''`` for the default): ``b3.6.11-nonorm``."""
        if self.is_default(depth):
            return ""
        blocks = self.resolved(depth)
        text = "all" if blocks == tuple(range(depth)) else ".".join(map(str, blocks))
        return f"b{text}" + ("" if self.final_norm else "-nonorm")


def readout_for(layers: str | Sequence[int], depth: int, final_norm: bool = True) -> Readout:
    """The :class:`Readout` of ``--layers`` / ``--final-norm`` for a ``depth``-block encoder."""
    return Readout(resolve_blocks(layers, depth), bool(final_norm))


def pool_block(model: torch.nn.Module, tokens: torch.Tensor, pool: str) -> torch.Tensor:
    """Pool one block's tokens ``(B, 1 + L, D)`` into ``(B, W)``.

    ``cls``: ``tokens[:, 0]``; ``avg``: ``model.fc_norm(tokens[:, prefix:].mean(1))``;
    ``cls+avg``: both, concatenated (``(B, 2 D)``).
    """
    check_pool(pool)
    cls = tokens[:, 0]
    if pool == "cls":
        return cls
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    avg = model.fc_norm(tokens[:, prefix:].mean(dim=1))
    return avg if pool == "avg" else torch.cat([cls, avg], dim=-1)


def block_tokens(model: torch.nn.Module, x: torch.Tensor, blocks: Sequence[int]) -> list[torch.Tensor]:
    """The output tokens of each block in ``blocks``, from one pass: ``[(B, 1 + L, D), ...]``.

    Runs what timm's ``VisionTransformer.forward_features`` runs (patch embedding, position
    embedding, patch dropout, pre-norm, the blocks in order) but stops after the deepest block
    asked for and keeps the tokens of each block read; no final norm.

    Parameters
    ----------
    model : timm VisionTransformer
    x : Tensor, shape (B, 3, H, W)
        Normalised images.
    blocks : sequence of int
        0-based, ascending.
    """
    wanted = set(int(b) for b in blocks)
    last = max(wanted)
    h = model.patch_embed(x)
    h = model._pos_embed(h)
    h = model.patch_drop(h)
    h = model.norm_pre(h)
    out: list[torch.Tensor] = []
    for i, blk in enumerate(model.blocks):
        if i > last:
            break
        h = blk(h)
        if i in wanted:
            out.append(h)
    return out


def encode_readout(model: torch.nn.Module, x: torch.Tensor, pool: str, readout: Readout) -> torch.Tensor:
    """Features of every block ``readout`` reads, side by side: ``(B, n_blocks * W)``.

    Block ``blocks[j]`` fills columns ``j * W`` to ``(j + 1) * W``; the final ``norm`` is applied
    to each block's tokens before pooling when ``readout.final_norm``.
    """
    depth = len(model.blocks)
    feats = []
    for tokens in block_tokens(model, x, readout.resolved(depth)):
        if readout.final_norm:
            tokens = model.norm(tokens)
        feats.append(pool_block(model, tokens, pool))
    return feats[0] if len(feats) == 1 else torch.cat(feats, dim=-1)


def fc_norm_untrained(model: torch.nn.Module) -> bool:
    """True when ``model.fc_norm`` is a LayerNorm still at its initial values (weight 1, bias 0).

    Official MAE linear-probe files with global pooling carry such an ``fc_norm``: the script
    creates it and freezes it untrained (mae issue 186). Average pooling then applies a
    LayerNorm nobody trained; the report names such checkpoints.
    """
    norm = getattr(model, "fc_norm", None)
    weight = getattr(norm, "weight", None)
    if not isinstance(norm, torch.nn.LayerNorm) or weight is None:
        return False
    bias = norm.bias
    with torch.no_grad():
        ones = bool(torch.all(weight == 1))
        zeros = bias is None or bool(torch.all(bias == 0))
    return ones and zeros
