"""The prediction service through FastAPI's TestClient: uploads, limits, errors, model card."""
from __future__ import annotations

import io
import tempfile
import time
import zipfile

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from ecgfm.inference import Predictor
from ecgfm.serve import create_app
from predict_fixtures import LABELS, make_tiny_model, synthetic_signal, write_wfdb

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return Predictor.from_pretrained(make_tiny_model(tmp_path_factory.mktemp("model")))


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, max_upload_bytes=2_000_000, timeout_s=20)) as c:
        yield c


@pytest.fixture()
def record(tmp_path):
    header = write_wfdb(tmp_path, "00042_hr", fs=500, seed=4)
    return header, header.with_suffix(".dat")


def _files(*paths, names=None):
    names = names or [p.name for p in paths]
    return [("files", (name, p.read_bytes(), "application/octet-stream")) for name, p in zip(names, paths)]


def test_health_labels_model_and_docs(client, predictor):
    assert client.get("/health").json() == {"status": "ok", "model": "resnet1d_small", "labels": 3,
                                            "backend": "torch"}
    labels = client.get("/labels").json()
    assert [row["label"] for row in labels] == LABELS and labels[0]["description"] == "normal ECG"
    card = client.get("/model").json()
    assert card["arch"] == "resnet1d_small" and card["preprocess"] == predictor.info.preprocess
    assert card["data"]["dataset"] == "synthetic" and card["thresholds"]["NORM"] == 0.0
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/explain", "/labels", "/model", "/health"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_predict_wfdb_upload_matches_predictor(client, predictor, record):
    response = client.post("/predict", files=_files(*record))
    assert response.status_code == 200, response.text
    body = response.json()
    expected = predictor.predict(record[0])
    assert body["record_id"] == "00042_hr" and body["source"] == "00042_hr.hea"
    assert body["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)
    assert [f["label"] for f in body["findings"]] == [f.label for f in expected.findings]


def test_predict_zip_and_npz(client, predictor, record, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in record:
            zf.write(path, f"nested/folder/{path.name}")
    response = client.post("/predict", files=[("files", ("rec.zip", buffer.getvalue(), "application/zip"))])
    assert response.status_code == 200, response.text
    assert response.json()["record_id"] == "00042_hr"
    npz = tmp_path / "holter_strip.npz"
    np.savez(npz, signal=synthetic_signal(250, 10), fs=250.0, leads=np.array(predictor.pipeline.leads))
    response = client.post("/predict", files=_files(npz))
    assert response.status_code == 200 and response.json()["source"] == "holter_strip.npz"


@pytest.mark.parametrize("case, reason", [
    ("header_only", "signal"),
    ("garbage_dat", "not found"),
    ("unsupported", "no ECG file of a supported format"),
    ("two_records", "send one per request"),
    ("bad_zip", "not a valid zip"),
    ("traversal_name", "invalid file name"),
])
def test_bad_uploads_get_422_with_reason(client, record, tmp_path, case, reason):
    header, data = record
    if case == "header_only":
        files = _files(header)
    elif case == "garbage_dat":
        files = _files(data)  # a .dat without its header
    elif case == "unsupported":
        files = [("files", ("notes.docx", b"hello", "application/octet-stream"))]
    elif case == "two_records":
        other = write_wfdb(tmp_path / "b", "other", fs=100)
        files = _files(header, data, other, other.with_suffix(".dat"))
    elif case == "bad_zip":
        files = [("files", ("x.zip", b"PK\x03\x04 definitely not a zip", "application/zip"))]
    else:
        files = [("files", ("../..", b"x", "application/octet-stream"))]
    response = client.post("/predict", files=files)
    assert response.status_code == 422, response.text
    assert reason in response.json()["detail"]


def test_missing_files_field_is_422_not_500(client):
    assert client.post("/predict").status_code == 422
    assert client.post("/predict", data={"something": "else"}).status_code == 422


def test_upload_over_limit_is_413(client):
    response = client.post("/predict", files=[("files", ("big.npy", b"\0" * 2_100_000, "application/octet-stream"))])
    assert response.status_code == 413

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        for _ in range(30):
            yield b"\0" * 100_000

    response = client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413


def test_zip_bomb_refused(predictor, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("huge.npy", b"\0" * 3_000_000)
    with TestClient(create_app(predictor, max_upload_bytes=100_000)) as small:
        response = small.post("/predict", files=[("files", ("bomb.zip", buffer.getvalue(), "application/zip"))])
    assert response.status_code == 422 and "expands beyond" in response.json()["detail"]


def test_slow_prediction_is_504_and_leaves_no_files(predictor, record, tmp_path, monkeypatch):
    class Slow:
        name = "slow"

        def __call__(self, batch):
            time.sleep(0.6)
            return predictor.backend(batch)

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(uploads))
    slow = Predictor(Slow(), predictor.info)
    with TestClient(create_app(slow, timeout_s=0.2, workers=1)) as c:
        responses = [c.post("/predict", files=_files(*record)) for _ in range(2)]
        assert [r.status_code for r in responses] == [504, 504]
        assert "longer than 0.2 s" in responses[0].json()["detail"]
        time.sleep(1.5)  # let the abandoned jobs finish
    assert list(uploads.iterdir()) == []  # uploads of timed-out requests are removed


def test_batch_endpoint_lists_failures(client, record, tmp_path):
    header, data = record
    broken = tmp_path / "broken.hea"
    broken.write_text("nonsense\n")
    response = client.post("/predict/batch", files=_files(header, data, broken))
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["record_id"] for p in body["predictions"]] == ["00042_hr"]
    assert body["failures"][0]["source"] == "broken.hea" and body["failures"][0]["reason"]


def test_explain_endpoint_attributes_findings_to_leads(client, predictor, record):
    response = client.post("/explain", files=_files(*record), params={"label": ["IMI", "NORM"], "figure": "true"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "00042_hr.hea" and body["method"] == "integrated-gradients"
    assert [row["label"] for row in body["labels"]] == ["IMI", "NORM"]
    expected = predictor.predict(record[0]).probabilities
    for row in body["labels"]:
        assert row["probability"] == pytest.approx(expected[row["label"]], abs=1e-5)
        assert len(row["lead_contribution"]) == 12 and row["figure"].startswith("data:image/png;base64,")
    occlusion = client.post("/explain", files=_files(*record), params={"method": "lead-occlusion"}).json()
    assert occlusion["labels"][0]["label"] == "NORM"  # the one finding (threshold 0); no figure unless asked
    assert occlusion["labels"][0]["figure"] is None and occlusion["labels"][0]["segments"] == []


def test_explain_endpoint_refuses_with_reasons(client, predictor, record, tmp_path):
    response = client.post("/explain", files=_files(*record), params={"label": "XYZ"})
    assert response.status_code == 422 and "does not predict 'XYZ'" in response.json()["detail"]
    response = client.post("/explain", files=_files(*record), params={"method": "shap"})
    assert response.status_code == 422 and "unknown explanation method" in response.json()["detail"]
    broken = tmp_path / "broken.hea"
    broken.write_text("nonsense\n")
    response = client.post("/explain", files=_files(broken))
    assert response.status_code == 422 and response.json()["detail"].startswith("broken.hea")
    no_gradients = Predictor(lambda batch: np.zeros((len(batch), len(LABELS))), predictor.info)
    with TestClient(create_app(no_gradients)) as other:
        response = other.post("/explain", files=_files(*record))
    assert response.status_code == 501 and "PyTorch backend" in response.json()["detail"]
