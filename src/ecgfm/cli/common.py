"""Helpers shared by CLI commands: error reporting and console output."""
from __future__ import annotations

import sys
from contextlib import contextmanager

import typer
from rich.console import Console

from ecgfm.errors import ECGError

# soft_wrap: never break a line inside a file path or reason (messages stay greppable and copy-pasteable)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


@contextmanager
def user_errors():
    """Turn ecgfm errors and bad arguments into a one-line message and exit code 2, not a traceback."""
    try:
        yield
    except (ECGError, FileNotFoundError, ValueError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(code=2) from None


def fail(message: str, code: int = 2) -> None:
    """Print an error and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=code)


def is_interactive() -> bool:
    return sys.stderr.isatty()
