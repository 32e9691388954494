"""HL7 annotated ECG (FDA aECG, ``<AnnotatedECG xmlns="urn:hl7-org:v3">``).

Waveforms are ``SLIST_PQ`` sequences: physical value = origin + scale * digit, each with its own unit; the time axis is
a ``GLIST_TS``/``GLIST_PQ`` sequence whose ``increment`` is the sampling interval. Leads are MDC codes
(``MDC_ECG_LEAD_AVR``). Rhythm waveforms live in ``component/series``; median beats in ``derivation/derivedSeries``.
"""
from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ecgfm.ecg import ECG
from ecgfm.errors import ECGReadError
from ecgfm.io._common import (clean_statements, is_lead_name, iso_datetime, lead_name, make_ecg, normalise_sex,
                              stack_leads, to_millivolt_factor, with_derived_limb_leads)
from ecgfm.io.registry import register_reader
from ecgfm.io.xmlsafe import attr, read_xml, root_is, text

HL7_NAMESPACE = "urn:hl7-org:v3"
#: ``waveform=`` choices: the element holding the series and its ``code``.
SERIES = {"rhythm": ("series", "RHYTHM"), "median": ("derivedSeries", "REPRESENTATIVE_BEAT")}
_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def _sniff(path: Path, head: bytes) -> bool:
    return root_is(head, "AnnotatedECG", HL7_NAMESPACE)


@register_reader("hl7_aecg", (".xml",), sniff=_sniff, description="HL7 annotated ECG (FDA aECG XML)")
def read_hl7_aecg(path: Path, *, waveform: str = "rhythm", check_units: bool = True) -> ECG:
    """Read an HL7 aECG file; ``waveform="median"`` returns the representative beats."""
    root, namespace = read_xml(path)
    if root.tag != "AnnotatedECG" or namespace != HL7_NAMESPACE:
        raise ECGReadError(path, f"not an HL7 aECG: root <{root.tag}> in namespace {namespace!r}")
    series = _select_series(root, waveform, path)
    fs, names, rows, skipped = _sequences(series, path)
    signal = stack_leads(path, names, rows)
    meta = {**_metadata(root, series, path), "waveform": waveform, "skipped_channels": skipped}
    return with_derived_limb_leads(make_ecg(path, signal, fs, names, meta, check_units))


def _select_series(root: ET.Element, waveform: str, path: Path) -> ET.Element:
    if waveform not in SERIES:
        raise ECGReadError(path, f"unknown waveform {waveform!r}; choose one of {', '.join(SERIES)}")
    tag, code = SERIES[waveform]
    candidates = list(root.iter(tag))
    for series in candidates:
        if attr(series.find("code"), "code") == code:
            return series
    if waveform == "rhythm" and candidates:  # some exporters leave the series code out
        return candidates[0]
    raise ECGReadError(path, f"no {code} series in the file")


def _sequences(series: ET.Element, path: Path) -> tuple[float, list[str], list[np.ndarray], list[str]]:
    """Sampling rate, lead names and mV rows from the first sequence set holding ECG leads."""
    for sequence_set in series.iter("sequenceSet"):
        fs, names, rows, skipped = None, [], [], []
        for sequence in sequence_set.iter("sequence"):
            code = attr(sequence.find("code"), "code") or ""
            value = sequence.find("value")
            if code.startswith("TIME_"):
                fs = _sample_rate(value, path)
            elif code.startswith("MDC_ECG_LEAD_") and is_lead_name(code):
                names.append(lead_name(code, path))
                rows.append(_lead_values(value, code, path))
            elif code:
                skipped.append(code)
        if rows:
            if fs is None:
                raise ECGReadError(path, "sequence set has leads but no TIME_ABSOLUTE/TIME_RELATIVE increment")
            return fs, names, rows, skipped
    raise ECGReadError(path, "no MDC_ECG_LEAD_* sequences found in the series")


def _sample_rate(value: ET.Element | None, path: Path) -> float:
    increment = value.find("increment") if value is not None else None
    unit = attr(increment, "unit") or "s"
    try:
        step = float(attr(increment, "value")) * _SECONDS[unit]
    except (TypeError, ValueError, KeyError):
        raise ECGReadError(path, f"unreadable time increment (value={attr(increment, 'value')!r}, unit={unit!r})"
                           ) from None
    if step <= 0:
        raise ECGReadError(path, f"non-positive time increment {step} s")
    return 1.0 / step


def _lead_values(value: ET.Element | None, code: str, path: Path) -> np.ndarray:
    """``origin + scale * digits`` converted to mV (origin and scale may have different units)."""
    if value is None or (attr(value, "type") or "SLIST_PQ") != "SLIST_PQ":
        raise ECGReadError(path, f"{code}: expected an SLIST_PQ value, got {attr(value, 'type')!r}")
    parts = {}
    for name in ("origin", "scale"):
        elem = value.find(name)
        try:
            number = float(attr(elem, "value"))
        except (TypeError, ValueError):
            raise ECGReadError(path, f"{code}: missing or invalid <{name}>") from None
        parts[name] = number * to_millivolt_factor(attr(elem, "unit") or "", path, f"{code} {name}")
    try:
        digits = np.array((text(value, "digits") or "").split(), dtype=np.float64)
    except ValueError as exc:
        raise ECGReadError(path, f"{code}: <digits> holds a non-number ({exc})") from None
    if digits.size == 0:
        raise ECGReadError(path, f"{code}: empty <digits>")
    return parts["origin"] + parts["scale"] * digits


def _metadata(root: ET.Element, series: ET.Element, path: Path) -> dict:
    person = root.find(".//subjectDemographicPerson")
    subject = root.find(".//trialSubject")
    device = series.find(".//manufacturedSeriesDevice")
    maker = text(series, ".//manufacturerOrganization/name")
    model = text(device, "manufacturerModelName") if device is not None else None
    patient_id = (text(person, "PatientID") if person is not None else None) or \
        (attr(subject.find("id"), "extension") if subject is not None else None)
    return {
        "record_id": path.stem,
        "patient_id": patient_id,
        "sex": normalise_sex(attr(person.find("administrativeGenderCode"), "code")) if person is not None else None,
        "acquisition_time": _hl7_time(attr(series.find("effectiveTime/low"), "value")
                                      or attr(root.find("effectiveTime/center"), "value")
                                      or attr(root.find("effectiveTime/low"), "value")),
        "device": " ".join(part for part in (maker, model) if part) or None,
        "statements": _statements(root),
        "measurements": _measurements(root),
    }


def _hl7_time(value: str | None) -> str | None:
    """HL7 TS ``YYYYMMDDHHMMSS[.fff]`` (any prefix length) to ISO 8601."""
    if not value or not value[:8].isdigit():
        return None
    digits = value.split(".")[0].split("+")[0].split("-")[0]
    try:
        if len(digits) >= 14:
            return dt.datetime.strptime(digits[:14], "%Y%m%d%H%M%S").isoformat()
        return iso_datetime(dt.datetime.strptime(digits[:8], "%Y%m%d").date())
    except ValueError:
        return None


def _statements(root: ET.Element) -> list[str]:
    """Interpretation statements (free text) and coded rhythm statements (display name), in file order."""
    found = []
    for annotation in root.iter("annotation"):
        code = attr(annotation.find("code"), "code") or ""
        value = annotation.find("value")
        if code == "MDC_ECG_INTERPRETATION_STATEMENT":
            found.append(text(value))
        elif code == "MDC_ECG_RHY" and value is not None:
            found.append(attr(value, "displayName") or attr(value, "code"))
    return list(dict.fromkeys(clean_statements(found)))


def _measurements(root: ET.Element) -> dict[str, float]:
    """Global interval, rate and axis annotations (first occurrence of each code)."""
    values: dict[str, float] = {}
    for annotation in root.iter("annotation"):
        code = attr(annotation.find("code"), "code") or ""
        value = annotation.find("value")
        if code.startswith(("MDC_ECG_TIME_PD_", "MDC_ECG_HEART_RATE", "MDC_ECG_ANGLE_")) and code not in values:
            try:
                values[code] = float(attr(value, "value"))
            except (TypeError, ValueError):
                continue
    return values
