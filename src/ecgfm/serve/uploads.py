"""Uploaded files -> a private folder of ECG files: safe names, zip extraction with bomb limits, clear refusals.

Every oddity of an upload (a name the file system cannot hold, bytes that are not UTF-8, control characters, an empty
file, a zip that is encrypted, corrupt or inflates beyond its allowance, two files of the same name) is a
:class:`BadInput` naming the file and the problem, answered with 422; none reaches the file system as an ``OSError``.
This module imports no web framework: the explanation worker process (``ecgfm.serve.explainer``) uses it too.
"""
from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.datastructures import UploadFile

#: A zip may expand to at most this multiple of the upload limit (zip-bomb guard), with at most this many members.
MAX_UNZIP_RATIO = 20
MAX_UPLOAD_FILES = 1000
#: Longest file name (UTF-8 bytes) that Linux, macOS and Windows file systems all hold (NAME_MAX).
MAX_NAME_BYTES = 255
#: Characters of a refused name quoted back in the error (a 10-kB name is not echoed whole).
QUOTE_CHARS = 60


class BadInput(Exception):
    """An upload that cannot be used (answered with 422 and the reason)."""


def _short(name: str) -> str:
    return name if len(name) <= QUOTE_CHARS else name[:QUOTE_CHARS] + "..."


def _quote(name: str) -> str:
    return repr(_short(name))


def safe_name(name: str | None, where: str = "upload") -> str:
    """The base name of an uploaded or zipped file, checked: folders and traversal (``../``) are dropped; names that
    are empty, hidden, not UTF-8, hold control characters or exceed 255 bytes are refused with the reason."""
    base = PurePosixPath(str(name or "").replace("\\", "/")).name
    if not base or base.startswith(".") or base == "..":
        raise BadInput(f"{where}: invalid file name {_quote(str(name or ''))}")
    try:
        size = len(base.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8, decoded with surrogateescape
        raise BadInput(f"{where}: file name {_quote(base)} is not valid UTF-8") from None
    if any(ord(c) < 32 or ord(c) == 127 for c in base):
        raise BadInput(f"{where}: file name {_quote(base)} contains control characters")
    if size > MAX_NAME_BYTES:
        raise BadInput(f"{where}: file name {_quote(base)} is {size} bytes long (limit {MAX_NAME_BYTES})")
    return base


async def save_uploads(files: list[UploadFile], folder: Path) -> None:
    """Copy the uploaded files into ``folder`` (flat, checked names); empty files and duplicates are refused."""
    if not files:
        raise BadInput("no file uploaded (send multipart/form-data with one or more 'files' fields)")
    if len(files) > MAX_UPLOAD_FILES:
        raise BadInput(f"{len(files)} files uploaded (limit {MAX_UPLOAD_FILES})")
    for upload in files:
        target = folder / safe_name(upload.filename)
        if target.exists():
            raise BadInput(f"two uploaded files are named {target.name!r}")
        size = 0
        with open(target, "wb") as out:
            while chunk := await upload.read(1 << 20):
                out.write(chunk)
                size += len(chunk)
        if size == 0:
            raise BadInput(f"{target.name} is empty (0 bytes)")


def extract_zip(archive: Path, folder: Path, max_bytes: int) -> None:
    """Unpack ``archive`` flat into ``folder``: the service's checks on each member (a usable name, not empty, not
    encrypted, no two of one name), then :func:`ecgfm.io.limits.extract_zip`'s bounded, streamed inflation."""
    from ecgfm.config import read_limits
    from ecgfm.errors import ECGReadError
    from ecgfm.io.limits import ZIP_ERRORS, extract_zip as inflate

    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")
                       and not PurePosixPath(m.filename).name.startswith(".")]
            if not members:
                raise BadInput(f"{archive.name}: the zip holds no files")
            names = [_check_member(member, archive) for member in members]
        duplicates = sorted({name for name in names if names.count(name) > 1 or (folder / name).exists()})
        if duplicates:
            raise BadInput(f"{archive.name}: two files named {duplicates[0]!r}")
        limits = dataclasses.replace(read_limits(), max_unzipped_bytes=max_bytes, max_zip_members=MAX_UPLOAD_FILES)
        hidden = {m.filename for m in zf.infolist()} - {m.filename for m in members}
        for path in inflate(archive, folder, limits):
            if any(h.endswith(path.name) for h in hidden) and path.name not in names:
                path.unlink()  # resource forks and hidden files are not ECGs
    except ECGReadError as exc:
        raise BadInput(f"{archive.name}: {exc.reason}") from None
    except ZIP_ERRORS as exc:  # not a zip, a corrupt deflate stream, a truncated member
        raise BadInput(f"{archive.name}: not a valid zip file ({type(exc).__name__}: {exc})") from None
    archive.unlink()


def _check_member(member: zipfile.ZipInfo, archive: Path) -> str:
    """A member's checked base name; an empty, encrypted or oddly compressed member is refused."""
    name = safe_name(member.filename, where=archive.name)
    if member.file_size == 0:
        raise BadInput(f"{archive.name}: {name} is empty (0 bytes)")
    if member.flag_bits & 0x1:
        raise BadInput(f"{archive.name}: {name} is encrypted (password-protected zips are not supported)")
    if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        raise BadInput(f"{archive.name}: {name} uses an unsupported compression method ({member.compress_type})")
    return name


def unpack(folder: Path, max_unzipped_bytes: int) -> None:
    """Extract every ``.zip`` of the upload into ``folder`` (zips inside zips are not opened)."""
    for archive in sorted(folder.glob("*")):
        if archive.suffix.lower() == ".zip":
            extract_zip(archive, folder, max_unzipped_bytes)


def ecg_files(folder: Path) -> list[Path]:
    """The ECG records in an unpacked upload (WFDB records once, by their header)."""
    from ecgfm.io.discover import discover_inputs

    files, _ = discover_inputs([folder])
    if not files:
        names = ", ".join(sorted(_short(p.name) for p in folder.iterdir())) or "nothing"
        raise BadInput(f"no ECG file of a supported format in the upload (got {names})")
    return files


def one_record(folder: Path, hint: str = "send one per request") -> Path:
    """The single ECG record of an upload; several are refused with ``hint``."""
    files = ecg_files(folder)
    if len(files) > 1:
        names = ", ".join(p.name for p in files[:5])
        raise BadInput(f"the upload holds {len(files)} ECG records ({names}); {hint}")
    return files[0]


def relabel(result, folder: Path):
    """Report the uploaded file name as ``source``, not the server's temporary path."""
    source = result.source
    if source and str(source).startswith(str(folder)):
        source = os.path.relpath(source, folder)
    return dataclasses.replace(result, source=source)


def without_folder(text: str, folder: Path) -> str:
    """An error message with the server's temporary folder removed (a reader may quote the full path)."""
    return str(text).replace(str(folder) + os.sep, "").replace(str(folder), "upload")
