"""Out of memory as one line naming the option that needs less of it (exit 2), never an internal error.

Out of memory is the user's input being too large for the machine, so like other bad input it is
said in one line with a fix. Library code marks what it is doing with :func:`memory_stage` (the
analysis pipeline's stages through ``pipeline.run.timed``, the trainer's steps and its online
evaluation); an out-of-memory error raised inside keeps the *innermost* stage's name. The CLI
(:mod:`umae_eval.cli`) asks :func:`out_of_memory_message` for the line: the stage, the error, and
the options of that command that shrink what that stage holds at once.

Recognised: ``MemoryError`` (numpy's ``_ArrayMemoryError`` is one), ``torch.OutOfMemoryError``
(CUDA), and torch's CPU allocator's ``RuntimeError`` ("DefaultCPUAllocator: can't allocate
memory"), as well as a C++ ``std::bad_alloc`` passed through (faiss).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

_ATTR = "umae_memory_stage"
#: the C++ assertion torch's CPU allocator prefixes to its message: not for users
_ENFORCE = re.compile(r"^\[enforce fail at [^\]]*\]\s*(err == 0\.\s*)?")
_MARKERS = ("can't allocate memory", "cannot allocate memory", "out of memory", "not enough memory",
            "bad_alloc")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an exception that means the process ran out of (host or device) memory."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(marker in text for marker in _MARKERS)
    return False


@contextmanager
def memory_stage(name: str) -> Iterator[None]:
    """Label an out-of-memory error raised inside with ``name`` (unless an inner stage did)."""
    try:
        yield
    except BaseException as exc:
        if is_out_of_memory(exc) and getattr(exc, _ATTR, None) is None:
            try:
                setattr(exc, _ATTR, name)
            except (AttributeError, TypeError):  # an exception type without a __dict__
                pass
        raise


def stage_of(exc: BaseException) -> str | None:
    """The stage :func:`memory_stage` recorded on ``exc``, if any."""
    stage = getattr(exc, _ATTR, None)
    return stage if isinstance(stage, str) else None


_FEWER_IMAGES = "use fewer images with --max-train N / --max-test N"
_ANALYSIS: dict[str, tuple[str, str]] = {
    # stage key (pipeline.run.timed) -> (what the stage is, the fix)
    "load_checkpoints": ("loading the checkpoints", "compare fewer checkpoints at once, or free memory"),
    "load_data": ("loading the images", "read them lazily with --data-mode lazy, or " + _FEWER_IMAGES),
    "features": ("feature extraction", "lower --batch-size (images per forward pass), or " + _FEWER_IMAGES),
    "layers": ("the layer-wise probes", "read fewer blocks with --layers, or " + _FEWER_IMAGES),
    "probes": ("the probes (linear, kNN, mean classifier)", _FEWER_IMAGES),
    "attentive": ("the attentive probe", "lower --batch-size, or " + _FEWER_IMAGES),
    "lowshot": ("the low-shot probes", _FEWER_IMAGES + ", or fewer --draws"),
    "spectrum": ("the singular spectrum", "use fewer test images with --max-test N"),
    "rank_intervals": ("the rank intervals", "fewer --bootstrap resamples, or --max-test N"),
    "masked_views": ("the masked views", "use fewer images with --max-views N, or lower --batch-size"),
    "representation_metrics": ("the representation metrics", "use fewer test images with --max-test N"),
    "representation_pairs": ("CKA / mutual kNN between checkpoints", "use fewer test images with --max-test N"),
    "map_tsne": ("the t-SNE map", "fewer points with --per-class N, or --embed none"),
    "map_umap": ("the UMAP map", "fewer points with --per-class N, or --embed none"),
    "summary": ("the summary's bootstrap intervals", "fewer --bootstrap resamples, or --max-test N"),
    "layers_summary": ("the layer-wise summary", "fewer --bootstrap resamples, or --max-test N"),
    "protocol_matrix": ("the protocol matrix", "fewer --bootstrap resamples, or --max-test N"),
}
_ANALYSIS_DEFAULT = "lower --batch-size (images per forward pass), or " + _FEWER_IMAGES
_TRAIN: dict[str, tuple[str, str]] = {
    "training": ("a training step", "lower --micro-batch (images per forward/backward; gradients still "
                 "accumulate to --batch-size), or keep images off the device with --stream"),
    "online evaluation": ("the per-epoch evaluation", "lower --eval-images / --knn-train-images"),
}
#: command -> (stage table, the fix when no stage was recorded)
_COMMANDS: dict[str, tuple[dict[str, tuple[str, str]], str]] = {
    "probe": (_ANALYSIS, _ANALYSIS_DEFAULT),
    "collapse-report": (_ANALYSIS, _ANALYSIS_DEFAULT),
    "compare": (_ANALYSIS, _ANALYSIS_DEFAULT),
    "demo": ({"map_tsne": ("the t-SNE map", "--embed none"), "map_umap": ("the UMAP map", "--embed none")},
             "free memory, or --embed none"),
    "train": (_TRAIN, "lower --micro-batch (images per forward/backward), or --stream, or fewer "
                      "--eval-images / --knn-train-images"),
    "finetune": ({"training": ("a fine-tuning step", "lower --batch-size and raise --accum-iter to keep "
                               "the effective batch"),
                  "online evaluation": ("the evaluation", "lower --eval-images")},
                 "lower --batch-size (raise --accum-iter to keep the effective batch), or --eval-images N"),
    "mask-ratio-sweep": ({}, "lower --batch-size, or fewer --pairs / --views / --label-images / --graph-images"),
    "reconstruct": ({}, "lower --batch-size, or fewer --images / --stat-images"),
    "convert": ({}, "free memory, or convert on a machine with more"),
}


def out_of_memory_message(exc: BaseException, command: str | None) -> str:
    """One line: where memory ran out, the error in short, the option(s) of ``command`` to lower."""
    stages, default = _COMMANDS.get(command or "", ({}, "free memory, or use a machine with more"))
    stage = stage_of(exc)
    what, fix = stages.get(stage or "", (stage.replace("_", " ") if stage else None, default))
    device = "GPU" if type(exc).__name__ == "OutOfMemoryError" or "cuda" in str(exc).lower() else ""
    detail = _ENFORCE.sub("", " ".join(str(exc).split()))[:160] or type(exc).__name__
    where = f" during {what}" if what else ""
    prefix = f"umae {command}: " if command else ""
    return f"{prefix}{device + ' ' if device else ''}out of memory{where} ({detail}); {fix}"
