"""Which store errors are transient; retrying them follows the library's one policy (core/retries.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from jinav3.retries import RETRY_STATUSES, RetryPolicy

log = logging.getLogger("jinav3.integrations")

_TRANSIENT_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"}


def is_transient(exc: BaseException) -> bool:
    """Timeouts, dropped connections, HTTP 408/429/5xx and gRPC UNAVAILABLE-like errors, anywhere in
    the exception's cause chain."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        exc = current
        seen.add(id(exc))
        if isinstance(exc, (TimeoutError, ConnectionError)):
            return True
        for attr in ("status_code", "status", "http_status"):
            code = getattr(exc, attr, None)
            # any 5xx: a store's SDK wraps its server's failures in statuses the remote client never sees
            if isinstance(code, int) and not isinstance(code, bool) and (code in RETRY_STATUSES or 500 <= code < 600):
                return True
        code = getattr(exc, "code", None)
        if callable(code):
            try:
                name = getattr(code(), "name", None)
            except Exception:  # noqa: BLE001 - a foreign code() that needs arguments
                name = None
            if name in _TRANSIENT_GRPC:
                return True
        name, module = type(exc).__name__, type(exc).__module__ or ""
        if module.startswith(("httpx", "httpcore")) and name in (
                "ReadTimeout", "ConnectTimeout", "WriteTimeout", "PoolTimeout", "ConnectError", "RemoteProtocolError",
                "ReadError", "WriteError"):
            return True
        if module.startswith(("pymilvus", "pinecone")) and name in (
                "MilvusUnavailableException", "PineconeTimeoutError", "PineconeConnectionError", "ServiceError",
                "RateLimitError"):
            return True
        current = exc.__cause__ or exc.__context__
    return False


def call_with_retry(fn: Callable[[], Any], *, what: str, retries: int, backoff: float, max_backoff: float,
                    transient: Callable[[BaseException], bool] = is_transient,
                    sleep: Callable[[float], None] = time.sleep) -> Any:
    """Run ``fn``; on a transient error wait ``backoff * 2**attempt`` (jittered, capped) and try again,
    at most ``retries`` more times. Permanent errors and the last transient one are raised."""
    policy = RetryPolicy(retries, backoff, max_backoff, log)
    return policy.call(fn, what=what, transient=transient, sleep=sleep)
