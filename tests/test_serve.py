"""The prediction service through FastAPI's TestClient: uploads, limits, errors, model card."""
from __future__ import annotations

import io
import re
import tempfile
import time
import zipfile

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from ecgfm.inference import Predictor
from ecgfm.io import read
from ecgfm.io.writers import write
from ecgfm.leads import STANDARD_LEADS
from ecgfm.serve import create_app
from predict_fixtures import (LABELS, lead_set_predictor, make_tiny_model, synthetic_signal, write_chest_leads,
                              write_wfdb)

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


def test_predict_says_which_leads_a_lead_set_model_read(tmp_path):
    """A model that reads lead sets (the shipped default): the response names the set a chest-lead recording was read
    as and its leads, as ``Prediction.to_dict`` does."""
    from ecgfm.models.leadsets import PRECORDIAL_LEADS

    chest = write_chest_leads(tmp_path, seed=2)
    with TestClient(create_app(lead_set_predictor())) as c:
        response = c.post("/predict", files=_files(chest, chest.with_suffix(".dat")))
    assert response.status_code == 200, response.text
    assert response.json()["leads"] == {"lead_set": "V1-V6", "used": list(PRECORDIAL_LEADS), "derived": [],
                                        "ignored": []}


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
    assert response.status_code == 422 and "bytes unpacked, over the" in response.json()["detail"]


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


# -- the viewer page and the data it draws (ecgfm.viewer) ----------------------------------------------------------------

def test_viewer_page_and_assets_are_served_offline_with_a_strict_policy(client):
    from ecgfm.viewer import ASSETS, page_weight

    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe-inline" not in policy
    for name, media_type in ASSETS.items():
        response = client.get(f"/viewer/{name}")
        assert response.status_code == 200 and response.headers["content-type"] == media_type
        text = response.text
        # nothing is fetched from elsewhere: no remote src/href/url()/import (the SVG namespace URI is not a fetch)
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import|fetch\(\s*["']https?:""",
                             text), name
    assert client.get("/viewer/..%2Fapp.py").status_code == 404
    assert client.get("/viewer/secret.txt").status_code == 404
    assert page_weight() < 1_000_000  # the page and its assets weigh under 1 MB


def test_ecg_endpoint_returns_decimated_samples_and_safe_metadata(client, record):
    response = client.post("/ecg", files=_files(*record))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["record_id"] == "00042_hr" and body["file"] == "00042_hr.hea" and body["fs"] == 500.0
    assert body["leads"] == list(STANDARD_LEADS) and body["missing_leads"] == [] and body["duration"] == 10.0
    assert "source" not in body["meta"] and "/tmp" not in response.text  # no server paths
    samples = np.array(body["samples"]) / 1000.0  # microvolts -> mV
    assert body["display_fs"] == 250.0 and samples.shape == (12, 2500)
    original = read(record[0]).signal
    # min/max decimation keeps every extreme: R peaks keep their height to the microvolt
    np.testing.assert_allclose(samples.max(axis=1), original.max(axis=1), atol=6e-4)
    np.testing.assert_allclose(samples.min(axis=1), original.min(axis=1), atol=6e-4)
    assert 60 < body["heart_rate_bpm"] < 90
    window = client.post("/ecg", files=_files(*record), params={"start_s": 2.5, "seconds": 5}).json()
    assert window["start_s"] == 2.5 and window["seconds"] == 5.0 and len(window["samples"][0]) == 1250
    bad = client.post("/ecg", files=_files(*record), params={"start_s": 12})
    assert bad.status_code == 422 and "outside the record" in bad.json()["detail"]


def test_printout_endpoint_returns_a_pdf_named_after_the_record(client, record):
    response = client.post("/printout", files=_files(*record))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf" and response.content.startswith(b"%PDF")
    assert response.headers["content-disposition"] == 'attachment; filename="00042_hr.pdf"'
    bad = client.post("/printout", files=_files(*record), params={"speed": 30})
    assert bad.status_code == 422 and "paper speed" in bad.json()["detail"]


def test_printout_file_name_cannot_inject_headers(client, tmp_path):
    path = write(read(write_wfdb(tmp_path, "plain", fs=100, seed=1)), tmp_path / "plain.xml", format="muse")
    for name in ('x"; filename=evil.exe; a=.xml', "électro\u2028cardio.xml"):  # a MUSE record id is its file name
        response = client.post("/printout", files=_files(path, names=[name]))
        assert response.status_code == 200, response.text
        assert re.fullmatch(r'attachment; filename="[A-Za-z0-9_.-]+\.pdf"', response.headers["content-disposition"])


def test_attribution_endpoint_maps_one_label_onto_the_record(client, predictor, record):
    response = client.post("/explain/attribution", files=_files(*record), params={"label": "IMI"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] == "IMI" and body["leads"] == list(STANDARD_LEADS) and body["bin_s"] == pytest.approx(0.04)
    values = np.array(body["values"])
    assert values.shape == (12, 250) and np.abs(values).max() == pytest.approx(1.0)  # one scale for all leads
    assert body["model_window"] == [0.0, 10.0] and body["covered"] and body["note"]
    assert body["probability"] == pytest.approx(predictor.predict(record[0]).probabilities["IMI"], abs=1e-5)
    unknown = client.post("/explain/attribution", files=_files(*record), params={"label": "XYZ"})
    assert unknown.status_code == 422 and "does not predict 'XYZ'" in unknown.json()["detail"]
    assert client.post("/explain/attribution", files=_files(*record)).status_code == 422  # label is required
