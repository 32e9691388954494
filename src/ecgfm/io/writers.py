"""Writers for interchange and round-trip tests: ``write(ecg, path, format=...)``.

Formats: ``wfdb`` (via ``wfdb.wrsamp``), ``edf`` (via pyedflib), ``hl7_aecg`` (HL7 annotated ECG XML), ``muse``
(GE MUSE-style RestingECG XML) and ``scp`` (SCP-ECG with the default Huffman table and second differences). Each
writes what the matching reader reads back equal within the format's quantisation step.
"""
from __future__ import annotations

import base64
import datetime as dt
import os
import struct
import uuid
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from ecgfm.ecg import ECG
from ecgfm.io.hl7_aecg import HL7_NAMESPACE
from ecgfm.io.scp import DEFAULT_HUFFMAN_TABLE, SCP_LEAD_IDS, SECTION_HEADER, crc_ccitt
from ecgfm.leads import INDEPENDENT_LEADS

_EXTENSIONS = {".hea": "wfdb", ".dat": "wfdb", ".edf": "edf", ".xml": "hl7_aecg", ".scp": "scp"}
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
#: GE MUSE's usual amplitude resolution (uV per bit).
MUSE_UV_PER_BIT = 4.88


def write(ecg: ECG, path: str | os.PathLike, format: str | None = None, **options) -> Path:
    """Write ``ecg`` to ``path`` as ``format`` (default: from the extension; ``.xml`` means HL7 aECG).

    Returns the path written (for WFDB, the ``.hea`` header). Options are format-specific, e.g.
    ``resolution_uv=`` (hl7_aecg), ``uv_per_bit=``/``all_leads=`` (muse), ``avm_nv=``/``differences=`` (scp).
    """
    path = Path(path)
    name = format or _EXTENSIONS.get(path.suffix.lower())
    if name not in WRITERS:
        raise ValueError(f"cannot write format {name or path.suffix!r}; choose one of {', '.join(WRITERS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return WRITERS[name](ecg, path, **options)


def _atomic_write(path: Path, data: bytes) -> Path:
    """Write to a temporary sibling, then rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _acquired(ecg: ECG) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(ecg.meta.get("acquisition_time")))
    except ValueError:
        return None


def _counts(values: np.ndarray, step_mv: float, dtype: str = "int16") -> np.ndarray:
    """Quantise mV to integer counts of ``step_mv``, refusing values the integer type cannot hold."""
    counts = np.rint(np.asarray(values, dtype=np.float64) / step_mv)
    info = np.iinfo(dtype)
    if counts.size and (counts.min() < info.min or counts.max() > info.max):
        raise ValueError(f"amplitudes up to {np.abs(values).max():.3f} mV overflow {dtype} at {step_mv * 1000:g} uV "
                         "per count; choose a coarser resolution")
    return counts.astype(np.int64)


def write_wfdb(ecg: ECG, path: Path) -> Path:
    """WFDB record (16-bit format, gains chosen by wfdb); statements go into header comments."""
    import wfdb

    record = path.with_suffix("") if path.suffix.lower() in {".hea", ".dat"} else path
    wfdb.wrsamp(record.name, fs=ecg.fs, units=["mV"] * ecg.n_leads, sig_name=list(ecg.leads),
                p_signal=ecg.signal.T.astype(np.float64), fmt=["16"] * ecg.n_leads,
                comments=[f"Statement: {s}" for s in ecg.meta.get("statements", [])], write_dir=str(record.parent))
    return record.with_suffix(".hea")


def write_edf(ecg: ECG, path: Path) -> Path:
    """EDF with one channel per lead in mV, 16-bit, physical range symmetric around the largest amplitude."""
    from pyedflib import highlevel

    # 8-character EDF header field; 1 uV headroom keeps pyedflib from warning about extremes at the range limit
    peak = (np.ceil(float(np.abs(ecg.signal).max()) * 1000) + 1) / 1000
    headers = [highlevel.make_signal_header(lead, dimension="mV", sample_frequency=ecg.fs, physical_min=-peak,
                                            physical_max=peak, digital_min=-32767, digital_max=32767)
               for lead in ecg.leads]
    header = highlevel.make_header(patientcode=str(ecg.meta.get("patient_id") or ""),
                                   startdate=_acquired(ecg) or dt.datetime(2000, 1, 1))
    highlevel.write_edf(str(path), ecg.signal.astype(np.float64), headers, header)
    return path


def write_hl7_aecg(ecg: ECG, path: Path, *, resolution_uv: float = 1.0) -> Path:
    """HL7 aECG with one rhythm series: ``SLIST_PQ`` digits at ``resolution_uv`` uV, statements as annotations."""
    root = ET.Element("AnnotatedECG", {"xmlns": HL7_NAMESPACE, "xmlns:xsi": _XSI, "type": "Observation"})
    ET.SubElement(root, "id", root=str(uuid.uuid4()))
    ET.SubElement(root, "code", code="93000", codeSystem="2.16.840.1.113883.6.12", codeSystemName="CPT-4")
    when = (_acquired(ecg) or dt.datetime(2000, 1, 1)).strftime("%Y%m%d%H%M%S")
    ET.SubElement(ET.SubElement(root, "effectiveTime"), "center", value=when)
    _hl7_subject(root, ecg)
    series = ET.SubElement(ET.SubElement(root, "component"), "series")
    ET.SubElement(series, "code", code="RHYTHM", codeSystem="2.16.840.1.113883.5.4")
    ET.SubElement(ET.SubElement(series, "effectiveTime"), "low", value=when)
    device = ET.SubElement(ET.SubElement(ET.SubElement(series, "author"), "seriesAuthor"), "manufacturedSeriesDevice")
    ET.SubElement(device, "manufacturerModelName").text = str(ecg.meta.get("device") or "ecgfm")
    sequences = ET.SubElement(ET.SubElement(series, "component"), "sequenceSet")
    time_value = _hl7_sequence(sequences, "TIME_ABSOLUTE", "GLIST_TS")
    ET.SubElement(time_value, "head", value=when)
    ET.SubElement(time_value, "increment", value=repr(1.0 / ecg.fs), unit="s")
    for lead, row in zip(ecg.leads, ecg.signal):
        value = _hl7_sequence(sequences, f"MDC_ECG_LEAD_{lead.upper()}", "SLIST_PQ")
        ET.SubElement(value, "origin", value="0", unit="uV")
        ET.SubElement(value, "scale", value=repr(float(resolution_uv)), unit="uV")
        ET.SubElement(value, "digits").text = " ".join(map(str, _counts(row, resolution_uv / 1000, "int32")))
    _hl7_statements(series, ecg.meta.get("statements", []))
    return _atomic_write(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _hl7_subject(root: ET.Element, ecg: ECG) -> None:
    chain = ["componentOf", "timepointEvent", "componentOf", "subjectAssignment", "subject", "trialSubject"]
    node = root
    for tag in chain:
        node = ET.SubElement(node, tag)
    ET.SubElement(node, "id", extension=str(ecg.meta.get("patient_id") or ""))
    person = ET.SubElement(node, "subjectDemographicPerson")
    ET.SubElement(person, "administrativeGenderCode", code=str(ecg.meta.get("sex") or "UN"))


def _hl7_sequence(parent: ET.Element, code: str, kind: str) -> ET.Element:
    sequence = ET.SubElement(ET.SubElement(parent, "component"), "sequence")
    ET.SubElement(sequence, "code", code=code)
    return ET.SubElement(sequence, "value", {"xsi:type": kind})


def _hl7_statements(series: ET.Element, statements: list[str]) -> None:
    if not statements:
        return
    annotation_set = ET.SubElement(ET.SubElement(series, "subjectOf"), "annotationSet")
    container = ET.SubElement(ET.SubElement(annotation_set, "component"), "annotation")
    ET.SubElement(container, "code", code="MDC_ECG_INTERPRETATION")
    for statement in statements:
        annotation = ET.SubElement(ET.SubElement(container, "component"), "annotation")
        ET.SubElement(annotation, "code", code="MDC_ECG_INTERPRETATION_STATEMENT")
        ET.SubElement(annotation, "value", {"xsi:type": "ST"}).text = statement


def write_muse(ecg: ECG, path: Path, *, uv_per_bit: float = MUSE_UV_PER_BIT, all_leads: bool = False) -> Path:
    """MUSE-style RestingECG XML: base64 int16 rhythm leads (by default the 8 independent ones, as MUSE does)."""
    keep = [lead for lead in ecg.leads if all_leads or lead in INDEPENDENT_LEADS] or list(ecg.leads)
    root = ET.Element("RestingECG")
    ET.SubElement(ET.SubElement(root, "MuseInfo"), "MuseVersion").text = "ecgfm"
    patient = ET.SubElement(root, "PatientDemographics")
    _muse_fields(patient, PatientID=ecg.meta.get("patient_id"),
                 Gender={"M": "MALE", "F": "FEMALE"}.get(ecg.meta.get("sex") or ""))
    when = _acquired(ecg)
    _muse_fields(ET.SubElement(root, "TestDemographics"), AcquisitionDevice=ecg.meta.get("device"),
                 AcquisitionDate=when.strftime("%m-%d-%Y") if when else None,
                 AcquisitionTime=when.strftime("%H:%M:%S") if when else None)
    diagnosis = ET.SubElement(root, "Diagnosis")
    for statement in ecg.meta.get("statements", []):
        _muse_fields(ET.SubElement(diagnosis, "DiagnosisStatement"), StmtFlag="ENDSLINE", StmtText=statement)
    wave = ET.SubElement(root, "Waveform")
    base, exponent = _muse_rate(ecg.fs)
    _muse_fields(wave, WaveformType="Rhythm", NumberofLeads=len(keep), SampleBase=base, SampleExponent=exponent)
    for lead in keep:
        raw = _counts(ecg.lead(lead), uv_per_bit / 1000).astype("<i2").tobytes()
        _muse_fields(ET.SubElement(wave, "LeadData"), LeadByteCountTotal=len(raw), LeadSampleCountTotal=len(raw) // 2,
                     LeadAmplitudeUnitsPerBit=repr(float(uv_per_bit)), LeadAmplitudeUnits="MICROVOLTS", LeadID=lead,
                     LeadDataCRC32=zlib.crc32(raw), WaveFormData=base64.encodebytes(raw).decode("ascii"))
    body = ET.tostring(root, encoding="unicode")
    text = '<?xml version="1.0" encoding="ISO-8859-1"?>\n<!DOCTYPE RestingECG SYSTEM "restecg.dtd">\n' + body
    return _atomic_write(path, text.encode("latin-1", errors="replace"))


def _muse_fields(parent: ET.Element, **fields) -> None:
    for tag, value in fields.items():
        if value is not None:
            ET.SubElement(parent, tag).text = str(value)


def _muse_rate(fs: float) -> tuple[int, int]:
    """``SampleBase``, ``SampleExponent`` with ``SampleBase * 10**SampleExponent == fs`` (MUSE stores integers)."""
    for exponent in range(0, 7):
        base = fs * 10 ** exponent
        if abs(base - round(base)) < 1e-6:
            return int(round(base)), -exponent
    raise ValueError(f"sampling rate {fs} cannot be written as an integer times a power of ten")


def write_scp(ecg: ECG, path: Path, *, avm_nv: int = 1000, differences: int = 2) -> Path:
    """SCP-ECG v2.0 record: sections 0, 1, 2 (default Huffman table), 3 and 6, with record and section CRCs.

    The sample interval is stored in whole microseconds, so rates like 599.88 Hz round-trip via 1667 us.
    """
    codes = {name: code for code, name in SCP_LEAD_IDS.items()}
    unknown = [lead for lead in ecg.leads if lead not in codes]
    if unknown:
        raise ValueError(f"leads {unknown} have no SCP-ECG lead code")
    interval_us = int(round(1e6 / ecg.fs))
    streams = [_huffman_encode(_differences(_counts(row, avm_nv * 1e-6), differences)) for row in ecg.signal]
    if max(len(s) for s in streams) > 0xFFFF:
        raise ValueError("a lead's encoded data exceeds the 64 KiB SCP-ECG section 6 limit; write a shorter window")
    section3 = bytes([ecg.n_leads, 0x04 | (min(ecg.n_leads, 31) << 3)]) + b"".join(
        struct.pack("<IIB", 1, ecg.n_samples, codes[lead]) for lead in ecg.leads)
    section6 = struct.pack(f"<HHBB{ecg.n_leads}H", avm_nv, interval_us, differences, 0,
                           *map(len, streams)) + b"".join(streams)
    payloads = {1: _scp_patient(ecg), 2: struct.pack("<H", DEFAULT_HUFFMAN_TABLE), 3: section3, 6: section6}
    return _atomic_write(path, _scp_record(payloads))


def _differences(values: np.ndarray, order: int) -> np.ndarray:
    """Inverse of :func:`ecgfm.io.scp.undo_differences`: keep the first ``order`` samples, then differences."""
    if order not in (0, 1, 2):
        raise ValueError(f"differences must be 0, 1 or 2, got {order}")
    out = values.copy()
    if order == 1:
        out[1:] = values[1:] - values[:-1]
    elif order == 2:
        out[2:] = values[2:] - 2 * values[1:-1] + values[:-2]
    return out


def _huffman_encode(values: np.ndarray) -> bytes:
    """EN 1064 default Huffman table: ``0``; ``1``*k ``0`` sign for |v| <= 8; 8-/16-bit escapes otherwise."""
    parts = []
    for value in values.tolist():
        magnitude = abs(value)
        if magnitude == 0:
            parts.append("0")
        elif magnitude <= 8:
            parts.append("1" * magnitude + "0" + ("1" if value < 0 else "0"))
        elif -128 <= value <= 127:
            parts.append("1111111110" + format(value & 0xFF, "08b"))
        elif -32768 <= value <= 32767:
            parts.append("1111111111" + format(value & 0xFFFF, "016b"))
        else:
            raise ValueError(f"difference {value} does not fit 16 bits; use fewer differences or a coarser AVM")
    bits = "".join(parts)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


def _scp_patient(ecg: ECG) -> bytes:
    """Section 1 tags: patient id (2), sex (8), acquisition date (25) and time (26), terminator (255)."""
    def tag(number: int, value: bytes) -> bytes:
        return struct.pack("<BH", number, len(value)) + value

    fields = tag(2, str(ecg.meta.get("patient_id") or "").encode("latin-1", "replace") + b"\x00")
    fields += tag(8, bytes([{"M": 1, "F": 2}.get(ecg.meta.get("sex") or "", 0)]))
    when = _acquired(ecg)
    if when:
        fields += tag(25, struct.pack("<HBB", when.year, when.month, when.day))
        fields += tag(26, bytes([when.hour, when.minute, when.second]))
    return fields + tag(255, b"")


def _scp_record(payloads: dict[int, bytes]) -> bytes:
    """Assemble sections (even lengths, 16-byte headers with CRCs), the section-0 pointer table and record CRC."""
    def section(number: int, body: bytes, reserved: bytes = b"\x00" * 6) -> bytes:
        body += b"\x00" * (len(body) % 2)
        head = struct.pack("<HIBB", number, SECTION_HEADER + len(body), 20, 20) + reserved
        return struct.pack("<H", crc_ccitt(head + body)) + head + body

    pointer_ids = range(0, 12)
    section0_length = SECTION_HEADER + 10 * len(pointer_ids)
    position, pointers, blocks = 7 + section0_length, [], []  # 1-based index just after CRC, size and section 0
    for number in pointer_ids:
        if number == 0:
            pointers.append(struct.pack("<HII", 0, section0_length, 7))
            continue
        block = section(number, payloads[number]) if number in payloads else b""
        pointers.append(struct.pack("<HII", number, len(block), position if block else 0))
        position += len(block)
        blocks.append(block)
    body = section(0, b"".join(pointers), b"SCPECG") + b"".join(blocks)
    record = struct.pack("<I", 6 + len(body)) + body
    return struct.pack("<H", crc_ccitt(record)) + record


WRITERS: dict[str, Callable[..., Path]] = {
    "wfdb": write_wfdb, "edf": write_edf, "hl7_aecg": write_hl7_aecg, "muse": write_muse, "scp": write_scp,
}
