"""The serialisable preprocessing Pipeline: JSON round trip, identical outputs, default model input."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecgfm import ECGValueError, STANDARD_LEADS
from ecgfm.leads import INDEPENDENT_LEADS
from ecgfm.signal import (Bandpass, CheckUnits, CropOrPad, Normalize, Notch, Pipeline, ReorderLeads, Resample,
                          step_from_dict)
from ecgfm.signal.leads import reorder_leads

steps = st.one_of(
    st.builds(ReorderLeads, leads=st.sampled_from([STANDARD_LEADS, INDEPENDENT_LEADS, ("II", "V1")]),
              derive=st.booleans(), missing=st.sampled_from(["error", "zero"])),
    st.builds(Resample, fs=st.sampled_from([100.0, 250.0, 500.0])),
    st.builds(Bandpass, low=st.sampled_from([None, 0.5, 1.0]), high=st.sampled_from([None, 40.0, 100.0]),
              order=st.integers(1, 4)),
    st.builds(Notch, freq=st.sampled_from([50.0, 60.0]), quality=st.floats(10, 50)),
    st.builds(CropOrPad, seconds=st.floats(1, 12), mode=st.sampled_from(["center", "start"])),
    st.builds(Normalize, method=st.sampled_from(["zscore", "center", "none"])),
    st.just(CheckUnits()),
)


@settings(max_examples=30, deadline=None)
@given(chosen=st.lists(steps, min_size=1, max_size=6))
def test_pipeline_json_round_trip_gives_equal_pipeline_and_identical_output(chosen, synthetic_ecg_once):
    pipeline = Pipeline(tuple(chosen))
    restored = Pipeline.from_dict(json.loads(json.dumps(pipeline.to_dict())))
    assert restored == pipeline
    assert restored.to_dict() == pipeline.to_dict()
    expected, got = _outcome(pipeline, synthetic_ecg_once), _outcome(restored, synthetic_ecg_once)
    if isinstance(expected, str):  # e.g. a lead dropped by one step and required by a later one
        assert got == expected
    else:
        np.testing.assert_array_equal(got, expected)


def _outcome(pipeline, ecg):
    try:
        return pipeline.to_array(ecg)
    except ECGValueError as exc:
        return str(exc)


@pytest.fixture(scope="module")
def synthetic_ecg_once():
    from conftest import make_synthetic_ecg

    return make_synthetic_ecg(fs=500, seconds=10)


@pytest.mark.parametrize("fs, seconds", [(100, 10), (250, 5), (500, 2.5)])
def test_default_pipeline_fixes_shape_and_reports_it(synthetic_ecg, fs, seconds):
    pipeline = Pipeline.default(fs=fs, seconds=seconds)
    assert (pipeline.fs, pipeline.leads, pipeline.n_samples) == (fs, STANDARD_LEADS, int(fs * seconds))
    out = pipeline(synthetic_ecg(fs=500, seconds=10))
    assert out.signal.shape == (12, int(fs * seconds)) and out.fs == fs and out.leads == STANDARD_LEADS


def test_default_pipeline_keeps_millivolts_and_removes_baseline(synthetic_ecg):
    ecg = synthetic_ecg(fs=500, seconds=10, noise_mv=0)
    t = np.arange(ecg.n_samples) / ecg.fs
    wandering = ecg.replace(signal=ecg.signal + 0.8 * np.sin(2 * np.pi * 0.1 * t))  # breathing-like drift
    out = Pipeline.default(fs=500, seconds=10)(wandering)
    reference = Pipeline.default(fs=500, seconds=10)(ecg)
    interior = slice(500, -500)
    assert np.abs(out.signal[:, interior] - reference.signal[:, interior]).max() < 0.05
    assert 0.5 < np.ptp(out.lead("II")) < 3  # still mV: no z-scoring by default


def test_pipeline_derives_limb_leads_from_an_8_lead_recording(synthetic_ecg):
    full = synthetic_ecg(noise_mv=0)
    eight = reorder_leads(full, INDEPENDENT_LEADS, derive=False)
    pipeline = Pipeline((ReorderLeads(STANDARD_LEADS),))
    np.testing.assert_allclose(pipeline(eight).signal, full.signal, atol=1e-5)


def test_check_units_step_refuses_microvolts(synthetic_ecg):
    ecg = synthetic_ecg()
    microvolts = ecg.replace(signal=ecg.signal * 1000, source="x.npy")
    with pytest.raises(ECGValueError, match="microvolts.*x.npy|x.npy.*microvolts"):
        Pipeline.default()(microvolts)


def test_default_with_filters_and_normalisation():
    pipeline = Pipeline.default(fs=250, bandpass=(0.5, 40.0), notch=60, normalize="zscore")
    names = [s["name"] for s in pipeline.to_dict()["steps"]]
    assert names == ["check_units", "reorder_leads", "resample", "bandpass", "notch", "crop_or_pad", "normalize"]
    assert [s["name"] for s in Pipeline.default(bandpass=None).to_dict()["steps"]] == [
        "check_units", "reorder_leads", "resample", "crop_or_pad"]


def test_unknown_step_is_refused():
    with pytest.raises(ValueError, match="unknown preprocessing step 'wavelet'"):
        step_from_dict({"name": "wavelet"})
