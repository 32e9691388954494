"""SCP-ECG (EN 1064 / ISO 11073-91064) records: sections 0/1/2/3/6/8, default Huffman table, difference encoding.

Written from the published standard (no code copied). The record starts with a CRC-CCITT (initial value 0xFFFF)
over everything after it and a 32-bit record size; each section has a 16-byte header with its own CRC. All
multi-byte integers are little-endian. Rhythm data (section 6) is, per lead, a byte stream of either raw int16 or
Huffman codes (section 2; table 19999 = the standard's default table) of plain, first- or second-difference values;
amplitudes are in nanovolts per unit (AVM) and the sample interval is in microseconds, so 1667 us gives 599.88 Hz.

Not supported (refused with a specific message): custom Huffman tables, reference-beat subtraction and bimodal
compression (lossy "high compression" mode), and non-conformant files such as Healforce handheld exports.
"""
from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgfm.config import read_limits
from ecgfm.ecg import ECG
from ecgfm.errors import ECGReadError
from ecgfm.io._common import (clean_statements, decode_text, iso_datetime, make_ecg, safe_date, safe_time,
                              stack_leads, with_derived_limb_leads)
from ecgfm.io.limits import check_extent, check_file_size, check_rate
from ecgfm.io.registry import register_reader

#: SCP-ECG lead identification codes (EN 1064 section 3) for the leads ecgfm knows by name.
SCP_LEAD_IDS: dict[int, str] = {
    1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6", 9: "V7", 11: "V3R", 12: "V4R",
    13: "V5R", 16: "X", 17: "Y", 18: "Z", 61: "III", 62: "aVR", 63: "aVL", 64: "aVF", 66: "V8", 67: "V9",
}
#: Code 65 is -aVR (the Cabrera display lead): its samples are negated to give aVR.
SCP_NEGATED_AVR = 65
DEFAULT_HUFFMAN_TABLE = 19999
SECTION_HEADER = 16
_SEX = {1: "M", 2: "F"}
_AGE_UNIT_YEARS = 1


def crc_ccitt(data: bytes) -> int:
    """CRC-CCITT (polynomial 0x1021, initial 0xFFFF) as EN 1064 specifies; ``binascii.crc_hqx`` computes it."""
    return binascii.crc_hqx(data, 0xFFFF)


@dataclass(frozen=True)
class LeadDef:
    """One lead of section 3: SCP lead code and its 1-based first/last sample numbers."""

    code: int
    first: int
    last: int

    @property
    def n_samples(self) -> int:
        return self.last - self.first + 1


@register_reader("scp", (".scp",), description="SCP-ECG (EN 1064), default Huffman and difference encoding")
def read_scp(path: Path, *, check_crc: bool = True, check_units: bool = True) -> ECG:
    """Read an SCP-ECG record (rhythm data of section 6); CRCs are verified unless ``check_crc=False``."""
    check_file_size(path, read_limits().max_file_bytes, "SCP-ECG file", "ReadLimits.max_file_bytes")
    data = path.read_bytes()
    sections = parse_sections(data, path, check_crc)
    for required in (3, 6):
        if required not in sections:
            raise ECGReadError(path, f"SCP-ECG record has no section {required}")
    leads, flags = _lead_definitions(sections[3], path)
    if flags & 0x01:
        raise ECGReadError(path, "rhythm data uses reference-beat subtraction (section 3 flag), not supported")
    huffman = _huffman_mode(sections.get(2), path)
    fs, names, rows, notes = _rhythm(sections[6], leads, huffman, path)
    signal = stack_leads(path, names, rows)
    meta = {**_patient_data(sections.get(1, b"")), "statements": _statements(sections.get(8, b"")),
            "record_id": path.stem, **notes}
    return with_derived_limb_leads(make_ecg(path, signal, fs, names, meta, check_units))


def parse_sections(data: bytes, path: Path, check_crc: bool = True) -> dict[int, bytes]:
    """Section payloads (after their 16-byte headers) by section id, from the section-0 pointer table."""
    if len(data) < 6 + SECTION_HEADER:
        raise ECGReadError(path, f"too short for an SCP-ECG record ({len(data)} bytes)")
    stored_crc, size = struct.unpack_from("<HI", data, 0)
    if check_crc and (size != len(data) or crc_ccitt(data[2:size]) != stored_crc):
        raise ECGReadError(path, _nonconformance(data, stored_crc, size))
    sec0_id, sec0_len = struct.unpack_from("<HI", data, 6 + 2)
    if sec0_id != 0 or sec0_len < SECTION_HEADER or 6 + sec0_len > len(data):
        raise ECGReadError(path, "section 0 (pointer table) missing or malformed")
    sections = {}
    for offset in range(6 + SECTION_HEADER, 6 + sec0_len - 9, 10):
        section_id, length, index = struct.unpack_from("<HII", data, offset)
        if length == 0 or section_id == 0:
            continue
        start = index - 1  # pointers are 1-based byte positions in the record
        block = data[start:start + length]
        if start < 0 or length < SECTION_HEADER or len(block) != length:
            raise ECGReadError(path, f"section {section_id} points outside the file (index {index}, length {length})")
        if check_crc and crc_ccitt(block[2:]) != struct.unpack_from("<H", block)[0]:
            raise ECGReadError(path, f"section {section_id} fails its CRC check (corrupted record)")
        sections[section_id] = block[SECTION_HEADER:]
    return sections


def _nonconformance(data: bytes, stored_crc: int, size: int) -> str:
    """Explain a record-level CRC/size failure, naming the Healforce layout when it matches."""
    detail = (f"record CRC 0x{stored_crc:04x} vs computed 0x{crc_ccitt(data[2:]):04x}, size field {size} "
              f"for a {len(data)}-byte file")
    if data[6 + 10:6 + 16] != b"SCPECG" and size != len(data):
        return ("not an EN 1064-conformant SCP-ECG file (" + detail + ", no 'SCPECG' tag in section 0): this is the "
                "layout of Healforce handheld exports (16-bit size field, non-CCITT CRC, interleaved 12-bit packed "
                "samples), which ecgfm does not read; export the recording in another format")
    return f"SCP-ECG record fails its integrity check ({detail}): the file is corrupted or truncated"


def _lead_definitions(section: bytes, path: Path) -> tuple[list[LeadDef], int]:
    if len(section) < 2:
        raise ECGReadError(path, "section 3 (lead definition) is empty")
    count, flags = section[0], section[1]
    if count == 0 or len(section) < 2 + 9 * count:
        raise ECGReadError(path, f"section 3 declares {count} leads but holds {(len(section) - 2) // 9}")
    leads = [LeadDef(code, first, last) for first, last, code in
             (struct.unpack_from("<IIB", section, 2 + 9 * i) for i in range(count))]
    return leads, flags


def _huffman_mode(section: bytes | None, path: Path) -> bool:
    """``True`` when section 2 selects the default Huffman table, ``False`` when there is no section 2."""
    if section is None or len(section) < 2:
        return False
    tables = struct.unpack_from("<H", section)[0]
    if tables != DEFAULT_HUFFMAN_TABLE:
        raise ECGReadError(path, f"custom Huffman tables ({tables} tables in section 2) are not supported; only the "
                                 "standard's default table (19999)")
    return True


def _rhythm(section: bytes, leads: list[LeadDef], huffman: bool, path: Path
            ) -> tuple[float, list[str], list[np.ndarray], dict]:
    """Decode every lead of section 6 into mV."""
    if len(section) < 6 + 2 * len(leads):
        raise ECGReadError(path, "section 6 (rhythm data) is truncated")
    avm_nv, interval_us, differences, bimodal = struct.unpack_from("<HHBB", section)
    if interval_us:
        fs = check_rate(path, 1e6 / interval_us, f"sampling rate (sample interval {interval_us} us)")
        check_extent(path, fs, max(lead.n_samples for lead in leads), len(leads))
    if bimodal:
        raise ECGReadError(path, "rhythm data uses bimodal (lossy) compression, not supported")
    if interval_us == 0 or avm_nv == 0:
        raise ECGReadError(path, f"section 6 declares sample interval {interval_us} us and AVM {avm_nv} nV")
    if differences not in (0, 1, 2):
        raise ECGReadError(path, f"unknown difference encoding {differences} in section 6")
    sizes = struct.unpack_from(f"<{len(leads)}H", section, 6)
    offset, names, rows, notes = 6 + 2 * len(leads), [], [], {}
    for lead, size in zip(leads, sizes):
        stream = section[offset:offset + size]
        offset += size
        if len(stream) != size:
            raise ECGReadError(path, f"lead code {lead.code}: {size} bytes declared, {len(stream)} present")
        values = _lead_values(stream, lead, huffman, path, notes)
        samples = undo_differences(values, differences) * (avm_nv * 1e-6)
        names.append(_lead_name(lead.code, path))
        rows.append(-samples if lead.code == SCP_NEGATED_AVR else samples)
    return 1e6 / interval_us, names, rows, notes


def _lead_values(stream: bytes, lead: LeadDef, huffman: bool, path: Path, notes: dict) -> np.ndarray:
    if not 0 < lead.n_samples <= 8 * len(stream):  # every coded sample takes at least one bit
        raise ECGReadError(path, f"lead code {lead.code}: section 3 declares samples {lead.first}..{lead.last}, "
                                 f"impossible for {len(stream)} bytes of data")
    if huffman:
        try:
            return huffman_decode_default(stream, lead.n_samples)
        except ValueError as exc:
            raise ECGReadError(path, f"lead code {lead.code}: {exc}") from None
    stored = len(stream) // 2
    if stored == lead.n_samples - 1:
        # Some writers declare samples 0..N (N+1, "0-based") but store N: use what is stored and say so.
        notes["declared_extra_sample_ignored"] = True
    elif stored != lead.n_samples:
        raise ECGReadError(path, f"lead code {lead.code}: {stored} samples stored, {lead.n_samples} declared")
    return np.frombuffer(stream[:2 * stored], dtype="<i2").astype(np.int64)


def _lead_name(code: int, path: Path) -> str:
    if code == SCP_NEGATED_AVR:
        return "aVR"
    if code not in SCP_LEAD_IDS:
        raise ECGReadError(path, f"SCP lead code {code} is not a lead ecgfm knows")
    return SCP_LEAD_IDS[code]


def huffman_decode_default(stream: bytes, n_samples: int) -> np.ndarray:
    """Decode ``n_samples`` values coded with the EN 1064 default Huffman table.

    The default table codes 0 as ``0``; +/-k (k = 1..8) as k ones, a zero and a sign bit (0 = +); ``1111111110``
    escapes an original 8-bit two's-complement value and ``1111111111`` a 16-bit one. Bits are read MSB first.
    """
    out = np.empty(n_samples, dtype=np.int64)
    acc, n_bits, pos, size = 0, 0, 0, len(stream)
    for i in range(n_samples):
        while n_bits < 26:  # the longest code: 10-bit prefix + 16-bit value
            acc = (acc << 8) | (stream[pos] if pos < size else 0)
            pos += 1
            n_bits += 8
        window = acc >> (n_bits - 10)
        ones = 10 - (~window & 0x3FF).bit_length()  # leading ones of the 10-bit window
        if ones == 0:
            value, used = 0, 1
        elif ones <= 8:
            value = ones if not (window >> (8 - ones)) & 1 else -ones
            used = ones + 2
        else:
            width = 8 if ones == 9 else 16
            raw = (acc >> (n_bits - 10 - width)) & ((1 << width) - 1)
            value, used = raw - (1 << width) if raw >> (width - 1) else raw, 10 + width
        out[i] = value
        n_bits -= used
        acc &= (1 << n_bits) - 1
    if pos * 8 - n_bits > size * 8:
        raise ValueError(f"Huffman data ({size} bytes) ends before the {n_samples} declared samples")
    return out


def undo_differences(values: np.ndarray, order: int) -> np.ndarray:
    """Rebuild samples from first (``x[n] = d[n] + x[n-1]``) or second differences (``+ 2x[n-1] - x[n-2]``)."""
    values = values.astype(np.int64)
    if order == 0 or values.size < 2:
        return values
    if order == 1:
        return np.cumsum(values)
    slope = np.cumsum(np.concatenate(([values[1] - values[0]], values[2:])))
    return np.concatenate(([values[0]], values[0] + np.cumsum(slope)))


def _tags(section: bytes) -> dict[int, bytes]:
    """Section 1 tag/length/value fields (first occurrence of each tag)."""
    tags, offset = {}, 0
    while offset + 3 <= len(section):
        tag, length = struct.unpack_from("<BH", section, offset)
        if tag == 255:
            break
        tags.setdefault(tag, section[offset + 3:offset + 3 + length])
        offset += 3 + length
    return tags


def _patient_data(section: bytes) -> dict:
    """Patient id, age, sex, acquisition date/time and device from section 1 (names are deliberately not kept)."""
    tags = _tags(section)
    meta = {"patient_id": decode_text(tags[2]) if 2 in tags else None}
    if len(tags.get(4, b"")) >= 3:
        age, unit = struct.unpack_from("<HB", tags[4])
        meta["age"] = float(age) if unit == _AGE_UNIT_YEARS else None
    if tags.get(8):
        meta["sex"] = _SEX.get(tags[8][0])
    date = safe_date(*struct.unpack_from("<HBB", tags[25])) if len(tags.get(25, b"")) >= 4 else None
    time = safe_time(*tags[26][:3]) if len(tags.get(26, b"")) >= 3 else None
    meta["acquisition_time"] = iso_datetime(date, time)
    meta["device"] = _device(tags.get(14, b""))
    return meta


def _device(field: bytes) -> str | None:
    """Model description (bytes 8-13) and manufacturer's trade name (last string) of the acquiring device."""
    if len(field) < 14:
        return None
    model = decode_text(field[8:14])
    model = model if model.isprintable() else ""
    strings = [decode_text(s) for s in field[36:].split(b"\x00")] if len(field) > 36 else []
    maker = next((s for s in reversed(strings) if len(s) > 1 and s.isprintable() and s.lower() != "unknown"), "")
    return " ".join(part for part in (maker, model) if part) or None


def _statements(section: bytes) -> list[str]:
    """Section 8 textual diagnosis: confirmation flag, date, time, then ``n`` (sequence, length, text) entries."""
    if len(section) < 9:
        return []
    count, offset, lines = section[8], 9, []
    for _ in range(count):
        if offset + 3 > len(section):
            break
        _, length = struct.unpack_from("<BH", section, offset)
        lines.append(decode_text(section[offset + 3:offset + 3 + length]))
        offset += 3 + length
    return clean_statements(lines)
