"""Bounded work per input: the checks readers run on a file's *declarations*, before decoding anything.

A file of a few kilobytes can declare a 0.001 Hz rate, a (12, 10^8) array or a member that inflates to gigabytes;
each check here refuses such a file with an :class:`ECGReadError` naming the file and the limit, so no reader
allocates more than :class:`ecgfm.config.ReadLimits` allows. The limits are set by ``$ECGFM_READ_LIMITS`` or
:func:`ecgfm.config.set_read_limits` (see docs/security.md).
"""
from __future__ import annotations

import math
import os
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from ecgfm.config import ReadLimits, read_limits
from ecgfm.errors import ECGReadError

#: Largest ``.npy`` header accepted (NumPy's own default bound for untrusted headers).
MAX_NPY_HEADER_BYTES = 10_000
#: Most bytes a file-system name may have (ext4, APFS, NTFS): longer zip member names are refused, not truncated.
MAX_NAME_BYTES = 255
_CHUNK = 1 << 20
#: What ``zipfile`` raises on a corrupt archive: bad structure, a corrupt deflate stream (zlib.error), an encrypted or
#: unsupported member (RuntimeError, NotImplementedError), a CRC mismatch (BadZipFile).
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, EOFError, OSError, ValueError, struct.error,
              zlib.error)


def check_rate(path: Path, fs: Any, what: str = "sampling rate") -> float:
    """The declared sampling rate as a float, refusing a missing, non-finite or implausible one (Hz)."""
    limits = read_limits()
    try:
        rate = float(fs)
    except (TypeError, ValueError):
        raise ECGReadError(path, f"{what} must be a number, got {fs!r}") from None
    if not math.isfinite(rate) or rate <= 0:
        raise ECGReadError(path, f"{what} must be a positive number, got {fs!r}")
    if not limits.min_fs_hz <= rate <= limits.max_fs_hz:
        raise ECGReadError(path, f"{what} {rate:g} Hz is outside the plausible ECG range {limits.min_fs_hz:g}-"
                                 f"{limits.max_fs_hz:g} Hz (ReadLimits.min_fs_hz/max_fs_hz); the header is probably "
                                 "wrong")
    return rate


def check_extent(path: Path, fs: float, n_samples: int, n_leads: int, window_hint: str = "") -> None:
    """Refuse reading more samples than the limits allow (duration and leads x samples), before decoding them."""
    limits = read_limits()
    hint = f"; read a window instead ({window_hint})" if window_hint else ""
    if n_samples < 0 or n_leads < 0:
        raise ECGReadError(path, f"negative size declared ({n_leads} leads, {n_samples} samples)")
    if fs > 0 and n_samples / fs > limits.max_duration_s:
        raise ECGReadError(path, f"{n_samples} samples at {fs:g} Hz last {n_samples / fs:.0f} s, over the "
                                 f"{limits.max_duration_s:g} s limit (ReadLimits.max_duration_s){hint}")
    if n_samples * n_leads > limits.max_values:
        raise ECGReadError(path, f"{n_leads} leads x {n_samples} samples = {n_samples * n_leads} values, over the "
                                 f"limit of {limits.max_values} (ReadLimits.max_values){hint}")


def check_file_size(path: Path, max_bytes: int, what: str, limit_name: str) -> int:
    """The file's size, refusing one larger than ``max_bytes`` (the limit ``limit_name``) before it is read."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ECGReadError(path, "file not found") from None
    except OSError as exc:
        raise ECGReadError(path, f"cannot open file: {exc.strerror or exc}") from None
    if size > max_bytes:
        raise ECGReadError(path, f"{what} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB limit "
                                 f"({limit_name}); refusing to read it")
    return size


# --- NumPy files: headers checked before any data is read ----------------------------------------------------------
def read_npy(stream: IO[bytes], path: Path, what: str, max_values: int | None = None,
             file_size: int | None = None) -> np.ndarray:
    """An array from a ``.npy`` stream, its header checked first: no pickles, at most ``max_values`` values and
    (when the ``file_size`` is known) a data size the file can hold. Reads exactly the declared bytes, no more."""
    limit = read_limits().max_values if max_values is None else max_values
    shape, fortran, dtype = _npy_header(stream, path, what)
    count = math.prod(shape)
    if count > limit:
        raise ECGReadError(path, f"{what}: the array declares shape {shape} = {count} values, over the limit of "
                                 f"{limit} (ReadLimits.max_values); refusing to load it")
    nbytes = count * dtype.itemsize
    if nbytes > limit * 8:  # a wide dtype (long strings, sub-arrays) makes few values many bytes
        raise ECGReadError(path, f"{what}: shape {shape} of {dtype} declares {nbytes} bytes, over the limit of "
                                 f"{limit * 8} (8 bytes x ReadLimits.max_values); refusing to load it")
    held = nbytes if file_size is None else file_size - stream.tell()
    raw = stream.read(nbytes) if held >= nbytes else b""
    if len(raw) < nbytes:
        raise ECGReadError(path, f"{what} is truncated: shape {shape} of {dtype} needs {nbytes} bytes, the file "
                                 f"holds {max(held, len(raw))}")
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C")


def _npy_header(stream: IO[bytes], path: Path, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from a ``.npy`` header; object dtypes (pickles) are refused, never loaded."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream, max_header_size=MAX_NPY_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(stream, max_header_size=MAX_NPY_HEADER_BYTES)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, EOFError, OSError, SyntaxError, TypeError, tokenize.TokenError, RecursionError) as exc:
        # NumPy parses the header dict with ast/tokenize: a mangled header raises any of these
        raise ECGReadError(path, f"{what}: not a readable NumPy file ({type(exc).__name__}: {exc})") from None
    if dtype.hasobject:
        raise ECGReadError(path, f"{what} holds Python objects (a pickle); ecgfm never loads pickles, which can run "
                                 "code: save the samples as a numeric array")
    return tuple(int(n) for n in shape), bool(fortran), dtype


def load_npy(path: Path) -> np.ndarray:
    """A ``.npy`` file's array, bounded by the limits before any sample is read."""
    try:
        with open(path, "rb") as fh:
            return read_npy(fh, path, "NumPy file", file_size=os.fstat(fh.fileno()).st_size)
    except OSError as exc:
        raise ECGReadError(path, f"cannot open file: {exc.strerror or exc}") from None


def npz_members(path: Path, wanted: dict[str, int]) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` archive: the members named in ``wanted`` (name -> most values allowed), each header and
    declared size checked before inflating, inflation capped as it streams. Other members are never inflated."""
    limits = read_limits()
    try:
        with zipfile.ZipFile(path) as archive:
            infos = {info.filename[:-4]: info for info in archive.infolist() if info.filename.endswith(".npy")}
            out = {}
            for name, max_values in wanted.items():
                if name not in infos:
                    continue
                info = infos[name]
                if info.file_size > limits.max_unzipped_bytes:
                    raise ECGReadError(path, f"entry {name!r} inflates to {info.file_size} bytes, over the "
                                             f"{limits.max_unzipped_bytes} byte limit (ReadLimits.max_unzipped_bytes)")
                with archive.open(info) as member:
                    out[name] = read_npy(member, path, f"entry {name!r}", max_values=max_values)
            return out
    except ZIP_ERRORS as exc:
        raise ECGReadError(path, f"not a readable NumPy archive (.npz): {type(exc).__name__}: {exc}") from None


def npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of every array in an ``.npz`` archive, from the headers alone (a few hundred bytes each)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if len(archive.infolist()) > read_limits().max_zip_members:
                raise ECGReadError(path, f"archive holds {len(archive.infolist())} entries, over the limit of "
                                         f"{read_limits().max_zip_members} (ReadLimits.max_zip_members)")
            headers = {}
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
                    with archive.open(info) as member:
                        shape, _, dtype = _npy_header(member, path, f"entry {info.filename[:-4]!r}")
                    headers[info.filename[:-4]] = (shape, dtype)
            return headers
    except ZIP_ERRORS as exc:
        raise ECGReadError(path, f"not a readable NumPy archive (.npz): {type(exc).__name__}: {exc}") from None


# --- zip archives (uploads): inflation measured while it streams ----------------------------------------------------
def extract_zip(archive: str | os.PathLike, folder: str | os.PathLike,
                limits: ReadLimits | None = None) -> list[Path]:
    """Unpack ``archive`` flat into ``folder`` (member folders dropped), refusing zip bombs and unsafe names.

    The declared sizes are checked first, then the bytes actually inflated are counted chunk by chunk, so a member
    whose header understates its size is stopped at the limit, never inflated whole. Returns the files written.
    """
    archive, folder = Path(archive), Path(folder)
    limits = limits or read_limits()
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [info for info in zf.infolist() if not info.is_dir()]
            _check_zip_directory(archive, members, limits)
            budget = limits.max_unzipped_bytes
            for info in members:
                target = folder / _member_name(archive, info.filename)
                if target.exists():
                    raise ECGReadError(archive, f"{target.name!r} is already in {folder} (two members with one name?)")
                written.append(target)
                budget = _inflate(zf, info, target, budget, archive, limits)
    except (ECGReadError, *ZIP_ERRORS) as exc:
        for path in written:
            path.unlink(missing_ok=True)
        if isinstance(exc, ECGReadError):
            raise
        raise ECGReadError(archive, f"cannot unpack the zip file: {type(exc).__name__}: {exc}") from None
    return written


def _check_zip_directory(archive: Path, members: list[zipfile.ZipInfo], limits: ReadLimits) -> None:
    if len(members) > limits.max_zip_members:
        raise ECGReadError(archive, f"zip holds {len(members)} files, over the limit of {limits.max_zip_members} "
                                    "(ReadLimits.max_zip_members)")
    declared = sum(info.file_size for info in members)
    if declared > limits.max_unzipped_bytes:
        raise ECGReadError(archive, f"zip declares {declared} bytes unpacked, over the {limits.max_unzipped_bytes} "
                                    "byte limit (ReadLimits.max_unzipped_bytes)")


def _member_name(archive: Path, name: str) -> str:
    """The member's base name; empty, dot-only or over-long names are refused (no traversal, no ``OSError``)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if base in ("", ".", "..") or "\x00" in base:
        raise ECGReadError(archive, f"zip member {name!r} has no usable file name")
    if len(base.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise ECGReadError(archive, f"zip member name is {len(base.encode('utf-8', 'surrogateescape'))} bytes long, "
                                    f"over the {MAX_NAME_BYTES}-byte file-name limit: {base[:40]!r}...")
    return base


def _inflate(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int, archive: Path,
             limits: ReadLimits) -> int:
    """Stream one member to ``target``; returns the budget left, refusing as soon as it is exceeded."""
    with zf.open(info) as source, open(target, "wb") as out:
        while chunk := source.read(min(_CHUNK, budget + 1)):
            budget -= len(chunk)
            if budget < 0:
                raise ECGReadError(archive, f"zip inflates beyond {limits.max_unzipped_bytes} bytes (member "
                                            f"{info.filename!r}; ReadLimits.max_unzipped_bytes): refusing a zip bomb")
            out.write(chunk)
    return budget
