"""Expand files, folders and glob patterns into the ECG files to read, each listed once.

WFDB records are listed by their ``.hea`` header (a ``.dat``/``.mat`` with its header beside it means its record) and
may be named without extension, as wfdb users name them (``records500/00000/00009_hr``). Folder walks and ``**``
globs never follow symbolic links to folders, so a link back to a parent cannot loop.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable, NamedTuple

from ecgfm.io.registry import supported_extensions

#: File extensions that hold only WFDB *signals*; the record is read through its ``.hea`` header instead.
WFDB_SIGNAL_EXTENSIONS = (".dat", ".mat")


class Skipped(NamedTuple):
    """An argument that names no ECG file, with the reason (a ``(source, reason)`` pair)."""

    source: str
    reason: str


def discover_inputs(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Skipped]]:
    """Expand files, folders (walked recursively for supported extensions) and glob patterns into ECG files.

    Returns the files in argument order (each folder's and pattern's sorted), every file once even when reached
    twice (two arguments, a symbolic link), and the arguments matching nothing as ``(source, reason)`` pairs, so a
    batch run reports them instead of failing.
    """
    extensions = supported_extensions()
    files: list[Path] = []
    skipped: list[Skipped] = []
    seen: set[Path] = set()
    for arg in paths:
        found, reason = _expand(Path(arg), str(arg), extensions)
        if reason:
            skipped.append(Skipped(str(arg), reason))
        for path in found:
            key = _identity(path)
            if key not in seen:
                seen.add(key)
                files.append(path)
    return files, skipped


def _expand(path: Path, arg: str, extensions: set[str]) -> tuple[list[Path], str | None]:
    """The ECG files one argument names, or a reason it names none."""
    if path.is_dir():
        found = [p for p in _walk(path) if _is_ecg_file(p, extensions)]
        if not found:
            return [], f"folder has no files with a supported extension ({', '.join(sorted(extensions))})"
        return found, None
    if path.is_file():
        return [_record_header(path)], None
    if _is_wfdb_record_name(path):
        return [Path(f"{path}.hea")], None
    if glob.has_magic(arg):
        matches = [m for m in _glob(arg) if m.is_file()]
        matches = matches or [m for m in _glob(arg + ".hea") if m.is_file()]  # record names: ``records/*_hr``
        if not matches:
            return [], "no files match this pattern"
        return [_record_header(m) for m in matches], None
    return [], "file not found"


def _walk(folder: Path) -> list[Path]:
    """Every file under ``folder``, sorted; ``os.walk`` does not descend into symbolic links to folders."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        found.extend(Path(root) / name for name in names)
    return sorted(found)


def _glob(pattern: str) -> list[Path]:
    """Sorted matches of a glob pattern. ``pathlib`` (unlike ``glob.glob``) does not follow symbolic links to
    folders when expanding ``**``, so ``loop/**/*.xml`` through a link to a parent ends."""
    parts = Path(pattern).parts
    first_magic = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = Path(*parts[:first_magic]) if first_magic else Path(".")
    relative = str(Path(*parts[first_magic:]))
    try:
        return sorted(root.glob(relative))
    except (OSError, ValueError):  # an unreadable folder or an invalid pattern matches nothing
        return []


def _is_ecg_file(path: Path, extensions: set[str]) -> bool:
    """A file some reader claims, except WFDB signal files whose header sits beside them (read via the header)."""
    name = path.name.lower()
    return (any(name.endswith(ext) for ext in extensions) and path.is_file()
            and not _is_wfdb_signal_with_header(path))


def _is_wfdb_signal_with_header(path: Path) -> bool:
    """A ``.dat``/``.mat`` file whose record header sits beside it (the record is read once, via the ``.hea``)."""
    return path.suffix.lower() in WFDB_SIGNAL_EXTENSIONS and path.with_suffix(".hea").is_file()


def _record_header(path: Path) -> Path:
    """A WFDB signal file's header when it has one beside it, else the file itself."""
    return path.with_suffix(".hea") if _is_wfdb_signal_with_header(path) else path


def _is_wfdb_record_name(path: Path) -> bool:
    """A WFDB record named without extension (``00009_hr`` for ``00009_hr.hea``), as wfdb takes it."""
    return not path.exists() and Path(f"{path}.hea").is_file()


def _identity(path: Path) -> Path:
    """The file a path reaches (links resolved), so one file reached twice is listed once."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symbolic-link loop: the path itself is the identity
        return path.absolute()


__all__ = ["discover_inputs", "Skipped", "WFDB_SIGNAL_EXTENSIONS"]
