"""The user-facing error type. The CLI prints it as one line and exits with its code."""

from __future__ import annotations


class UmaeError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The message should name the offending file or option and say how to fix it.
    ``exit_code`` is 2 for bad input (the CLI convention) unless stated otherwise.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
