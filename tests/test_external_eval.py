"""External validation in one command: ``ecgfm evaluate --data FOLDER`` on Challenge-style records with SNOMED-CT
labels, long records read whole, the model's own thresholds, and the generalisation gap in the report."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_synthetic_ecg, write_challenge_record
from ecgfm.cli.main import app
from ecgfm.models import load, save
from predict_fixtures import make_tiny_model

#: SNOMED-CT codes: 164889003 atrial fibrillation (SCP AFIB), 426783006 sinus rhythm (SR, not in the tiny model),
#: 164917005 Q wave abnormal (no SCP statement in the model), 22298006 myocardial infarction (broader than IMI).
AFIB, SR, QWAVE, MI = "164889003", "426783006", "164917005", "22298006"


@pytest.fixture(scope="module")
def challenge(tmp_path_factory):
    """12 Challenge records of 10-40 s: AFIB in every third, an MI code (too broad to settle IMI) in one."""
    folder = tmp_path_factory.mktemp("challenge")
    for i in range(12):
        dx = [AFIB if i % 3 == 0 else SR] + ([QWAVE] if i == 1 else []) + ([MI] if i == 2 else [])
        write_challenge_record(folder, f"A{i:04d}", make_synthetic_ecg(500.0, 10.0 + 10 * (i % 4), seed=i), dx=dx)
    return folder


def test_challenge_labels_map_to_the_model_vocabulary(challenge):
    from ecgfm.datasets import load_labelled

    model = load(make_tiny_model_folder())
    data = load_labelled(data=challenge, labels=model.info.labels, pipeline=model.info.pipeline().any_length(),
                         lazy=True, progress=False)
    afib, imi = data.labels.index("AFIB"), data.labels.index("IMI")
    np.testing.assert_array_equal(data.Y[:, afib], [1.0 if i % 3 == 0 else 0.0 for i in range(12)])
    assert np.isnan(data.Y[:, imi]).all()  # no SNOMED-CT code says "inferior MI" (22298006 is any MI): unknown
    assert data.source["unmapped_snomed"] == {SR: 8, QWAVE: 1, MI: 1}  # none of them a label of this model
    assert data.signal(1).shape[-1] == 2000  # 20 s at 100 Hz: the whole record, not the centre 10 s


def make_tiny_model_folder(_cache={}):
    if "folder" not in _cache:
        import tempfile
        from pathlib import Path

        _cache["folder"] = make_tiny_model(Path(tempfile.mkdtemp()) / "model")
    return _cache["folder"]


def test_evaluate_data_reports_the_generalisation_gap(challenge, tmp_path):
    folder = make_tiny_model_folder()
    model = load(folder)
    test = {"split": "synthetic internal test", "per_label": {"AFIB": {"auc": 0.9}}}
    model.info = model.info.replace(metrics={"test": test}, thresholds={"AFIB": 0.3})
    save(model, folder)
    out = tmp_path / "external"
    result = CliRunner().invoke(app, ["evaluate", "--model", str(folder), "--data", str(challenge), "--out", str(out),
                                      "--min-test-positives", "3", "--bootstrap", "20", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["label"] for row in metrics["labels"]] == ["AFIB"]  # the only label with >= 3 positives here
    assert metrics["labels"][0]["threshold"] == pytest.approx(0.3)  # the model's own threshold, not refitted
    external = {row["label"]: row for row in metrics["config"]["external"]["labels"]}
    assert external["AFIB"]["n_pos"] == 4 and external["AFIB"]["internal_auc"] == 0.9
    assert external["AFIB"]["observed_prevalence"] == pytest.approx(4 / 12)
    assert metrics["config"]["external"]["unmapped_snomed"] == {SR: 8, QWAVE: 1, MI: 1}
    page = (out / "report.html").read_text()
    assert "External validation: generalisation gap and prevalence" in page and "synthetic internal test" in page
    assert QWAVE in page
