"""HTTP prediction service (FastAPI): upload an ECG file, get the model's findings as JSON.

``create_app(predictor)`` builds the app around an already loaded :class:`~ecgfm.inference.Predictor` (the model loads
once). Endpoints: ``POST /predict`` (one ECG: a file, the ``.hea`` + ``.dat`` of a WFDB record, or a ``.zip``),
``POST /predict/batch`` (several ECGs in one upload), ``POST /explain`` (per-lead and per-moment attributions of
one ECG's findings, optionally with figures; ``ecgfm.explain``), ``GET /labels``, ``GET /model`` (model card),
``GET /health``, and the OpenAPI docs at ``/docs``. The viewer page (``ecgfm.viewer``) is served at ``/`` with the
data it draws: ``POST /ecg``, ``POST /printout`` (PDF) and ``POST /explain/attribution``.

Requests are bounded: bodies over ``max_upload_bytes`` get 413 (FastAPI's own body limit, enforced while streaming),
requests running longer than ``timeout_s`` get 504, unreadable ECGs get 422 with the reason, never 500. Reading and
inference run in a small thread pool, so concurrent requests are served while the event loop stays responsive.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from pydantic import BaseModel, Field

from ecgfm.inference.predictor import Predictor
from ecgfm.io.discover import discover_inputs

#: Default request body limit: a 10-s 12-lead ECG is 0.1-1 MB in every common format; 20 MB leaves room for Holters.
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_TIMEOUT_S = 30.0
#: A zip may expand to at most this multiple of the upload limit (zip-bomb guard), with at most this many members.
MAX_UNZIP_RATIO = 20
MAX_UPLOAD_FILES = 1000


# -- response schemas (they document the API in /docs) -----------------------------------------------------------------

class FindingOut(BaseModel):
    label: str = Field(description="Label code, e.g. an SCP-ECG statement such as 'AFIB'.")
    description: str = Field(description="Plain-language meaning of the label.")
    probability: float
    threshold: float = Field(description="The model's decision threshold for this label.")


class PredictionOut(BaseModel):
    record_id: str | None
    source: str | None = Field(description="The uploaded file the ECG was read from.")
    duration_s: float | None = Field(None, description="Length of the record (s); all of it is read.")
    notes: list[str] = Field(default_factory=list, description="How the record was read, e.g. padding of a record "
                                                               "shorter than the model's input.")
    probabilities: dict[str, float] = Field(description="Probability of every label.")
    findings: list[FindingOut] = Field(description="Labels at or above their threshold, most likely first.")


class SegmentOut(BaseModel):
    start_s: float
    end_s: float
    contribution: float = Field(description="Summed attribution (logit units) of all leads in this stretch.")


class LabelExplanationOut(BaseModel):
    label: str
    description: str
    probability: float
    logit: float
    baseline_logit: float = Field(description="The logit of a flat 0-mV ECG, the reference of the attributions.")
    convergence_delta: float | None = Field(description="Integrated gradients: sum of attributions minus "
                                                        "(logit - baseline_logit); small when exact.")
    lead_contribution: dict[str, float] = Field(description="Each lead's signed contribution to the logit.")
    top_leads: list[str] = Field(description="The leads pushing hardest towards the label.")
    segments: list[SegmentOut] = Field(description="The 0.4-s stretches with the largest positive attribution.")
    figure: str | None = Field(None, description="With figure=true: the 12-lead figure as a PNG data URI.")


class ExplanationOut(BaseModel):
    record_id: str | None
    source: str | None
    method: str
    steps: int | None
    fs: float
    leads: list[str]
    labels: list[LabelExplanationOut]


class FailureOut(BaseModel):
    source: str
    reason: str


class BatchOut(BaseModel):
    predictions: list[PredictionOut]
    failures: list[FailureOut]


class LabelOut(BaseModel):
    label: str
    description: str
    threshold: float


class HealthOut(BaseModel):
    status: str
    model: str
    labels: int
    backend: str


class BadInput(Exception):
    """An upload that cannot be used (answered with 422 and the reason)."""


# -- uploads --------------------------------------------------------------------------------------------------------

def _safe_name(name: str | None) -> str:
    """The base name of an uploaded/zipped file; folders and traversal (``../``) are dropped."""
    base = PurePosixPath(str(name or "").replace("\\", "/")).name
    if not base or base.startswith(".") or base in ("..",):
        raise BadInput(f"invalid file name {name!r}")
    return base


def _extract_zip(archive: Path, folder: Path, max_bytes: int) -> None:
    """Unpack ``archive`` flat into ``folder``, refusing zip bombs, duplicates and unsafe names."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")
                       and not PurePosixPath(m.filename).name.startswith(".")]
            if len(members) > MAX_UPLOAD_FILES:
                raise BadInput(f"{archive.name}: zip holds {len(members)} files (limit {MAX_UPLOAD_FILES})")
            if sum(m.file_size for m in members) > max_bytes:
                raise BadInput(f"{archive.name}: zip expands beyond {max_bytes} bytes")
            for member in members:
                target = folder / _safe_name(member.filename)
                if target.exists():
                    raise BadInput(f"{archive.name}: two files named {target.name!r}")
                with zf.open(member) as src, open(target, "wb") as dst:
                    # read at most the declared size + 1 byte: a lying header cannot inflate past the limit
                    data = src.read(member.file_size + 1)
                    if len(data) > member.file_size:
                        raise BadInput(f"{archive.name}: {member.filename} is larger than its zip header says")
                    dst.write(data)
    except zipfile.BadZipFile as exc:
        raise BadInput(f"{archive.name}: not a valid zip file ({exc})") from None
    archive.unlink()


async def _save_uploads(files: list[UploadFile], folder: Path) -> None:
    """Copy the uploaded files into ``folder`` (flat, safe names)."""
    if not files:
        raise BadInput("no file uploaded (send multipart/form-data with one or more 'files' fields)")
    if len(files) > MAX_UPLOAD_FILES:
        raise BadInput(f"{len(files)} files uploaded (limit {MAX_UPLOAD_FILES})")
    for upload in files:
        target = folder / _safe_name(upload.filename)
        if target.exists():
            raise BadInput(f"two uploaded files are named {target.name!r}")
        with open(target, "wb") as out:
            while chunk := await upload.read(1 << 20):
                out.write(chunk)


def _unpack(folder: Path, max_unzipped_bytes: int) -> None:
    for archive in sorted(folder.glob("*")):
        if archive.suffix.lower() == ".zip":
            _extract_zip(archive, folder, max_unzipped_bytes)


def _relabel(result, folder: Path):
    """Report the uploaded file name as ``source``, not the server's temporary path."""
    source = result.source
    if source and str(source).startswith(str(folder)):
        source = os.path.relpath(source, folder)
    return dataclasses.replace(result, source=source)


# -- the app -------------------------------------------------------------------------------------------------------------

def create_app(predictor: Predictor, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               timeout_s: float = DEFAULT_TIMEOUT_S, workers: int = 2) -> FastAPI:
    """The prediction service around a loaded ``predictor``.

    Args:
        predictor: the model (loaded once, shared by all requests).
        max_upload_bytes: request body limit (413 above it).
        timeout_s: per-request limit for reading + inference (504 above it; the worker finishes in the background).
        workers: threads running reading and inference concurrently.
    """
    executor = ThreadPoolExecutor(max_workers=max(1, int(workers)), thread_name_prefix="ecgfm-serve")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    info = predictor.info
    app = FastAPI(
        title="ecgfm prediction service",
        description=f"Findings for 12-lead ECGs from the `{info.arch}` model ({len(predictor.labels)} labels). "
                    "Upload an ECG file of any supported format (WFDB: the .hea and .dat files together, or a .zip).",
        version=_version(),
        lifespan=lifespan,
        max_body_size=int(max_upload_bytes),
    )
    app.state.predictor = predictor
    max_unzipped = int(max_upload_bytes) * MAX_UNZIP_RATIO

    async def run_job(files: list[UploadFile], job):
        """Save the upload, then run ``job(folder)`` in the pool with a deadline; the folder is removed afterwards."""
        folder = Path(tempfile.mkdtemp(prefix="ecgfm-upload-"))
        handed_over = False
        try:
            await _save_uploads(files, folder)

            def work():
                try:
                    _unpack(folder, max_unzipped)
                    return job(folder)
                finally:
                    shutil.rmtree(folder, ignore_errors=True)

            future = asyncio.get_running_loop().run_in_executor(executor, work)
            handed_over = True
            try:
                return await asyncio.wait_for(future, timeout=timeout_s)
            except asyncio.TimeoutError:
                # The job may still be queued (then it never runs) or running (its result is dropped): remove the
                # upload here too, so neither case leaves files behind.
                shutil.rmtree(folder, ignore_errors=True)
                raise HTTPException(504, f"prediction took longer than {timeout_s:g} s") from None
        except BadInput as exc:
            raise HTTPException(422, str(exc)) from None
        finally:
            if not handed_over:
                shutil.rmtree(folder, ignore_errors=True)

    def ecg_files(folder: Path) -> list[Path]:
        files, _ = discover_inputs([folder])
        if not files:
            names = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
            raise BadInput(f"no ECG file of a supported format in the upload (got {names})")
        return files

    def predict_one(folder: Path) -> dict[str, Any]:
        files = ecg_files(folder)
        if len(files) > 1:
            raise BadInput(f"the upload holds {len(files)} ECG records ({', '.join(p.name for p in files[:5])}); "
                           "send one per request or use POST /predict/batch")
        result = predictor.predict_many(files, num_workers=0)
        if result.failures:
            failure = _relabel(result.failures[0], folder)
            raise BadInput(f"{failure.source}: {failure.reason}")
        return _relabel(result.predictions[0], folder).to_dict()

    def explain_one(folder: Path, labels: list[str] | None, method: str, figure: bool) -> dict[str, Any]:
        from ecgfm.errors import ECGError
        from ecgfm.explain import explain
        from ecgfm.plotting.html import figure_to_data_uri

        files = ecg_files(folder)
        if len(files) > 1:
            raise BadInput(f"the upload holds {len(files)} ECG records; explain one per request")
        try:
            explanation = _relabel(explain(files[0], predictor, labels=labels, method=method), folder)
        except ECGError as exc:
            source = os.path.relpath(files[0], folder)
            raise BadInput(f"{source}: {getattr(exc, 'reason', None) or exc}") from None
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        body = explanation.to_dict()
        for row in body["labels"]:
            row["figure"] = figure_to_data_uri(explanation.plot(row["label"])) if figure else None
        return body

    def predict_batch(folder: Path) -> dict[str, Any]:
        result = predictor.predict_many(ecg_files(folder), num_workers=0)
        return {"predictions": [_relabel(p, folder).to_dict() for p in result.predictions],
                "failures": [vars(_relabel(f, folder)) for f in result.failures]}

    @app.post("/predict", response_model=PredictionOut, responses={413: {}, 422: {}, 504: {}},
              summary="Findings for one ECG")
    async def predict(files: list[UploadFile] = File(..., description="The ECG: one file, the .hea and .dat of a "
                                                                      "WFDB record, or a .zip of them.")):
        """Read the uploaded ECG (any supported format, any sampling rate), apply the model's preprocessing and
        return every label's probability and the positive findings at the model's thresholds."""
        return await run_job(files, predict_one)

    @app.post("/predict/batch", response_model=BatchOut, responses={413: {}, 422: {}, 504: {}},
              summary="Findings for several ECGs in one upload")
    async def predict_many(files: list[UploadFile] = File(..., description="ECG files or a .zip of them.")):
        """Predict every ECG in the upload; files that cannot be read are listed under ``failures``."""
        return await run_job(files, predict_batch)

    @app.post("/explain", response_model=ExplanationOut, responses={413: {}, 422: {}, 501: {}, 504: {}},
              summary="What drives the findings of one ECG")
    async def explain_endpoint(
            files: list[UploadFile] = File(..., description="The ECG, as for POST /predict."),
            label: list[str] | None = Query(None, description="Label codes to explain (repeatable); default: the "
                                                              "findings, at most three."),
            method: str = Query("integrated-gradients", description="integrated-gradients or lead-occlusion."),
            figure: bool = Query(False, description="Also return a 12-lead figure per label (PNG data URI).")):
        """Attribute each explained label's logit to the leads and moments of the uploaded ECG, relative to a flat
        0-mV ECG, through the model's own preprocessing, windows and aggregation (``ecgfm.explain``)."""
        if getattr(predictor.backend, "model", None) is None:
            raise HTTPException(501, "explanations need gradients: serve the model with the PyTorch backend")
        return await run_job(files, lambda folder: explain_one(folder, label, method, figure))

    @app.get("/labels", response_model=list[LabelOut], summary="The labels the model predicts")
    async def labels():
        return [{"label": lab, "description": predictor.descriptions[lab], "threshold": predictor.thresholds[lab]}
                for lab in predictor.labels]

    @app.get("/model", summary="Model card: architecture, training data, preprocessing, thresholds, metrics")
    async def model_card() -> dict[str, Any]:
        return {"backend": getattr(predictor.backend, "name", type(predictor.backend).__name__), **info.to_dict()}

    @app.get("/health", response_model=HealthOut, summary="Liveness check")
    async def health():
        return {"status": "ok", "model": info.arch, "labels": len(predictor.labels),
                "backend": getattr(predictor.backend, "name", type(predictor.backend).__name__)}

    _add_viewer_routes(app, predictor, run_job, ecg_files)
    return app


# -- the viewer page (ecgfm.viewer) and the data it draws ----------------------------------------------------------------

def _add_viewer_routes(app: FastAPI, predictor: Predictor, run_job, ecg_files) -> None:
    """``GET /`` (the page), ``GET /viewer/<asset>``, ``POST /ecg`` (samples to draw), ``POST /printout`` (PDF) and
    ``POST /explain/attribution`` (one label's attribution on the record's time axis)."""
    from fastapi.responses import Response

    from ecgfm.errors import ECGError
    from ecgfm.io import available_readers
    from ecgfm.viewer import ASSETS, CONTENT_SECURITY_POLICY, asset
    from ecgfm.viewer.payload import MAX_WINDOW_S, VIEWER_IG_STEPS, attribution_payload, ecg_payload

    info = predictor.info
    available_readers()  # import every reader now, not during the first upload (which the page times)

    def read_one(folder: Path):
        from ecgfm.io import read

        files = ecg_files(folder)
        if len(files) > 1:
            raise BadInput(f"the upload holds {len(files)} ECG records; send one per request")
        source = os.path.relpath(files[0], folder)
        try:
            return read(files[0]), source
        except ECGError as exc:
            raise BadInput(f"{source}: {getattr(exc, 'reason', None) or exc}") from None

    def asset_response(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(404, "not found")
        return Response(asset(name), media_type=ASSETS[name], headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    async def viewer_page():
        return asset_response("index.html")

    @app.get("/viewer/{name}", include_in_schema=False)
    async def viewer_asset(name: str):
        return asset_response(name)

    @app.post("/ecg", responses={413: {}, 422: {}, 504: {}}, summary="The samples of one ECG, for drawing")
    async def ecg_samples(files: list[UploadFile] = File(..., description="The ECG, as for POST /predict."),
                          start_s: float = Query(0.0, ge=0, description="First second to return."),
                          seconds: float | None = Query(None, gt=0, le=MAX_WINDOW_S, description="Seconds to "
                                                        "return (default: up to 60).")):
        """Leads, sampling rate, duration, heart rate, display-safe metadata and the samples (integer microvolts,
        min/max-decimated to about 250 points per second) of the uploaded ECG."""
        def job(folder: Path):
            ecg, source = read_one(folder)
            try:
                return ecg_payload(ecg, file=source, start_s=start_s, seconds=seconds)
            except ECGError as exc:
                raise BadInput(f"{source}: {exc}") from None

        return await run_job(files, job)

    @app.post("/printout", response_class=Response, responses={200: {"content": {"application/pdf": {}}},
                                                              413: {}, 422: {}, 504: {}},
              summary="The standard 12-lead printout of one ECG as a PDF (true scale)")
    async def printout_pdf(files: list[UploadFile] = File(..., description="The ECG, as for POST /predict."),
                           speed: float = Query(25.0, description="Paper speed, mm/s: 25 or 50."),
                           gain: float = Query(10.0, description="mm/mV: 5, 10 or 20."),
                           layout: str = Query("standard", description="standard (3 x 4 + rhythm strip) or rows."),
                           findings: bool = Query(True, description="Print the model's findings in the header.")):
        """3 x 4 leads and a lead II rhythm strip (``ecgfm.printout``), with the findings of ``POST /predict``."""
        def job(folder: Path):
            import io

            from ecgfm.printout import printout

            ecg, source = read_one(folder)
            try:
                result = predictor.predict(ecg).to_dict() if findings else {}
                figure = printout(ecg, findings=result.get("findings"), quality=result.get("quality"), speed=speed,
                                  gain=gain, layout=layout, model=info.arch if findings else None)
            except ECGError as exc:
                raise BadInput(f"{source}: {exc}") from None
            buffer = io.BytesIO()
            figure.savefig(buffer, format="pdf", metadata={"Creator": "ecgfm"})
            return buffer.getvalue(), ecg.record_id

        pdf, record_id = await run_job(files, job)
        name = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in str(record_id or "ecg"))
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{name.strip(".-") or "ecg"}.pdf"'})

    @app.post("/explain/attribution", responses={413: {}, 422: {}, 501: {}, 504: {}},
              summary="One label's attribution over the record, for shading the traces")
    async def explain_attribution(
            files: list[UploadFile] = File(..., description="The ECG, as for POST /predict."),
            label: str = Query(..., description="The label code to explain."),
            method: str = Query("integrated-gradients", description="integrated-gradients or lead-occlusion."),
            steps: int = Query(VIEWER_IG_STEPS, ge=2, le=256, description="Integrated-gradients steps.")):
        """``ecgfm.explain`` for one label, summed into 40-ms bins per lead on the record's own time axis, scaled to
        [-1, 1], with the stretches that carry attribution and a sentence saying what the shading covers."""
        if getattr(predictor.backend, "module", None) is None:
            raise HTTPException(501, "explanations need gradients: serve the model with the PyTorch backend")

        def job(folder: Path):
            from ecgfm.explain import explain

            ecg, source = read_one(folder)
            try:
                explanation = explain(ecg, predictor, labels=[label], method=method, steps=steps)
            except ECGError as exc:
                raise BadInput(f"{source}: {getattr(exc, 'reason', None) or exc}") from None
            except ValueError as exc:
                raise BadInput(str(exc)) from None
            return {"record_id": ecg.record_id, "file": source,
                    **attribution_payload(explanation, label, ecg.duration, info.preprocess, getattr(info, "aggregate", None))}

        return await run_job(files, job)


def _version() -> str:
    from ecgfm.version import __version__

    return __version__


def serve(predictor: Predictor, host: str = "127.0.0.1", port: int = 8000, **app_kwargs: Any) -> None:
    """Run the service with uvicorn (one process: the model is loaded once)."""
    import uvicorn

    uvicorn.run(create_app(predictor, **app_kwargs), host=host, port=port, log_level="info")

