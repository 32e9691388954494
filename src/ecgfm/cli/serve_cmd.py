"""``ecgfm serve``: the HTTP prediction service (FastAPI + uvicorn)."""
from __future__ import annotations

import os
import typer

from ecgfm.cli.common import console, user_errors
from ecgfm.cli.options import Model, Threads


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        model: Model = "pretrained",
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: all)."),
        port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="TCP port."),
        backend: str = typer.Option("torch", "--backend", help="torch or onnx (ONNX Runtime)."),
        max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.001, help="Request size limit (413 above)."),
        timeout: float = typer.Option(30.0, "--timeout", min=0.01, help="Seconds per request (504 above)."),
        workers: int = typer.Option(2, "--workers", min=1, help="Requests processed in parallel (threads)."),
        threads: Threads = None,
    ) -> None:
        """Serve predictions over HTTP: POST /predict (file upload), GET /labels, /model, /health; docs at /docs.

        --threads defaults to CPU cores / workers, so workers x threads fits the machine.

        Example: ecgfm serve --model runs/finetune --port 8000  (then: curl -F files=@00001_lr.hea
        -F files=@00001_lr.dat http://127.0.0.1:8000/predict)
        """
        from ecgfm.inference.predictor import Predictor
        from ecgfm.serve import serve as run_server

        # Concurrent requests each run the model: split the cores between them instead of oversubscribing.
        threads = threads or max(1, (os.cpu_count() or 1) // workers)
        with user_errors():
            if backend not in ("torch", "onnx"):
                raise ValueError(f"unknown backend {backend!r}; choose torch or onnx")
            predictor = Predictor.from_pretrained(model, backend=backend, num_threads=threads)
        console.print(f"serving {predictor.info.arch} ({len(predictor.labels)} labels, {backend}, {workers} workers x "
                      f"{threads} threads) on http://{host}:{port}  (viewer: /, API docs: /docs)", highlight=False)
        run_server(predictor, host=host, port=port, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                   timeout_s=timeout, workers=workers)
