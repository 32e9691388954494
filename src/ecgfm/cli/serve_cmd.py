"""``ecgfm serve``: the HTTP prediction service (FastAPI + uvicorn)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ecgfm.cli.common import console, user_errors
from ecgfm.cli.options import Model, Threads

#: Environment variable holding the API key when no --api-key-file is given.
API_KEY_ENV = "ECGFM_API_KEY"


def api_keys_from(key_file: Path | None) -> list[str] | None:
    """The API keys: one per line of ``key_file`` (several allow rotation), else ``$ECGFM_API_KEY``, else None."""
    if key_file is not None:
        try:
            return key_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{key_file}: cannot read the API key file ({exc})") from None
    key = os.environ.get(API_KEY_ENV)
    return [key] if key is not None else None


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        model: Model = "pretrained",
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: all; put a TLS "
                                 "reverse proxy in front, see docs/security.md)."),
        port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="TCP port."),
        backend: str = typer.Option("torch", "--backend", help="torch or onnx (ONNX Runtime; no /explain)."),
        max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.001, help="Request size limit (413 above)."),
        timeout: float = typer.Option(30.0, "--timeout", min=0.01, help="Seconds per prediction (504 above)."),
        explain_timeout: float = typer.Option(60.0, "--explain-timeout", min=0.01, help="Seconds per explanation, "
                                              "waiting included (504 above; the explanation is stopped)."),
        workers: int = typer.Option(2, "--workers", min=1, help="Predictions processed in parallel (threads)."),
        queue: int = typer.Option(64, "--queue", min=0, help="Predictions waiting for a worker (503 beyond)."),
        explain_workers: int = typer.Option(1, "--explain-workers", min=1, help="Explanation processes (each holds "
                                            "a copy of the model; they run at low CPU priority)."),
        explain_queue: int = typer.Option(1, "--explain-queue", min=0, help="Explanations waiting for a process "
                                          "(503 beyond)."),
        max_explain_labels: int = typer.Option(3, "--max-explain-labels", min=1, help="Labels per /explain request."),
        max_explain_steps: int = typer.Option(64, "--max-explain-steps", min=2, help="Integrated-gradients steps per "
                                              "explanation."),
        explain_memory_mb: float = typer.Option(1024.0, "--explain-memory-mb", min=100, help="Memory (RSS) an "
                                                "explanation process may use; stopped above it (422)."),
        api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="File of API keys (one per line); "
                                                    f"default ${API_KEY_ENV}. With a key, requests need "
                                                    "'Authorization: Bearer KEY' or 'X-API-Key: KEY' (401)."),
        cors_origin: Optional[list[str]] = typer.Option(None, "--cors-origin", help="Origin allowed to call the API "
                                                        "from a browser, e.g. https://ecg.example.org (repeatable; "
                                                        "default none)."),
        rate_limit: float = typer.Option(10.0, "--rate-limit", min=0, help="Requests per second per client, on "
                                         "average (429 beyond; 0: no limit)."),
        rate_burst: int = typer.Option(60, "--rate-burst", min=1, help="Requests a client may make at once."),
        trust_proxy: bool = typer.Option(False, "--trust-proxy", help="Identify clients by X-Forwarded-For (only "
                                         "behind a reverse proxy that sets it)."),
        read_timeout: float = typer.Option(5.0, "--read-timeout", min=0.1, help="Seconds a client may take for "
                                           "its request headers, or pause within its body (408)."),
        body_min_rate: float = typer.Option(10_000, "--body-min-rate", min=0, help="Bytes/s a request body must "
                                            "average once --read-timeout has passed (408 below; 0: no minimum)."),
        body_timeout: float = typer.Option(600.0, "--body-timeout", min=0.1, help="Seconds for a whole request "
                                           "body (408)."),
        keep_alive: float = typer.Option(5.0, "--keep-alive", min=0.1, help="Seconds an idle connection stays open."),
        max_connections: int = typer.Option(100, "--max-connections", min=1, help="Connections served at once "
                                            "(503 beyond)."),
        threads: Threads = None,
    ) -> None:
        """Serve predictions over HTTP: POST /predict (file upload), /explain, GET /labels, /model, /health; the
        viewer page at /, API docs at /docs.

        --threads defaults to CPU cores / workers, so workers x threads fits the machine. Limits and a reverse-proxy
        deployment with TLS: docs/security.md.

        Example: ecgfm serve --model runs/finetune --port 8000  (then: curl -F files=@00001_lr.hea
        -F files=@00001_lr.dat http://127.0.0.1:8000/predict)
        """
        from ecgfm.inference.predictor import Predictor
        from ecgfm.serve import serve as run_server
        from ecgfm.serve.guard import check_api_keys

        # Concurrent requests each run the model: split the cores between them instead of oversubscribing.
        threads = threads or max(1, (os.cpu_count() or 1) // workers)
        with user_errors():
            if backend not in ("torch", "onnx"):
                raise ValueError(f"unknown backend {backend!r}; choose torch or onnx")
            keys = api_keys_from(api_key_file)
            if keys is not None:
                keys = check_api_keys(keys)
            predictor = Predictor.from_pretrained(model, backend=backend, num_threads=threads)
        guards = ", ".join(filter(None, ["API key" if keys else "no API key",
                                         f"CORS: {', '.join(cors_origin)}" if cors_origin else "",
                                         f"{rate_limit:g} requests/s per client" if rate_limit else ""]))
        console.print(f"serving {predictor.info.arch} ({len(predictor.labels)} labels, {backend}, {workers} workers x "
                      f"{threads} threads) on http://{host}:{port}  (viewer: /, API docs: /docs; {guards})",
                      highlight=False)
        run_server(predictor, host=host, port=port, keep_alive_s=keep_alive, header_timeout_s=read_timeout,
                   max_connections=max_connections, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                   timeout_s=timeout, workers=workers, queue=queue, explain_timeout_s=explain_timeout,
                   explain_workers=explain_workers,
                   explain_queue=explain_queue, max_explain_labels=max_explain_labels,
                   max_explain_steps=max_explain_steps, explain_max_rss_mb=explain_memory_mb, api_keys=keys,
                   cors_origins=cors_origin or (), rate_limit=rate_limit or None, rate_burst=rate_burst,
                   trust_proxy=trust_proxy, read_timeout_s=read_timeout, body_min_rate=body_min_rate,
                   body_timeout_s=body_timeout)
