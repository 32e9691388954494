"""Findings a clinician can trust, through the Predictor, the CLI and the service: calibrated probabilities, operating
points by rule or file, signal quality with flag / abstain / error, and the out-of-distribution score."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ecgfm import Predictor
from ecgfm.cli.main import app
from ecgfm.evaluation.calibration import fit_calibration
from ecgfm.evaluation.ood import fit_ood, save_ood
from ecgfm.evaluation.release import save_validation
from ecgfm.evaluation.thresholds import fit_thresholds
from ecgfm.io.writers import write
from ecgfm.models import load, save
from ecgfm.models.windowing import extract_features
from conftest import make_synthetic_ecg
from predict_fixtures import LABELS, make_tiny_model, write_wfdb


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A tiny model released the way ``ecgfm release`` does: calibration and F1 thresholds fitted on validation
    records, the validation predictions and an OOD scorer stored beside the weights."""
    from ecgfm.datasets import from_arrays

    folder = make_tiny_model(tmp_path_factory.mktemp("released") / "model")
    model = load(folder)
    rng = np.random.default_rng(0)
    pipeline = model.info.pipeline()
    X = np.stack([pipeline.to_array(make_synthetic_ecg(fs=500.0, seed=i, heart_rate=50 + i)) for i in range(60)])
    predictor = Predictor.from_pretrained(folder)
    raw = predictor.predict_proba(X, fs=100.0)  # this model stores no calibration yet: raw sigmoid outputs
    Y = (raw + rng.normal(0, 0.15, raw.shape) > np.median(raw, axis=0)).astype(np.float32)
    calibration = fit_calibration(Y, raw, LABELS)
    fitted = fit_thresholds(Y, calibration.apply(raw), LABELS, "f1")
    model.info = model.info.replace(thresholds=fitted.as_mapping(), extra={
        **model.info.extra, "calibration": calibration.to_dict(), "threshold_rule": "f1 on the validation records",
        "threshold_rules": dict(zip(fitted.labels, fitted.rules))})
    save(model, folder)
    save_validation(folder, LABELS, Y, calibration.apply(raw))
    embeddings = extract_features(model, from_arrays(X, Y, LABELS).torch())
    save_ood(folder, fit_ood(embeddings[:40], embeddings[40:], n_components=8))
    return folder, calibration


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """A clean 10-s record, the same with lead V2 flat, and a folder holding both."""
    from ecgfm.io import read

    folder = tmp_path_factory.mktemp("records")
    clean = write_wfdb(folder, "clean", fs=500.0)
    ecg = read(clean)
    signal = ecg.signal.copy()
    signal[ecg.leads.index("V2")] = 0.0
    flat = write(ecg.replace(signal=signal, record_id="flat"), folder / "flat.hea")
    return folder, clean, flat


def test_probabilities_are_calibrated_and_raw_ones_kept(released, records):
    folder, calibration = released
    prediction = Predictor.from_pretrained(folder).predict(records[1])
    raw = np.array([prediction.raw_probabilities[lab] for lab in LABELS])
    np.testing.assert_allclose([prediction.probabilities[lab] for lab in LABELS], calibration.apply(raw[None])[0],
                               rtol=1e-6)
    assert {f.rule for f in prediction.findings} <= {"f1", "0.5"}


def test_operating_points_by_rule_number_file_and_assignment(released, records, tmp_path):
    folder, _ = released
    default = Predictor.from_pretrained(folder)
    youden = Predictor.from_pretrained(folder, threshold="youden")
    assert set(youden.rules.values()) <= {"youden", "0.5"} and youden.thresholds != default.thresholds
    assert default.configured("youden").thresholds == youden.thresholds  # same fit, no reload
    strict = Predictor.from_pretrained(folder, threshold=1.0)
    assert strict.predict(records[1]).findings == []
    file = tmp_path / "thresholds.json"
    file.write_text(json.dumps({"NORM": 0.0}))
    given = Predictor.from_pretrained(folder, threshold=str(file))
    finding = next(f for f in given.predict(records[1]).findings if f.label == "NORM")
    assert finding.threshold == 0.0 and finding.rule == "thresholds.json"
    csv = tmp_path / "thresholds.csv"
    csv.write_text("label,threshold\nAFIB,0.0\n")
    assert Predictor.from_pretrained(folder, threshold=str(csv)).thresholds["AFIB"] == 0.0
    default.thresholds = {**default.thresholds, "AFIB": 0.0}
    assert default.rules["AFIB"] == "given" and "AFIB" in {f.label for f in default.predict(records[1]).findings}
    with pytest.raises(ValueError, match="does not predict"):
        Predictor.from_pretrained(folder, threshold={"LVH": 0.3})


def test_a_rule_needs_stored_validation_predictions(tmp_path):
    folder = make_tiny_model(tmp_path / "bare")
    with pytest.raises(ValueError, match="stores no validation predictions"):
        Predictor.from_pretrained(folder, threshold="f1")


def test_poor_quality_is_flagged_withheld_or_refused(released, records):
    folder, _ = released
    _, clean, flat = records
    flagged = Predictor.from_pretrained(folder).predict(flat)
    assert flagged.quality["ok"] is False and "flat or disconnected: V2" in flagged.quality["problems"][0]
    assert Predictor.from_pretrained(folder).predict(clean).quality["ok"] is True
    withheld = Predictor.from_pretrained(folder, on_poor_quality="abstain").predict(flat)
    assert withheld.findings == [] and withheld.abstained.startswith("poor signal quality: flat or disconnected")
    from ecgfm.errors import ECGReadError

    with pytest.raises(ECGReadError, match="flat.hea: poor signal quality"):
        Predictor.from_pretrained(folder, on_poor_quality="error").predict(flat)
    with pytest.raises(ValueError, match="on_poor_quality"):
        Predictor.from_pretrained(folder, on_poor_quality="ignore")


def test_out_of_distribution_score_is_reported_and_flagged(released, records):
    folder, _ = released
    predictor = Predictor.from_pretrained(folder)
    usual = predictor.predict(records[1]).quality
    assert usual["ood_score"] >= 0 and usual["ood_threshold"] == pytest.approx(predictor.ood.threshold, abs=1e-3)
    predictor.ood.threshold = -1.0  # every record is now beyond the validation threshold
    unusual = predictor.predict(records[1]).quality
    assert unusual["ok"] is False and "unlike the training records" in unusual["problems"][-1]


def test_cli_predict_takes_a_rule_and_a_quality_policy(released, records, tmp_path):
    folder, _ = released
    out = tmp_path / "p.json"
    result = CliRunner().invoke(app, ["predict", str(records[0]), "--model", str(folder), "--threshold", "youden",
                                      "--on-poor-quality", "abstain", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = {row["record_id"]: row for row in json.loads(out.read_text())}
    assert rows["flat"]["abstained"].startswith("poor signal quality") and rows["flat"]["findings"] == []
    assert rows["clean"]["quality"]["ok"] is True
    assert all(f["rule"] in ("youden", "0.5") for f in rows["clean"]["findings"])


def test_service_takes_a_rule_and_a_quality_policy(released, records):
    from fastapi.testclient import TestClient

    from ecgfm.serve import create_app

    folder, _ = released
    client = TestClient(create_app(Predictor.from_pretrained(folder)))
    flat = records[2]
    files = [("files", (p.name, p.read_bytes())) for p in (flat, flat.with_suffix(".dat"))]
    body = client.post("/predict?on_poor_quality=abstain&threshold=youden", files=files).json()
    assert body["abstained"].startswith("poor signal quality") and body["quality"]["ok"] is False
    refused = client.post("/predict?threshold=nonsense", files=files)
    assert refused.status_code == 422 and "threshold rule" in refused.json()["detail"]
