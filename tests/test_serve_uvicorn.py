"""``ecgfm serve`` as a real uvicorn process: uploads and concurrency over TCP, slow clients (bytes trickled through a
raw socket), API keys from the command line, and predictions that keep their latency while explanations run."""
from __future__ import annotations

import select
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from ecgfm.leads import STANDARD_LEADS
from predict_fixtures import make_tiny_model, serving, synthetic_signal, write_wfdb

API_KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
READ_TIMEOUT_S, BODY_TIMEOUT_S, MIN_RATE, KEEP_ALIVE_S, TIMEOUT_S = 2.0, 5.0, 5000, 1.0, 8.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The service on a free port with an API key file and short read timeouts; stopped afterwards."""
    model_dir = make_tiny_model(tmp_path_factory.mktemp("model"))
    key_file = tmp_path_factory.mktemp("secrets") / "keys.txt"
    key_file.write_text(f"an-older-key-still-accepted\n{API_KEY}\n")
    args = ["--model", str(model_dir), "--workers", "2", "--threads", "1", "--api-key-file", str(key_file),
            "--rate-limit", "0", "--read-timeout", str(READ_TIMEOUT_S), "--body-timeout", str(BODY_TIMEOUT_S),
            "--body-min-rate", str(MIN_RATE), "--keep-alive", str(KEEP_ALIVE_S), "--explain-timeout", str(TIMEOUT_S)]
    with serving(args, tmp_path_factory.mktemp("log") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> list:
    header = write_wfdb(tmp_path_factory.mktemp("record"), "00007_lr", fs=100, seed=7)
    return [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in (header, header.with_suffix(".dat"))]


def test_wfdb_upload_and_50_concurrent_requests(server, record):
    first = httpx.post(f"{server}/predict", files=record, headers=AUTH, timeout=30)
    assert first.status_code == 200, first.text
    assert first.json()["record_id"] == "00007_lr" and first.json()["findings"][0]["label"] == "NORM"

    with httpx.Client(timeout=60, headers=AUTH, limits=httpx.Limits(max_connections=50)) as client:
        def one(_):
            response = client.post(f"{server}/predict", files=record)
            return response.status_code, response.json().get("probabilities")

        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(one, range(50)))
    assert [status for status, _ in results] == [200] * 50  # 2 workers + a queue of 64 admit them all
    assert all(probs == first.json()["probabilities"] for _, probs in results)  # same answer under load


def test_api_key_from_the_key_file(server, record):
    assert httpx.post(f"{server}/predict", files=record, timeout=30).status_code == 401
    assert httpx.post(f"{server}/predict", files=record, headers={"X-API-Key": "an-older-key-still-accepted"},
                      timeout=30).status_code == 200  # every line of the key file is a valid key
    assert httpx.get(f"{server}/").status_code == 200 and httpx.get(f"{server}/health").status_code == 200


# -- slow clients, through a raw socket -------------------------------------------------------------------------------

def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:  # the server closed while bytes it never read were on their way
        pass
    return data


def _trickle(sock: socket.socket, data: bytes, every_s: float, until_s: float, chunk: int = 1) -> float:
    """Send ``data``, ``chunk`` bytes every ``every_s``, until the server closes or ``until_s`` passes; returns
    the seconds it took."""
    start = time.monotonic()
    for offset in range(0, len(data), chunk):
        if time.monotonic() - start > until_s or select.select([sock], [], [], 0)[0]:  # past, or answered
            break
        try:
            sock.sendall(data[offset:offset + chunk])
        except OSError:  # the server closed the connection
            break
        time.sleep(every_s)
    return time.monotonic() - start


def _upload(record: list, boundary: str = "b") -> bytes:
    """The multipart body of an upload (what httpx would send), for sending by hand."""
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
             f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
             for _, (name, data, _type) in record]
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def _upload_head(length: int) -> bytes:
    return (f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: multipart/form-data;"
            f" boundary=b\r\nContent-Length: {length}\r\n\r\n").encode()


def _exchange(server: str, head: bytes, body: bytes, every_s: float, chunk: int = 1) -> tuple[bytes, float]:
    """Send ``head`` at once and ``body`` in a trickle; the server's whole answer and the seconds until it closed."""
    with _connect(server) as sock:
        start = time.monotonic()
        sock.sendall(head)
        _trickle(sock, body, every_s=every_s, until_s=BODY_TIMEOUT_S + 5, chunk=chunk)
        return _answer(sock), time.monotonic() - start


def test_trickled_body_gets_408_once_the_pause_limit_has_passed(server):
    # a byte every 0.3 s never pauses as long as the read timeout, but stays far below the minimum rate
    answer, elapsed = _exchange(server, _upload_head(100_000), b"--b\r\n" + b"x" * 1000, every_s=0.3)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"too slowly" in answer and READ_TIMEOUT_S - 0.5 < elapsed < READ_TIMEOUT_S + 2


def test_body_that_stops_gets_408_after_the_pause_limit(server):
    answer, elapsed = _exchange(server, _upload_head(100_000), b"--b\r\n", every_s=0)  # then nothing more
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert READ_TIMEOUT_S - 0.5 < elapsed < READ_TIMEOUT_S + 2


def test_slow_but_steady_upload_is_served_and_an_endless_one_is_cut(server, record):
    body = _upload(record)  # ~25 kB at ~10 kB/s: longer than the read timeout, above the minimum rate
    answer, elapsed = _exchange(server, _upload_head(len(body)), body, every_s=0.1, chunk=1000)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert elapsed > READ_TIMEOUT_S and b'"record_id":"00007_lr"' in answer
    part = b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.npy"\r\n\r\n'
    answer, elapsed = _exchange(server, _upload_head(10**6), part + b"x" * 10**6, every_s=0.1, chunk=1000)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]  # 1 MB at 10 kB/s would take 100 s: cut at the total
    assert BODY_TIMEOUT_S - 0.5 < elapsed < BODY_TIMEOUT_S + 2


def test_trickled_headers_get_408_and_the_connection_closes(server):
    with _connect(server) as sock:
        start = time.monotonic()
        _trickle(sock, b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200, every_s=0.3,
                 until_s=READ_TIMEOUT_S + 3)
        answer = _answer(sock)
        elapsed = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert READ_TIMEOUT_S - 0.5 < elapsed < READ_TIMEOUT_S + 2
    with _connect(server) as sock:  # a connection that never sends a byte is closed as well
        start = time.monotonic()
        assert _answer(sock).startswith(b"HTTP/1.1 408") and time.monotonic() - start < READ_TIMEOUT_S + 2


def test_idle_keep_alive_connection_is_closed_quickly(server):
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        start = time.monotonic()
        answer = _answer(sock)
        elapsed = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 200") and elapsed < KEEP_ALIVE_S + 1.5


# -- explanations cannot starve predictions, and stop at their deadline ------------------------------------------------

def _predict_latencies(server: str, record: list, n: int) -> list[float]:
    times = []
    with httpx.Client(timeout=30, headers=AUTH) as client:
        for _ in range(n):
            start = time.perf_counter()
            response = client.post(f"{server}/predict", files=record)
            times.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text
    return times


def test_predictions_keep_their_latency_while_two_maximal_explanations_run(server, record, tmp_path):
    t0 = time.monotonic()
    warm = httpx.post(f"{server}/explain", files=record, headers=AUTH, params={"method": "lead-occlusion"}, timeout=60)
    assert warm.status_code == 200, warm.text  # the explanation process is started and has loaded the model
    print(f"explanation process ready after {time.monotonic() - t0:.1f} s")
    normal = statistics.median(_predict_latencies(server, record, 15))

    long_record = tmp_path / "long.npz"  # 60 s: integrated gradients over it take minutes with any model
    np.savez(long_record, signal=synthetic_signal(100, 60), fs=100.0, leads=np.array(STANDARD_LEADS))
    maximal = {"label": ["NORM", "AFIB", "IMI"], "steps": 64}
    files = [("files", ("long.npz", long_record.read_bytes(), "application/octet-stream"))]
    with ThreadPoolExecutor(2) as pool:
        start = time.monotonic()
        explaining = [pool.submit(httpx.post, f"{server}/explain", files=files, params=maximal, headers=AUTH,
                                  timeout=60) for _ in range(2)]
        time.sleep(0.5)
        during = _predict_latencies(server, record, 15)
        assert not any(f.done() for f in explaining)  # both explanations were still running (or waiting)
        third = httpx.post(f"{server}/explain", files=files, params=maximal, headers=AUTH, timeout=60)
        assert third.status_code == 503 and int(third.headers["retry-after"]) >= 1  # 1 running + 1 queued: full
        answers = [f.result() for f in explaining]
        elapsed = time.monotonic() - start
    assert [a.status_code for a in answers] == [504, 504], [a.text for a in answers]
    assert "stopped" in answers[0].json()["detail"] or "no explanation worker" in answers[0].json()["detail"]
    assert elapsed < TIMEOUT_S + 3  # both ended at their deadline
    print(f"/predict median {normal * 1000:.0f} ms alone, {statistics.median(during) * 1000:.0f} ms while two maximal "
          f"/explain ran")
    # "normal latency": the median stays within 2x (+20 ms of scheduling noise on a shared 2-core machine)
    assert statistics.median(during) <= 2 * normal + 0.02, (normal, during)
