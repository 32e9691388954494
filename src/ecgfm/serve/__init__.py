"""The HTTP service (FastAPI): ``create_app(predictor)`` and ``serve(predictor, host, port)``; the top layer, beside the CLI."""
from ecgfm.serve.app import create_app, serve

__all__ = ["create_app", "serve"]
