"""GE MUSE resting ECG XML (``<RestingECG>``): base64 int16 waveforms, rhythm or median beats, statements.

MUSE stores the 8 independent leads (I, II, V1-V6); III, aVR, aVL and aVF are derived here (Einthoven/Goldberger).
Each lead carries its own amplitude resolution and unit, and a CRC-32 of its bytes that we verify.
"""
from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np

from ecgfm.ecg import ECG
from ecgfm.errors import ECGReadError
from ecgfm.io._common import (clean_statements, decode_base64, int16_le, iso_datetime, lead_name, make_ecg,
                              normalise_sex, stack_leads, to_millivolt_factor, with_derived_limb_leads)
from ecgfm.io.registry import register_reader
from ecgfm.io.xmlsafe import read_xml, root_is, text

#: ``waveform=`` choices and the ``<WaveformType>`` each selects.
WAVEFORM_TYPES = {"rhythm": "Rhythm", "median": "Median"}


def _sniff(path: Path, head: bytes) -> bool:
    return root_is(head, "RestingECG")


@register_reader("muse", (".xml",), sniff=_sniff, description="GE MUSE resting ECG XML (RestingECG)")
def read_muse(path: Path, *, waveform: str = "rhythm", check_units: bool = True) -> ECG:
    """Read a MUSE XML export; ``waveform="median"`` returns the median beats instead of the 10 s rhythm."""
    root, _ = read_xml(path)
    if root.tag != "RestingECG":
        raise ECGReadError(path, f"not a MUSE export: root element is <{root.tag}>, expected <RestingECG>")
    wave = _select_waveform(root, waveform, path)
    fs = _sample_rate(wave, path)
    decoded = [_decode_lead(lead, path) for lead in wave.iter("LeadData")]
    if not decoded:
        raise ECGReadError(path, f"{WAVEFORM_TYPES[waveform]} waveform has no <LeadData>")
    names = [name for name, _ in decoded]
    signal = stack_leads(path, names, [row for _, row in decoded])
    ecg = make_ecg(path, signal, fs, names, {**_metadata(root, path), "waveform": waveform}, check_units)
    return with_derived_limb_leads(ecg)


def _select_waveform(root: ET.Element, waveform: str, path: Path) -> ET.Element:
    if waveform not in WAVEFORM_TYPES:
        raise ECGReadError(path, f"unknown waveform {waveform!r}; choose one of {', '.join(WAVEFORM_TYPES)}")
    wanted = WAVEFORM_TYPES[waveform]
    found = [w for w in root.iter("Waveform") if (text(w, "WaveformType") or "").lower() == wanted.lower()]
    if not found:
        kinds = sorted({text(w, "WaveformType") or "?" for w in root.iter("Waveform")}) or ["none"]
        raise ECGReadError(path, f"no {wanted} waveform in the file (has: {', '.join(kinds)})")
    return found[0]


def _sample_rate(wave: ET.Element, path: Path) -> float:
    """``SampleBase * 10**SampleExponent`` Hz."""
    try:
        base = float(text(wave, "SampleBase") or "nan")
        exponent = int(text(wave, "SampleExponent") or 0)
    except ValueError:
        raise ECGReadError(path, "unreadable <SampleBase>/<SampleExponent>") from None
    fs = base * 10.0 ** exponent
    if not np.isfinite(fs) or fs <= 0:
        raise ECGReadError(path, "missing or invalid <SampleBase> (sampling rate)")
    return fs


def _decode_lead(lead: ET.Element, path: Path) -> tuple[str, np.ndarray]:
    """One ``<LeadData>``: base64 little-endian int16 times its per-bit amplitude, in mV."""
    label = text(lead, "LeadID")
    if label is None:
        raise ECGReadError(path, "<LeadData> without <LeadID>")
    name = lead_name(label, path)
    what = f"lead {label}"
    raw = decode_base64(text(lead, "WaveFormData"), path, what)
    expected_crc = text(lead, "LeadDataCRC32")
    if expected_crc is not None and expected_crc.isdigit() and zlib.crc32(raw) != int(expected_crc):
        raise ECGReadError(path, f"{what}: waveform bytes fail their LeadDataCRC32 check (corrupted export)")
    count = text(lead, "LeadSampleCountTotal")
    samples = int16_le(raw, path, what, int(count) if count and count.isdigit() else None)
    try:
        per_bit = float(text(lead, "LeadAmplitudeUnitsPerBit") or "nan")
    except ValueError:
        per_bit = float("nan")
    if not np.isfinite(per_bit) or per_bit <= 0:
        raise ECGReadError(path, f"{what}: missing or invalid <LeadAmplitudeUnitsPerBit>")
    unit = text(lead, "LeadAmplitudeUnits")
    if unit is None:
        raise ECGReadError(path, f"{what}: missing <LeadAmplitudeUnits>")
    return name, samples * per_bit * to_millivolt_factor(unit, path, what)


def _metadata(root: ET.Element, path: Path) -> dict:
    """Patient, acquisition and diagnosis fields (blocks may be missing in anonymised exports)."""
    patient = root.find("PatientDemographics")
    test = root.find("TestDemographics")
    age = text(patient, "PatientAge") if patient is not None else None
    age_units = (text(patient, "AgeUnits") or "YEARS").upper() if patient is not None else "YEARS"
    return {
        "record_id": path.stem,
        "patient_id": text(patient, "PatientID") if patient is not None else None,
        "age": float(age) if age and age.isdigit() and age_units == "YEARS" else None,
        "sex": normalise_sex(text(patient, "Gender")) if patient is not None else None,
        "acquisition_time": _acquisition_time(test),
        "device": text(test, "AcquisitionDevice") if test is not None else None,
        "site": text(test, "SiteName") if test is not None else None,
        "statements": _statements(root),
        "measurements": _measurements(root),
    }


def _acquisition_time(test: ET.Element | None) -> str | None:
    """MUSE writes ``MM-DD-YYYY`` and ``HH:MM:SS``."""
    if test is None or text(test, "AcquisitionDate") is None:
        return None
    try:
        date = dt.datetime.strptime(text(test, "AcquisitionDate"), "%m-%d-%Y").date()
        clock = text(test, "AcquisitionTime")
        time = dt.datetime.strptime(clock, "%H:%M:%S").time() if clock else None
    except ValueError:
        return None
    return iso_datetime(date, time)


def _statements(root: ET.Element) -> list[str]:
    """Diagnosis lines: statements are concatenated until one flagged ``ENDSLINE`` ends the line.

    The (possibly over-read) ``<Diagnosis>`` is preferred to the machine's ``<OriginalDiagnosis>``.
    """
    block = root.find("Diagnosis")
    if block is None:
        block = root.find("OriginalDiagnosis")
    if block is None:
        return []
    lines, current = [], []
    for stmt in block.iter("DiagnosisStatement"):
        current.append(text(stmt, "StmtText") or "")
        if any((flag.text or "").strip() == "ENDSLINE" for flag in stmt.findall("StmtFlag")):
            lines.append(" ".join(part for part in current if part))
            current = []
    lines.append(" ".join(part for part in current if part))
    return clean_statements(lines)


def _measurements(root: ET.Element) -> dict[str, float]:
    """Global measurements (rate, intervals in ms, axes in degrees) as numbers."""
    block = root.find("RestingECGMeasurements")
    if block is None:
        return {}
    values = {}
    for child in block:
        try:
            values[child.tag] = float(child.text)
        except (TypeError, ValueError):
            continue
    return values
