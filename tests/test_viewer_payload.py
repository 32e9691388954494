"""What the viewer page draws: decimation that keeps peaks, safe metadata, and attribution mapped onto the record with
a sentence saying what the shading covers."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from conftest import make_synthetic_ecg
from ecgfm.leads import STANDARD_LEADS
from ecgfm.viewer.payload import attribution_payload, ecg_payload, model_window

CENTER_10S = {"steps": [{"name": "resample", "fs": 100.0}, {"name": "crop_or_pad", "seconds": 10.0, "mode": "center"}]}


@dataclass
class _Item:  # the public shape of ecgfm.explain.LabelExplanation that the payload reads
    label: str
    attribution: np.ndarray
    description: str = "inferior myocardial infarction"
    probability: float = 0.8
    temporal: bool = True
    leads: tuple = STANDARD_LEADS

    @property
    def lead_contribution(self):
        return dict(zip(self.leads, self.attribution.sum(axis=1).tolist()))

    def top_leads(self, n=3):
        return sorted(self.leads, key=lambda lead: -self.lead_contribution[lead])[:n]


@dataclass
class _Explanation:
    items: list = field(default_factory=list)
    fs: float = 100.0
    method: str = "integrated-gradients"
    leads: tuple = STANDARD_LEADS

    def __getitem__(self, label):
        return next(item for item in self.items if item.label == label)


def _explained(start_s: float, end_s: float, seconds: float = 10.0) -> _Explanation:
    attribution = np.zeros((12, int(seconds * 100)))
    attribution[1, int(start_s * 100):int(end_s * 100)] = 0.01
    attribution[3, int(start_s * 100):int(end_s * 100)] = -0.005
    return _Explanation([_Item("IMI", attribution)])


def test_partial_attribution_is_named_on_the_figure():
    """A model keeping its best 2.5-s window attributes only that window: the note must say so."""
    body = attribution_payload(_explained(6.4, 8.7), "IMI", duration=10.0, preprocess=CENTER_10S, aggregate="max")
    assert body["covered"] == [[6.4, 8.72]]  # to the end of the 40-ms bin holding 8.69 s
    assert "Shading covers 6.4-8.7 s only" in body["note"] and "highest" in body["note"]
    values = np.array(body["values"])
    assert values.shape == (12, 250) and values[1].max() == 1.0 and values[3].min() == -0.5
    assert np.all(values[:, :160] == 0)


def test_a_long_record_is_attributed_over_its_whole_length():
    """The model reads every 10-s segment of a 30-s record, so the attribution covers all 30 s."""
    body = attribution_payload(_explained(0, 30, seconds=30.0), "IMI", duration=30.0, preprocess=CENTER_10S,
                               aggregate="max")
    assert body["start_s"] == 0.0 and body["model_window"] == [0.0, 30.0]
    assert body["covered"] == [[0.0, 30.0]]
    assert body["note"] == "Shading: attribution over the whole stretch the model reads (0.0-30.0 s)."


def test_padding_of_a_short_record_is_not_shaded():
    body = attribution_payload(_explained(0, 10), "IMI", duration=4.0, preprocess=CENTER_10S)
    assert np.array(body["values"]).shape == (12, 100)  # 4 s of 40-ms bins: nothing over the zero padding
    assert "pads it to 10 s" in body["note"] and body["covered"] == [[0.0, 4.0]]


def test_lead_occlusion_says_it_has_no_time_resolution():
    explanation = _explained(0, 10)
    explanation.items[0].temporal = False
    body = attribution_payload(explanation, "IMI", duration=10.0, preprocess=CENTER_10S)
    assert "no resolution in time" in body["note"]


def test_model_window_from_the_preprocessing_spec():
    assert model_window(CENTER_10S, 30.0) == (0.0, 30.0)  # every segment of a long record is read
    assert model_window(CENTER_10S, 4.0) == (0.0, 10.0)  # a short one is padded to the input
    assert model_window(None, 12.0) == (0.0, 12.0)


@pytest.mark.parametrize("fs", [599.88, 1000.0, 250.0, 100.0])
def test_decimation_keeps_extremes_and_timing(fs):
    ecg = make_synthetic_ecg(fs=fs, seconds=10.0, record_id="r", source="/tmp/secret/path.hea", patient_id="<p>")
    body = ecg_payload(ecg, file="r.hea")
    samples = np.array(body["samples"]) / 1000.0
    assert body["display_fs"] <= 300.0 and samples.shape[1] == pytest.approx(body["display_fs"] * 10.0, abs=2)
    kept = ecg.signal[:, :int(samples.shape[1] / body["display_fs"] * fs + 0.5)]
    np.testing.assert_allclose(samples.max(axis=1), kept.max(axis=1), atol=6e-4)
    assert "source" not in body["meta"] and body["meta"]["patient_id"] == "<p>"  # kept as text; the page escapes


def test_long_records_are_sent_in_windows():
    ecg = make_synthetic_ecg(fs=100.0, seconds=300.0)
    first = ecg_payload(ecg)
    assert first["seconds"] == 60.0 and first["duration"] == 300.0
    later = ecg_payload(ecg, start_s=120.0, seconds=120.0)
    assert later["start_s"] == 120.0 and later["seconds"] == 120.0
    with pytest.raises(ValueError, match="seconds must be"):
        ecg_payload(ecg, seconds=1000.0)
