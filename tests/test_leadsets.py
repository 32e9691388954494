"""Reduced lead sets: which set a record is read as, the presence channels, and their place in the model info."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ecgfm import ECGValueError, STANDARD_LEADS
from ecgfm.errors import ECGReadError
from ecgfm.models import ModelInfo, build_model, create
from ecgfm.models.leadsets import LEAD_SETS, LIMB_LEADS, PRECORDIAL_LEADS, lead_set_for, model_lead_sets, read_as
from ecgfm.signal import LeadSetMask, Pipeline
from ecgfm.signal.leads import choose_lead_set, reorder_leads

SIX_LIMB = LIMB_LEADS


@pytest.mark.parametrize("recorded, name, used, derived, ignored", [
    (STANDARD_LEADS, "12-lead", STANDARD_LEADS, (), ()),
    (("I", "II", *PRECORDIAL_LEADS), "12-lead", ("I", "II", *PRECORDIAL_LEADS), ("III", "aVR", "aVL", "aVF"), ()),
    (SIX_LIMB, "limb6", SIX_LIMB, (), ()),
    (("I", "II"), "I+II", ("I", "II"), ("III", "aVR", "aVL", "aVF"), ()),
    (("I", "II", "III"), "limb6", ("I", "II", "III"), ("aVR", "aVL", "aVF"), ()),
    (("I", "II", "V1"), "I+II", ("I", "II"), ("III", "aVR", "aVL", "aVF"), ("V1",)),
    (PRECORDIAL_LEADS, "V1-V6", PRECORDIAL_LEADS, (), ()),
    (("I",), "I", ("I",), (), ()),
    (("I", "V1", "V2", "V3R"), "I", ("I",), (), ("V1", "V2", "V3R")),
    (("V6", "V5", "V4", "V3", "V2", "V1", "aVR"), "V1-V6", PRECORDIAL_LEADS, (), ("aVR",)),
])
def test_a_record_is_read_as_the_largest_set_it_covers(recorded, name, used, derived, ignored):
    choice = lead_set_for(recorded, _info())
    assert (choice.name, set(choice.used), set(choice.derived), set(choice.ignored)) == (
        name, set(used), set(derived), set(ignored))


@pytest.mark.parametrize("recorded", [("II",), ("V1", "V2", "V3"), ("II", "III", "aVF"), ("V3R", "X")])
def test_a_record_covering_no_set_is_refused_naming_its_leads(recorded):
    with pytest.raises(ECGValueError, match=r"rec\.hea has leads \[.*'" + recorded[0] + "'.*cover none"):
        choose_lead_set(recorded, LEAD_SETS, "rec.hea")


def test_step_reads_the_chosen_set_zeroes_the_rest_and_flags_presence(synthetic_ecg):
    full = synthetic_ecg(noise_mv=0)
    step = LeadSetMask(STANDARD_LEADS, LEAD_SETS)
    two = reorder_leads(full, ("I", "II", "V1"), derive=False)
    out = step(two)
    assert out.leads == STANDARD_LEADS and out.meta["lead_set"] == "I+II"
    assert out.meta["leads_ignored"] == ["V1"] and out.meta["lead_presence"] == [1.0] * 6 + [0.0] * 6
    np.testing.assert_allclose(out.signal[:6], full.signal[:6], atol=1e-5)  # limb leads derived from I and II
    assert not out.signal[6:].any()  # V1 ignored, the other chest leads absent: all zero


def test_pipeline_appends_presence_channels_and_a_flat_lead_is_not_a_missing_one(synthetic_ecg):
    pipeline = Pipeline.default(fs=100, lead_sets=LEAD_SETS)
    assert pipeline.lead_mask and pipeline.channels == 24
    full = synthetic_ecg()
    flat = full.replace(signal=np.where(np.arange(12)[:, None] == 6, 0.0, full.signal))  # V1 recorded flat
    x_flat = pipeline.to_array(flat)
    x_missing = pipeline.to_array(reorder_leads(full, SIX_LIMB, derive=False))
    assert x_flat.shape == x_missing.shape == (24, 1000) and x_flat.dtype == np.float32
    assert x_flat[18].min() == 1.0  # V1 present although flat
    assert x_missing[12:18].min() == 1.0 and x_missing[18:].max() == 0.0 and not x_missing[6:12].any()


def test_pipeline_without_lead_sets_is_unchanged(synthetic_ecg):
    pipeline = Pipeline.default(fs=100)
    assert not pipeline.lead_mask and pipeline.channels == 12
    assert pipeline.to_array(synthetic_ecg()).shape == (12, 1000)


def test_lead_set_step_survives_json(synthetic_ecg):
    pipeline = Pipeline.default(fs=100, lead_sets=LEAD_SETS)
    restored = Pipeline.from_dict(json.loads(json.dumps(pipeline.to_dict())))
    assert restored == pipeline
    ecg = reorder_leads(synthetic_ecg(), PRECORDIAL_LEADS, derive=False)
    np.testing.assert_array_equal(restored.to_array(ecg), pipeline.to_array(ecg))


def test_model_info_knows_the_presence_channels_and_old_configs_load_unchanged():
    pipeline = Pipeline.default(fs=100, lead_sets=LEAD_SETS)
    info = ModelInfo(arch="xresnet1d18", labels=["A", "B"], lead_mask=True, fs=100.0, preprocess=pipeline.to_dict())
    assert info.in_leads == 24 and model_lead_sets(info) == LEAD_SETS
    model = build_model(ModelInfo.from_dict(json.loads(json.dumps(info.to_dict()))))
    assert model(torch.zeros(2, 24, 1000)).shape == (2, 2)
    old = info.to_dict()
    old.pop("lead_mask")
    old["preprocess"] = Pipeline.default(fs=100).to_dict()
    legacy = ModelInfo.from_dict(old)
    assert not legacy.lead_mask and legacy.in_leads == 12 and model_lead_sets(legacy) == (("all", STANDARD_LEADS),)
    with pytest.raises(ValueError, match="lead-presence"):
        ModelInfo(arch="xresnet1d18", labels=["A"], preprocess=pipeline.to_dict())  # lead_mask not set


def test_read_as_matches_the_pipeline_on_a_reduced_recording(synthetic_ecg):
    pipeline = Pipeline.default(fs=100, lead_sets=LEAD_SETS)
    full = synthetic_ecg(fs=500, noise_mv=0.02)
    x = pipeline.to_array(full)
    for name, leads in LEAD_SETS:
        recorded = pipeline.to_array(reorder_leads(full, leads, derive=False))
        np.testing.assert_allclose(read_as(x, name), recorded, atol=2e-4)
        torch.testing.assert_close(read_as(torch.from_numpy(x)[None], name)[0], torch.from_numpy(recorded),
                                   atol=2e-4, rtol=0)


def test_predicting_a_reduced_wfdb_file_and_refusing_one_without_a_set(tmp_path, synthetic_ecg, write_wfdb):
    from ecgfm.inference.predictor import InputReader

    reader = InputReader(Pipeline.default(fs=100, lead_sets=LEAD_SETS).any_length())
    single = write_wfdb(tmp_path, "wearable", reorder_leads(synthetic_ecg(), ("I",), derive=False))
    loaded = reader.read(single)
    assert loaded.array.shape == (24, 1000) and loaded.array[12:].sum(axis=1).tolist() == [1000.0] + [0.0] * 11
    assert loaded.leads == {"lead_set": "I", "used": ["I"], "derived": [], "ignored": []}
    chest = write_wfdb(tmp_path, "chest", reorder_leads(synthetic_ecg(), ("V2", "V3"), derive=False))
    with pytest.raises(ECGReadError, match=r"chest\.hea.*\['V2', 'V3'\].*cover none"):
        reader.read(chest)


def _info() -> ModelInfo:
    return ModelInfo(arch="xresnet1d18", labels=["A"], lead_mask=True,
                     preprocess=Pipeline.default(fs=100, lead_sets=LEAD_SETS).to_dict())


def test_a_24_channel_network_is_built_from_the_info():
    net = create("xresnet1d18", num_labels=3, in_leads=_info().in_leads).eval()
    assert net(torch.zeros(1, 24, 1000)).shape == (1, 3)


def test_a_predictor_reads_a_single_lead_file_with_a_lead_set_model(tmp_path, synthetic_ecg, write_wfdb):
    from ecgfm.inference.predictor import Predictor
    from ecgfm.models.runner import TorchRunner

    info = _info().replace(labels=["NORM", "AFIB"])
    model = build_model(info).eval()
    single = write_wfdb(tmp_path, "wearable", reorder_leads(synthetic_ecg(), ("I",), derive=False))
    proba = Predictor(TorchRunner(model), info).predict_proba(single)
    assert proba.shape == (1, 2) and np.isfinite(proba).all()
    assert lead_set_for(("I",), info).name == "I"


def test_a_prediction_names_its_lead_set_and_uses_that_sets_thresholds(tmp_path, synthetic_ecg, write_wfdb):
    from ecgfm.inference.predictor import Predictor
    from ecgfm.models.runner import TorchRunner

    info = _info().replace(labels=["NORM", "AFIB"], thresholds={"NORM": 0.99, "AFIB": 0.99},
                           extra={"threshold_rule": "f1 on the validation records",
                                  "lead_set_thresholds": {"I": {"NORM": 0.0, "AFIB": 0.0}}})
    predictor = Predictor(TorchRunner(build_model(info).eval()), info)
    single = write_wfdb(tmp_path, "wearable", reorder_leads(synthetic_ecg(), ("I",), derive=False))
    limbs = write_wfdb(tmp_path, "limbs", reorder_leads(synthetic_ecg(), ("I", "II", "III"), derive=False))
    wearable, six = predictor.predict(single), predictor.predict(limbs)
    assert wearable.leads["lead_set"] == "I" and {f.label for f in wearable.findings} == {"NORM", "AFIB"}
    assert {f.rule for f in wearable.findings} == {"f1 for the lead set"}
    assert six.leads == {"lead_set": "limb6", "used": ["I", "II", "III"], "derived": ["aVR", "aVL", "aVF"],
                         "ignored": []} and six.findings == []  # the stored 0.99 of every other set
    assert predictor.configured(threshold=0.99).predict(single).findings == []  # a chosen threshold applies to all
    assert wearable.to_row()["lead_set"] == "I" and wearable.to_dict()["leads"]["used"] == ["I"]
