"""ISHNE Holter ``.ecg`` files (ISHNE 1.0 standard output format), reading only the requested window.

Layout: magic ``ISHNE1.0``, CRC-CCITT of the header, a 512-byte fixed header (little-endian), a variable-length
block, then int16 samples interleaved by lead. Per-lead amplitude resolution is in nanovolts per count; lead codes
5-16 are I, II, III, aVR, aVL, aVF, V1-V6. Holter recordings last hours, so ``start=``/``duration=`` (seconds)
read just a window from disk.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Mapping

import numpy as np

from ecgfm.ecg import ECG
from ecgfm.errors import ECGReadError
from ecgfm.io._common import (decode_text, iso_datetime, lead_name, make_ecg, safe_date, safe_time, stack_leads,
                              window)
from ecgfm.io.limits import check_extent, check_rate
from ecgfm.io.registry import register_reader
from ecgfm.io.scp import crc_ccitt

MAGIC = b"ISHNE1.0"
HEADER_END = 522  # magic (8) + CRC (2) + fixed header (512)
#: ISHNE lead specification codes for named leads (0 unknown, 1 generic bipolar and 17-19 EASI are not).
ISHNE_LEADS = {2: "X", 3: "Y", 4: "Z", 5: "I", 6: "II", 7: "III", 8: "aVR", 9: "aVL", 10: "aVF", 11: "V1",
               12: "V2", 13: "V3", 14: "V4", 15: "V5", 16: "V6"}
_FIXED = struct.Struct("<iiiih40s40s20shh3h3h3h3hh12h12h12hh40sh")


def _sniff(path: Path, head: bytes) -> bool:
    return head.startswith(MAGIC)


@register_reader("ishne", (".ecg",), sniff=_sniff, description="ISHNE Holter ECG (.ecg, ISHNE 1.0)")
def read_ishne(path: Path, *, start: float = 0.0, duration: float | None = None, lead_map: Mapping | None = None,
               check_crc: bool = True, check_units: bool = True) -> ECG:
    """Read a window of an ISHNE Holter file (``lead_map`` names channels with generic lead codes, 1-based)."""
    with open(path, "rb") as fh:
        head = fh.read(HEADER_END)
        header = _header(head, path)
        if not 0 <= header["var_length"] <= os.fstat(fh.fileno()).st_size - HEADER_END:
            raise ECGReadError(path, f"implausible ISHNE header: a variable block of {header['var_length']} bytes "
                                     "does not fit in the file")
        variable = fh.read(header["var_length"])
        if check_crc and crc_ccitt(head[10:] + variable) != struct.unpack_from("<H", head, 8)[0]:
            raise ECGReadError(path, "ISHNE header fails its CRC check (corrupted file)")
        names = [_lead(code, i + 1, path, lead_map) for i, code in enumerate(header["codes"])]
        fs = check_rate(path, header["fs"])
        first, last = window(fs, header["n_samples"], start, duration, path)
        check_extent(path, fs, last - first, len(names), "start=/duration= in seconds")
        counts = _samples(fh, header, first, last, path)
    rows = [counts[i] * (header["resolution_nv"][i] * 1e-6) for i in range(len(names))]
    meta = {"record_id": path.stem, "patient_id": header["id"] or None, "sex": {1: "M", 2: "F"}.get(header["sex"]),
            "acquisition_time": header["start"], "device": header["recorder"] or None,
            "window_start_s": first / header["fs"], "recording_duration_s": header["n_samples"] / header["fs"]}
    return make_ecg(path, stack_leads(path, names, rows), header["fs"], names, meta, check_units)


def _header(head: bytes, path: Path) -> dict:
    if not head.startswith(MAGIC):
        raise ECGReadError(path, f"not an ISHNE file: starts with {head[:8]!r}, expected {MAGIC!r}")
    if len(head) < HEADER_END:
        raise ECGReadError(path, f"ISHNE header truncated ({len(head)} of {HEADER_END} bytes)")
    fields = _FIXED.unpack_from(head, 10)
    var_length, n_samples, _, ecg_offset, _version = fields[:5]
    # 5-7 names/id, 8 sex, 9 race, 10-12 birth date, 13-15 record date, 16-18 file date, 19-21 start time
    record_date, start_time, n_leads = fields[13:16], fields[19:22], fields[22]
    fs = fields[-1]
    if not 0 < n_leads <= 12 or fs <= 0 or n_samples <= 0 or ecg_offset < HEADER_END:
        raise ECGReadError(path, f"implausible ISHNE header: {n_leads} leads, {fs} Hz, {n_samples} samples, "
                                 f"data offset {ecg_offset}")
    day, month, year = record_date
    return {
        "var_length": var_length, "n_samples": n_samples, "ecg_offset": ecg_offset, "fs": float(fs),
        "id": decode_text(fields[7]), "sex": fields[8], "recorder": decode_text(fields[-2]),
        "codes": list(fields[23:23 + n_leads]), "resolution_nv": list(fields[47:47 + n_leads]),
        "start": iso_datetime(safe_date(year, month, day), safe_time(*start_time)),
    }


def _lead(code: int, channel: int, path: Path, lead_map: Mapping | None) -> str:
    if lead_map and channel in lead_map:
        return lead_name(lead_map[channel], path)
    if code not in ISHNE_LEADS:
        raise ECGReadError(path, f"channel {channel} has ISHNE lead code {code}, which names no standard lead; "
                                 f"pass lead_map={{{channel}: 'II'}} (1-based channel -> lead) to read it")
    return ISHNE_LEADS[code]


def _samples(fh, header: dict, first: int, last: int, path: Path) -> np.ndarray:
    """int16 counts (leads, samples) of the window, read straight from its file offset."""
    n_leads = len(header["codes"])
    fh.seek(header["ecg_offset"] + 2 * n_leads * first)
    wanted = (last - first) * n_leads
    counts = np.fromfile(fh, dtype="<i2", count=wanted)
    if counts.size < wanted:
        raise ECGReadError(path, f"ISHNE data truncated: header declares {header['n_samples']} samples per lead, "
                                 f"file ends at sample {first + counts.size // n_leads}")
    return counts.reshape(-1, n_leads).T.astype(np.float64)
