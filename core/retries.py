"""THE retry policy: how many times, and how long to wait, before trying a transient failure again.

One policy for the remote client (core/remote) and every store (integrations/stores/retries.py): exponential
backoff with jitter, ``backoff * 2**attempt`` seconds scaled by a random factor between 0.5 and 1 (so clients
that failed together spread out), at most ``max_backoff``; a server's ``Retry-After`` wins when it gives one.
Sync (``call``, ``wait``) and async (``acall``, ``await_wait``). Standard library only.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

# HTTP statuses worth another try: request timeout, too many requests, and the server-side failures that pass.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` tries after the first; waits from ``backoff`` seconds, doubling, at most ``max_backoff``.
    Retries are logged as warnings on ``log``."""

    retries: int
    backoff: float
    max_backoff: float
    log: logging.Logger = field(default=logging.getLogger("jinav3"), compare=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before try ``attempt + 1`` (``attempt`` counts from 0): the server's Retry-After (at most
        the larger of backoff and max_backoff), else the jittered exponential backoff."""
        if retry_after is not None:
            return min(retry_after, max(self.max_backoff, self.backoff))
        return min(self.backoff * 2**attempt, self.max_backoff) * random.uniform(0.5, 1.0)

    def _announce(self, attempt: int, what: str, why: str, retry_after: float | None) -> float:
        delay = self.delay(attempt, retry_after)
        self.log.warning("%s: %s; retry %d of %d in %.2f s", what, why, attempt + 1, self.retries, delay)
        return delay

    def wait(self, attempt: int, what: str, why: str, retry_after: float | None = None,
             sleep: Callable[[float], None] = time.sleep) -> None:
        """Log the retry and sleep before it."""
        delay = self._announce(attempt, what, why, retry_after)
        if delay > 0:
            sleep(delay)

    async def await_wait(self, attempt: int, what: str, why: str, retry_after: float | None = None) -> None:
        """``wait`` for async code: the event loop runs on meanwhile."""
        delay = self._announce(attempt, what, why, retry_after)
        if delay > 0:
            await asyncio.sleep(delay)

    def call(self, fn: Callable[[], T], *, what: str, transient: Callable[[BaseException], bool],
             sleep: Callable[[float], None] = time.sleep) -> T:
        """``fn()``, tried again after each transient error; a permanent error, or the last transient one,
        is raised as it is."""
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as error:
                if attempt >= self.retries or not transient(error):
                    raise
                self.wait(attempt, what, _why(error), sleep=sleep)
                attempt += 1

    async def acall(self, fn: Callable[[], Awaitable[T]], *, what: str,
                    transient: Callable[[BaseException], bool]) -> T:
        """``call`` for coroutines."""
        attempt = 0
        while True:
            try:
                return await fn()
            except Exception as error:
                if attempt >= self.retries or not transient(error):
                    raise
                await self.await_wait(attempt, what, _why(error))
                attempt += 1


def _why(error: BaseException) -> str:
    return f"failed ({type(error).__name__}: {error})"


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (it holds a number or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
