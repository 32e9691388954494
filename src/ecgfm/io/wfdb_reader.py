"""WFDB records (``.hea`` + ``.dat`` / ``.mat``) via the ``wfdb`` package: PTB-XL and PhysioNet Challenge 2020/21."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import wfdb

from ecgfm.ecg import ECG
from ecgfm.errors import ECGReadError
from ecgfm.io.registry import register_reader
from ecgfm.io.units import check_plausible_millivolts, unit_factor


def _record_base(path: Path) -> Path:
    """The record path without extension, as wfdb wants it."""
    return path.with_suffix("") if path.suffix.lower() in {".hea", ".dat", ".mat"} else path


def parse_challenge_comments(comments: list[str]) -> dict:
    """Metadata from PhysioNet Challenge 2020/21 header comments (``# Age: 74``, ``# Sex: Male``, ``# Dx: 164889003,...``).

    ``snomed`` holds the Dx SNOMED-CT codes as strings; ``scp`` their SCP-ECG equivalents where a mapping exists.
    """
    meta: dict = {}
    for line in comments:
        match = re.match(r"\s*([A-Za-z_ ]+?)\s*:\s*(.*)$", line)
        if not match:
            continue
        key, value = match.group(1).strip().lower(), match.group(2).strip()
        if key == "age":
            meta["age"] = float(value) if re.fullmatch(r"\d+(\.\d+)?", value) else None
        elif key == "sex":
            meta["sex"] = {"male": "M", "m": "M", "female": "F", "f": "F"}.get(value.lower())
        elif key == "dx":
            meta["snomed"] = [code.strip() for code in value.split(",") if code.strip()]
    if "snomed" in meta:
        from ecgfm.labels.snomed import snomed_to_scp

        meta["scp"] = sorted({scp for code in meta["snomed"] for scp in snomed_to_scp(code)})
    return meta


#: Bytes per sample of the WFDB storage formats (see the WFDB "signal" format spec). FLAC formats (508/516/524) are
#: compressed, so their size cannot be checked. wfdb itself reports a short file only as a NumPy reshape error.
BYTES_PER_SAMPLE = {"8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2, "212": 1.5, "310": 4 / 3,
                    "311": 4 / 3}


def _signal_files(record) -> dict[str, tuple[str, int, int]]:
    """Each signal file: (format, byte offset, values it must hold = sig_len x samples per frame of its signals)."""
    offsets = record.byte_offset or [None] * record.n_sig
    frames = record.samps_per_frame or [1] * record.n_sig
    files: dict[str, tuple[str, int, int]] = {}
    for i, name in enumerate(record.file_name):
        fmt, offset, count = files.get(name, (record.fmt[i], offsets[i] or 0, 0))
        files[name] = (fmt, offset, count + (frames[i] or 1) * record.sig_len)
    return files


def check_signal_files(base: Path, record) -> None:
    """Refuse signal files whose size disagrees with the header (truncated data, or a header declaring too few samples)."""
    header_path = base.with_suffix(".hea")
    for name, (fmt, offset, n_values) in _signal_files(record).items():
        data_file = base.parent / name
        if data_file.suffix.lower() == ".mat":
            _check_mat4(header_path, data_file, record, offset)
        if fmt not in BYTES_PER_SAMPLE:
            continue
        size = data_file.stat().st_size
        needed = offset + int(n_values * BYTES_PER_SAMPLE[fmt])
        channels = record.file_name.count(name)
        if size < needed:
            held = int((size - offset) / BYTES_PER_SAMPLE[fmt]) // max(channels, 1)
            raise ECGReadError(header_path, f"signal file {name} is truncated or does not match the header: the header "
                                            f"declares {record.sig_len} samples x {channels} signals in format {fmt} "
                                            f"({needed} bytes) but the file has {size} bytes (~{max(held, 0)} samples)")
        frame_bytes = int(np.ceil(channels * BYTES_PER_SAMPLE[fmt]))
        if size - needed >= max(frame_bytes, 4):  # allow the padding byte(s) of packed formats (212, 310, 311)
            held = int((size - offset) / BYTES_PER_SAMPLE[fmt]) // max(channels, 1)
            raise ECGReadError(header_path, f"header/data length mismatch: the header declares {record.sig_len} "
                                            f"samples but signal file {name} holds ~{held} ({size} bytes)")


def _check_mat4(header_path: Path, data_file: Path, record, offset: int) -> None:
    """A WFDB ``.mat`` signal file must be MATLAB v4 (as ``wfdb2mat`` and the PhysioNet Challenges write), sized as declared."""
    with open(data_file, "rb") as fh:
        head = fh.read(max(offset, 20))
    if head.startswith(b"MATLAB"):
        raise ECGReadError(header_path, f"{data_file.name} is a MATLAB v5+ file; WFDB headers address raw samples at a "
                                        "byte offset, which only MATLAB v4 files (scipy savemat format='4') have")
    if len(head) < 20:
        raise ECGReadError(header_path, f"{data_file.name} is too short to be a MATLAB v4 file")
    # MATLAB v4 matrix header: five little-endian int32 (type, rows, cols, imaginary flag, name length).
    _, rows, cols, _, _ = np.frombuffer(head[:20], dtype="<i4")
    channels = record.file_name.count(data_file.name)
    if (rows, cols) != (channels, record.sig_len) and (rows, cols) != (record.sig_len, channels):
        raise ECGReadError(header_path, f"header/data length mismatch: the header declares {channels} signals x "
                                        f"{record.sig_len} samples but {data_file.name} holds a {rows} x {cols} array")


@register_reader("wfdb", (".hea", ".dat", ".mat"), description="WFDB record (.hea with .dat or .mat signal file)")
def read_wfdb(path: Path, *, sampfrom: int = 0, sampto: int | None = None, check_units: bool = True) -> ECG:
    """Read a WFDB record; ``sampfrom``/``sampto`` select a window (in samples)."""
    base = _record_base(Path(path))
    header_path = base.with_suffix(".hea")
    if not header_path.exists():
        raise ECGReadError(header_path, "WFDB header (.hea) not found")
    try:
        record = wfdb.rdrecord(str(base), sampfrom=sampfrom, sampto=sampto)
    except Exception as exc:  # wfdb raises bare Exception/ValueError; find the real cause for a clear message
        _diagnose(base, exc)
        raise ECGReadError(header_path, f"cannot read WFDB signal data: {exc}") from exc
    if sampfrom == 0 and sampto is None:  # a window's record.sig_len is the window, not the file's length
        check_signal_files(base, record)
    signal = record.p_signal
    expected = record.sig_len  # wfdb sets it to the window's length when sampfrom/sampto are given
    if signal is None or signal.shape[0] != expected:
        got = 0 if signal is None else signal.shape[0]
        raise ECGReadError(header_path, f"signal file is truncated or does not match the header: "
                                        f"expected {expected} samples per lead, found {got}")
    try:
        factors = np.array([unit_factor(u or "mV") for u in record.units], dtype=np.float64)
    except ValueError as exc:
        raise ECGReadError(header_path, str(exc)) from None
    signal = (signal * factors).T.astype(np.float32)
    if not np.isfinite(signal).all():
        lead, sample = np.argwhere(~np.isfinite(signal))[0]
        raise ECGReadError(header_path, f"signal contains NaN or infinite samples (missing-value markers), first in "
                                        f"{record.sig_name[lead]} at sample {sampfrom + sample}")
    if check_units:
        try:
            check_plausible_millivolts(signal)
        except ValueError as exc:
            raise ECGReadError(header_path, str(exc)) from None
    meta = {"record_id": record.record_name, "source": str(header_path), "format": "wfdb",
            "comments": list(record.comments or [])}
    meta.update(parse_challenge_comments(record.comments or []))
    return ECG(signal=signal, fs=float(record.fs), leads=tuple(record.sig_name), meta=meta)


def _diagnose(base: Path, exc: Exception) -> None:
    """Raise a clear ``ECGReadError`` for a record wfdb could not read (malformed header, missing or short data)."""
    header_path = base.with_suffix(".hea")
    try:
        header = wfdb.rdheader(str(base))
    except Exception as header_exc:
        raise ECGReadError(header_path, f"malformed WFDB header: {header_exc}") from header_exc
    if not header.file_name:
        raise ECGReadError(header_path, "WFDB header declares no signals")
    for name in sorted(set(header.file_name)):
        if not (base.parent / name).exists():
            raise ECGReadError(header_path, f"signal file {name} named in the header is missing")
    if header.sig_len == 0:
        raise ECGReadError(header_path, "zero-length signal: the WFDB header declares 0 samples")
    if header.sig_len:
        check_signal_files(base, header)
