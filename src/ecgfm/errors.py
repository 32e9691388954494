"""The project's error types: one for unreadable input, one for invalid values."""
from __future__ import annotations

from pathlib import Path


class ECGError(Exception):
    """Base class of every ecgfm error."""


class ECGReadError(ECGError):
    """A file could not be read as an ECG. The message always names the file and the reason."""

    def __init__(self, path: str | Path | None, reason: str):
        self.path = str(path) if path is not None else None
        self.reason = reason
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{reason}")


class ECGValueError(ECGError, ValueError):
    """An ECG (or an argument) has invalid content: non-finite samples, wrong shape, implausible units."""
