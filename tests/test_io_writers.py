"""Writers round-trip through the readers: write a known ECG, read it back equal within the format's quantisation."""
from __future__ import annotations

import numpy as np
import pytest

import ecgfm
from ecgfm.ecg import ECG
from ecgfm.io.writers import write
from ecgfm.leads import STANDARD_LEADS

META = {"patient_id": "P-17", "sex": "F", "acquisition_time": "2024-03-05T10:11:12", "device": "Sim 1",
        "statements": ["Sinus rhythm", "Left axis deviation"]}


@pytest.fixture
def ecg(synthetic_ecg) -> ECG:
    """A realistic 12-lead ECG obeying the limb-lead laws (so 8-lead formats can derive the rest exactly)."""
    return synthetic_ecg(fs=500.0, seconds=10.0, seed=3, noise_mv=0.0, **META)


def _aligned(back: ECG, leads) -> np.ndarray:
    return np.vstack([back.lead(lead) for lead in leads])


# (format, file name, max abs error in mV): half a quantisation step of each writer's default resolution.
ROUND_TRIPS = [
    ("hl7_aecg", "rt.xml", 0.0005 + 1e-6),   # 1 uV digits
    ("scp", "rt.scp", 0.0005 + 1e-6),        # AVM 1000 nV
    ("wfdb", "rt.hea", 1e-4),                # 16-bit, gain chosen by wfdb from the signal range
]


@pytest.mark.parametrize("fmt,name,tolerance", ROUND_TRIPS)
def test_round_trip(tmp_path, ecg, fmt, name, tolerance):
    path = write(ecg, tmp_path / name, format=fmt)
    back = ecgfm.read(path)
    assert back.meta["format"] == fmt
    assert back.fs == ecg.fs and back.n_samples == ecg.n_samples and set(back.leads) == set(ecg.leads)
    assert np.abs(_aligned(back, ecg.leads) - ecg.signal).max() <= tolerance


def test_edf_round_trip_within_16bit_step(tmp_path, ecg):
    path = write(ecg, tmp_path / "rt.edf")
    back = ecgfm.read(path)
    step = 2 * (np.ceil(np.abs(ecg.signal).max() * 1000) + 1) / 1000 / 65534
    assert back.leads == ecg.leads and back.fs == 500
    assert np.abs(back.signal - ecg.signal).max() <= step + 1e-6  # pyedflib truncates rather than rounds
    assert back.meta["patient_id"] == "P-17" and back.meta["acquisition_time"] == META["acquisition_time"]


def test_muse_round_trip_stores_8_leads_and_derives_4(tmp_path, ecg):
    path = write(ecg, tmp_path / "muse.xml", format="muse")
    text = path.read_text(encoding="latin-1")
    assert text.count("<LeadData>") == 8 and "<!DOCTYPE RestingECG" in text
    back = ecgfm.read(path)
    assert back.meta["format"] == "muse" and back.leads == STANDARD_LEADS
    step = 0.00488
    stored = [STANDARD_LEADS.index(lead) for lead in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")]
    assert np.abs(back.signal[stored] - ecg.signal[stored]).max() <= step / 2 + 1e-6
    assert np.abs(back.signal - ecg.signal).max() <= step + 1e-6  # derived leads add two half-steps at most
    assert back.meta["derived_leads"] == ["III", "aVR", "aVL", "aVF"]


@pytest.mark.parametrize("fmt,name", [("hl7_aecg", "m.xml"), ("muse", "m.xml"), ("scp", "m.scp")])
def test_metadata_round_trip(tmp_path, ecg, fmt, name):
    back = ecgfm.read(write(ecg, tmp_path / name, format=fmt))
    assert back.meta["patient_id"] == "P-17" and back.meta["sex"] == "F"
    assert back.meta["acquisition_time"] == META["acquisition_time"]
    if fmt != "scp":
        assert back.meta["statements"] == META["statements"]


@pytest.mark.parametrize("fmt,name", [("hl7_aecg", "r.xml"), ("muse", "r.xml"), ("scp", "r.scp")])
def test_non_integer_rate_round_trip(tmp_path, synthetic_ecg, fmt, name):
    """Welch Allyn records at 599.88 Hz; SCP stores 1667 us, the XML formats the exact rate."""
    ecg = synthetic_ecg(fs=599.88, seconds=4.0, seed=1)
    back = ecgfm.read(write(ecg, tmp_path / name, format=fmt))
    assert back.fs == pytest.approx(599.88, rel=1e-6) and back.n_samples == ecg.n_samples


def test_scp_round_trip_first_and_no_differences_and_extra_leads(tmp_path, synthetic_ecg):
    ecg = synthetic_ecg(seconds=3.0, leads=("I", "II", "V1", "V2", "V3"), seed=2)
    ecg = ecg.replace(leads=("I", "II", "V1", "V4R", "X"))
    for order in (0, 1, 2):
        back = ecgfm.read(write(ecg, tmp_path / f"d{order}.scp", differences=order, avm_nv=500))
        assert back.leads[:2] == ("I", "II") and {"V4R", "X"} <= set(back.leads)
        assert np.abs(_aligned(back, ecg.leads) - ecg.signal).max() <= 0.00025 + 1e-6


def test_scp_huffman_codes_every_range():
    """Values coded by the default table, the 8-bit and the 16-bit escapes decode back exactly."""
    from ecgfm.io.scp import huffman_decode_default
    from ecgfm.io.writers import _huffman_encode

    values = np.array([0, 1, -1, 8, -8, 9, -9, 127, -128, 128, -129, 32767, -32768, 0, 5], dtype=np.int64)
    assert list(huffman_decode_default(_huffman_encode(values), values.size)) == list(values)
    # Hand-checked bit strings: 0 -> "0", +1 -> "100", -2 -> "1101" (8 bits, no padding); -9 -> 8-bit escape.
    assert _huffman_encode(np.array([0, 1, -2])) == bytes([0b01001101])
    assert _huffman_encode(np.array([-9])) == bytes([0b11111111, 0b10111101, 0b11000000])


def test_write_refuses_unknown_format_and_overflow(tmp_path, ecg):
    with pytest.raises(ValueError, match="cannot write format"):
        write(ecg, tmp_path / "x.foo")
    loud = ecg.replace(signal=ecg.signal * 200)  # up to ~300 mV: beyond int16 at 4.88 uV/bit
    with pytest.raises(ValueError, match="overflow int16"):
        write(loud, tmp_path / "loud.xml", format="muse")


def test_wfdb_writer_path_and_header(tmp_path, ecg):
    header = write(ecg, tmp_path / "sub" / "rec", format="wfdb")
    assert header == tmp_path / "sub" / "rec.hea" and (tmp_path / "sub" / "rec.dat").exists()
    assert "Statement: Sinus rhythm" in header.read_text()
