"""HTTP prediction service (FastAPI): upload an ECG file, get the model's findings as JSON.

``create_app(predictor)`` builds the app around an already loaded :class:`~ecgfm.inference.Predictor` (the model loads
once). Endpoints: ``POST /predict`` (one ECG: a file, the ``.hea`` + ``.dat`` of a WFDB record, or a ``.zip``),
``POST /predict/batch`` (several ECGs in one upload), ``POST /explain`` (per-lead and per-moment attributions of
one ECG's findings, optionally with figures; ``ecgfm.explain``), ``GET /labels``, ``GET /model`` (model card),
``GET /health``, and the OpenAPI docs at ``/docs``. The viewer page (``ecgfm.viewer``) is served at ``/`` with the
data it draws (``ecgfm.serve.viewer_routes``).

Requests are bounded (docs/security.md): bodies over ``max_upload_bytes`` get 413, bodies arriving too slowly 408,
unreadable uploads 422 with the reason, never 500. Reading and prediction run in a pool of ``workers`` threads with
a bounded queue (503 with ``Retry-After`` beyond it, 504 after ``timeout_s``); explanations run in killable worker
processes (``ecgfm.serve.explainer``), so they can neither outlive their deadline nor starve predictions. API keys,
CORS and per-client rate limits are optional (``ecgfm.serve.guard``).
"""
from __future__ import annotations

import functools
import shutil
import tempfile
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from fastapi import FastAPI, File, HTTPException, Query, UploadFile

from ecgfm.inference.predictor import Predictor
from ecgfm.inference.results import Failure
from ecgfm.serve.explainer import ExplanationFailed, ExplanationPool
from ecgfm.serve.guard import add_guards, header_timeout_protocol
from ecgfm.serve.jobs import JobPool
from ecgfm.serve.schemas import (BatchOut, ExplanationOut, HealthOut, LabelOut, PredictionOut,
                                 without_local_paths)
from ecgfm.serve.uploads import (MAX_UNZIP_RATIO, BadInput, ecg_files, one_record, relabel, save_uploads, unpack,
                                 without_folder)

T = TypeVar("T")

#: What the ``threshold`` and ``on_poor_quality`` query parameters take (``ecgfm.inference.operating``).
THRESHOLD_HELP = ("Operating point: a rule fitted on the model's validation records (f1, youden, 'sens>=0.9', "
                  "'spec>=0.95', 'ppv>=0.8') or one number for every label; default: the model's own thresholds.")
QUALITY_HELP = ("A record failing a signal-quality check: flag (findings with the problems listed, the default), "
                "abstain (findings withheld, with the reason) or error (422).")
#: Default request body limit: a 10-s 12-lead ECG is 0.1-1 MB in every common format; 20 MB leaves room for Holters.
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_TIMEOUT_S = 30.0
#: Predictions waiting for a thread beyond the running ones (more: 503): ~2 s of single-ECG work for the shipped model
#: on 2 workers; a queued job whose request has timed out never runs, so waiting work never outlives its deadline.
DEFAULT_QUEUE = 64
#: Labels one /explain may ask for, and its integrated-gradients steps: 3 labels x 64 steps of default8 (the costliest
#: shipped model) take ~17 s on one core (a 54-label request took 6 min); ecgfm.explain's defaults are 3 findings and
#: 64 steps.
DEFAULT_MAX_EXPLAIN_LABELS = 3
DEFAULT_MAX_EXPLAIN_STEPS = 64
#: Seconds an explanation may take: 3 labels x 64 steps of default8 take ~17 s on an idle core, over 30 s on a busy
#: one (benchmarks/results/serve_load.json).
DEFAULT_EXPLAIN_TIMEOUT_S = 60.0
#: Resident memory of an explanation process: the shipped model loaded takes ~530 MB, a maximal explanation of a 10-s
#: record peaks at ~890 MB (benchmarks/results/serve_load.json); longer records are explained in smaller passes.
DEFAULT_EXPLAIN_MAX_RSS_MB = 1024.0
#: Seconds a client may take for its headers or pause within its body; the body's lowest average rate once that time
#: has passed (bytes/s: a byte-a-second trickle is cut after 5 s); the longest body (s: 20 MB need 35 kB/s).
DEFAULT_READ_TIMEOUT_S = 5.0
DEFAULT_BODY_MIN_RATE = 10_000.0
DEFAULT_BODY_TIMEOUT_S = 600.0


class Service:
    """What the endpoints share: the model, the prediction pool, the explanation workers and the limits."""

    def __init__(self, predictor: Predictor, pool: JobPool, explainer: ExplanationPool | None,
                 max_upload_bytes: int, timeout_s: float, max_explain_labels: int, max_explain_steps: int):
        self.predictor, self.pool, self.explainer = predictor, pool, explainer
        self.max_unzipped_bytes = int(max_upload_bytes) * MAX_UNZIP_RATIO
        self.timeout_s = float(timeout_s)
        self.max_explain_labels, self.max_explain_steps = int(max_explain_labels), int(max_explain_steps)

    async def run_job(self, files: list[UploadFile], job: Callable[[Path, threading.Event], T]) -> T:
        """Save the upload, then run ``job(folder, stop)`` in the pool with a deadline; the folder is removed
        afterwards (also by a job that ends after its deadline)."""
        folder = Path(tempfile.mkdtemp(prefix="ecgfm-upload-"))
        try:
            await save_uploads(files, folder)

            def work(stop: threading.Event) -> T:
                try:
                    unpack(folder, self.max_unzipped_bytes)
                    return job(folder, stop)
                finally:
                    shutil.rmtree(folder, ignore_errors=True)

            return await self.pool.run(work, self.timeout_s, f"prediction took longer than {self.timeout_s:g} s")
        except BadInput as exc:
            raise HTTPException(422, without_folder(str(exc), folder)) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    async def run_explanation(self, files: list[UploadFile], task: str, **kwargs: Any) -> dict[str, Any]:
        """Save the upload and run ``task`` of ``ecgfm.serve.explainer`` in an explanation worker process."""
        folder = Path(tempfile.mkdtemp(prefix="ecgfm-upload-"))
        try:
            await save_uploads(files, folder)
            return await self.explainer.run(task, folder, thresholds=dict(self.predictor.thresholds),
                                            max_unzipped_bytes=self.max_unzipped_bytes, **kwargs)
        except BadInput as exc:
            raise HTTPException(422, without_folder(str(exc), folder)) from None
        except ExplanationFailed as exc:
            raise HTTPException(exc.status, exc.message, headers=exc.headers) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def check_explanation(self, labels: Sequence[str] | None, method: str, steps: int) -> None:
        """Refuse at once what an explanation worker would refuse: no gradients, too many labels or steps, unknown
        labels or methods."""
        from ecgfm.explain.attribution import METHODS

        if self.explainer is None:
            raise HTTPException(501, "explanations need gradients: serve the model with the PyTorch backend")
        labels = list(dict.fromkeys(labels or []))
        if len(labels) > self.max_explain_labels:
            raise HTTPException(422, f"{len(labels)} labels asked for; at most {self.max_explain_labels} per request")
        unknown = [label for label in labels if label not in self.predictor.labels]
        if unknown:
            raise HTTPException(422, f"the model does not predict {', '.join(map(repr, unknown[:5]))}; it predicts "
                                     f"{', '.join(self.predictor.labels)}")
        if method not in METHODS:
            raise HTTPException(422, f"unknown explanation method {method[:40]!r}; choose one of {', '.join(METHODS)}")
        if not 2 <= steps <= self.max_explain_steps:
            raise HTTPException(422, f"steps must be between 2 and {self.max_explain_steps}, got {steps}")


def create_app(predictor: Predictor, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               timeout_s: float = DEFAULT_TIMEOUT_S, workers: int = 2, queue: int = DEFAULT_QUEUE,
               explain_timeout_s: float | None = DEFAULT_EXPLAIN_TIMEOUT_S, explain_workers: int = 1,
               explain_queue: int = 1,
               max_explain_labels: int = DEFAULT_MAX_EXPLAIN_LABELS, max_explain_steps: int = DEFAULT_MAX_EXPLAIN_STEPS,
               explain_max_rss_mb: float | None = DEFAULT_EXPLAIN_MAX_RSS_MB, api_keys: Sequence[str] | None = None,
               cors_origins: Sequence[str] = (), rate_limit: float | None = None, rate_burst: int = 60,
               trust_proxy: bool = False, read_timeout_s: float | None = DEFAULT_READ_TIMEOUT_S,
               body_min_rate: float | None = DEFAULT_BODY_MIN_RATE,
               body_timeout_s: float | None = DEFAULT_BODY_TIMEOUT_S) -> FastAPI:
    """The prediction service around a loaded ``predictor``.

    Args:
        predictor: the model (loaded once, shared by all requests).
        max_upload_bytes: request body limit (413 above it).
        timeout_s: per-request limit for reading + prediction (504 above it).
        workers / queue: threads reading and predicting, and requests admitted to wait for one (503 beyond).
        explain_timeout_s: per-request limit of an explanation, waiting included (504 and its process is killed);
            None: ``timeout_s``.
        explain_workers / explain_queue: explanation processes (each holds a copy of the model) and explanations
            admitted to wait for one (503 beyond).
        max_explain_labels / max_explain_steps: per-request caps of ``/explain`` (422 above them).
        explain_max_rss_mb: resident memory an explanation process may use (stopped above it, 422); None: no limit.
        api_keys: when given, every endpoint but the viewer page, ``/health`` and the docs needs one (401).
        cors_origins: origins allowed to call the API from a browser (none by default: no CORS headers).
        rate_limit / rate_burst: requests per second (average) and at once per client (429 beyond); None: off.
        trust_proxy: identify clients by the last ``X-Forwarded-For`` entry (only behind a proxy that sets it).
        read_timeout_s / body_min_rate / body_timeout_s: the longest pause within a request body (s), its lowest
            average rate after ``read_timeout_s`` (bytes/s) and its longest duration (s); 408 beyond. None: off.
    """
    backend_model = getattr(predictor.backend, "model", None)
    service = Service(
        predictor, JobPool(workers, queue, "predictions"),
        ExplanationPool(backend_model, explain_workers, explain_queue, explain_timeout_s or timeout_s,
                        explain_max_rss_mb)
        if backend_model is not None else None,
        max_upload_bytes, timeout_s, max_explain_labels, max_explain_steps)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.pool.close()
        if service.explainer is not None:
            service.explainer.close()

    info = predictor.info
    backend_name = getattr(predictor.backend, "name", type(predictor.backend).__name__)
    app = FastAPI(
        title="ecgfm prediction service",
        description=f"Findings for 12-lead ECGs from the `{info.arch}` model ({len(predictor.labels)} labels). "
                    "Upload an ECG file of any supported format (WFDB: the .hea and .dat files together, or a .zip).",
        version=_version(), lifespan=lifespan, max_body_size=int(max_upload_bytes))
    app.state.predictor, app.state.service, app.state.explainer = predictor, service, service.explainer
    add_guards(app, api_keys=api_keys, cors_origins=cors_origins, rate_limit=rate_limit, rate_burst=rate_burst,
               trust_proxy=trust_proxy, read_timeout_s=read_timeout_s, body_timeout_s=body_timeout_s,
               body_min_rate=body_min_rate)

    @functools.lru_cache(maxsize=32)
    def configured(threshold: str | None, on_poor_quality: str | None) -> Predictor:
        """The service's predictor at another operating point or quality policy (fitted once per setting)."""
        try:
            return predictor.configured(threshold, on_poor_quality)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None

    def predict_one(folder: Path, stop: threading.Event, chosen: Predictor = predictor) -> dict[str, Any]:
        path = one_record(folder, "send one per request or use POST /predict/batch")
        result = chosen.predict_many([path], num_workers=0)
        if result.failures:
            failure = relabel(result.failures[0], folder)
            raise BadInput(f"{failure.source}: {failure.reason}")
        return relabel(result.predictions[0], folder).to_dict()

    def predict_batch(folder: Path, stop: threading.Event, chosen: Predictor = predictor) -> dict[str, Any]:
        predictions, failures = [], []
        for result in chosen.iter_predict(ecg_files(folder), num_workers=0):
            if stop.is_set():  # the request has timed out: stop between records
                break
            result = relabel(result, folder)
            if isinstance(result, Failure):
                failures.append({"source": result.source, "reason": without_folder(result.reason, folder)})
            else:
                predictions.append(result.to_dict())
        return {"predictions": predictions, "failures": failures}

    @app.post("/predict", response_model=PredictionOut, responses={408: {}, 413: {}, 422: {}, 503: {}, 504: {}},
              summary="Findings for one ECG")
    async def predict(files: list[UploadFile] = File(..., description="The ECG: one file, the .hea and .dat of a "
                                                                      "WFDB record, or a .zip of them."),
                      threshold: str | None = Query(None, description=THRESHOLD_HELP),
                      on_poor_quality: str | None = Query(None, description=QUALITY_HELP)):
        """Read the uploaded ECG (any supported format, any sampling rate and length), judge its signal quality,
        apply the model's preprocessing and return every label's calibrated probability and the positive findings
        at the chosen operating point (default: the model's own thresholds)."""
        chosen = configured(threshold, on_poor_quality)
        return await service.run_job(files, functools.partial(predict_one, chosen=chosen))

    @app.post("/predict/batch", response_model=BatchOut, responses={408: {}, 413: {}, 422: {}, 503: {}, 504: {}},
              summary="Findings for several ECGs in one upload")
    async def predict_many(files: list[UploadFile] = File(..., description="ECG files or a .zip of them."),
                           threshold: str | None = Query(None, description=THRESHOLD_HELP),
                           on_poor_quality: str | None = Query(None, description=QUALITY_HELP)):
        """Predict every ECG in the upload; files that cannot be read are listed under ``failures``."""
        chosen = configured(threshold, on_poor_quality)
        return await service.run_job(files, functools.partial(predict_batch, chosen=chosen))

    @app.post("/explain", response_model=ExplanationOut,
              responses={408: {}, 413: {}, 422: {}, 501: {}, 503: {}, 504: {}},
              summary="What drives the findings of one ECG")
    async def explain_endpoint(
            files: list[UploadFile] = File(..., description="The ECG, as for POST /predict."),
            label: list[str] | None = Query(None, description="Label codes to explain (repeatable, at most "
                                                              f"{max_explain_labels}); default: the findings, at "
                                                              f"most {max_explain_labels}."),
            method: str = Query("integrated-gradients", description="integrated-gradients or lead-occlusion."),
            steps: int = Query(min(64, max_explain_steps), description="Integrated-gradients steps (2 to "
                                                                       f"{max_explain_steps})."),
            figure: bool = Query(False, description="Also return a 12-lead figure per label (PNG data URI).")):
        """Attribute each explained label's logit to the leads and moments of the uploaded ECG, relative to a flat
        0-mV ECG, through the model's own preprocessing, windows and aggregation (``ecgfm.explain``)."""
        service.check_explanation(label, method, steps)
        return await service.run_explanation(files, "explain", labels=label, method=method, steps=steps,
                                             figure=figure, max_labels=max_explain_labels)

    @app.get("/labels", response_model=list[LabelOut], summary="The labels the model predicts")
    async def labels():
        return [{"label": lab, "description": predictor.descriptions[lab], "threshold": predictor.thresholds[lab]}
                for lab in predictor.labels]

    @app.get("/model", summary="Model card: architecture, training data, preprocessing, thresholds, metrics")
    async def model_card() -> dict[str, Any]:
        """The model's ``config.json``, with local paths (training data, run folders) reduced to base names."""
        return without_local_paths({"backend": backend_name, **info.to_dict()})

    @app.get("/health", response_model=HealthOut, summary="Liveness check")
    async def health():
        return {"status": "ok", "model": info.arch, "labels": len(predictor.labels), "backend": backend_name}

    from ecgfm.serve.viewer_routes import add_viewer_routes

    add_viewer_routes(app, service)
    return app


def _version() -> str:
    from ecgfm.version import __version__

    return __version__


def serve(predictor: Predictor, host: str = "127.0.0.1", port: int = 8000, keep_alive_s: float = 5.0,
          header_timeout_s: float | None = DEFAULT_READ_TIMEOUT_S, max_connections: int | None = None, **app_kwargs: Any) -> None:
    """Run the service with uvicorn (one process: the model is loaded once).

    Args:
        keep_alive_s: an idle keep-alive connection is closed after this many seconds.
        header_timeout_s: a request's headers must arrive within this many seconds (408 and close); None: no limit.
        max_connections: open connections served at once (uvicorn's ``limit_concurrency``; 503 beyond); None: any.
        **app_kwargs: :func:`create_app`'s options.
    """
    import uvicorn

    http = header_timeout_protocol(header_timeout_s) if header_timeout_s else "h11"
    # proxy_headers=False: uvicorn would otherwise take the client address from X-Forwarded-For by itself; the
    # service does that only when asked (create_app's trust_proxy).
    uvicorn.run(create_app(predictor, **app_kwargs), host=host, port=port, log_level="info", http=http,
                timeout_keep_alive=keep_alive_s, limit_concurrency=max_connections, proxy_headers=False)
