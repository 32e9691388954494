"""``ecgfm serve`` as a real uvicorn process: WFDB upload and 50 concurrent requests over TCP."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from predict_fixtures import make_tiny_model, write_wfdb


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Start the service on a free port, wait for /health, stop it afterwards."""
    model_dir = make_tiny_model(tmp_path_factory.mktemp("model"))
    port = _free_port()
    log = tmp_path_factory.mktemp("log") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ecgfm.cli.main", "serve", "--model", str(model_dir),
                                 "--port", str(port), "--workers", "2", "--threads", "1"],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not become healthy in 90 s:\n{log.read_text()}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_wfdb_upload_and_50_concurrent_requests(server, tmp_path):
    header = write_wfdb(tmp_path, "00007_lr", fs=100, seed=7)
    files = [("files", (p.name, p.read_bytes(), "application/octet-stream"))
             for p in (header, header.with_suffix(".dat"))]
    first = httpx.post(f"{server}/predict", files=files, timeout=30)
    assert first.status_code == 200, first.text
    assert first.json()["record_id"] == "00007_lr" and first.json()["findings"][0]["label"] == "NORM"

    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=50)) as client:
        def one(_):
            response = client.post(f"{server}/predict", files=files)
            return response.status_code, response.json().get("probabilities")

        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(one, range(50)))
    assert [status for status, _ in results] == [200] * 50
    assert all(probs == first.json()["probabilities"] for _, probs in results)  # same answer under load
