"""Readers on files the tests generate: exact round trips through independent encoders (Philips XLI, DICOM, ISHNE; in
io_fixtures.py) and every malformed-input path raising :class:`ECGReadError` that names the file and the problem."""
from __future__ import annotations

import base64
import re
import struct
from pathlib import Path

import numpy as np
import pytest

import ecgfm
from ecgfm.ecg import ECG
from ecgfm.errors import ECGReadError
from ecgfm.io.writers import write
from ecgfm.leads import STANDARD_LEADS

from conftest import make_synthetic_ecg
from io_fixtures import adc_counts, philips_xml, write_dicom, write_ishne


@pytest.fixture
def ecg(synthetic_ecg) -> ECG:
    return synthetic_ecg(fs=500.0, seconds=4.0, seed=5, noise_mv=0.0, patient_id="S-1", sex="M",
                         acquisition_time="2021-06-07T08:09:10", statements=["Sinus rhythm"])


# --- Philips XLI: round trips through an independent encoder (LZW + second-order delta codes) --------------------
@pytest.mark.parametrize("version", ["1.04", "1.03"])
def test_philips_xli_round_trip(tmp_path, ecg, version):
    counts = adc_counts(ecg, 5.0)
    path = tmp_path / "philips.xml"
    text = philips_xml(counts, 500, 5.0, version)
    if version == "1.04":  # UTF-16 with a byte-order mark, as PageWriters write
        path.write_bytes(text.encode("utf-16"))
    else:  # 1.03 files are ASCII (declared UTF-8)
        path.write_bytes(text.replace('encoding="utf-16"', 'encoding="UTF-8"').encode("ascii"))
    back = ecgfm.read(path)
    assert back.meta["format"] == "philips" and back.leads == STANDARD_LEADS and back.fs == 500
    np.testing.assert_array_equal(np.rint(back.signal.astype(np.float64) * 200).astype(np.int64), counts)
    assert back.meta["statements"] == ["Sinus rhythm"] and back.meta["patient_id"] == "P9"
    assert back.meta["sex"] == "F" and back.meta["acquisition_time"] == "2020-01-02T03:04:05"


def test_philips_corrupt_lzw_and_truncated_chunks(tmp_path, ecg):
    counts = adc_counts(ecg, 5.0)
    good = philips_xml(counts, 500, 5.0)
    payload = re.search(r">([A-Za-z0-9+/=]{100,})<", good).group(1)
    raw = base64.b64decode(payload)
    short = good.replace(payload, base64.b64encode(raw[:len(raw) // 2]).decode())
    (tmp_path / "short.xml").write_text(short, encoding="utf-16")
    with pytest.raises(ECGReadError, match=r"short\.xml: XLI (chunk|data)"):
        ecgfm.read(tmp_path / "short.xml")
    (tmp_path / "b64.xml").write_text(good.replace(payload, payload[:40] + "!!" + payload[42:]), encoding="utf-16")
    with pytest.raises(ECGReadError, match="undecodable base64"):
        ecgfm.read(tmp_path / "b64.xml")


# --- DICOM built with pydicom ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("unit,sensitivity", [("uV", 2.5), ("mV", 0.0025)])
def test_dicom_round_trip_units(tmp_path, ecg, unit, sensitivity):
    counts = adc_counts(ecg, 2.5)
    back = ecgfm.read(write_dicom(tmp_path / "e.dcm", counts, 500, sensitivity, unit))
    assert back.leads == STANDARD_LEADS and back.meta["sop_class"] == "12-lead ECG"
    np.testing.assert_allclose(back.signal, counts * 0.0025, atol=1e-6)
    assert back.meta["patient_id"] == "D-3" and back.meta["age"] == 61 and back.meta["sex"] == "F"
    assert back.meta["acquisition_time"] == "2019-03-04T05:06:07"


def test_dicom_declared_padding_trimmed_and_interior_padding_refused(tmp_path, ecg):
    counts = adc_counts(ecg, 2.5)
    padded = np.hstack([counts, np.full((12, 5), -32768)])
    back = ecgfm.read(write_dicom(tmp_path / "p.dcm", padded, 500, 2.5, "uV", padding=b"\x00\x80"))
    assert back.n_samples == counts.shape[1]
    holed = counts.copy()
    holed[3, 100] = -32768
    with pytest.raises(ECGReadError, match="padding/missing samples"):
        ecgfm.read(write_dicom(tmp_path / "h.dcm", holed, 500, 2.5, "uV", padding=b"\x00\x80"))


def test_dicom_refusals(tmp_path, ecg):
    counts = adc_counts(ecg, 2.5)
    with pytest.raises(ECGReadError, match="unknown amplitude unit"):
        ecgfm.read(write_dicom(tmp_path / "u.dcm", counts, 500, 2.5, "furlong"))
    with pytest.raises(ECGReadError, match="not an ECG waveform"):
        ecgfm.read(write_dicom(tmp_path / "s.dcm", counts, 500, 2.5, "uV", sop="1.2.840.10008.5.1.4.1.1.2"))
    with pytest.raises(ECGReadError, match="no ECG lead channels"):
        ecgfm.read(write_dicom(tmp_path / "n.dcm", counts[:2], 500, 2.5, "mmHg", labels=("P1", "P2"),
                          sop="1.2.840.10008.5.1.4.1.1.9.2.1"))
    (tmp_path / "junk.dcm").write_bytes(b"not a dicom file at all" * 10)
    with pytest.raises(ECGReadError, match=r"junk\.dcm: not a readable DICOM"):
        ecgfm.read(tmp_path / "junk.dcm")


def test_dicom_hemodynamic_skips_pressure_channels(tmp_path, ecg):
    counts = np.vstack([adc_counts(ecg, 2.5)[:2], np.full((1, ecg.n_samples), 120)])
    back = ecgfm.read(write_dicom(tmp_path / "hemo.dcm", counts, 500, 2.5, "uV", labels=("I", "II", "ART"),
                             sop="1.2.840.10008.5.1.4.1.1.9.2.1"))
    assert back.meta["skipped_channels"] == ["Lead ART"] and back.meta["sop_class"] == "Hemodynamic"
    assert set(back.leads) == set(STANDARD_LEADS[:6])  # III, aVR, aVL, aVF derived from I and II


# --- ISHNE ----------------------------------------------------------------------------------------------------------
def test_ishne_round_trip_and_window(tmp_path, ecg):
    counts = adc_counts(ecg, 2.5)
    path = write_ishne(tmp_path / "h.ecg", counts, 500, range(5, 17))
    back = ecgfm.read(path)
    assert back.meta["format"] == "ishne" and back.leads == STANDARD_LEADS
    np.testing.assert_allclose(back.signal, counts * 0.0025, atol=1e-6)
    assert back.meta["sex"] == "F" and back.meta["acquisition_time"] == "2022-05-04T13:14:15"
    part = ecgfm.read(path, start=1.0, duration=0.5)
    np.testing.assert_array_equal(part.signal, back.signal[:, 500:750])
    with pytest.raises(ECGReadError, match="window starts at 9.0 s but the recording lasts 4.000 s"):
        ecgfm.read(path, start=9.0)


def test_ishne_refusals(tmp_path, ecg):
    counts = adc_counts(ecg, 2.5)[:3]
    with pytest.raises(ECGReadError, match="CRC"):
        ecgfm.read(write_ishne(tmp_path / "c.ecg", counts, 500, (5, 6, 11), crc_ok=False))
    with pytest.raises(ECGReadError, match="truncated"):
        ecgfm.read(write_ishne(tmp_path / "t.ecg", counts, 500, (5, 6, 11), truncate=100))
    generic = write_ishne(tmp_path / "g.ecg", counts, 500, (1, 1, 1))
    with pytest.raises(ECGReadError, match=r"channel 1 has ISHNE lead code 1.*lead_map"):
        ecgfm.read(generic)
    assert ecgfm.read(generic, lead_map={1: "I", 2: "II", 3: "V5"}).leads[:2] == ("I", "II")
    with pytest.raises(ECGReadError, match="content matches none of the readers"):
        ecgfm.read(write_ishne(tmp_path / "m.ecg", counts, 500, (5, 6, 11), magic=b"NOTISHNE"))


# --- MUSE / HL7 malformed variants (mutating the writers' output) ------------------------------------------------
@pytest.fixture
def muse_text(tmp_path, ecg) -> str:
    return write(ecg, tmp_path / "base.xml", format="muse").read_text(encoding="latin-1")


def _lead_block(text: str, lead: str) -> str:
    return re.search(rf"<LeadData>(?:(?!</LeadData>).)*<LeadID>{lead}</LeadID>.*?</LeadData>", text, re.S).group(0)


@pytest.mark.parametrize("mutation,message", [
    (lambda t: t.replace("MICROVOLTS", "FURLONGS", 1), "unknown amplitude unit"),
    (lambda t: t.replace("<LeadAmplitudeUnitsPerBit>4.88", "<LeadAmplitudeUnitsPerBit>x", 1),
     "invalid <LeadAmplitudeUnitsPerBit>"),
    (lambda t: re.sub(r"(<WaveFormData>)(.{10})", r"\1!!*\2", t, count=1, flags=re.S), "undecodable base64"),
    (lambda t: re.sub(r"<LeadDataCRC32>\d+", "<LeadDataCRC32>12345", t, count=1), "LeadDataCRC32"),
    (lambda t: re.sub(r"<LeadSampleCountTotal>\d+", "<LeadSampleCountTotal>7", t, count=1),
     "samples decoded but the header declares 7"),
    (lambda t: re.sub(r"<LeadData>.*</LeadData>", "", t, flags=re.S), "no <LeadData>"),
    (lambda t: t.replace("<LeadID>V3</LeadID>", "<LeadID>Q7</LeadID>"), "names no ECG lead"),
    (lambda t: t.replace("<WaveformType>Rhythm", "<WaveformType>Median"), "no Rhythm waveform"),
])
def test_muse_malformed(tmp_path, muse_text, mutation, message):
    path = tmp_path / "bad.xml"
    path.write_text(mutation(muse_text), encoding="latin-1")
    with pytest.raises(ECGReadError, match=message) as info:
        ecgfm.read(path)
    assert str(info.value).startswith(str(path))


def test_muse_inconsistent_lengths(tmp_path, muse_text):
    import zlib

    block = _lead_block(muse_text, "V2")
    raw = base64.b64decode("".join(re.search(r"<WaveFormData>(.*?)</WaveFormData>", block, re.S).group(1).split()))
    short = raw[:-200]
    new = re.sub(r"<WaveFormData>.*?</WaveFormData>", f"<WaveFormData>{base64.b64encode(short).decode()}"
                 "</WaveFormData>", block, flags=re.S)
    new = re.sub(r"<LeadSampleCountTotal>\d+", f"<LeadSampleCountTotal>{len(short) // 2}", new)
    new = re.sub(r"<LeadDataCRC32>\d+", f"<LeadDataCRC32>{zlib.crc32(short)}", new)
    path = tmp_path / "ragged.xml"
    path.write_text(muse_text.replace(block, new), encoding="latin-1")
    with pytest.raises(ECGReadError, match=r"inconsistent lengths \(.*V2: 1900"):
        ecgfm.read(path)


@pytest.fixture
def hl7_text(tmp_path, ecg) -> str:
    return write(ecg, tmp_path / "base.xml", format="hl7_aecg").read_text(encoding="utf-8")


@pytest.mark.parametrize("mutation,message", [
    (lambda t: re.sub(r"<digits>(-?\d+)", r"<digits>\1 abc", t, count=1), "holds a non-number"),
    (lambda t: t.replace('unit="uV"', 'unit="parsec"', 1), "unknown amplitude unit"),
    (lambda t: re.sub(r'<increment value="[^"]+"', '<increment value="zero"', t), "unreadable time increment"),
    (lambda t: re.sub(r"<digits>[^<]*</digits>", "<digits></digits>", t, count=1), "empty <digits>"),
    (lambda t: re.sub(r"(<digits>(?:-?\d+ ){10})", r"<digits>", t, count=1), "inconsistent lengths"),
    (lambda t: t.replace("MDC_ECG_LEAD_", "MDC_ECG_FOO_"), "no MDC_ECG_LEAD_"),
])
def test_hl7_malformed(tmp_path, hl7_text, mutation, message):
    path = tmp_path / "bad.xml"
    path.write_text(mutation(hl7_text), encoding="utf-8")
    with pytest.raises(ECGReadError, match=message):
        ecgfm.read(path)


def test_hl7_requires_its_namespace(tmp_path, hl7_text):
    path = tmp_path / "ns.xml"
    path.write_text(hl7_text.replace("urn:hl7-org:v3", "urn:example:other"), encoding="utf-8")
    with pytest.raises(ECGReadError, match="matches none of the readers"):
        ecgfm.read(path)
    with pytest.raises(ECGReadError, match="not an HL7 aECG"):
        ecgfm.read(path, format="hl7_aecg")


# --- SCP-ECG -------------------------------------------------------------------------------------------------------
@pytest.fixture
def scp_bytes(tmp_path, ecg) -> bytes:
    return write(ecg, tmp_path / "base.scp").read_bytes()


def test_scp_crc_and_truncation(tmp_path, scp_bytes):
    from ecgfm.io.scp import crc_ccitt

    corrupt = bytearray(scp_bytes)
    corrupt[-10] ^= 0xFF  # inside section 6's Huffman data
    (tmp_path / "c.scp").write_bytes(bytes(corrupt))
    with pytest.raises(ECGReadError, match=r"c\.scp: SCP-ECG record fails its integrity check"):
        ecgfm.read(tmp_path / "c.scp")
    corrupt[:2] = struct.pack("<H", crc_ccitt(bytes(corrupt[2:])))  # a valid record CRC: the section CRC catches it
    (tmp_path / "s.scp").write_bytes(bytes(corrupt))
    with pytest.raises(ECGReadError, match="section 6 fails its CRC"):
        ecgfm.read(tmp_path / "s.scp")
    assert ecgfm.read(tmp_path / "s.scp", check_crc=False).n_leads == 12  # the caller's explicit choice
    (tmp_path / "t.scp").write_bytes(scp_bytes[:len(scp_bytes) // 2])
    with pytest.raises(ECGReadError, match="integrity check"):
        ecgfm.read(tmp_path / "t.scp")
    (tmp_path / "tiny.scp").write_bytes(b"\x00" * 10)
    with pytest.raises(ECGReadError, match="too short"):
        ecgfm.read(tmp_path / "tiny.scp")


def _scp_with(ecg: ECG, tmp_path: Path, **edits) -> Path:
    """An SCP record whose section payloads are edited (then all CRCs recomputed)."""
    from ecgfm.io.scp import parse_sections
    from ecgfm.io.writers import _scp_record

    sections = parse_sections(write(ecg, tmp_path / "src.scp").read_bytes(), tmp_path / "src.scp")
    payloads = {k: v for k, v in sections.items() if k != 0}
    for key, edit in edits.items():
        payloads[int(key[1:])] = edit(payloads[int(key[1:])])
    path = tmp_path / "edited.scp"
    path.write_bytes(_scp_record(payloads))
    return path


@pytest.mark.parametrize("edits,message", [
    ({"s2": lambda p: struct.pack("<H", 1) + p[2:]}, "custom Huffman tables"),
    ({"s6": lambda p: p[:5] + b"\x01" + p[6:]}, "bimodal"),
    ({"s3": lambda p: p[:1] + bytes([p[1] | 1]) + p[2:]}, "reference-beat subtraction"),
    ({"s6": lambda p: p[:4] + b"\x07" + p[5:]}, "unknown difference encoding"),
    ({"s3": lambda p: _recode_lead(p, 8, 99)}, "SCP lead code 99"),
    ({"s6": lambda p: p[:6 + 24] + b"\x00" * 4}, "declared"),
])
def test_scp_unsupported_or_malformed(tmp_path, ecg, edits, message):
    with pytest.raises(ECGReadError, match=message):
        ecgfm.read(_scp_with(ecg, tmp_path, **edits))


def _recode_lead(section3: bytes, old: int, new: int) -> bytes:
    """Section 3 with lead code ``old`` replaced by ``new``."""
    out = bytearray(section3)
    for i in range(out[0]):
        if out[2 + 9 * i + 8] == old:
            out[2 + 9 * i + 8] = new
    return bytes(out)


def test_scp_negated_avr_lead(tmp_path, ecg):
    """Lead code 65 is -aVR (Cabrera display): its samples are negated into aVR."""
    flipped = ecg.replace(signal=np.vstack([-ecg.lead("aVR") if lead == "aVR" else ecg.lead(lead)
                                            for lead in ecg.leads]))
    back = ecgfm.read(_scp_with(flipped, tmp_path, s3=lambda p: _recode_lead(p, 62, 65)))
    np.testing.assert_allclose(back.lead("aVR"), ecg.lead("aVR"), atol=0.0006)


# --- EDF and Contec -------------------------------------------------------------------------------------------------
def test_edf_window_and_channel_selection(tmp_path, ecg):
    path = write(ecg, tmp_path / "e.edf")
    part = ecgfm.read(path, start=1.0, duration=2.0)
    assert part.n_samples == 1000 and part.meta["window_start_s"] == 1.0
    full = ecgfm.read(path)
    np.testing.assert_array_equal(part.signal, full.signal[:, 500:1500])
    renamed = ecgfm.read(path, lead_map={"V1": "V3R"})
    assert "V3R" in renamed.leads and "V1" not in renamed.leads


def test_edf_without_ecg_channels(tmp_path):
    from pyedflib import highlevel

    path = tmp_path / "acc.edf"
    headers = [highlevel.make_signal_header("ACCX", dimension="mg", sample_frequency=50, physical_min=-100,
                                            physical_max=100)]
    highlevel.write_edf(str(path), np.zeros((1, 500)), headers)
    with pytest.raises(ECGReadError, match=r"acc\.edf: no ECG lead channels among ACCX"):
        ecgfm.read(path)


def test_contec_invalid_samples_inside_refused(tmp_path):
    # case name, 2 unknown bytes, timestamp, 2 unknown bytes, patient name, sex (1 = M), age, weight
    header = (b"0000001\x00" + b"\x00\x00" + b"2021-01-02 03:04:05\x00" + b"\x00\x00" + b"NAME\x00\x00\x00\x00"
              + bytes([1, 40, 70]))
    ecg = make_synthetic_ecg(fs=800, seconds=3, leads=("II", "III", "V1", "V2", "V3", "V4", "V5", "V6"))
    rows = np.round(2048 + ecg.signal.T * 200).astype(np.uint16)  # 5 uV per count around 2048
    path = tmp_path / "c.ECG"
    path.write_bytes(header + rows.astype("<u2").tobytes() + b"\x00" * 37)
    ecg = ecgfm.read(path)
    assert ecg.meta["format"] == "contec" and ecg.fs == 800 and ecg.meta["sex"] == "M" and ecg.meta["age"] == 40
    np.testing.assert_allclose(ecg.lead("I"), ecg.lead("II") - ecg.lead("III"), atol=1e-6)
    rows[500, 3] = 0x6800
    path.write_bytes(header + rows.astype("<u2").tobytes() + b"\x00" * 37)
    with pytest.raises(ECGReadError, match=r"leads V2 have invalid \(0x6800\) samples"):
        ecgfm.read(path)
