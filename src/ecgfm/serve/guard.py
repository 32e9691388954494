"""What stands between the network and the model: read timeouts, API keys, per-client rate limits, CORS.

Each guard is a small ASGI middleware, so it works under any ASGI server and in tests; ``add_guards`` stacks them in
this order (outermost first): CORS (answers preflights, labels every answer), rate limit (429 before any work, also
for wrong keys), API key (401), body read timeout (408). Slow *headers* never reach an ASGI app: uvicorn has no
header timeout of its own, so :func:`header_timeout_protocol` adds one to its HTTP/1.1 protocol (``ecgfm serve``
uses it); behind a reverse proxy the proxy's ``client_header_timeout`` does the same (docs/security.md).
"""
from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Sequence

from fastapi import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Paths served without an API key: the viewer page and its assets (the page then asks for the key), the liveness
#: check (for load balancers) and the OpenAPI documentation (which describes, never runs, the API).
PUBLIC_PATHS = frozenset({"/", "/health", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
PUBLIC_PREFIXES = ("/viewer/",)
#: An API key shorter than this is refused when the service starts (a guessable key is no key).
MIN_KEY_CHARS = 16
#: Buckets kept per rate limiter; beyond it, the buckets of clients idle long enough to be full again are dropped.
MAX_TRACKED_CLIENTS = 10_000


def client_address(scope: Scope, trust_proxy: bool = False) -> str:
    """The client's address: the TCP peer, or with ``trust_proxy`` the last ``X-Forwarded-For`` entry (the one the
    trusted proxy appended; entries before it come from the client and may be forged)."""
    if trust_proxy:
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                last = value.decode("latin-1").split(",")[-1].strip()
                if last:
                    return last
    client = scope.get("client")
    return client[0] if client else "unknown"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class BodyReadTimeout:
    """408 when a request body arrives too slowly: a pause of more than ``read_timeout_s`` between two chunks, an
    average below ``min_rate`` bytes/s once ``read_timeout_s`` have passed (Apache's ``MinRate`` rule: a client
    trickling a byte a second is cut off after ``read_timeout_s``, a slow but honest upload is not), or more than
    ``body_timeout_s`` for the whole body. The 408 closes the connection."""

    def __init__(self, app: ASGIApp, read_timeout_s: float, body_timeout_s: float = math.inf, min_rate: float = 0.0):
        self.app, self.read_timeout_s = app, float(read_timeout_s)
        self.body_timeout_s, self.min_rate = float(body_timeout_s), float(min_rate)

    def _refuse(self) -> HTTPException:
        rate = f", at least {self.min_rate:g} bytes/s" if self.min_rate else ""
        return HTTPException(408, f"the request body arrived too slowly (limits: {self.read_timeout_s:g} s between "
                                  f"chunks{rate}, {self.body_timeout_s:g} s in all)", headers={"Connection": "close"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.monotonic()
        received, body_done = 0, False

        def time_left() -> float:
            allowed = self.body_timeout_s
            if self.min_rate:  # the deadline moves on with every byte received at the minimum rate
                allowed = min(allowed, self.read_timeout_s + received / self.min_rate)
            return min(self.read_timeout_s, start + allowed - time.monotonic())

        async def timed_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # afterwards the app may wait for a disconnect as long as it likes
                return await receive()
            try:
                limit = time_left()
                if limit <= 0:
                    raise asyncio.TimeoutError
                message = await asyncio.wait_for(receive(), limit)
            except asyncio.TimeoutError:
                raise self._refuse() from None
            received += len(message.get("body", b""))
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed_receive, send)


class ApiKeyAuth:
    """401 unless the request carries one of ``keys`` as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``
    (compared in constant time); the paths of :data:`PUBLIC_PATHS` and CORS preflights pass without one."""

    def __init__(self, app: ASGIApp, keys: Sequence[str]):
        self.app = app
        self.keys = [key.encode("utf-8") for key in keys]

    def _authorized(self, scope: Scope) -> bool:
        given = _header(scope, b"x-api-key")
        authorization = _header(scope, b"authorization")
        if given is None and authorization is not None and authorization[:7].lower() == b"bearer ":
            given = authorization[7:].strip()
        if not given:
            return False
        matches = [hmac.compare_digest(given, key) for key in self.keys]  # every key compared: no early exit
        return any(matches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] != "OPTIONS" and not _is_public(scope["path"])
                and not self._authorized(scope)):
            response = JSONResponse({"detail": "an API key is required: send 'Authorization: Bearer KEY' or "
                                               "'X-API-Key: KEY'"}, status_code=401,
                                    headers={"WWW-Authenticate": 'Bearer realm="ecgfm"'})
            return await response(scope, receive, send)
        await self.app(scope, receive, send)


class RateLimit:
    """Per-client token bucket: each client may make ``burst`` requests at once and ``rate`` per second on
    average; beyond that, 429 with ``Retry-After`` (the seconds until a token is back)."""

    def __init__(self, app: ASGIApp, rate: float, burst: int, trust_proxy: bool = False):
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate limit needs rate > 0 and burst >= 1, got {rate} and {burst}")
        self.app, self.rate, self.burst, self.trust_proxy = app, float(rate), float(burst), trust_proxy
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, time of the last update)

    def take(self, client: str, now: float) -> float:
        """Take a token for ``client``; returns 0 when granted, else the seconds until one is available."""
        tokens, last = self.buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self.buckets[client] = (tokens - 1, now)
            if len(self.buckets) > MAX_TRACKED_CLIENTS:
                self._forget_idle(now)
            return 0.0
        self.buckets[client] = (tokens, now)
        return (1 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        full = (self.burst - 1) / self.rate  # a bucket idle this long has refilled: forgetting it changes nothing
        for client in [c for c, (_, last) in self.buckets.items() if now - last >= full]:
            del self.buckets[client]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            wait = self.take(client_address(scope, self.trust_proxy), time.monotonic())
            if wait > 0:
                response = JSONResponse({"detail": f"too many requests from this client (limit: {self.rate:g} per "
                                                   f"second, bursts of {self.burst:g})"}, status_code=429,
                                        headers={"Retry-After": str(max(1, math.ceil(wait)))})
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


def check_api_keys(keys: Sequence[str]) -> list[str]:
    """The API keys, stripped; empty or short ones are refused (ValueError) before the service starts."""
    keys = [key.strip() for key in keys if key.strip()]
    if not keys:
        raise ValueError("no API key given (the key file or $ECGFM_API_KEY is empty)")
    short = [key for key in keys if len(key) < MIN_KEY_CHARS]
    if short:
        raise ValueError(f"API keys must be at least {MIN_KEY_CHARS} characters long; make one with: "
                         "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return keys


def add_guards(app, api_keys: Sequence[str] | None = None, cors_origins: Sequence[str] = (),
               rate_limit: float | None = None, rate_burst: int = 60, trust_proxy: bool = False,
               read_timeout_s: float | None = None, body_timeout_s: float | None = None,
               body_min_rate: float | None = None) -> None:
    """Add the guards that are configured to a FastAPI ``app`` (innermost first; see the module docstring)."""
    from starlette.middleware.cors import CORSMiddleware

    if read_timeout_s or body_timeout_s:
        app.add_middleware(BodyReadTimeout, read_timeout_s=read_timeout_s or math.inf,
                           body_timeout_s=body_timeout_s or math.inf, min_rate=body_min_rate or 0.0)
    if api_keys:
        app.add_middleware(ApiKeyAuth, keys=check_api_keys(api_keys))
    if rate_limit:
        app.add_middleware(RateLimit, rate=rate_limit, burst=rate_burst, trust_proxy=trust_proxy)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key"], max_age=600)


# -- slow headers: a header timeout for uvicorn's HTTP/1.1 protocol ------------------------------------------------------

_HEADER_TIMEOUT_TEXT = b"the request headers arrived too slowly\n"
HEADER_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                           b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                           % (len(_HEADER_TIMEOUT_TEXT), _HEADER_TIMEOUT_TEXT))


def header_timeout_protocol(seconds: float):
    """uvicorn's h11 protocol with a limit on the time from a connection's opening (or, between keep-alive requests,
    from the next request's first byte) to the end of the request's headers: 408 and close after ``seconds``.

    uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) and header size, but not the time headers
    take, so a client trickling a header byte every few seconds holds its connection for ever (slowloris)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class H11WithHeaderTimeout(H11Protocol):
        header_timeout_s = float(seconds)
        _header_timer: asyncio.TimerHandle | None = None

        def _awaiting_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self._awaiting_headers() and not self.transport.is_closing():
                self.transport.write(HEADER_TIMEOUT_RESPONSE)
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._awaiting_headers():
                self._arm()
            super().data_received(data)
            if not self._awaiting_headers():
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self._awaiting_headers():  # a pipelined request started at once
                self._disarm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return H11WithHeaderTimeout
