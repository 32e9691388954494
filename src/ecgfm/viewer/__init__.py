"""The browser viewer served by ``ecgfm serve`` at ``/`` (plain JavaScript and SVG, no external resources), the data
it draws (:mod:`ecgfm.viewer.payload`) and the batch report of ``ecgfm predict --report`` (:mod:`ecgfm.viewer.batch_report`).
"""
from __future__ import annotations

from importlib.resources import files

#: The page and its assets (package data under ``static/``) with their media types; nothing else is served.
ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "viewer.js": "text/javascript; charset=utf-8",
    "viewer.css": "text/css; charset=utf-8",
}
#: The page loads nothing from elsewhere and runs no inline script: data from files can never become code.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def asset(name: str) -> bytes:
    """The bytes of one of :data:`ASSETS` (``KeyError`` for anything else: no path ever reaches the file system)."""
    if name not in ASSETS:
        raise KeyError(name)
    return files("ecgfm.viewer").joinpath("static", name).read_bytes()


def page_weight() -> int:
    """Bytes of the page and all its assets (the target is under 1 MB)."""
    return sum(len(asset(name)) for name in ASSETS)
