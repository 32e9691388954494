"""WFDB reader: PTB-XL-style .hea/.dat, PhysioNet Challenge 2020/21 .hea/.mat, and agreement with wfdb.rdsamp."""
from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy.io import loadmat

import ecgfm
from ecgfm import STANDARD_LEADS
from ecgfm.io.wfdb_reader import parse_challenge_comments
from ecgfm.leads import canonical_lead_names


def test_round_trip_through_wrsamp(tmp_path, synthetic_ecg, write_wfdb):
    ecg = synthetic_ecg(fs=500, seconds=10)
    header = write_wfdb(tmp_path, "rec1", ecg, sig_names=[n.upper() for n in ecg.leads])  # PTB-XL writes "AVR"
    for path in (header, tmp_path / "rec1.dat"):
        out = ecgfm.read(path)
        assert out.leads == STANDARD_LEADS and out.fs == 500 and out.record_id == "rec1"
        assert out.meta["format"] == "wfdb" and out.meta["source"] == str(header)
        np.testing.assert_allclose(out.signal, ecg.signal, atol=0.5 / 1000 + 1e-6)  # half an ADC step at 1000/mV


def test_window_selects_samples(tmp_path, synthetic_ecg, write_wfdb):
    ecg = synthetic_ecg(fs=250, seconds=8)
    header = write_wfdb(tmp_path, "win", ecg)
    full = ecgfm.read(header)
    part = ecgfm.read(header, sampfrom=250, sampto=750)
    np.testing.assert_array_equal(part.signal, full.signal[:, 250:750])
    tail = ecgfm.read(header, sampfrom=1500)
    np.testing.assert_array_equal(tail.signal, full.signal[:, 1500:])


def test_microvolt_header_units_are_converted(tmp_path, synthetic_ecg):
    ecg = synthetic_ecg(fs=500, seconds=2, leads=("I", "II"))
    wfdb.wrsamp("uv", fs=500, units=["uV", "uV"], sig_name=["I", "II"], p_signal=ecg.signal.T.astype(float) * 1000,
                fmt=["16", "16"], adc_gain=[1.0, 1.0], baseline=[0, 0], write_dir=str(tmp_path))
    out = ecgfm.read(tmp_path / "uv.hea")
    np.testing.assert_allclose(out.signal, ecg.signal, atol=1e-3)


def test_challenge_mat_record(tmp_path, synthetic_ecg, write_challenge):
    ecg = synthetic_ecg(fs=500, seconds=10)
    header = write_challenge(tmp_path, "A0001", ecg, age="74", sex="Male", dx=("59118001", "164884008"))
    assert (tmp_path / "A0001.hea").read_text().splitlines()[1].startswith("A0001.mat 16+24 1000/mV 16 0 ")
    val = loadmat(tmp_path / "A0001.mat")["val"]
    assert val.dtype == np.int16 and val.shape == (12, 5000)
    # wfdb itself reads the record; our reader agrees with it and with the raw matrix / gain
    p_signal, fields = wfdb.rdsamp(str(tmp_path / "A0001"))
    np.testing.assert_array_equal(p_signal.T, val / 1000.0)
    for path in (header, tmp_path / "A0001.mat"):
        out = ecgfm.read(path)
        np.testing.assert_array_equal(out.signal, (val / 1000.0).astype(np.float32))
        assert out.fs == fields["fs"] == 500 and out.leads == STANDARD_LEADS
    meta = out.meta
    assert meta["age"] == 74.0 and meta["sex"] == "M"
    assert meta["snomed"] == ["59118001", "164884008"]  # RBBB, ventricular ectopics
    assert meta["scp"] == ["CRBBB", "PVC"]


@pytest.mark.parametrize("comments, expected", [
    (["Age: 74", "Sex: Male", "Dx: 164889003,426783006"],
     {"age": 74.0, "sex": "M", "snomed": ["164889003", "426783006"], "scp": ["AFIB", "SR"]}),
    (["Age: NaN", "Sex: Female", "Dx: 251146004, 10370003"],
     {"age": None, "sex": "F", "snomed": ["251146004", "10370003"], "scp": ["LVOLT", "PACE"]}),
    (["Age: 61", "Sex: Unknown", "Dx: 426627000"], {"age": 61.0, "sex": None, "snomed": ["426627000"], "scp": []}),
    (["recorded in a dry run"], {}),
])
def test_challenge_header_comments(comments, expected):
    assert parse_challenge_comments(comments) == expected


# --- agreement with wfdb.rdsamp on the real PTB-XL folder ------------------------------------------------------------
SAMPLE_SIZE = 300


def _records(ptbxl_dir, request):
    headers = sorted(ptbxl_dir.glob("records*/*/*.hea"))
    if request.config.getoption("--all-records"):
        return headers
    rng = np.random.default_rng(20261124)
    return [headers[i] for i in sorted(rng.choice(len(headers), size=min(SAMPLE_SIZE, len(headers)), replace=False))]


@pytest.mark.ptbxl
def test_ptbxl_records_match_wfdb_rdsamp(ptbxl_dir, request):
    """A seeded sample of 300 records (both rates) by default; every record with ``pytest --all-records``."""
    headers = _records(ptbxl_dir, request)
    assert any("records500" in str(h) for h in headers) and any("records100" in str(h) for h in headers)
    for header in headers:
        reference, fields = wfdb.rdsamp(str(header.with_suffix("")))
        ecg = ecgfm.read(header)
        np.testing.assert_array_equal(ecg.signal, reference.T.astype(np.float32), err_msg=str(header))
        assert ecg.fs == fields["fs"] and ecg.leads == canonical_lead_names(fields["sig_name"]), header
        assert ecg.n_samples == (5000 if fields["fs"] == 500 else 1000), header


@pytest.mark.ptbxl
def test_ptbxl_limb_leads_obey_einthoven(ptbxl_dir):
    """PTB-XL's carts derive III and the augmented leads from I and II; stored values agree to 1 ADC step (1 µV)."""
    for header in sorted(ptbxl_dir.glob("records*/*/*.hea"))[::200]:
        ecg = ecgfm.read(header)
        assert np.abs(ecg.lead("I") + ecg.lead("III") - ecg.lead("II")).max() <= 0.0011, header
        assert np.abs(ecg.lead("aVR") + ecg.lead("aVL") + ecg.lead("aVF")).max() <= 0.0021, header


def test_record_name_without_extension(tmp_path, synthetic_ecg, write_wfdb):
    ecg = synthetic_ecg(fs=500, seconds=2)
    write_wfdb(tmp_path, "00009_hr", ecg)
    out = ecgfm.read(tmp_path / "00009_hr")  # as wfdb.rdsamp takes it
    assert out.record_id == "00009_hr" and out.n_samples == 1000


# --- PhysioNet Challenge 2020/21 files as released -------------------------------------------------------------------
def _edit_record_line(header, edit):
    lines = header.read_text().splitlines()
    lines[0] = edit(lines[0])
    header.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("record_token", ["E00009.mat", "E00009.MAT", "E00009"])
def test_challenge_record_line_names_the_record_with_or_without_extension(tmp_path, synthetic_ecg, write_challenge,
                                                                           record_token):
    """Georgia (E*) headers of the Challenge 2020 release write ``E00009.mat 12 500 5000 ...``; wfdb refuses it."""
    ecg = synthetic_ecg(fs=500, seconds=10)
    header = write_challenge(tmp_path, "E00009", ecg)
    _edit_record_line(header, lambda line: line.replace("E00009", record_token, 1))
    assert header.read_text().startswith(f"{record_token} 12 500 5000")
    out = ecgfm.read(header)
    val = loadmat(tmp_path / "E00009.mat")["val"]
    np.testing.assert_array_equal(out.signal, (val / 1000.0).astype(np.float32))
    assert out.record_id == "E00009" and out.fs == 500 and out.leads == STANDARD_LEADS
    assert ("header_quirks" in out.meta) == (record_token != "E00009")
    if record_token != "E00009":
        with pytest.raises(Exception, match="invalid syntax in record line"):
            wfdb.rdheader(str(tmp_path / "E00009"))  # what the reader works around


def test_challenge_gain_as_declared(tmp_path, synthetic_ecg, write_challenge):
    """Early Georgia headers declare 4880/mV; the samples are divided by the declared gain, not by 1000."""
    ecg = synthetic_ecg(fs=500, seconds=10)
    header = write_challenge(tmp_path, "E00001", ecg, gain=4880.0)
    assert " 4880/mV " in header.read_text()
    out = ecgfm.read(header)
    val = loadmat(tmp_path / "E00001.mat")["val"]
    np.testing.assert_allclose(out.signal, val / 4880.0, rtol=1e-6)
    np.testing.assert_allclose(out.signal, ecg.signal, atol=0.5 / 4880 + 1e-6)


def test_challenge_comment_lines_kept_in_metadata(tmp_path, synthetic_ecg, write_challenge):
    header = write_challenge(tmp_path, "Q0001", synthetic_ecg(fs=500, seconds=10), dx=("164867002", "427084000"))
    with header.open("a") as fh:
        fh.write("#Dx_original_text: OldMI,STach\n# Converted from original CPSC2018 .mat by build.sh\n"
                 "# Source: hospital 7\n#Weight: 71 kg\n")
    meta = ecgfm.read(header).meta
    assert meta["snomed"] == ["164867002", "427084000"] and meta["scp"] == ["STACH"]
    assert meta["age"] == 74.0 and meta["sex"] == "M"
    assert (meta["rx"], meta["hx"], meta["sx"]) == ("Unknown", "Unknown", "Unknown")
    assert meta["dx_original_text"] == "OldMI,STach" and meta["weight"] == "71 kg"
    assert meta["header_source"] == "hospital 7" and meta["source"] == str(header)  # reserved keys are not overwritten
    assert "Converted from original CPSC2018 .mat by build.sh" in meta["comments"]


def test_challenge_record_named_without_extension_is_discovered(tmp_path, synthetic_ecg, write_challenge):
    from ecgfm.io.discover import discover_inputs

    write_challenge(tmp_path / "g", "E00002", synthetic_ecg(fs=500, seconds=10))
    files, skipped = discover_inputs([tmp_path / "g" / "E00002", str(tmp_path / "g" / "E0000?")])
    assert files == [tmp_path / "g" / "E00002.hea"] and skipped == []
    assert ecgfm.read(tmp_path / "g" / "E00002").record_id == "E00002"


CPSC_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "external" / "cpsc"


def test_every_cpsc_record_reads():
    """The 203 genuine CPSC 2018 / CPSC-Extra records of the Challenge 2020 release (external validation set)."""
    headers = sorted(CPSC_DIR.glob("*.hea"))
    if not headers:
        pytest.skip(f"external CPSC records not found at {CPSC_DIR}")
    for header in headers:
        ecg = ecgfm.read(header)
        assert ecg.fs == 500 and ecg.leads == STANDARD_LEADS and ecg.meta["snomed"], header
        assert 10 <= ecg.duration <= 75, header
    with_original = [h for h in headers if "Dx_original_text" in h.read_text()]
    assert with_original and all("dx_original_text" in ecgfm.read(h).meta for h in with_original[:5])



SIGNAL_LINES = ["rec.dat 16 1000.0(0)/mV 16 0 -120 49488 0 I", "rec.dat 212 200 11 1024 995 -22131 0 MLII", "rec.dat 16",
                "rec.dat 16x2:3+24 4880/uV 12 5 7 8 9 V1 lead", "rec.dat 80 1e3(-5)/mV", "~ 16 500",
                "A0001.mat 16+24 1000/mV 16 0 28 -1716 0 aVR"]


def test_signal_line_parser_matches_wfdb():
    """Our signal-line parser (fast) returns exactly wfdb's fields: every form of line, and real headers (every 25th
    PTB-XL and CPSC header when the shared data is there)."""
    from wfdb.io import _header

    from ecgfm.io.wfdb_reader import parse_signal_lines

    assert parse_signal_lines(SIGNAL_LINES) == _header._parse_signal_lines(SIGNAL_LINES)
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    for path in [p for root in (data / "ptbxl", data / "external") for p in sorted(root.rglob("*.hea"))[::25]]:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        assert parse_signal_lines(lines[1:]) == _header._parse_signal_lines(lines[1:]), path
