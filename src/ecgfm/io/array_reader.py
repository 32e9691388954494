"""Headerless arrays: NumPy ``.npy`` / ``.npz`` and delimited text (``.csv`` / ``.tsv``).

These files carry samples but little or no metadata, so the sampling rate, lead names and amplitude unit are either
declared in the file or passed by the caller; a missing rate is an error, never a guess::

    ecgfm.read("x.npy", fs=500, leads=["I", "II", ...], unit="uV")
    ecgfm.read("x.npz")                 # the archive holds ``signal`` plus ``fs`` / ``leads`` / ``unit`` entries
    ecgfm.read("x.csv")                 # a ``# fs=500`` comment line and a header row of lead names

Orientation: ``(leads, samples)`` and ``(samples, leads)`` are both accepted when the lead dimension is unambiguous
(exactly one axis has ``len(leads)`` entries); pass ``layout="leads_first"`` / ``"samples_first"`` otherwise.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ecgfm.config import read_limits
from ecgfm.ecg import ECG
from ecgfm.errors import ECGReadError
from ecgfm.io._common import to_float32
from ecgfm.io.limits import check_extent, check_file_size, check_rate, load_npy, npz_headers, npz_members
from ecgfm.io.registry import register_reader
from ecgfm.signal.units import check_plausible_millivolts, unit_factor
from ecgfm.leads import STANDARD_LEADS, canonical_lead_name

#: Keys an ``.npz`` archive may use for the samples, in order of preference.
NPZ_SIGNAL_KEYS = ("signal", "signals", "ecg", "x", "X", "data", "val")
#: CSV columns that index samples rather than hold a lead (dropped, never read as a lead).
INDEX_COLUMNS = {"time", "t", "sec", "seconds", "time_s", "time (s)", "ms", "time_ms", "sample", "samples", "index",
                 "idx", "n", ""}
LAYOUTS = ("auto", "leads_first", "samples_first")


def _resolve(path: Path, name: str, given: Any, declared: Any) -> Any:
    """An explicit argument wins only when the file declares nothing or the same thing; a conflict is an error."""
    if given is None:
        return declared
    if declared is not None and not _same(given, declared):
        raise ECGReadError(path, f"the file declares {name}={declared!r} but {name}={given!r} was passed")
    return given


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, str) and isinstance(b, str):
        try:
            return unit_factor(a) == unit_factor(b)
        except ValueError:
            return a.strip() == b.strip()
    try:
        return [canonical_lead_name(x) for x in a] == [canonical_lead_name(x) for x in b]
    except (TypeError, ValueError):
        return a == b


def _orient(path: Path, data: np.ndarray, n_leads: int, layout: str) -> np.ndarray:
    """Return ``(leads, samples)`` given the expected lead count, refusing ambiguous or mismatched shapes."""
    if layout not in LAYOUTS:
        raise ECGReadError(path, f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if data.ndim == 1 and n_leads == 1:
        data = data[None, :]
    if data.ndim != 2:
        raise ECGReadError(path, f"expected a 2-D (leads, samples) or (samples, leads) array, got shape {data.shape}")
    if layout == "leads_first":
        oriented = data
    elif layout == "samples_first":
        oriented = data.T
    elif data.shape[0] == n_leads and data.shape[1] != n_leads:
        oriented = data
    elif data.shape[1] == n_leads and data.shape[0] != n_leads:
        oriented = data.T
    elif data.shape == (n_leads, n_leads):
        raise ECGReadError(path, f"shape {data.shape} is ambiguous: pass layout='leads_first' or 'samples_first'")
    else:
        raise ECGReadError(path, f"wrong lead count: shape {data.shape} has no axis of length {n_leads} "
                                 f"(the number of leads named)")
    if oriented.shape[0] != n_leads:
        raise ECGReadError(path, f"wrong lead count: {oriented.shape[0]} signal rows for {n_leads} lead names")
    return oriented


def _default_leads(path: Path, data: np.ndarray) -> tuple[str, ...]:
    """Without declared lead names only a 12-lead array is accepted, assumed in the standard order."""
    if data.ndim == 2 and len(STANDARD_LEADS) in data.shape:
        return STANDARD_LEADS
    raise ECGReadError(path, f"lead names are needed for an array of shape {data.shape}: pass leads=[...] "
                             f"(only 12-lead arrays default to the standard order {', '.join(STANDARD_LEADS)})")


def build_ecg(path: Path, data: np.ndarray, *, fs: float | None, leads: Sequence[str] | None, unit: str | None,
              layout: str = "auto", check_units: bool = True, format: str, meta: dict | None = None) -> ECG:
    """Validate a raw sample array and its declarations and build the canonical ECG (shared by the array readers)."""
    fs = _rate(path, fs)
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise ECGReadError(path, f"samples must be real numbers, got dtype {data.dtype}")
    if data.size == 0:
        raise ECGReadError(path, f"zero-length signal (shape {data.shape})")
    leads = _lead_list(leads)
    if leads is None:
        leads = _default_leads(path, data)
    try:
        leads = tuple(canonical_lead_name(name) for name in leads)
    except ValueError as exc:
        raise ECGReadError(path, str(exc)) from None
    signal = _orient(path, data, len(leads), layout)
    check_extent(path, fs, signal.shape[1], signal.shape[0])
    try:
        factor = unit_factor(unit or "mV")
    except ValueError as exc:
        raise ECGReadError(path, str(exc)) from None
    with np.errstate(all="ignore"):  # an overflow becomes inf, refused just below
        signal = signal.astype(np.float64) * factor
    if not np.isfinite(signal).all():
        lead, sample = np.argwhere(~np.isfinite(signal))[0]
        raise ECGReadError(path, f"signal contains NaN or infinite samples (first at lead {leads[lead]}, "
                                 f"sample {sample})")
    signal = to_float32(signal, path)
    if check_units:
        try:
            check_plausible_millivolts(signal, fs=fs, leads=leads)
        except ValueError as exc:
            raise ECGReadError(path, f"{exc} (declared unit: {unit or 'mV (default)'})") from None
    return ECG(signal=signal, fs=fs, leads=leads,
               meta={"record_id": path.stem, "source": str(path), "format": format, **(meta or {})})


def _rate(path: Path, fs: Any) -> float:
    """The sampling rate given or declared, refusing a missing, non-finite or implausible one."""
    if fs is None:
        raise ECGReadError(path, "sampling rate unknown: the file declares none, pass fs=... (Hz)")
    return check_rate(path, fs)


#: Most values a metadata entry (``fs``, ``leads``, ``unit``) of an ``.npz`` may hold: a few lead names.
NPZ_META_VALUES = 4096


def _npz_value(value: np.ndarray, key: str) -> Any:
    if value.ndim == 0:
        value = value.item()
        return value.decode() if isinstance(value, bytes) else value
    if key == "leads":
        return [str(v) for v in value.tolist()]
    if value.size == 1:
        return value.reshape(()).item()
    return value.tolist()


def _load_npz(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The samples and ``fs``/``leads``/``unit`` declarations of an ``.npz``, every entry's header checked before it
    is inflated (a 4.6 MB archive can hold a deflated (12, 10^8) array)."""
    headers = npz_headers(path)
    key = next((k for k in NPZ_SIGNAL_KEYS if k in headers), None)
    if key is None:
        arrays = [k for k, (shape, _) in headers.items() if k not in ("fs", "leads", "unit") and len(shape) == 2]
        if len(arrays) != 1:
            raise ECGReadError(path, f"cannot tell which array holds the samples (entries: {list(headers)}); "
                                     f"name it one of {', '.join(NPZ_SIGNAL_KEYS)}")
        key = arrays[0]
    arrays = npz_members(path, {key: read_limits().max_values,
                                **{name: NPZ_META_VALUES for name in ("fs", "leads", "unit")}})
    declared = {name: _npz_value(arrays[name], name) if name in arrays else None for name in ("fs", "leads", "unit")}
    return arrays[key], declared


@register_reader("numpy", (".npy", ".npz"),
                 description="NumPy array (.npy) or archive (.npz with signal and optional fs/leads/unit entries)")
def read_numpy(path: Path, *, fs: float | None = None, leads: Sequence[str] | None = None, unit: str | None = None,
               layout: str = "auto", check_units: bool = True) -> ECG:
    """Read a ``.npy`` array or ``.npz`` archive; ``fs``/``leads``/``unit`` come from the archive or the caller."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        data, declared = _load_npz(path)
    else:
        data, declared = load_npy(path), {}
    return build_ecg(path, np.asarray(data), fs=_resolve(path, "fs", fs, declared.get("fs")),
                     leads=_resolve(path, "leads", _lead_list(leads), declared.get("leads")),
                     unit=_resolve(path, "unit", unit, declared.get("unit")), layout=layout,
                     check_units=check_units, format="numpy")


# "rate" alone is not accepted: in ECG exports it usually means the heart rate.
_RATE_DECLARATION = re.compile(r"\b(?:fs|sampl(?:ing|e)[ _]?(?:rate|frequency))\s*[=:]\s*([^\s,;]+)", re.IGNORECASE)
_UNIT_DECLARATION = re.compile(r"\bunits?\s*[=:]\s*([^\s,;]+)", re.IGNORECASE)


def _csv_declarations(comment_lines: list[str]) -> dict[str, Any]:
    """``fs`` and ``unit`` declared in ``#`` comment lines, e.g. ``# fs=500 unit=uV`` or ``# sampling rate: 500 Hz``."""
    declared: dict[str, Any] = {}
    for line in comment_lines:
        for value in _RATE_DECLARATION.findall(line):
            declared["fs"] = float(re.sub(r"(?i)hz$", "", value))
        for value in _UNIT_DECLARATION.findall(line):
            declared["unit"] = value
    return declared


def _lead_list(leads: Sequence[str] | str | None) -> list[str] | None:
    """Lead names given as a list or as one comma/space-separated string."""
    if isinstance(leads, str):
        return [name for name in re.split(r"[,;\s]+", leads) if name]
    return None if leads is None else list(leads)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _split_csv(path: Path, text: str) -> tuple[list[str], list[str]]:
    """Comment lines (``#``) and the remaining non-empty lines."""
    comments, body = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        (comments if stripped.startswith("#") else body).append(line)
    if not body:
        raise ECGReadError(path, "zero-length signal: the file has no data rows")
    return comments, body


def _delimiter(path: Path, sample: list[str]) -> str:
    if path.suffix.lower() == ".tsv":
        return "\t"
    try:
        return csv.Sniffer().sniff("\n".join(sample[:20]), delimiters=",;\t ").delimiter
    except csv.Error:
        return ","


@register_reader("csv", (".csv", ".tsv"),
                 description="Delimited text: one column per lead (header row of lead names optional, '# fs=500')")
def read_csv(path: Path, *, fs: float | None = None, leads: Sequence[str] | None = None, unit: str | None = None,
             layout: str = "auto", check_units: bool = True) -> ECG:
    """Read a CSV/TSV of samples; a header row names the leads and ``# fs=...`` / ``# unit=...`` lines declare rate/unit."""
    path = Path(path)
    check_file_size(path, read_limits().max_text_bytes, "text file", "ReadLimits.max_text_bytes")
    if fs is not None:
        check_rate(path, fs)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ECGReadError(path, "not a text file (cannot decode as UTF-8)") from None
    comments, body = _split_csv(path, text)
    try:
        declared = _csv_declarations(comments)
    except ValueError as exc:
        raise ECGReadError(path, f"cannot parse the declared sampling rate: {exc}") from None
    delimiter = _delimiter(path, body)
    first = [cell.strip().strip('"') for cell in body[0].split(delimiter)]
    header = None if all(_is_number(cell) for cell in first if cell) else first
    frame = _read_table(path, "\n".join(body), delimiter, header is not None)
    del text, body
    names = None
    if header is not None:
        keep = [c for c in frame.columns if str(c).strip().lower() not in INDEX_COLUMNS]
        frame, names = frame[keep], [str(c).strip() for c in keep]
    if frame.shape[0] == 0:
        raise ECGReadError(path, "zero-length signal: the file has a header but no data rows")
    data = _numeric(path, frame, header is not None)
    file_leads = names if names is not None else None
    leads_resolved = _resolve(path, "leads", _lead_list(leads), file_leads)
    return build_ecg(path, data, fs=_resolve(path, "fs", fs, declared.get("fs")), leads=leads_resolved,
                     unit=_resolve(path, "unit", unit, declared.get("unit")),
                     layout="samples_first" if names is not None else layout, check_units=check_units,
                     format="csv")


def _read_table(path: Path, table: str, delimiter: str, has_header: bool) -> pd.DataFrame:
    """The table parsed straight to float64, or as text when some cell is not a number (so the error can name it).

    Parsing to numbers first keeps memory near 10x the file instead of ~20x (as text, every cell is a Python string:
    1.2 GB for a 63 MiB file) and is 4x faster; the values equal ``float(cell)``, as the text path gives
    (tests/test_io_arrays.py checks it).
    """
    options = {"sep": delimiter, "header": 0 if has_header else None, "skipinitialspace": True}
    try:
        frame = pd.read_csv(io.StringIO(table), dtype=np.float64, na_filter=False, **options)
        if not frame.isna().to_numpy().any():  # a short row leaves NaN: the text path names the missing cell
            return frame
    except pd.errors.ParserError as exc:  # e.g. a row with more values than the header has columns
        raise ECGReadError(path, f"malformed table (wrong lead count on some row?): {exc}") from None
    except (ValueError, TypeError):  # a text cell: a time stamp column, 'n/a', an empty cell
        pass
    try:
        return pd.read_csv(io.StringIO(table), dtype=str, keep_default_na=False, **options)
    except pd.errors.ParserError as exc:
        raise ECGReadError(path, f"malformed table (wrong lead count on some row?): {exc}") from None


def _numeric(path: Path, frame: pd.DataFrame, has_header: bool) -> np.ndarray:
    """The table as float64, naming the first cell that is not a number."""
    if all(dtype == np.float64 for dtype in frame.dtypes):
        return frame.to_numpy(dtype=np.float64)
    values = frame.to_numpy(dtype=str)
    try:
        return values.astype(np.float64)
    except ValueError:
        pass
    for row, col in np.ndindex(values.shape):
        cell = values[row, col].strip()
        if not _is_number(cell):
            column = frame.columns[col] if has_header else col + 1
            if not cell:
                raise ECGReadError(path, f"missing value at data row {row + 1}, column {column} "
                                         "(a row shorter than the others: wrong lead count?)")
            raise ECGReadError(path, f"non-numeric value {cell!r} at data row {row + 1}, column {column}")
    return values.astype(np.float64)  # pragma: no cover - every cell parsed
