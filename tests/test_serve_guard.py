"""The service's guards: API keys, rate limits, CORS, bounded job queues, per-request caps of /explain, explanations
stopped at their deadline (the worker process is replaced), and a model card without local paths."""
from __future__ import annotations

import asyncio
import os
import threading
import time

import numpy as np
import pytest
import torch
from fastapi import HTTPException
from fastapi.testclient import TestClient

from ecgfm.inference import Predictor
from ecgfm.leads import STANDARD_LEADS
from ecgfm.serve import create_app
from ecgfm.serve.guard import RateLimit, check_api_keys, client_address
from ecgfm.serve.jobs import JobPool
from predict_fixtures import make_tiny_model, synthetic_signal, write_wfdb

torch.set_num_threads(1)
KEY = "k" * 8 + "-0123456789"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor.from_pretrained(model_dir)


@pytest.fixture()
def record(tmp_path):
    header = write_wfdb(tmp_path, "r2", fs=100, seed=2)
    return [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in (header, header.with_suffix(".dat"))]


# -- API keys ------------------------------------------------------------------------------------------------------------

def test_api_key_required_except_for_the_page_and_health(predictor, record):
    with TestClient(create_app(predictor, api_keys=[KEY])) as client:
        assert client.post("/predict", files=record).status_code == 401
        refused = client.get("/labels")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/model", headers={"Authorization": "Bearer wrong-key-0123456789"}).status_code == 401
        assert client.get("/labels", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert client.get("/labels", headers={"authorization": f"bearer {KEY}"}).status_code == 200
        assert client.post("/predict", files=record, headers={"X-API-Key": KEY}).status_code == 200
        for public in ("/", "/viewer/viewer.js", "/viewer/viewer.css", "/health", "/openapi.json"):
            assert client.get(public).status_code == 200, public
    with TestClient(create_app(predictor)) as open_client:  # no key configured: no key needed
        assert open_client.post("/predict", files=record).status_code == 200


def test_short_or_missing_api_keys_are_refused_at_start():
    with pytest.raises(ValueError, match="at least 16 characters"):
        check_api_keys(["secret"])
    with pytest.raises(ValueError, match="no API key"):
        check_api_keys(["", "  \n"])
    assert check_api_keys([f"  {KEY}\n", ""]) == [KEY]


def test_serve_command_reads_keys_from_a_file_or_the_environment(tmp_path, monkeypatch):
    from ecgfm.cli.serve_cmd import api_keys_from

    keys = tmp_path / "keys"
    keys.write_text(f"{KEY}\nsecond-key-0123456789\n")
    assert api_keys_from(keys) == [KEY, "second-key-0123456789"]
    monkeypatch.setenv("ECGFM_API_KEY", KEY)
    assert api_keys_from(None) == [KEY]
    monkeypatch.delenv("ECGFM_API_KEY")
    assert api_keys_from(None) is None
    with pytest.raises(ValueError, match="cannot read the API key file"):
        api_keys_from(tmp_path / "missing")


# -- rate limits and client addresses -------------------------------------------------------------------------------------

def test_rate_limit_answers_429_with_retry_after(predictor):
    with TestClient(create_app(predictor, rate_limit=0.5, rate_burst=3)) as client:
        assert [client.get("/health").status_code for _ in range(3)] == [200, 200, 200]
        limited = client.get("/health")
        assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 2
        assert "too many requests" in limited.json()["detail"]


def test_token_bucket_refills_and_keeps_clients_apart():
    limiter = RateLimit(app=None, rate=2.0, burst=2)
    assert [limiter.take("a", 0.0), limiter.take("a", 0.0)] == [0.0, 0.0]
    assert limiter.take("a", 0.0) == pytest.approx(0.5)  # one token back after 1/rate seconds
    assert limiter.take("b", 0.0) == 0.0  # another client has its own bucket
    assert limiter.take("a", 0.5) == 0.0


def test_forwarded_for_is_used_only_behind_a_trusted_proxy(predictor):
    scope = {"client": ("10.0.0.1", 5000), "headers": [(b"x-forwarded-for", b"6.6.6.6, 192.0.2.7")]}
    assert client_address(scope) == "10.0.0.1"
    assert client_address(scope, trust_proxy=True) == "192.0.2.7"  # the entry the proxy appended, not a forged one
    for trust_proxy, second_status in [(False, 429), (True, 200)]:
        app = create_app(predictor, rate_limit=0.1, rate_burst=1, trust_proxy=trust_proxy)
        with TestClient(app) as client:
            assert client.get("/health", headers={"X-Forwarded-For": "192.0.2.1"}).status_code == 200
            assert client.get("/health", headers={"X-Forwarded-For": "192.0.2.2"}).status_code == second_status


# -- CORS ----------------------------------------------------------------------------------------------------------------

def test_cors_headers_only_when_configured(predictor):
    origin = {"Origin": "https://ecg.example.org"}
    with TestClient(create_app(predictor)) as client:
        assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    with TestClient(create_app(predictor, cors_origins=["https://ecg.example.org"], api_keys=[KEY])) as client:
        response = client.get("/labels", headers={**origin, "X-API-Key": KEY})
        assert response.headers["access-control-allow-origin"] == "https://ecg.example.org"
        other = client.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        preflight = client.options("/predict", headers={**origin, "Access-Control-Request-Method": "POST",
                                                        "Access-Control-Request-Headers": "x-api-key"})
        assert preflight.status_code == 200  # answered without a key: browsers never send one with a preflight
        assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
        refused = client.get("/labels", headers=origin)  # a 401 still says which origin may read it
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == origin["Origin"]


# -- bounded prediction queue ----------------------------------------------------------------------------------------------

def test_job_pool_refuses_beyond_its_queue_and_stops_late_jobs():
    async def scenario():
        pool = JobPool(workers=1, queue=1)
        release, stopped = threading.Event(), threading.Event()

        def blocking(stop):
            release.wait(10)
            return "done"

        def until_stopped(stop):
            stopped.set() if stop.wait(5) else None
            return "late"

        running = asyncio.ensure_future(pool.run(blocking, 10, "slow"))
        queued = asyncio.ensure_future(pool.run(blocking, 10, "slow"))
        await asyncio.sleep(0.1)
        with pytest.raises(HTTPException) as refused:
            await pool.run(blocking, 10, "slow")
        assert refused.value.status_code == 503 and refused.value.headers["Retry-After"] == "1"
        release.set()
        assert await running == "done" and await queued == "done"
        with pytest.raises(HTTPException) as late:
            await pool.run(until_stopped, 0.2, "too slow")
        assert late.value.status_code == 504 and late.value.detail == "too slow"
        await asyncio.sleep(0.3)
        assert stopped.is_set()  # the job was told to stop at its deadline
        assert await pool.run(lambda stop: "free again", 5, "slow") == "free again"  # every slot came back
        pool.close()

    asyncio.run(scenario())


# -- explanations ----------------------------------------------------------------------------------------------------------

def test_explain_caps_labels_and_steps(predictor, record):
    with TestClient(create_app(predictor, max_explain_labels=2, max_explain_steps=16)) as client:
        too_many = client.post("/explain", files=record, params={"label": ["NORM", "AFIB", "IMI"]})
        assert too_many.status_code == 422 and "at most 2 per request" in too_many.json()["detail"]
        steps = client.post("/explain", files=record, params={"steps": 10_000})
        assert steps.status_code == 422 and "between 2 and 16" in steps.json()["detail"]
        attribution = client.post("/explain/attribution", files=record, params={"label": "NORM", "steps": 17})
        assert attribution.status_code == 422
        assert client.app.state.explainer.pids() == []  # refused before any work: no process was started


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "zombie" not in fh.read()
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc to watch the worker process")
def test_timed_out_explanation_is_killed_and_its_process_replaced(predictor, record, tmp_path):
    long_record = tmp_path / "long.npz"  # 60 s: integrated gradients over it take minutes
    np.savez(long_record, signal=synthetic_signal(100, 60), fs=100.0, leads=np.array(STANDARD_LEADS))
    files = [("files", ("long.npz", long_record.read_bytes(), "application/octet-stream"))]
    app = create_app(predictor, explain_timeout_s=3)
    with TestClient(app) as client:
        [first] = app.state.explainer.start()  # the model is loaded: the 3 s are the explanation's own
        start = time.monotonic()
        response = client.post("/explain", files=files, params={"label": ["NORM", "AFIB", "IMI"], "steps": 64})
        elapsed = time.monotonic() - start
        assert response.status_code == 504 and "was stopped" in response.json()["detail"]
        assert elapsed < 3 + 2
        assert not _alive(first)  # the work ended with its process (and so did its memory)
        [second] = app.state.explainer.pids()
        assert second != first  # a fresh process took its place
        quick = client.post("/explain", files=record, params={"method": "lead-occlusion"})
        assert quick.status_code == 200, quick.text  # and answers the next request
    assert not _alive(second)  # shutting the service down stops its workers


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc to measure the worker process")
def test_explanation_over_its_memory_budget_is_stopped(predictor, tmp_path):
    from ecgfm.serve.explainer import _rss_mb

    long_record = tmp_path / "long.npz"
    np.savez(long_record, signal=synthetic_signal(100, 60), fs=100.0, leads=np.array(STANDARD_LEADS))
    files = [("files", ("long.npz", long_record.read_bytes(), "application/octet-stream"))]
    app = create_app(predictor, explain_timeout_s=60)
    with TestClient(app) as client:
        [first] = app.state.explainer.start()
        app.state.explainer.max_rss_mb = _rss_mb(first) + 20  # the loaded model and 20 MB more
        response = client.post("/explain", files=files, params={"label": ["NORM", "AFIB", "IMI"]})
        assert response.status_code == 422 and "more than" in response.json()["detail"]
        assert not _alive(first) and app.state.explainer.pids() != [first]


def test_long_records_are_explained_in_smaller_passes():
    from ecgfm.serve.explainer import internal_batch

    assert [internal_batch(s) for s in (2.5, 10, 20, 30, 150, 3600)] == [8, 8, 4, 2, 1, 1]


# -- the model card ----------------------------------------------------------------------------------------------------------

def test_model_card_shows_no_local_paths(tmp_path):
    from ecgfm.models import load

    model = load(make_tiny_model(tmp_path / "m"))
    model.info.data = {"dataset": "PTB-XL", "root": "/home/alice/secret/ptbxl",
                       "note": "fine-tuned from /srv/runs/pretrain-7/best.pt", "labels": ["LAO/LAE"]}
    model.info.training = {"out": "C:\\Users\\alice\\runs\\r1", "resume": "~/runs/last.pt", "ci": float("nan")}
    from ecgfm.models.runner import TorchRunner

    with TestClient(create_app(Predictor(TorchRunner(model), model.info))) as client:
        response = client.get("/model")
    assert response.status_code == 200
    text = response.text
    for leak in ("/home", "alice", "/srv", "C:", "~/"):
        assert leak not in text, leak
    card = response.json()
    assert card["data"]["root"] == "ptbxl" and card["data"]["note"] == "fine-tuned from best.pt"
    assert card["data"]["labels"] == ["LAO/LAE"] and card["training"] == {"out": "r1", "resume": "last.pt", "ci": None}
