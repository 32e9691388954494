"""Philips SierraECG / PhilipsECG XML (1.03 ASCII, 1.04 UTF-16LE), including XLI-compressed waveforms.

XLI, as reverse-engineered by sierra-ecg-tools (MIT): each lead is a chunk ``int32 size, int16 ?, int16 first``
followed by LZW data (10-bit MSB-first codes, code 1023 ends it). The decompressed bytes hold the high bytes of
16-bit codes in their first half and the low bytes in the second; the codes are second-order delta codes (bias 64)
seeded by ``first``. Leads III, aVR, aVL and aVF are stored as residuals from their Einthoven/Goldberger values and
are rebuilt here with the vendor's integer arithmetic (floor division). The 11 s parsed waveform ends with a flat
gap and a 1 mV calibration pulse on every lead, which is trimmed. Written from the format description; no code was
copied.
"""
from __future__ import annotations

import datetime as dt
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ecgfm.ecg import ECG
from ecgfm.errors import ECGReadError
from ecgfm.io._common import (clean_statements, decode_base64, int16_le, iso_datetime, lead_name, make_ecg,
                              normalise_sex, stack_leads, trim_padding)
from ecgfm.io.limits import check_extent, check_rate
from ecgfm.io.registry import register_reader
from ecgfm.io.xmlsafe import attr, read_xml, root_is, text
from ecgfm.leads import STANDARD_LEADS

_LZW_BITS = 10
_LZW_MAX_CODE = (1 << _LZW_BITS) - 2  # 1022; 1023 terminates a chunk
_XLI_DELTA_BIAS = 64
#: Bytes an XLI chunk may decode to beyond 2 per declared sample before decoding stops (genuine chunks: 0).
_XLI_SLACK_BYTES = 4096
#: Representative beats are padded to their buffer length with the int16 maximum.
_INT16_PAD = 32767


def _sniff(path: Path, head: bytes) -> bool:
    return root_is(head, "restingecgdata")


@register_reader("philips", (".xml",), sniff=_sniff, description="Philips SierraECG/PhilipsECG XML (XLI)")
def read_philips(path: Path, *, waveform: str = "rhythm", check_units: bool = True) -> ECG:
    """Read a Philips XML export; ``waveform="median"`` returns the representative beats (1.04 files)."""
    root, _ = read_xml(path)
    if root.tag != "restingecgdata":
        raise ECGReadError(path, f"not a Philips ECG: root element is <{root.tag}>, expected <restingecgdata>")
    if waveform == "rhythm":
        fs, names, signal = _rhythm(root, path)
    elif waveform == "median":
        fs, names, signal = _median_beats(root, path)
    else:
        raise ECGReadError(path, f"unknown waveform {waveform!r}; choose rhythm or median")
    return make_ecg(path, signal, fs, names, {**_metadata(root, path), "waveform": waveform}, check_units)


def _number(value: str | None, path: Path, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ECGReadError(path, f"missing or invalid {what} ({value!r})") from None


def _rhythm(root: ET.Element, path: Path) -> tuple[float, list[str], np.ndarray]:
    waves = root.find(".//parsedwaveforms")
    if waves is None:
        raise ECGReadError(path, "no <parsedwaveforms> element")
    signal_info = root.find(".//signalcharacteristics")
    fs = _number(attr(waves, "samplespersecond") or text(signal_info, "samplingrate"), path, "sampling rate")
    resolution_uv = _number(attr(waves, "resolution") or text(signal_info, "resolution")
                            or text(signal_info, "signalresolution"), path, "signal resolution (uV)")
    labels = _lead_labels(waves, signal_info, path)
    fs = check_rate(path, fs)
    duration_ms = _number(attr(waves, "durationperchannel"), path, "durationperchannel")
    check_extent(path, fs, int(min(max(duration_ms, 0), 1e15) * fs / 1000), len(labels))
    n_samples = int(round(duration_ms * fs / 1000))
    if (attr(waves, "dataencoding") or "Base64") != "Base64":
        raise ECGReadError(path, f"unsupported waveform encoding {attr(waves, 'dataencoding')!r}")
    raw = decode_base64(waves.text, path, "parsedwaveforms")
    method = attr(waves, "compression") or attr(waves, "compressmethod") or "Uncompressed"
    if method.upper() == "XLI":
        leads = xli_decode(raw, len(labels), path, max_samples=n_samples)
    elif method.lower() in {"uncompressed", "none"}:
        flat = int16_le(raw, path, "parsedwaveforms")
        if flat.size < len(labels) * n_samples:
            raise ECGReadError(path, f"{flat.size} samples stored, {len(labels)} leads x {n_samples} declared")
        leads = [flat[i * n_samples:(i + 1) * n_samples].astype(np.int64) for i in range(len(labels))]
    else:
        raise ECGReadError(path, f"unsupported waveform compression {method!r}")
    short = [label for label, lead in zip(labels, leads) if lead.size < n_samples]
    if short:
        raise ECGReadError(path, f"leads {', '.join(short)} decode to fewer than the {n_samples} samples declared")
    names = [lead_name(label, path) for label in labels]
    counts = np.vstack([lead[:n_samples] for lead in leads])
    counts = trim_calibration(rebuild_limb_leads(counts, names))
    return fs, names, stack_leads(path, names, list(counts * resolution_uv / 1000.0))


def trim_calibration(counts: np.ndarray) -> np.ndarray:
    """Drop the trailing block Philips appends after the ECG: a flat gap and a 1 mV calibration pulse.

    It is recognised as the trailing run of samples at which every lead has the same value and which contains a
    non-zero plateau (the pulse) of at least 10 samples; a flat all-zero tail alone (a quantised noise-free
    recording) is left untouched.
    """
    same = np.all(counts == counts[:1], axis=0)
    start = np.flatnonzero(~same)[-1] + 1 if (~same).any() else 0
    pulse = np.count_nonzero(counts[0, start:])
    return counts[:, :start] if pulse >= 10 and start > 0 else counts


def _lead_labels(waves: ET.Element, signal_info: ET.Element | None, path: Path) -> list[str]:
    """1.04 lists the labels; 1.03 implies the standard order for STD-12 / 10-WIRE acquisitions."""
    listed = attr(waves, "leadlabels")
    if listed:
        count = int(_number(attr(waves, "numberofleads") or len(listed.split()), path, "numberofleads"))
        return listed.split()[:count]
    kind = text(signal_info, "acquisitiontype") or text(signal_info, "leadset") or ""
    count = int(_number(text(signal_info, "numberchannelsvalid") or 12, path, "numberchannelsvalid"))
    if kind not in {"STD-12", "10-WIRE"} or count > len(STANDARD_LEADS):
        raise ECGReadError(path, f"no lead labels and unsupported acquisition type {kind!r} with {count} channels")
    return list(STANDARD_LEADS[:count])


def rebuild_limb_leads(counts: np.ndarray, names: list[str]) -> np.ndarray:
    """Undo Philips' residual storage of III, aVR, aVL, aVF (integer counts, vendor floor-division arithmetic)."""
    if tuple(names[:6]) != STANDARD_LEADS[:6]:
        return counts
    i, ii, iii_res, avr_res, avl_res, avf_res = (counts[k].astype(np.int64) for k in range(6))
    iii = ii - i - iii_res
    out = counts.astype(np.int64)
    out[2] = iii
    out[3] = -avr_res - np.floor_divide(i + ii, 2)
    out[4] = np.floor_divide(i - iii, 2) - avl_res
    out[5] = np.floor_divide(ii + iii, 2) - avf_res
    return out


def xli_decode(raw: bytes, n_leads: int, path: Path, max_samples: int | None = None) -> list[np.ndarray]:
    """Decode the first ``n_leads`` XLI chunks (extra chunks, e.g. blank channels, are ignored).

    LZW expands each 10-bit code to up to ~1 KB, so a chunk's output is capped at the declared ``max_samples``
    (2 bytes each, plus slack) instead of growing ~800x its input.
    """
    leads, offset = [], 0
    while len(leads) < n_leads:
        if offset + 8 > len(raw):
            raise ECGReadError(path, f"XLI data ends after {len(leads)} of {n_leads} leads")
        size, _, first = struct.unpack_from("<ihh", raw, offset)
        chunk = raw[offset + 8:offset + 8 + size]
        if size <= 0 or len(chunk) != size:
            raise ECGReadError(path, f"XLI chunk {len(leads) + 1} declares {size} bytes, {len(chunk)} available")
        offset += 8 + size
        try:
            cap = None if max_samples is None else 2 * max_samples + _XLI_SLACK_BYTES
            leads.append(_xli_deltas(_xli_unpack(_lzw_decode(chunk, cap)), first))
        except ValueError as exc:
            raise ECGReadError(path, f"XLI chunk {len(leads) + 1}: {exc}") from None
    return leads


def _lzw_decode(chunk: bytes, max_bytes: int | None = None) -> bytes:
    """Classic LZW with fixed 10-bit MSB-first codes and a 256-entry byte alphabet; stops past ``max_bytes``."""
    bits = np.unpackbits(np.frombuffer(chunk, dtype=np.uint8))
    n_codes = bits.size // _LZW_BITS
    codes = bits[:n_codes * _LZW_BITS].reshape(n_codes, _LZW_BITS) @ (1 << np.arange(_LZW_BITS - 1, -1, -1))
    table = [bytes([b]) for b in range(256)]
    out, previous = bytearray(), b""
    for code in codes.tolist():
        if code > _LZW_MAX_CODE:
            break
        if code < len(table):
            entry = table[code]
        elif code == len(table) and previous:  # the KwKwK case: code defined by this very step
            entry = previous + previous[:1]
        else:
            raise ValueError(f"corrupt LZW stream (code {code} before it is defined)")
        out += entry
        if max_bytes is not None and len(out) > max_bytes:
            break  # the caller keeps only the declared samples
        if previous and len(table) <= _LZW_MAX_CODE:
            table.append(previous + entry[:1])
        previous = entry
    return bytes(out)


def _xli_unpack(data: bytes) -> np.ndarray:
    """16-bit signed codes from [high bytes ... | low bytes ...] halves."""
    if len(data) % 2:
        data += b"\x00"
    half = len(data) // 2
    buf = np.frombuffer(data, dtype=np.uint8)
    return ((buf[:half].astype(np.uint16) << 8) | buf[half:]).view(np.int16).astype(np.int64)


def _xli_deltas(codes: np.ndarray, first: int) -> np.ndarray:
    """Samples from second-order delta codes: ``x[n] = 2 x[n-1] - x[n-2] - e[n]``.

    ``x[0], x[1]`` are stored as is; ``e[2]`` is the chunk header's ``first`` and ``e[n] = code[n-1] - 64`` after.
    Solved with two cumulative sums instead of a Python loop.
    """
    if codes.size < 3:
        return codes
    e = np.empty(codes.size - 2, dtype=np.int64)
    e[0] = first
    e[1:] = codes[2:-1] - _XLI_DELTA_BIAS
    slope = (codes[1] - codes[0]) - np.cumsum(e)
    out = np.empty_like(codes)
    out[:2] = codes[:2]
    out[2:] = codes[1] + np.cumsum(slope)
    return out


def _median_beats(root: ET.Element, path: Path) -> tuple[float, list[str], np.ndarray]:
    """``<repbeats>``: one uncompressed base64 int16 ``<waveform>`` per lead."""
    beats = root.find(".//repbeats")
    if beats is None:
        raise ECGReadError(path, "no <repbeats> (representative beats) in this file")
    fs = _number(attr(beats, "samplespersec"), path, "repbeats samplespersec")
    resolution_uv = _number(attr(beats, "resolution"), path, "repbeats resolution")
    names, rows = [], []
    for beat in beats.iter("repbeat"):
        label = attr(beat, "leadname")
        names.append(lead_name(label, path))
        rows.append(int16_le(decode_base64(text(beat, "waveform"), path, f"repbeat {label}"), path, f"repbeat {label}"))
    counts = trim_padding(stack_leads(path, names, rows), _INT16_PAD, path, "representative beats")
    return fs, names, counts * resolution_uv / 1000.0


def _metadata(root: ET.Element, path: Path) -> dict:
    acquisition = root.find("dataacquisition")
    patient = root.find(".//generalpatientdata")
    machine = acquisition.find("machine") if acquisition is not None else None
    interpretation = root.find(".//interpretation")
    years = text(patient, "age/years") if patient is not None else None
    return {
        "record_id": path.stem,
        "patient_id": text(patient, "patientid") if patient is not None else None,
        "age": float(years) if years and years.isdigit() else None,
        "sex": normalise_sex(text(patient, "sex")) if patient is not None else None,
        "acquisition_time": _acquisition_time(acquisition),
        "device": " ".join(p for p in (text(machine), attr(machine, "machineid")) if p) or None,
        "statements": clean_statements(text(s, "leftstatement") for s in interpretation.iter("statement"))
        if interpretation is not None else [],
        "severity": text(interpretation, "severity") if interpretation is not None else None,
        "document_version": text(root, "documentinfo/documentversion"),
    }


def _acquisition_time(acquisition: ET.Element | None) -> str | None:
    try:
        date = dt.date.fromisoformat(attr(acquisition, "date") or "")
    except ValueError:
        return None
    try:
        time = dt.time.fromisoformat(attr(acquisition, "time") or "")
    except ValueError:
        time = None
    return iso_datetime(date, time)
