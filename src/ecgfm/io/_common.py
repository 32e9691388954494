"""Helpers shared by the vendor-format readers: decoding, lead naming, windows, dates and building the canonical ECG.

Readers stay short by delegating the repeated parts here; every helper raises :class:`ECGReadError` naming the file.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ecgfm.ecg import ECG
from ecgfm.errors import ECGReadError, ECGValueError
from ecgfm.io.limits import check_extent, check_rate
from ecgfm.signal.units import check_plausible_millivolts, unit_factor
from ecgfm.leads import STANDARD_LEADS, canonical_lead_name


def decode_base64(text: str | None, path: Path, what: str) -> bytes:
    """Strict base64 decoding (whitespace and line breaks allowed, anything else refused)."""
    compact = "".join((text or "").split())
    if not compact:
        raise ECGReadError(path, f"{what}: no waveform data")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ECGReadError(path, f"{what}: undecodable base64 ({exc})") from None


def int16_le(raw: bytes, path: Path, what: str, expected: int | None = None) -> np.ndarray:
    """Little-endian signed 16-bit samples from ``raw``, optionally checking the declared count."""
    if len(raw) % 2:
        raise ECGReadError(path, f"{what}: odd byte count {len(raw)} for 16-bit samples")
    samples = np.frombuffer(raw, dtype="<i2")
    if expected is not None and samples.size != expected:
        raise ECGReadError(path, f"{what}: {samples.size} samples decoded but the header declares {expected}")
    return samples


def to_millivolt_factor(unit: str, path: Path, what: str) -> float:
    """``unit_factor`` with a file-naming error for unknown units."""
    try:
        return unit_factor(unit)
    except ValueError as exc:
        raise ECGReadError(path, f"{what}: {exc}") from None


def lead_name(label: Any, path: Path) -> str:
    """Canonical lead name for a vendor lead label, or an error naming the file and the label."""
    try:
        return canonical_lead_name(str(label))
    except ValueError:
        raise ECGReadError(path, f"lead label {label!r} names no ECG lead ecgfm knows") from None


def is_lead_name(label: Any) -> bool:
    """Whether ``label`` is a known ECG lead spelling."""
    try:
        canonical_lead_name(str(label))
        return True
    except ValueError:
        return False


def stack_leads(path: Path, names: Sequence[str], rows: Sequence[np.ndarray]) -> np.ndarray:
    """Stack per-lead arrays into (leads, samples), refusing inconsistent lengths or duplicate leads."""
    if not rows:
        raise ECGReadError(path, "no ECG leads found")
    lengths = {name: len(row) for name, row in zip(names, rows)}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}: {n}" for name, n in lengths.items())
        raise ECGReadError(path, f"leads have inconsistent lengths ({detail})")
    dupes = sorted({name for name in names if list(names).count(name) > 1})
    if dupes:
        raise ECGReadError(path, f"lead(s) {', '.join(dupes)} stored more than once")
    return np.vstack([np.asarray(row, dtype=np.float64) for row in rows])


def trim_padding(counts: np.ndarray, pad: int, path: Path, what: str) -> np.ndarray:
    """Drop leading/trailing samples where every lead holds the padding value; refuse padding inside the signal.

    Vendors pad short waveforms (median beats) to a fixed buffer with an out-of-range value such as -32768 or 32767;
    converting those as samples would put -81.92 mV spikes into the ECG.
    """
    full = np.all(counts == pad, axis=0)
    kept = np.flatnonzero(~full)
    if kept.size == 0:
        raise ECGReadError(path, f"{what}: every sample is padding ({pad})")
    counts = counts[:, kept[0]:kept[-1] + 1]
    inside = int(np.count_nonzero(counts == pad))
    if inside:
        raise ECGReadError(path, f"{what}: {inside} padding/missing samples ({pad}) inside the signal")
    return counts


def standard_order(names: Sequence[str], signal: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Reorder leads to the standard 12-lead order, extra leads (V3R, X, ...) after in their stored order."""
    rank = {lead: i for i, lead in enumerate(STANDARD_LEADS)}
    order = sorted(range(len(names)), key=lambda i: (rank.get(names[i], len(rank)), i))
    return tuple(names[i] for i in order), signal[order]


def with_derived_limb_leads(ecg: ECG) -> ECG:
    """Add III, aVR, aVL, aVF from I and II when the file stores only the independent leads (MUSE, Welch Allyn).

    The derived leads are listed in ``meta["derived_leads"]`` so nobody mistakes them for recorded ones.
    """
    from ecgfm.signal.leads import derive_limb_leads

    missing = [lead for lead in ("III", "aVR", "aVL", "aVF") if lead not in ecg.leads]
    if not missing or "I" not in ecg.leads or "II" not in ecg.leads:
        return ecg
    derived = derive_limb_leads(ecg)
    names, signal = standard_order(derived.leads, derived.signal)
    return derived.replace(signal=signal, leads=names, derived_leads=missing)


def window(fs: float, n_total: int, start: float, duration: float | None, path: Path) -> tuple[int, int]:
    """Sample range ``[first, last)`` for a window of ``duration`` seconds from ``start`` seconds."""
    bad_duration = duration is not None and not (np.isfinite(duration) and duration > 0)
    if not (np.isfinite(start) and start >= 0) or bad_duration:
        raise ECGReadError(path, f"invalid window start={start} s, duration={duration} s")
    first = int(round(start * fs))
    if first >= n_total:
        raise ECGReadError(path, f"window starts at {start} s but the recording lasts {n_total / fs:.3f} s")
    last = n_total if duration is None else min(n_total, first + int(round(duration * fs)))
    return first, last


def to_float32(signal: np.ndarray, path: Path) -> np.ndarray:
    """The samples as float32 (the ECG's dtype), refusing values float32 cannot hold instead of making them inf."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(signal).astype(np.float32)
    if not np.isfinite(out).all() and np.isfinite(signal).all():
        raise ECGReadError(path, "sample values beyond the float32 range (|x| > 3.4e38 mV): not an ECG")
    return out


def make_ecg(path: Path, signal_mv: np.ndarray, fs: float, leads: Sequence[str], meta: Mapping[str, Any],
             check_units: bool = True) -> ECG:
    """Build the canonical :class:`ECG` (leads in standard order), checking amplitudes are plausible millivolts."""
    fs = check_rate(path, fs)
    signal = np.asarray(signal_mv, dtype=np.float64)
    check_extent(path, fs, signal.shape[-1], signal.shape[0] if signal.ndim > 1 else 1)
    if not np.isfinite(signal).all():
        raise ECGReadError(path, "signal contains non-finite samples")
    names, signal = standard_order(tuple(leads), signal)
    signal = to_float32(signal, path)
    if check_units:
        try:
            check_plausible_millivolts(signal, str(path), fs=fs, leads=names)
        except ECGValueError as exc:
            raise ECGReadError(path, str(exc)) from None
    clean = {key: value for key, value in meta.items() if value not in (None, "", [], {})}
    try:
        return ECG(signal=signal, fs=fs, leads=names, meta={"source": str(path), **clean})
    except ECGValueError as exc:
        raise ECGReadError(path, str(exc)) from None


def iso_datetime(date: dt.date | None, time: dt.time | None = None) -> str | None:
    """ISO 8601 text for an acquisition date (and time when known)."""
    if date is None:
        return None
    if time is None:
        return date.isoformat()
    return dt.datetime.combine(date, time).isoformat()


def safe_date(year: int, month: int, day: int) -> dt.date | None:
    """A date, or ``None`` for the placeholder zeros many devices write."""
    try:
        return dt.date(int(year), int(month), int(day))
    except (ValueError, TypeError):
        return None


def safe_time(hour: int, minute: int, second: float = 0) -> dt.time | None:
    """A time of day, or ``None`` when out of range."""
    try:
        whole = int(second)
        return dt.time(int(hour), int(minute), whole, int(round((float(second) - whole) * 1e6)))
    except (ValueError, TypeError):
        return None


def normalise_sex(value: Any) -> str | None:
    """``"M"`` / ``"F"`` from the many vendor spellings; ``None`` when unknown."""
    key = str(value or "").strip().upper()
    return {"M": "M", "MALE": "M", "1": "M", "F": "F", "FEMALE": "F", "2": "F"}.get(key)


def clean_statements(lines: Iterable[str | None]) -> list[str]:
    """Statements as stripped, non-empty strings in file order."""
    return [" ".join(str(line).split()) for line in lines if line and str(line).strip()]


def decode_text(raw: bytes) -> str:
    """Text from a fixed-length or NUL-terminated byte field: UTF-8, else Latin-1 (never fails)."""
    raw = raw.split(b"\x00", 1)[0]
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return raw.decode("latin-1").strip()
