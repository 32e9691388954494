"""DICOM waveform ECGs via pydicom: 12-lead / general / ambulatory ECG and Hemodynamic SOP classes.

Each multiplex group of the Waveform Sequence holds interleaved channels; a channel's physical value is
``raw * ChannelSensitivity * CorrectionFactor + ChannelBaseline`` in the units of its Channel Sensitivity Units
(uV, mV...). Rhythm and median-beat groups are told apart by their Multiplex Group Label.
"""
from __future__ import annotations

import datetime as dt
import io
import struct
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.waveforms.numpy_handler import multiplex_array

from ecgfm.config import read_limits
from ecgfm.ecg import ECG
from ecgfm.errors import ECGReadError
from ecgfm.io._common import (clean_statements, is_lead_name, lead_name, make_ecg, normalise_sex, stack_leads,
                              to_millivolt_factor, trim_padding, with_derived_limb_leads)
from ecgfm.io.limits import check_extent, check_file_size, check_rate
from ecgfm.io.registry import register_reader
from ecgfm.io.scp import SCP_LEAD_IDS

#: SOP classes whose waveforms may hold ECG leads.
ECG_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "General ECG",
    "1.2.840.10008.5.1.4.1.1.9.1.3": "Ambulatory ECG",
    "1.2.840.10008.5.1.4.1.1.9.1.4": "General 32-bit ECG",
    "1.2.840.10008.5.1.4.1.1.9.2.1": "Hemodynamic",
}
#: MDC (ISO/IEEE 11073) lead codes in the ``2:n`` spelling used by some exporters.
MDC_LEAD_CODES = {"2:1": "I", "2:2": "II", "2:3": "V1", "2:4": "V2", "2:5": "V3", "2:6": "V4", "2:7": "V5",
                  "2:8": "V6", "2:61": "III", "2:62": "aVR", "2:63": "aVL", "2:64": "aVF"}
_MEDIAN_LABELS = ("MEDIAN", "REPRESENTATIVE", "AVERAGE")
#: What pydicom raises on truncated or corrupt bytes, when reading or (lazily) on first access to an element: a file
#: cut to 143 bytes gives BytesLengthException, one cut to 3,769 bytes struct.error.
CORRUPT_DICOM = (InvalidDicomError, BytesLengthException, struct.error, EOFError, ValueError, KeyError, IndexError,
                 TypeError, AttributeError, NotImplementedError, OverflowError, OSError)


@register_reader("dicom", (".dcm", ".dicom"), description="DICOM ECG / Hemodynamic waveform (pydicom)")
def read_dicom(path: Path, *, waveform: str = "rhythm", check_units: bool = True) -> ECG:
    """Read the ECG leads of a DICOM waveform object; ``waveform="median"`` picks the median-beat group."""
    check_file_size(path, read_limits().max_file_bytes, "DICOM file", "ReadLimits.max_file_bytes")
    try:  # from memory: pydicom reads an element by its declared length, and a file read of a corrupt 4 GB length
        ds = pydicom.dcmread(io.BytesIO(path.read_bytes()))  # would allocate 4 GB; a BytesIO returns what there is
    except CORRUPT_DICOM as exc:
        raise ECGReadError(path, f"not a readable DICOM file: {type(exc).__name__}: {exc}") from None
    try:  # pydicom decodes elements lazily, so a corrupt element surfaces on first access
        sop = str(ds.get("SOPClassUID", ""))
        if sop not in ECG_SOP_CLASSES:
            raise ECGReadError(path, f"SOP class {sop or '(none)'} is not an ECG waveform; expected one of "
                                     f"{', '.join(ECG_SOP_CLASSES.values())}")
        if "WaveformSequence" not in ds or not ds.WaveformSequence:
            raise ECGReadError(path, "no Waveform Sequence in the file")
        index = _select_group(ds, waveform, path)
        fs, names, signal, notes = _group_signal(ds, index, path)
        meta = {**_metadata(ds, path), "waveform": waveform, "sop_class": ECG_SOP_CLASSES[sop], **notes}
    except CORRUPT_DICOM as exc:
        raise ECGReadError(path, f"corrupt or incomplete DICOM waveform: {type(exc).__name__}: {exc}") from None
    return with_derived_limb_leads(make_ecg(path, signal, fs, names, meta, check_units))


def _select_group(ds: Dataset, waveform: str, path: Path) -> int:
    if waveform not in ("rhythm", "median"):
        raise ECGReadError(path, f"unknown waveform {waveform!r}; choose rhythm or median")
    labels = [str(group.get("MultiplexGroupLabel", "")).upper() for group in ds.WaveformSequence]
    is_median = [any(word in label for word in _MEDIAN_LABELS) for label in labels]
    wanted = [i for i, median in enumerate(is_median) if median == (waveform == "median")]
    if not wanted:
        raise ECGReadError(path, f"no {waveform} multiplex group (groups: {', '.join(l or '?' for l in labels)})")
    return wanted[0]


def _channel_lead(channel: Dataset) -> str | None:
    """Canonical lead of a channel from its source code (SCPECG ``5.6.3-9-n`` or MDC ``2:n``) or meaning."""
    source = channel.get("ChannelSourceSequence")
    if not source:
        return None
    code, meaning = str(source[0].get("CodeValue", "")), str(source[0].get("CodeMeaning", ""))
    if code.startswith("5.6.3-9-") and code[8:].isdigit():
        return SCP_LEAD_IDS.get(int(code[8:]))
    if code in MDC_LEAD_CODES:
        return MDC_LEAD_CODES[code]
    label = meaning.split("(")[0].strip()  # "Lead I (Einthoven)"
    return label if is_lead_name(label) else None


def _group_signal(ds: Dataset, index: int, path: Path) -> tuple[float, list[str], np.ndarray, dict]:
    """mV rows of the ECG channels of one multiplex group (non-ECG channels, e.g. pressures, are skipped)."""
    group = ds.WaveformSequence[index]
    fs = check_rate(path, group.get("SamplingFrequency"), "multiplex group sampling frequency")
    check_extent(path, fs, int(group.get("NumberOfWaveformSamples") or 0),
                 int(group.get("NumberOfWaveformChannels") or 0))
    try:
        raw = multiplex_array(ds, index, as_raw=True).T.astype(np.int64)
    except (AttributeError, KeyError, ValueError) as exc:
        raise ECGReadError(path, f"unreadable waveform multiplex group {index}: {exc}") from None
    raw, notes = _remove_padding(group, raw, path)
    names, rows, skipped = [], [], []
    for channel, counts in zip(group.ChannelDefinitionSequence, raw):
        lead = _channel_lead(channel)
        units = channel.get("ChannelSensitivityUnitsSequence")
        if lead is None or not units:
            skipped.append(str(channel.get("ChannelLabel") or _source_meaning(channel)))
            continue
        unit = str(units[0].get("CodeValue", ""))
        factor = to_millivolt_factor(unit, path, f"channel {lead}")
        scale = float(channel.get("ChannelSensitivity", 1.0)) * float(channel.get("ChannelSensitivityCorrectionFactor",
                                                                                   1.0))
        baseline = float(channel.get("ChannelBaseline", 0.0))
        names.append(lead_name(lead, path))
        rows.append((counts * scale + baseline) * factor)
    if not rows:
        raise ECGReadError(path, f"no ECG lead channels in multiplex group {index} (channels: {', '.join(skipped)})")
    return fs, names, stack_leads(path, names, rows), {**notes, "skipped_channels": skipped}


def _source_meaning(channel: Dataset) -> str:
    source = channel.get("ChannelSourceSequence")
    return str(source[0].get("CodeMeaning", "?")) if source else "?"


def _remove_padding(group: Dataset, raw: np.ndarray, path: Path) -> tuple[np.ndarray, dict]:
    """Trim padded samples at the ends.

    The declared Waveform Padding Value is honoured only when it is the extreme of the sample type (a value that
    cannot be a real sample); ECG Toolkit's converter declares 0, which occurs in every real lead, so it is ignored.
    Trailing samples equal to the type's minimum on every channel are padding even when undeclared (ECG Toolkit pads
    599-sample median beats to 600 with -32768 and declares nothing).
    """
    interpretation = str(group.get("WaveformSampleInterpretation", "SS"))
    bits = int(group.get("WaveformBitsAllocated", 16))
    info = np.iinfo(np.dtype(f"{'u' if interpretation.startswith('U') else 'i'}{bits // 8}"))
    notes = {}
    declared = group.get("WaveformPaddingValue")
    if declared is not None:
        value = int.from_bytes(bytes(declared)[:bits // 8], "little", signed=not interpretation.startswith("U"))
        if value in (info.min, info.max):
            return trim_padding(raw, value, path, "waveform"), notes
        notes["ignored_padding_value"] = value
    if np.all(raw[:, -1] == info.min):
        notes["undeclared_padding_trimmed"] = True
        return trim_padding(raw, int(info.min), path, "waveform"), notes
    return raw, notes


def _metadata(ds: Dataset, path: Path) -> dict:
    statements, measurements = [], {}
    for item in ds.get("WaveformAnnotationSequence", []):
        if item.get("UnformattedTextValue"):
            statements.append(str(item.UnformattedTextValue))
        concept = item.get("ConceptNameCodeSequence")
        if concept and item.get("NumericValue") is not None:
            try:
                measurements.setdefault(str(concept[0].CodeMeaning), float(item.NumericValue))
            except (TypeError, ValueError, AttributeError):
                pass
    age = str(ds.get("PatientAge", "") or "")
    device = " ".join(str(ds.get(key, "") or "") for key in ("Manufacturer", "ManufacturerModelName")).strip()
    return {
        "record_id": path.stem,
        "patient_id": str(ds.get("PatientID", "") or "") or None,
        "age": float(age[:-1]) if age.endswith("Y") and age[:-1].isdigit() else None,
        "sex": normalise_sex(ds.get("PatientSex")),
        "acquisition_time": _datetime(str(ds.get("AcquisitionDateTime", "") or "")),
        "device": device or None,
        "statements": clean_statements(statements),
        "measurements": measurements,
    }


def _datetime(value: str) -> str | None:
    """DICOM DT ``YYYYMMDDHHMMSS[.F][+ZZZZ]`` to ISO 8601."""
    digits = value.split(".")[0].split("+")[0].split("-")[0]
    for fmt, n in (("%Y%m%d%H%M%S", 14), ("%Y%m%d%H%M", 12), ("%Y%m%d", 8)):
        if len(digits) >= n:
            try:
                return dt.datetime.strptime(digits[:n], fmt).isoformat()
            except ValueError:
                return None
    return None
