"""The viewer page (``ecgfm.viewer``) and the data it draws: ``GET /`` (the page), ``GET /viewer/<asset>``,
``POST /ecg`` (samples to draw), ``POST /printout`` (PDF) and ``POST /explain/attribution`` (one label's attribution
on the record's time axis, computed in an explanation worker process like ``POST /explain``)."""
from __future__ import annotations

import io
import os
import threading
from pathlib import Path

from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import Response

from ecgfm.errors import ECGError
from ecgfm.serve.uploads import BadInput, one_record, without_folder


def read_one(folder: Path):
    """The one ECG of an upload, read, with the uploaded file's name; the project's errors become :class:`BadInput`."""
    from ecgfm.io import read

    path = one_record(folder)
    source = os.path.relpath(path, folder)
    try:
        return read(path), source
    except ECGError as exc:
        raise BadInput(f"{source}: {without_folder(getattr(exc, 'reason', None) or str(exc), folder)}") from None


def add_viewer_routes(app: FastAPI, service) -> None:
    """Add the page, its assets and its data endpoints to ``app`` (``service``: ``ecgfm.serve.app.Service``)."""
    from ecgfm.io import available_readers
    from ecgfm.viewer import ASSETS, CONTENT_SECURITY_POLICY, asset
    from ecgfm.viewer.payload import MAX_WINDOW_S, VIEWER_IG_STEPS, ecg_payload

    predictor = service.predictor
    info = predictor.info
    available_readers()  # import every reader now, not during the first upload (which the page times)

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

    @app.post("/ecg", responses={408: {}, 413: {}, 422: {}, 503: {}, 504: {}},
              summary="The samples of one ECG, for drawing")
    async def ecg_samples(files: list[UploadFile] = File(..., description="The ECG, as for POST /predict."),
                          start_s: float = Query(0.0, ge=0, description="First second to return."),
                          seconds: float | None = Query(None, gt=0, le=MAX_WINDOW_S, description="Seconds to "
                                                        "return (default: up to 60).")):
        """Leads, sampling rate, duration, heart rate, display-safe metadata and the samples (integer microvolts,
        min/max-decimated to about 250 points per second) of the uploaded ECG."""
        def job(folder: Path, stop: threading.Event):
            ecg, source = read_one(folder)
            try:
                return ecg_payload(ecg, file=source, start_s=start_s, seconds=seconds)
            except ECGError as exc:
                raise BadInput(f"{source}: {exc}") from None

        return await service.run_job(files, job)

    @app.post("/printout", response_class=Response, responses={200: {"content": {"application/pdf": {}}},
                                                              408: {}, 413: {}, 422: {}, 503: {}, 504: {}},
              summary="The standard 12-lead printout of one ECG as a PDF (true scale)")
    async def printout_pdf(files: list[UploadFile] = File(..., description="The ECG, as for POST /predict."),
                           speed: float = Query(25.0, description="Paper speed, mm/s: 25 or 50."),
                           gain: float = Query(10.0, description="mm/mV: 5, 10 or 20."),
                           layout: str = Query("standard", description="standard (3 x 4 + rhythm strip) or rows."),
                           findings: bool = Query(True, description="Print the model's findings in the header.")):
        """3 x 4 leads and a lead II rhythm strip (``ecgfm.printout``), with the findings of ``POST /predict``."""
        def job(folder: Path, stop: threading.Event):
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

        pdf, record_id = await service.run_job(files, job)
        name = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in str(record_id or "ecg"))
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{name.strip(".-") or "ecg"}.pdf"'})

    @app.post("/explain/attribution", responses={408: {}, 413: {}, 422: {}, 501: {}, 503: {}, 504: {}},
              summary="One label's attribution over the record, for shading the traces")
    async def explain_attribution(
            files: list[UploadFile] = File(..., description="The ECG, as for POST /predict."),
            label: str = Query(..., description="The label code to explain."),
            method: str = Query("integrated-gradients", description="integrated-gradients or lead-occlusion."),
            steps: int = Query(min(VIEWER_IG_STEPS, service.max_explain_steps),
                               description=f"Integrated-gradients steps (2 to {service.max_explain_steps}).")):
        """``ecgfm.explain`` for one label, summed into 40-ms bins per lead on the record's own time axis, scaled to
        [-1, 1], with the stretches that carry attribution and a sentence saying what the shading covers."""
        service.check_explanation([label], method, steps)
        return await service.run_explanation(files, "attribution", label=label, method=method, steps=steps)
