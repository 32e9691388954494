"""Reader registry: ``ecgfm.read(path)`` picks a reader by file extension (and content sniffing when ambiguous).

New formats register themselves with :func:`register_reader`; callers never change.
"""
from __future__ import annotations

import os
import threading
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from ecgfm.ecg import ECG
from ecgfm.errors import ECGError, ECGReadError


class ReaderFunc(Protocol):
    def __call__(self, path: Path, **kwargs) -> ECG: ...


@dataclass(frozen=True)
class Reader:
    """A registered reader: its name, the extensions it claims, and an optional content sniffer."""

    name: str
    extensions: tuple[str, ...]
    func: ReaderFunc
    #: ``sniff(path, head_bytes) -> bool``; decides among readers sharing an extension (e.g. the many ``.xml`` dialects).
    sniff: Callable[[Path, bytes], bool] | None = None
    description: str = ""


_READERS: dict[str, Reader] = {}
#: Exceptions a reader's parsing raises on malformed bytes; ``read`` turns them into ``ECGReadError`` naming the file.
#: Anything else (a ``MemoryError`` above all: the limits must prevent it) is a bug and stays visible.
DATA_ERRORS = (OSError, ValueError, KeyError, IndexError, TypeError, EOFError, ArithmeticError, struct.error,
               zlib.error, zipfile.BadZipFile)
_SNIFF_BYTES = 4096


def register_reader(name: str, extensions: tuple[str, ...] | list[str], *,
                    sniff: Callable[[Path, bytes], bool] | None = None, description: str = ""):
    """Decorator registering ``func(path, **kwargs) -> ECG`` as the reader ``name`` for ``extensions``."""

    def decorator(func: ReaderFunc) -> ReaderFunc:
        exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
        _READERS[name] = Reader(name, exts, func, sniff, description or (func.__doc__ or "").strip().split("\n")[0])
        return func

    return decorator


def available_readers() -> dict[str, Reader]:
    """All registered readers by name."""
    _load_builtin_readers()
    return dict(_READERS)


def supported_extensions() -> set[str]:
    """Every file extension some reader claims (lower-case, with the dot)."""
    return {ext for reader in available_readers().values() for ext in reader.extensions}


def _extension_candidates(path: Path) -> list[str]:
    """Compound extensions first (``.ecg.edf``), then the last one."""
    suffixes = [s.lower() for s in path.suffixes]
    return ["".join(suffixes[i:]) for i in range(len(suffixes))]


def find_reader(path: str | os.PathLike, format: str | None = None) -> Reader:
    """The reader for ``path``: by explicit ``format`` name, else by extension, sniffing content among candidates."""
    readers = available_readers()
    path = Path(path)
    if format is not None:
        if format not in readers:
            raise ECGReadError(path, f"unknown format {format!r}; known formats: {', '.join(sorted(readers))}")
        return readers[format]
    candidates: list[Reader] = []
    for ext in _extension_candidates(path):
        candidates = [r for r in readers.values() if ext in r.extensions]
        if candidates:
            break
    if not candidates and "wfdb" in readers and not path.is_file() and Path(f"{path}.hea").is_file():
        return readers["wfdb"]  # a WFDB record name without extension, as wfdb.rdsamp takes it
    if not candidates:
        known = ", ".join(sorted(supported_extensions()))
        raise ECGReadError(path, f"unknown file type {path.suffix or '(no extension)'!r}; supported: {known}")
    if len(candidates) == 1:
        return candidates[0]
    head = _read_head(path)
    for reader in candidates:
        if reader.sniff is not None and reader.sniff(path, head):
            return reader
    fallback = [r for r in candidates if r.sniff is None]
    if fallback:
        return fallback[0]
    names = ", ".join(r.name for r in candidates)
    raise ECGReadError(path, f"file content matches none of the readers for {path.suffix!r} ({names})")


def _read_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(_SNIFF_BYTES)
    except FileNotFoundError:
        raise ECGReadError(path, "file not found") from None
    except OSError as exc:
        raise ECGReadError(path, f"cannot open file: {exc.strerror or exc}") from None


def read(path: str | os.PathLike, format: str | None = None, **kwargs) -> ECG:
    """Read an ECG file of any supported format into the canonical :class:`~ecgfm.ECG`.

    Args:
        path: the file (for WFDB, the ``.hea`` file or the record path without extension).
        format: force a reader by name (see :func:`available_readers`) instead of guessing from the extension.
        **kwargs: reader-specific options (e.g. ``fs=`` and ``leads=`` for headerless NumPy/CSV files).

    Raises:
        ECGReadError: naming the file and the reason, for anything unreadable.
    """
    path = Path(path)
    reader = find_reader(path, format)
    wfdb_header = reader.name == "wfdb" and (path.with_suffix(".hea").exists() or Path(f"{path}.hea").exists())
    if not path.exists() and not wfdb_header:
        raise ECGReadError(path, "file not found")
    try:
        ecg = reader.func(path, **kwargs)
    except ECGReadError:
        raise
    except ECGError as exc:  # e.g. ECGValueError from ECG validation: attach the file name
        raise ECGReadError(path, str(exc)) from exc
    except DATA_ERRORS as exc:
        raise ECGReadError(path, f"{reader.name} reader failed: {type(exc).__name__}: {exc}") from exc
    if "source" not in ecg.meta or "format" not in ecg.meta:
        ecg = ecg.replace(**{k: v for k, v in (("source", str(path)), ("format", reader.name)) if k not in ecg.meta})
    return ecg


_BUILTINS_LOADED = False
_BUILTINS_LOCK = threading.RLock()  # re-entrant: a reader module may call back into the registry while it loads


def _load_builtin_readers() -> None:
    """Import the modules whose import registers the built-in readers (lazily, to keep ``import ecgfm`` fast).

    Thread-safe: the flag is set only once every module is imported, so a concurrent first caller (two requests to a
    fresh server, two loader threads) waits instead of seeing a half-filled registry ("unknown file type .hea").
    """
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    import importlib

    from ecgfm.io import BUILTIN_READER_MODULES

    with _BUILTINS_LOCK:
        if _BUILTINS_LOADED:
            return
        for module in BUILTIN_READER_MODULES:
            importlib.import_module(module)
        _BUILTINS_LOADED = True
