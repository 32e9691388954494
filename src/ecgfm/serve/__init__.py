"""The HTTP service (FastAPI): ``create_app(predictor, ...)`` and ``serve(predictor, host, port, ...)``; the top layer,
beside the CLI. Modules: ``app`` (core endpoints), ``viewer_routes`` (the viewer page and its data), ``uploads``
(checked file names, zips), ``jobs`` (the bounded prediction pool), ``explainer`` (explanations in killable worker
processes), ``guard`` (read timeouts, API keys, rate limits, CORS), ``schemas`` (response models, the public model
card). Limits and deployment: docs/security.md."""
from ecgfm.serve.app import create_app, serve

__all__ = ["create_app", "serve"]
