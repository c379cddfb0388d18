"""ASGI middleware in front of every route: API key, the body's size and deadline, and per-route metrics
and timing.

Plain ASGI rather than Starlette's BaseHTTPMiddleware: that one re-wraps ``receive``, which would
hide a client's disconnect from the embeddings route (it drops the work of clients that left).

The body is read through ``receive``, so its rules live here, for every route: at most
``max_request_bytes`` (413), complete within ``body_timeout_s`` of the request's start (408: a stalled
upload must not hold the server's resources), and a client that leaves before sending it all is a
quiet 499 (its doing, not a server error: no traceback, no 500 in the metrics).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Any

from .errors import ApiError, send_error

log = logging.getLogger("jinav3.server")


class Guard:
    def __init__(self, app: Any, *, metrics: Any, routes: set[str], max_request_bytes: int, body_timeout_s: float,
                 api_key: str | None = None, open_paths: tuple[str, ...] = ("/health",)):
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.max_request_bytes = max_request_bytes
        self.body_timeout_s = body_timeout_s
        self._key = api_key.encode() if api_key else None
        self.open_paths = open_paths

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        path = scope["path"]
        route = path if path in self.routes else "other"  # unknown paths must not mint label values
        status = 500

        async def timed_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                total = f"{(time.perf_counter() - started) * 1e3:.3f}".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"x-total-time", total)]}
            await send(message)

        try:
            refusal = self._refusal(scope, path)
            if refusal is not None:
                await send_error(timed_send, refusal, path)
                return
            await self.app(scope, self._body_rules(scope, receive), timed_send)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.request_duration.labels(route).observe(time.perf_counter() - started)

    def _refusal(self, scope: Any, path: str) -> ApiError | None:
        raw_headers = scope.get("headers") or []
        sent = sum(1 for name, _ in raw_headers if name == b"authorization")
        if sent > 1:  # which one would count is a guess: the server does not guess with credentials
            return ApiError(400, f"Authorization: sent {sent} times; send the header once", code="invalid_header")
        headers = dict(raw_headers)
        if self._key is not None and path not in self.open_paths and not self._authorized(headers):
            # Never echo what was sent: a near-miss key is still a secret.
            return ApiError(401, "missing or invalid API key: send the header 'Authorization: Bearer <key>'",
                            code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_request_bytes
            except ValueError:
                return ApiError(400, "Content-Length: not a number", code="invalid_header")
            if too_big:
                return self._too_big()
        return None

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        return self._key is not None and scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key)

    def _too_big(self) -> ApiError:
        return ApiError(413, f"body: more than this server's limit of {self.max_request_bytes} bytes "
                             "(--max-request-bytes); send fewer inputs per request", code="payload_too_large")

    def _too_slow(self) -> ApiError:
        return ApiError(408, f"body: not received within this server's limit of {self.body_timeout_s:g} s "
                             "(--body-timeout); send the whole body at once", code="request_timeout",
                        headers={"Connection": "close"})  # the rest of the body may still come: not reusable

    def _body_rules(self, scope: Any, receive: Any) -> Any:
        """``receive`` that enforces the body's rules while it is read (a chunked body has no Content-Length);
        once the body is complete, messages pass through (the embeddings route waits for a disconnect)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        seen, complete = 0, False

        async def body_receive() -> dict:
            nonlocal seen, complete
            if complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                log.info("%s %s: the body was not complete after %g s (%d bytes); answered 408", scope["method"],
                         scope["path"], self.body_timeout_s, seen)
                raise self._too_slow() from None
            if message["type"] == "http.disconnect":
                log.info("%s %s: the client left before sending its whole body (%d bytes); counted as 499",
                         scope["method"], scope["path"], seen)
                raise ApiError(499, "the client closed the connection before sending its whole body",
                               code="client_closed_request")
            seen += len(message.get("body", b""))
            if seen > self.max_request_bytes:
                raise self._too_big()
            complete = not message.get("more_body", False)
            return message

        return body_receive
