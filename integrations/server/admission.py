"""What every embedding route shares once its body is in: admission (429 past ``max_concurrent_requests``),
running a checked plan through the tokenizer thread and the scheduler, and waiting for it while watching
for the client to leave. The Jina/OpenAI route (app.py) and text-embeddings-inference's (tei.py) both
go through ``admitted`` and ``run_plan``, so their limits, batching and metrics are the same.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from .batcher import Job, JobResult
from .errors import ApiError
from .tokens import Prepared
from .validation import EmbedPlan

_INLINE_FLOATS = 1 << 16  # larger answers are serialised off the event loop


class admitted:
    """Admission: at most ``max_concurrent_requests`` embedding requests at once; past that, 429 at once. A request
    enters once its body has arrived: only work the model will do takes a slot. ``host``: app.ModelHost."""

    def __init__(self, host: Any):
        self.host = host

    def __enter__(self) -> None:
        if self.host.in_flight >= self.host.limits.max_concurrent_requests:
            raise ApiError(429, f"the server is at its limit of {self.host.limits.max_concurrent_requests} concurrent "
                                "requests (--max-concurrent-requests); retry shortly", code="overloaded",
                           headers={"Retry-After": "1"})
        self.host.in_flight += 1  # the event loop is one thread: no lock needed
        self.host.metrics.in_flight.set(self.host.in_flight)

    def __exit__(self, *exc: object) -> None:
        self.host.in_flight -= 1
        self.host.metrics.in_flight.set(self.host.in_flight)


@dataclass(frozen=True)
class Ran:
    """A plan's outcome: the scheduler's result, what was prepared, and the tokenising time."""

    result: JobResult
    prepared: Prepared
    tokenize_ms: float

    @property
    def tokens(self) -> int:
        return sum(self.prepared.tokens)

    def headers(self) -> dict[str, str]:
        return {"x-tokenization-time": f"{self.tokenize_ms:.3f}", "x-queue-time": f"{self.result.queue_s * 1e3:.3f}",
                "x-inference-time": f"{self.result.inference_s * 1e3:.3f}", "x-compute-tokens": str(self.tokens),
                "x-truncated-inputs": str(self.prepared.truncated)}


async def run_plan(request: Request, serving: Any, plan: EmbedPlan) -> Ran | None:
    """Tokenise ``plan`` on the tokenizer's thread, queue it, and wait; None if the client left first.
    ``serving``: app.Serving (tokens, batcher). Call inside ``admitted``."""
    started = time.perf_counter()
    prepared = await serving.tokens.prepare_plan(plan)
    tokenize_ms = (time.perf_counter() - started) * 1e3
    job = serving.batcher.submit(prepared.kind or plan.kind, plan.task, prepared.items, prepared.tokens,
                                 plan.dimensions, plan.normalize, plan.options)
    result = await wait_for(request, job, serving.batcher)
    return None if result is None else Ran(result, prepared, tokenize_ms)


async def wait_for(request: Request, job: Job, batcher: Any) -> JobResult | None:
    """The job's result, or None if the client disconnects first (its queued work is then dropped)."""
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({job.future, gone}, return_when=asyncio.FIRST_COMPLETED)
        if job.future.done():
            return job.future.result()
        return None
    finally:
        gone.cancel()
        if not job.future.done():  # the client left, or this handler was cancelled
            batcher.cancel(job)


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body is read: the next ASGI message can only be that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def serialise(body: Any, floats: int) -> bytes:
    """JSON bytes of ``body``; off the event loop when it holds more than ``_INLINE_FLOATS`` numbers."""
    def render() -> bytes:
        return json.dumps(body, separators=(",", ":")).encode()

    return render() if floats <= _INLINE_FLOATS else await asyncio.to_thread(render)
