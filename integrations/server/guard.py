"""ASGI middleware in front of every route: API key, body size, and per-route metrics and timing.

Plain ASGI rather than Starlette's BaseHTTPMiddleware: that one re-wraps ``receive``, which would
hide a client's disconnect from the embeddings route (it drops the work of clients that left).
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from .errors import ApiError, send_error


class Guard:
    def __init__(self, app: Any, *, metrics: Any, routes: set[str], max_request_bytes: int, api_key: str | None = None,
                 open_paths: tuple[str, ...] = ("/health",)):
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.max_request_bytes = max_request_bytes
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
                await send_error(timed_send, refusal)
                return
            await self.app(scope, self._limited(receive), timed_send)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.request_duration.labels(route).observe(time.perf_counter() - started)

    def _refusal(self, scope: Any, path: str) -> ApiError | None:
        headers = dict(scope.get("headers") or [])
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

    def _limited(self, receive: Any) -> Any:
        """``receive`` that also counts the body while it is read (a chunked body has no Content-Length)."""
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_request_bytes:
                    raise self._too_big()
            return message

        return limited_receive
