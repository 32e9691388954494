"""Every vendor reader on every genuine sample file in the shared formats folder (see its SOURCES.md).

Checks the format detected, sampling rate, lead set, duration, plausible amplitudes and metadata, the cross-format
identity of the HL7/DICOM/SCP copies of the same ECG, and the specific refusals of non-conformant files.
Skips when the folder is absent; it is found via ``$ECGFM_FORMATS_DIR`` or ``<repo>/../shared/data/formats``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import ecgfm
from ecgfm.errors import ECGReadError
from ecgfm.io import find_reader
from ecgfm.leads import STANDARD_LEADS

REPO_ROOT = Path(__file__).resolve().parents[1]
LIMB = ("I", "II", "III", "aVR", "aVL", "aVF")


@pytest.fixture(scope="module")
def formats_dir() -> Path:
    path = Path(os.environ.get("ECGFM_FORMATS_DIR") or REPO_ROOT.parent / "shared" / "data" / "formats")
    if not (path / "SOURCES.md").exists():
        pytest.skip(f"vendor sample files not found at {path}; set ECGFM_FORMATS_DIR")
    return path


# (file, reader, options, fs, leads, duration s, statements expected in meta)
SAMPLES = [
    ("ge_muse_xml/cedars_MUSE_20200923_093504_79000_example.xml", "muse", {}, 500, STANDARD_LEADS, 10.0,
     ["Sinus bradycardia with sinus arrhythmia with 1st degree A-V block", "Otherwise normal ECG"]),
    ("ge_muse_xml/musephi_muse_ecg1.xml", "muse", {}, 500, STANDARD_LEADS, 10.0, ["Ventricular-paced rhythm"]),
    ("ge_muse_xml/braveheart_example1.xml", "muse", {}, 500, STANDARD_LEADS, 10.0, []),
    ("ge_muse_xml/braveheart_example4.xml", "muse", {"waveform": "median"}, 500, STANDARD_LEADS, 1.2, []),
    ("philips_sierra_xml/129DYPRG.XML", "philips", {}, 500, STANDARD_LEADS, 10.53,
     ["Sinus bradycardia", "Inferior infarct, acute (LCx)", ">>> Acute MI <<<"]),
    ("philips_sierra_xml/3191723_ZZDEMOPTONLY_1-04_orig.xml", "philips", {}, 500, STANDARD_LEADS, 10.6,
     ["SINUS RHYTHM", "PROBABLE LEFT VENTRICULAR HYPERTROPHY"]),
    ("philips_sierra_xml/2020-5-18_15-48-11.xml", "philips", {"waveform": "median"}, 1000, STANDARD_LEADS, 1.2,
     ["Sinus rhythm", "Abnormal R-wave progression, early transition"]),
    ("hl7_aecg/hl7_Example_aECG.xml", "hl7_aecg", {}, 500, STANDARD_LEADS, 10.0, ["Sinus Rhythm"]),
    ("hl7_aecg/lepu_mindray_lead12_1.xml", "hl7_aecg", {}, 1000, STANDARD_LEADS, 10.0, ["[R]窦性心律", "[S]正常心电图"]),
    ("dicom_ecg/mortara_waveform_ecg.dcm", "dicom", {}, 1000, STANDARD_LEADS, 10.0, ["RITMO SINUSALE", "ECG NORMALE"]),
    ("dicom_ecg/mortara_waveform_ecg.dcm", "dicom", {"waveform": "median"}, 1000, STANDARD_LEADS, 1.2, []),
    ("dicom_ecg/gemarquette_maclab_test_ecg.dcm", "dicom", {}, 240, STANDARD_LEADS, 10.0, []),
    ("dicom_ecg/ecgtoolkit_Example.dcm", "dicom", {}, 500, STANDARD_LEADS, 10.0, []),
    ("scp_ecg/welchallyn_ECG_20070321_110542_191010101010.SCP", "scp", {}, 1e6 / 1667, STANDARD_LEADS, 10.0,
     ["sinusrytm", "VK-hypertrofi", "septal infarkt"]),
    ("scp_ecg/welchallyn_ECG_20081029_105642_191010101010.SCP", "scp", {}, 1e6 / 1667, STANDARD_LEADS, 10.0,
     ["sinus rhythm", "Normal ECG"]),
    ("scp_ecg/welchallyn_ECG_20170504_163507_123456789.SCP", "scp", {}, 1e6 / 1667, STANDARD_LEADS, 10.0,
     ["sinusrytm (långsam)", "hög P-amplitud"]),
    ("scp_ecg/ecgviewer_demo.scp", "scp", {}, 1000, STANDARD_LEADS, 10.0, []),
    ("scp_ecg/ecgtoolkit_Example.scp", "scp", {}, 500, STANDARD_LEADS, 10.0, []),
    # The patch's third channel is flat (unattached electrode) and the first ~250 s precede electrode contact.
    ("edf/cortrium_c3_1234_271020_212806.edf", "edf",
     {"lead_map": {"ECG1": "I", "ECG2": "II"}, "start": 300.0, "duration": 10.0}, 256, ("I", "II"), 10.0, []),
    ("ishne_holter/ECG_P28.01.ecg", "ishne", {}, 1000, STANDARD_LEADS, 95.573, []),
    ("ishne_holter/ECG_P28.01.ecg", "ishne", {"start": 30.0, "duration": 10.0}, 1000, STANDARD_LEADS, 10.0, []),
    ("contec_ecg90a/0000053.ECG", "contec", {}, 800, STANDARD_LEADS, 29748 / 800, []),
    ("contec_ecg90a/0000050.ECG", "contec", {}, 800, LIMB, 37855 / 800, []),
]


@pytest.mark.parametrize("name,reader,options,fs,leads,duration,statements", SAMPLES,
                         ids=[f"{s[0].split('/')[1]}{'-' + '-'.join(s[2]) if s[2] else ''}" for s in SAMPLES])
def test_reads_sample_file(formats_dir, name, reader, options, fs, leads, duration, statements):
    path = formats_dir / name
    assert find_reader(path).name == reader
    ecg = ecgfm.read(path, **options)
    assert ecg.meta["format"] == reader
    assert ecg.fs == pytest.approx(fs, rel=1e-6)
    assert ecg.leads == tuple(leads)
    assert ecg.duration == pytest.approx(duration, abs=0.01)
    # Plausible millivolts: every lead moves (no flat or dead lead), nothing beyond +-5 mV in these clinical ECGs.
    peak_to_peak = np.ptp(ecg.signal, axis=1)
    assert peak_to_peak.min() > 0.1 and np.abs(ecg.signal).max() < 5.0
    for statement in statements:
        assert statement in ecg.meta["statements"]


def test_derived_limb_leads_follow_einthoven_and_goldberger(formats_dir):
    """MUSE stores 8 leads; the other four are derived and flagged as such."""
    ecg = ecgfm.read(formats_dir / "ge_muse_xml/musephi_muse_ecg1.xml")
    assert ecg.meta["derived_leads"] == ["III", "aVR", "aVL", "aVF"]
    i, ii = ecg.lead("I").astype(float), ecg.lead("II").astype(float)
    np.testing.assert_allclose(ecg.lead("III"), ii - i, atol=1e-5)
    np.testing.assert_allclose(ecg.lead("aVR"), -(i + ii) / 2, atol=1e-5)
    np.testing.assert_allclose(ecg.lead("aVL"), i - ii / 2, atol=1e-5)
    np.testing.assert_allclose(ecg.lead("aVF"), ii - i / 2, atol=1e-5)


def test_muse_metadata(formats_dir):
    ecg = ecgfm.read(formats_dir / "ge_muse_xml/cedars_MUSE_20200923_093504_79000_example.xml")
    assert ecg.meta["patient_id"] == "201700237" and ecg.meta["sex"] == "M" and ecg.meta["age"] == 40
    assert ecg.meta["acquisition_time"] == "2020-09-22T09:03:32" and ecg.meta["device"] == "MAC55"
    assert ecg.meta["measurements"]["PRInterval"] == 330
    # 4.88 uV per bit: every sample of a stored lead is an integer multiple of it.
    counts = ecg.lead("V1").astype(np.float64) / 0.00488
    assert np.abs(counts - np.rint(counts)).max() < 1e-3


def test_philips_residual_leads_rebuilt(formats_dir):
    """III/aVR/aVL/aVF are stored as residuals; rebuilt they obey the limb-lead laws to within a few uV."""
    for name in ("3191723_ZZDEMOPTONLY_1-04_orig.xml", "2020-5-18_15-48-11.xml"):
        ecg = ecgfm.read(formats_dir / "philips_sierra_xml" / name)
        i, ii = ecg.lead("I").astype(float), ecg.lead("II").astype(float)
        assert np.abs(ecg.lead("III") - (ii - i)).max() < 0.0051
        assert np.abs(ecg.lead("aVF") - (ii - i / 2)).max() < 0.0101
        assert np.abs(ecg.lead("aVR") + (i + ii) / 2).max() < 0.0101


def test_philips_calibration_pulse_trimmed(formats_dir):
    """The 11 s parsed waveform ends with a gap and a 1 mV pulse on every lead; the ECG must not include it."""
    ecg = ecgfm.read(formats_dir / "philips_sierra_xml/2020-5-18_15-48-11.xml")
    tail = ecg.signal[:, -50:]
    assert not np.all(tail == tail[:1])


def test_cross_format_identical_samples(formats_dir):
    """SOURCES.md: the HL7 example, its DICOM and its SCP-ECG conversions hold identical samples."""
    hl7 = ecgfm.read(formats_dir / "hl7_aecg/hl7_Example_aECG.xml")
    dcm = ecgfm.read(formats_dir / "dicom_ecg/ecgtoolkit_Example.dcm")
    scp = ecgfm.read(formats_dir / "scp_ecg/ecgtoolkit_Example.scp")
    assert hl7.leads == dcm.leads == scp.leads == STANDARD_LEADS
    np.testing.assert_array_equal(hl7.signal, dcm.signal)
    np.testing.assert_array_equal(hl7.signal, scp.signal)
    assert hl7.lead("I").min() == pytest.approx(-0.305) and hl7.lead("I").max() == pytest.approx(0.415)
    assert hl7.lead("V1").min() == pytest.approx(-1.465) and hl7.lead("V1").max() == pytest.approx(0.1725)
    assert hl7.meta["patient_id"] == dcm.meta["patient_id"] == scp.meta["patient_id"] == "SBJ-123"


def test_median_beats_agree_and_dicom_padding_trimmed(formats_dir):
    """ECG Toolkit pads the 599-sample median to 600 with an undeclared -32768; it must not become -81.92 mV."""
    hl7 = ecgfm.read(formats_dir / "hl7_aecg/hl7_Example_aECG.xml", waveform="median")
    dcm = ecgfm.read(formats_dir / "dicom_ecg/ecgtoolkit_Example.dcm", waveform="median")
    assert hl7.n_samples == dcm.n_samples == 599
    np.testing.assert_array_equal(hl7.signal, dcm.signal)
    assert dcm.meta["undeclared_padding_trimmed"] is True


def test_dicom_hemodynamic_millivolt_units(formats_dir):
    ecg = ecgfm.read(formats_dir / "dicom_ecg/gemarquette_maclab_test_ecg.dcm")
    assert ecg.meta["sop_class"] == "Hemodynamic"
    counts = ecg.lead("II").astype(np.float64) / 0.00122  # 0.00122 mV per count, units declared in mV
    assert np.abs(counts - np.rint(counts)).max() < 1e-2


def test_scp_demo_declared_extra_sample(formats_dir):
    ecg = ecgfm.read(formats_dir / "scp_ecg/ecgviewer_demo.scp")
    assert ecg.n_samples == 10000 and ecg.meta["declared_extra_sample_ignored"] is True
    assert ecg.meta["patient_id"] == "12-678-QW" and ecg.meta["sex"] == "M"


def test_scp_welch_allyn_metadata(formats_dir):
    ecg = ecgfm.read(formats_dir / "scp_ecg/welchallyn_ECG_20081029_105642_191010101010.SCP")
    assert ecg.fs == pytest.approx(599.88, abs=0.01)
    assert ecg.meta["acquisition_time"] == "2008-10-29T10:56:42" and "Welch Allyn" in ecg.meta["device"]
    assert ecg.lead("I").min() > -0.9 and ecg.signal.max() < 1.1  # SOURCES.md: decodes to -0.8...+1.0 mV


def test_ishne_window_matches_full_read(formats_dir):
    path = formats_dir / "ishne_holter/ECG_P28.01.ecg"
    full = ecgfm.read(path)
    part = ecgfm.read(path, start=30.0, duration=10.0)
    np.testing.assert_array_equal(part.signal, full.signal[:, 30000:40000])
    assert part.meta["window_start_s"] == 30.0 and part.meta["recording_duration_s"] == pytest.approx(95.573)


def test_edf_saturated_samples_clipped_and_counted(formats_dir):
    ecg = ecgfm.read(formats_dir / "edf/cortrium_c3_1234_271020_212806.edf",
                     lead_map={"ECG1": "I", "ECG2": "II", "ECG3": "III"}, start=240.0, duration=30.0)
    assert sum(ecg.meta["out_of_range_samples"].values()) > 0
    assert np.abs(ecg.signal).max() <= 2.4 + 1e-6  # the declared physical range, not 32.767 mV
    assert ecg.meta["skipped_channels"] == ["ACCX", "ACCY", "ACCZ", "EVENT", "LEADOFF"]


def test_edf_unlabelled_ecg_channels_need_lead_map(formats_dir):
    with pytest.raises(ECGReadError, match=r"ECG1, ECG2, ECG3 carry voltages.*lead_map"):
        ecgfm.read(formats_dir / "edf/cortrium_c3_1234_271020_212806.edf")


def test_contec_edf_scaling_refused(formats_dir):
    with pytest.raises(ECGReadError, match=r"contec-ecg2edf.*6\.1x too large"):
        ecgfm.read(formats_dir / "edf/contec_0000050.ECG.edf")


def test_contec_cross_check_with_its_edf_conversion(formats_dir):
    """The EDF's raw counts times the device's 5 uV/count equal the .ECG samples (I/II/III exactly)."""
    import pyedflib

    ecg = ecgfm.read(formats_dir / "contec_ecg90a/0000050.ECG")
    assert ecg.meta["missing_leads"] == ["V1", "V2", "V3", "V4", "V5", "V6"]
    with pyedflib.EdfReader(str(formats_dir / "edf/contec_0000050.ECG.edf")) as edf:
        for channel, lead in enumerate(("I", "II", "III")):
            np.testing.assert_allclose(edf.readSignal(channel, digital=True) * 0.005, ecg.lead(lead), atol=1e-6)


def test_healforce_nonconformant_scp_refused(formats_dir):
    with pytest.raises(ECGReadError, match=r"not an EN 1064-conformant.*Healforce"):
        ecgfm.read(formats_dir / "scp_ecg_nonconformant/healforce_62.SCP")


def test_ecg_extension_sniffed_by_content(formats_dir):
    assert find_reader(formats_dir / "ishne_holter/ECG_P28.01.ecg").name == "ishne"
    assert find_reader(formats_dir / "contec_ecg90a/0000053.ECG").name == "contec"
    assert find_reader(formats_dir / "philips_sierra_xml/3191723_ZZDEMOPTONLY_1-04_orig.xml").name == "philips"


def test_unsupported_waveform_choice(formats_dir):
    with pytest.raises(ECGReadError, match="no median multiplex group"):
        ecgfm.read(formats_dir / "dicom_ecg/gemarquette_maclab_test_ecg.dcm", waveform="median")
    with pytest.raises(ECGReadError, match="unknown waveform"):
        ecgfm.read(formats_dir / "ge_muse_xml/musephi_muse_ecg1.xml", waveform="average")


def test_info_cli_text_and_json(formats_dir):
    from typer.testing import CliRunner

    from ecgfm.cli.main import app

    runner = CliRunner()
    path = formats_dir / "ge_muse_xml/cedars_MUSE_20200923_093504_79000_example.xml"
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["format"] == "muse" and summary["fs_hz"] == 500 and summary["leads"] == list(STANDARD_LEADS)
    assert summary["metadata"]["patient_id"] == "201700237" and "Otherwise normal ECG" in summary["statements"]
    assert set(summary["amplitude"]["V1"]) == {"min_mv", "max_mv", "ptp_mv"}
    text = runner.invoke(app, ["info", str(path)])
    assert text.exit_code == 0 and "MAC55" in text.output and "peak-to-peak" in text.output
    failed = runner.invoke(app, ["info", str(formats_dir / "edf/contec_0000050.ECG.edf")])
    assert failed.exit_code == 2 and "contec-ecg2edf" in failed.output
    assert "Example:" in runner.invoke(app, ["info", "--help"]).output

