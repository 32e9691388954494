"""Upload oddities on every upload endpoint of the service: a 4xx naming the problem, never a 500 (issue 29)."""
from __future__ import annotations

import io
import zipfile

import pytest
import torch
from fastapi.testclient import TestClient

from ecgfm.inference import Predictor
from ecgfm.serve import create_app
from ecgfm.serve.uploads import MAX_NAME_BYTES, BadInput, safe_name
from predict_fixtures import make_tiny_model, write_wfdb

torch.set_num_threads(1)

ENDPOINTS = [("/predict", {}), ("/predict/batch", {}), ("/explain", {}), ("/ecg", {}), ("/printout", {}),
             ("/explain/attribution", {"label": "NORM"})]
LONG = "a" * 300 + ".hea"  # 304 bytes: more than any file system's NAME_MAX (255)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    predictor = Predictor.from_pretrained(make_tiny_model(tmp_path_factory.mktemp("model")))
    with TestClient(create_app(predictor, max_upload_bytes=2_000_000, timeout_s=60),
                    raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    header = write_wfdb(tmp_path_factory.mktemp("record"), "r1", fs=100, seed=1)
    return header.read_bytes(), header.with_suffix(".dat").read_bytes()


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buffer.getvalue()


def _encrypted_zip(record) -> bytes:
    """A zip whose member says it is encrypted (bit 0 of the flags, in the local and the central header)."""
    data = bytearray(_zip([("r1.hea", record[0]), ("r1.dat", record[1])]))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        data[data.find(signature) + offset] |= 1
    return bytes(data)


def _corrupt_zip() -> bytes:
    data = bytearray(_zip([("x.npy", b"\0" * 100_000)]))
    start = data.find(b"x.npy") + 15  # inside the deflate stream
    data[start:start + 20] = b"\xff" * 20
    return bytes(data)


def _raw_multipart(disposition: bytes, data: bytes = b"x" * 10) -> dict:
    """A hand-made multipart body, for file names no HTTP client library would send."""
    body = (b'--b\r\nContent-Disposition: form-data; name="files"; ' + disposition +
            b"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--b--\r\n")
    return {"content": body, "headers": {"content-type": "multipart/form-data; boundary=b"}}


CASES = {  # case -> (request keyword arguments from the record, text the answer must contain)
    "long name": (lambda rec: {"files": [("files", (LONG, rec[0], "text/plain"))]}, "304 bytes long (limit 255)"),
    "long name in a zip": (lambda rec: {"files": [("files", ("r.zip", _zip([("dir/" + LONG, rec[0])]),
                                                              "application/zip"))]}, "304 bytes long"),
    "long multibyte name": (lambda rec: {"files": [("files", ("\u00e9" * 200 + ".hea", rec[0], "text/plain"))]},
                            "404 bytes long"),
    "NUL in a name": (lambda rec: _raw_multipart(b'filename="a\x00b.hea"'), "control characters"),
    "newline in a zip member": (lambda rec: {"files": [("files", ("r.zip", _zip([("a\nb.hea", rec[0])]),
                                                                  "application/zip"))]}, "control characters"),
    "empty file": (lambda rec: {"files": [("files", ("r1.hea", rec[0], "text/plain")),
                                          ("files", ("r1.dat", b"", "application/octet-stream"))]},
                   "r1.dat is empty"),
    "empty zip member": (lambda rec: {"files": [("files", ("r.zip", _zip([("r1.hea", rec[0]), ("r1.dat", b"")]),
                                                           "application/zip"))]}, "r1.dat is empty"),
    "zip of folders only": (lambda rec: {"files": [("files", ("r.zip", _zip([("a/", b""), ("b/c/", b"")]),
                                                              "application/zip"))]}, "holds no files"),
    "encrypted zip": (lambda rec: {"files": [("files", ("r.zip", _encrypted_zip(rec), "application/zip"))]},
                      "encrypted"),
    "corrupt zip": (lambda rec: {"files": [("files", ("r.zip", _corrupt_zip(), "application/zip"))]},
                    "cannot unpack the zip file"),
    "hidden name": (lambda rec: {"files": [("files", (".htaccess", rec[0], "text/plain"))]}, "invalid file name"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("endpoint, params", ENDPOINTS, ids=[e for e, _ in ENDPOINTS])
def test_upload_oddity_is_a_named_4xx_on_every_endpoint(client, record, endpoint, params, case):
    make, expected = CASES[case]
    response = client.post(endpoint, params=params, **make(record))
    assert response.status_code == 422, (response.status_code, response.text[:300])
    assert expected in response.json()["detail"]
    assert "/tmp" not in response.text and "ecgfm-upload" not in response.text  # no server paths


def test_long_names_still_work_up_to_the_limit(client, record):
    name = "b" * (MAX_NAME_BYTES - 4)
    files = [("files", (name + ".hea", record[0].replace(b"r1", name.encode()), "text/plain")),
             ("files", (name + ".dat", record[1], "application/octet-stream"))]
    response = client.post("/predict", files=files)
    assert response.status_code == 200, response.text[:300]
    assert response.json()["record_id"] == name


def test_safe_name_refusals_name_the_problem():
    assert safe_name("../../etc/r1.hea") == "r1.hea" and safe_name("C:\\data\\r1.hea") == "r1.hea"
    for name, reason in [("x\udcff.hea", "not valid UTF-8"), ("a\tb.hea", "control characters"), ("", "invalid"),
                         ("..", "invalid"), ("z" * 256, "256 bytes long")]:
        with pytest.raises(BadInput, match=reason):
            safe_name(name)
