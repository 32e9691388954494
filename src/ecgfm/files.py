"""Writing files: atomic writes (a crash mid-write leaves the previous file, or none, never a truncated one) and
values made fit for strict JSON.

Every file ecgfm writes (weights, checkpoints, reports, predictions, caches) goes through :func:`atomic_write`.
Files get the usual permissions (``0o666`` minus the umask, as ``open()`` gives), not ``mkstemp``'s private ``0o600``.
"""
from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Write ``path`` atomically: ``write(tmp_path)`` fills a temporary file beside it, then fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file (UTF-8) atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write a binary file atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early (before hours of work) when ``path`` cannot be written: its folder must exist or be creatable and
    accept a file. Raises ``OSError`` naming the path."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OSError(f"cannot write {path}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise OSError(f"cannot write {path}: it is a folder")
    return path


def to_jsonable(value: Any) -> Any:
    """``value`` for strict JSON, recursively: numpy scalars and arrays as Python values, non-finite floats as
    ``None``, paths and any other object as text."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int)):
        return value
    return str(value)
