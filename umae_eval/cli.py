"""The ``umae`` command line: parse options, call the library, hand results to the report.

Errors raised as :class:`~umae_eval.errors.UmaeError`, usage errors and OS errors (read-only or
full disk, symlink loops, ...) and running out of memory (:mod:`umae_eval.oom`: the line names the
option that needs less) are printed as one line with exit code 2, without a traceback;
``umae --debug ...`` shows the traceback. Exit code 1 is kept for internal errors (bugs).
"""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from typing import Annotated

import typer
from rich.markup import escape

from umae_eval import __version__
from umae_eval.errors import UmaeError, os_error_message
from umae_eval.help_layout import install as _install_help_layout
from umae_eval.oom import is_out_of_memory, out_of_memory_message
from umae_eval.progress import console
from umae_eval.staging import discard_open_stages, user_path

app = typer.Typer(
    name="umae",
    help="Train MAE / U-MAE and measure what they learn: spectra, effective rank, probes, "
    "mask-ratio sweeps, t-SNE/UMAP, self-contained HTML reports.\n\n"
    "Start with:  umae demo",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_install_help_layout()  # option names are never cut in --help (help_layout.py)

_state: dict = {"debug": False, "signal": None, "cleaning": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"umae {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    _state["debug"] = debug


def _register() -> None:
    # Imported here so that `umae --help` stays fast and one broken command cannot hide the rest.
    from umae_eval.commands import (
        collapse_report,
        compare,
        convert,
        demo,
        finetune,
        mask_ratio_sweep,
        probe,
        runs,
        reconstruct,
        train,
    )

    app.command("train")(train.train)
    app.command("probe")(probe.probe)
    app.command("collapse-report")(collapse_report.collapse_report)
    app.command("mask-ratio-sweep")(mask_ratio_sweep.mask_ratio_sweep)
    app.command("compare")(compare.compare)
    app.command("demo")(demo.demo)
    app.command("convert")(convert.convert)
    app.command("runs")(runs.runs)
    app.command("reconstruct")(reconstruct.reconstruct)
    app.command("finetune")(finetune.finetune)


_register()


def _click_exception_types() -> tuple[type[BaseException], ...]:
    """Click's exception classes: typer >= 0.20 raises its own vendored copy (``typer._click``),
    older typer the standalone ``click`` package's; catch whichever are installed."""
    types: list[type[BaseException]] = []
    try:
        from typer._click.exceptions import ClickException as TyperClickException

        types.append(TyperClickException)
    except ImportError:
        pass
    try:
        from click.exceptions import ClickException

        types.append(ClickException)
    except ImportError:
        pass
    return tuple(types)


def _usage_error(exc: BaseException, args: list[str]) -> int:
    """A usage error (bad value, missing argument, unknown option or command) as one line, exit 2.

    No-arguments help (``umae`` alone) has already printed the help: nothing more to say.
    """
    if type(exc).__name__ == "NoArgsIsHelpError":
        return 2
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None) or "umae"
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    message = " ".join(str(message).split())  # click's messages may hold newlines
    _error_line(f"{message} (see `{command} --help`)")
    return 2


def _error_line(message: str) -> None:
    # escape(): a path or class name holding '[...]' must print as typed, never as rich markup
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _interrupted_line() -> int:
    """The one line for an interrupted command (Ctrl-C, SIGTERM); exit code 130."""
    from umae_eval.errors import interrupt_hint

    name = _state["signal"] or "SIGINT"
    hint = interrupt_hint()
    console.print(f"interrupted ({name}){'; ' + hint if hint else ''}", highlight=False, markup=False,
                  soft_wrap=True)
    return 130


def _command_name(args: list[str]) -> str | None:
    """The subcommand in ``args`` (the first word that is not an option), e.g. 'probe'."""
    return next((a for a in args if not a.startswith("-")), None)


def _run(args: list[str]) -> int:
    try:
        # In non-standalone mode typer turns KeyboardInterrupt into a *returned* 130 (and
        # typer.Exit(n) into a returned n): the return value is the exit code.
        code = app(args=args, prog_name="umae", standalone_mode=False)
    except UmaeError as exc:
        if _state["signal"]:  # raised while the interrupt unwound (a wrapper re-raised it as this)
            return _interrupted_line()
        if _state["debug"]:
            console.print_exception()
        _error_line(exc.message)
        return exc.exit_code
    except typer.Exit as exc:
        return 130 if _state["signal"] else exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _interrupted_line()
    except OSError as exc:  # read-only or full disk, not a folder, symlink loop, too many open files
        if _state["signal"]:
            return _interrupted_line()
        if _state["debug"]:
            console.print_exception()
        _error_line(os_error_message(exc, path_for=user_path))
        return 2
    except Exception as exc:
        if _state["signal"] and not _state["debug"]:
            # A signal landing inside C code that calls back into Python (the warnings machinery,
            # with torch warning at every step) can surface as another exception, e.g.
            # "TypeError: expected a message argument": after a signal, it is the interrupt.
            return _interrupted_line()
        if isinstance(exc, _click_exception_types()):
            return _usage_error(exc, args)
        if is_out_of_memory(exc):  # the input is too large for this machine: bad input, not a bug
            if _state["debug"]:
                console.print_exception()
            from umae_eval.errors import interrupt_hint

            hint = interrupt_hint()  # a training run says what its run folder keeps
            _error_line(out_of_memory_message(exc, _command_name(args)) + (f"; {hint}" if hint else ""))
            return 2
        if _state["debug"]:
            raise
        console.print(
            f"[bold red]internal error:[/] {escape(type(exc).__name__)}: {escape(str(exc))} "
            "(rerun with `umae --debug ...` for the traceback, and please report it)",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    if _state["signal"] is not None or code == 130:
        return _interrupted_line()
    return code if type(code) is int else 0


def _on_signal(signum: int, frame: object) -> None:
    """SIGINT and SIGTERM (a batch scheduler's stop) end a command the same way: a
    KeyboardInterrupt, so that every ``with``/``finally`` runs (staged outputs are discarded, rich
    restores the cursor, a training run keeps its last complete checkpoint)."""
    if _state["cleaning"]:
        return  # a second Ctrl-C must not cut the removal of the staged outputs short
    first = _state["signal"] is None
    if first:
        _state["signal"] = signal.Signals(signum).name
    raise KeyboardInterrupt


def _install_signal_handlers() -> dict[int, object]:
    """Route SIGINT and SIGTERM to :func:`_on_signal`; returns the handlers to restore.

    A signal ignored when umae started stays ignored: ``nohup`` and a non-interactive shell's
    ``cmd &`` ignore SIGINT on purpose. Only the main thread may set handlers (a test calling
    :func:`main` from a thread keeps Python's defaults).
    """
    previous: dict[int, object] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for sig in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(sig)
        if current is signal.SIG_IGN:
            continue
        previous[sig] = current
        signal.signal(sig, _on_signal)
    return previous


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``umae`` console script. Returns the process exit code.

    0: done. 2: bad input or an environment problem (bad option, unreadable file, unwritable or
    full disk), explained in one line. 1: an internal error (a bug: please report it).
    130: interrupted. A command that does not finish leaves no output behind (its staged
    ``--out`` folder is removed).
    """
    args = sys.argv[1:] if argv is None else argv
    _state["debug"] = "--debug" in args
    from umae_eval.provenance import record_command_line

    record_command_line(["umae", *args])  # for results.json and the report
    code = 1
    _state["signal"] = None
    from umae_eval.errors import set_interrupt_hint

    set_interrupt_hint(None)  # a hint left by an earlier command of this process
    previous = _install_signal_handlers()
    try:
        with warnings.catch_warnings():
            # library warnings (a cache that cannot be written, ...) as one line each, not
            # Python's two-line 'file:line: UserWarning: ...' with the source line
            warnings.showwarning = _show_warning
            code = _run(args)
    except KeyboardInterrupt:  # a signal between the command's end and here
        code = _interrupted_line()
    finally:
        _state["cleaning"] = True
        try:
            if code != 0:
                # a signal can land inside rich's Live.start(), after the cursor was hidden and
                # before any `with` could undo it: give the terminal its cursor back regardless
                if console.is_terminal:
                    console.show_cursor(True)
                discard_open_stages()
        finally:
            _state["cleaning"] = False
            for sig, handler in previous.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]
    return code


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    if _state["debug"]:
        console.print(f"[yellow]warning:[/] {escape(str(message))} ({category.__name__}, {filename}:{lineno})",
                      highlight=False, soft_wrap=True)
        return
    console.print(f"[yellow]warning:[/] {escape(' '.join(str(message).split()))}", highlight=False,
                  soft_wrap=True)

if __name__ == "__main__":
    sys.exit(main())
