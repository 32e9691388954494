"""The canonical ECG type: validation on construction, immutability, accessors."""
import numpy as np
import pytest

from ecgfm import ECG, ECGValueError, STANDARD_LEADS


def _signal(n_leads=12, n=1000, seed=0):
    return np.random.default_rng(seed).normal(0, 0.3, (n_leads, n))


def test_signal_is_float32_readonly_and_leads_canonical():
    ecg = ECG(_signal(3), fs=500, leads=("i", "AVR", "v1 "))
    assert ecg.signal.dtype == np.float32
    assert ecg.leads == ("I", "aVR", "V1")
    assert ecg.n_leads == 3 and ecg.n_samples == 1000 and ecg.duration == pytest.approx(2.0)
    with pytest.raises(ValueError):
        ecg.signal[0, 0] = 1.0


def test_input_array_is_copied_not_aliased():
    x = _signal(12)
    ecg = ECG(x, fs=500, leads=STANDARD_LEADS)
    x[0, 0] = 99.0
    assert ecg.signal[0, 0] != np.float32(99.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused_with_their_position(bad):
    x = _signal(12)
    x[4, 17] = bad
    with pytest.raises(ECGValueError, match="lead 4, sample 17"):
        ECG(x, fs=500, leads=STANDARD_LEADS)


@pytest.mark.parametrize("kwargs, message", [
    ({"signal": np.zeros((12, 0))}, "zero samples"),
    ({"signal": np.zeros(100)}, "2-D"),
    ({"signal": np.array([["a"] * 10] * 12)}, "numeric"),
    ({"fs": 0}, "positive"),
    ({"fs": float("nan")}, "positive"),
    ({"leads": STANDARD_LEADS[:11]}, "11 lead names for 12 signal rows"),
    ({"leads": ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "v5")}, "duplicate"),
    ({"leads": ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V13")}, "unknown ECG lead"),
])
def test_invalid_ecgs_are_refused(kwargs, message):
    args = {"signal": _signal(12), "fs": 500, "leads": STANDARD_LEADS, **kwargs}
    with pytest.raises(ECGValueError, match=message):
        ECG(**args)


def test_errors_name_the_source():
    with pytest.raises(ECGValueError, match=r"\(/data/x\.xml\)"):
        ECG(np.zeros((12, 0)), fs=500, leads=STANDARD_LEADS, meta={"source": "/data/x.xml"})


def test_replace_keeps_fields_and_merges_meta():
    ecg = ECG(_signal(12), fs=500, leads=STANDARD_LEADS, meta={"record_id": "r1", "age": 50})
    half = ecg.replace(signal=ecg.signal[:, :500], fs=250, age=51, sex="F")
    assert half.fs == 250 and half.n_samples == 500 and half.leads == ecg.leads
    assert half.meta == {"record_id": "r1", "age": 51, "sex": "F"}
    assert ecg.meta == {"record_id": "r1", "age": 50}  # original untouched


def test_lead_accessor_and_repr():
    x = _signal(12)
    ecg = ECG(x, fs=500, leads=STANDARD_LEADS, meta={"record_id": "00001_hr"})
    np.testing.assert_array_equal(ecg.lead("avf"), x[5].astype(np.float32))
    assert repr(ecg) == "ECG('00001_hr', 12 leads, 500 Hz, 2.00 s)"
