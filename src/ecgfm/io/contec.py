"""Contec ECG90A proprietary ``.ECG`` files (undocumented; layout as reverse-engineered by N. Rigacci, ecg-contec).

43-byte header (case name, ``YYYY-MM-DD HH:MM:SS`` timestamp, patient name, sex, age, weight), 37-byte footer and
a payload of 8 little-endian unsigned 16-bit series per sample: leads II, III, V1-V6 (the reverse engineer's
assignment; I, aVR, aVL, aVF are derived), offset 2048, 5 uV per count, 800 Hz (the rate is not stored). 0x6800
marks an invalid sample; a series that is invalid throughout (electrode not connected) is dropped and listed in
``meta["missing_leads"]``. An all-zero row ends the data. ``.ecg`` is shared with ISHNE; files are told apart by
content (ISHNE starts with ``ISHNE1.0``).
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np

from ecgfm.config import read_limits
from ecgfm.ecg import ECG
from ecgfm.errors import ECGReadError
from ecgfm.io._common import decode_text, make_ecg, with_derived_limb_leads
from ecgfm.io.limits import check_extent, check_file_size
from ecgfm.io.registry import register_reader

HEADER_LEN, FOOTER_LEN = 43, 37
SERIES = ("II", "III", "V1", "V2", "V3", "V4", "V5", "V6")
SAMPLE_RATE = 800.0
OFFSET = 2048
UV_PER_COUNT = 5.0
INVALID = 0x6800
_TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\x00")


def _sniff(path: Path, head: bytes) -> bool:
    if head.startswith(b"ISHNE") or len(head) < HEADER_LEN or not _TIMESTAMP.match(head[10:30]):
        return False
    try:
        return (path.stat().st_size - HEADER_LEN - FOOTER_LEN) % (2 * len(SERIES)) == 0
    except OSError:
        return False


@register_reader("contec", (".ecg",), sniff=_sniff, description="Contec ECG90A .ECG (reverse-engineered)")
def read_contec(path: Path, *, check_units: bool = True) -> ECG:
    """Read a Contec ECG90A recording (800 Hz, II/III/V1-V6 stored, other limb leads derived)."""
    size = check_file_size(path, read_limits().max_file_bytes, "Contec file", "ReadLimits.max_file_bytes")
    check_extent(path, SAMPLE_RATE, max(size - HEADER_LEN - FOOTER_LEN, 0) // (2 * len(SERIES)), 12)
    data = path.read_bytes()
    payload = len(data) - HEADER_LEN - FOOTER_LEN
    if payload <= 0 or payload % (2 * len(SERIES)):
        raise ECGReadError(path, f"Contec payload of {payload} bytes is not a whole number of 8-lead samples")
    raw = np.frombuffer(data[HEADER_LEN:HEADER_LEN + payload], dtype="<u2").reshape(-1, len(SERIES))
    raw = raw[:_end_of_data(raw)]
    invalid = raw == INVALID
    dead = invalid.all(axis=0)
    if (invalid & ~dead).any():
        bad = [SERIES[i] for i in np.flatnonzero((invalid & ~dead).any(axis=0))]
        raise ECGReadError(path, f"leads {', '.join(bad)} have invalid (0x6800) samples inside the recording")
    names = [name for name, off in zip(SERIES, dead) if not off]
    if not {"II", "III"} <= set(names):
        raise ECGReadError(path, "limb leads II and III are not both recorded")
    mv = (raw[:, ~dead].astype(np.float64) - OFFSET).T * (UV_PER_COUNT / 1000.0)
    lead_i = mv[0] - mv[1]  # Einthoven: I = II - III
    meta = {**_header(data[:HEADER_LEN]), "record_id": path.stem,
            "missing_leads": [name for name, off in zip(SERIES, dead) if off]}
    ecg = make_ecg(path, np.vstack([lead_i, mv]), SAMPLE_RATE, ["I", *names], meta, check_units)
    return with_derived_limb_leads(ecg)


def _end_of_data(raw: np.ndarray) -> int:
    """Rows before the first all-zero row (the device's end-of-data marker)."""
    zero_rows = np.flatnonzero(~raw.any(axis=1))
    return int(zero_rows[0]) if zero_rows.size else len(raw)


def _header(head: bytes) -> dict:
    try:
        when = dt.datetime.strptime(decode_text(head[10:30]), "%Y-%m-%d %H:%M:%S").isoformat()
    except ValueError:
        when = None
    sex, age = head[40], head[41]
    return {"case": decode_text(head[:8]), "acquisition_time": when, "sex": {0: "F", 1: "M"}.get(sex),
            "age": float(age) if age else None, "device": "Contec ECG90A"}
