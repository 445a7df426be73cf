"""Errors a user can fix, and how a command reports any error: one line, unless debugging.

`InputError` is the base of every "your input is wrong" error (config keys, files, dataset
preconditions). Its message is one line: what is wrong, where (file / key), what to do. The CLI
prints that line and exits 2; any other exception prints one line too and exits 1. The traceback
is shown only with `--debug` or `SEEDFLOW_DEBUG=1`.
"""

from __future__ import annotations

import os


class InputError(ValueError):
    """Bad input (config, file, dataset) that the user can fix; the message says how."""


def debug_enabled() -> bool:
    return os.environ.get("SEEDFLOW_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def root_cause(exc: BaseException) -> BaseException:
    """The error behind Ray's and Prefect's wrappers (RayTaskError keeps it as `.cause`)."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            exc = cause
            continue
        break
    return exc


def one_line(exc: BaseException) -> str:
    """`error: <message>` on one line; non-input errors also name their type."""
    exc = root_cause(exc)
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    if isinstance(exc, (InputError, FileNotFoundError)):
        return f"error: {message or type(exc).__name__}"
    return f"error: {type(exc).__name__}: {message} (run with --debug for the traceback)"


def exit_code(exc: BaseException) -> int:
    return 2 if isinstance(root_cause(exc), (InputError, FileNotFoundError)) else 1
