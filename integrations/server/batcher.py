"""The scheduler: one worker thread owns the model and coalesces the work of all waiting requests.

Requests become jobs; the worker, whenever it is free, takes the next batch and runs it (no timer:
what arrived while the last batch ran is batched, as in text-embeddings-inference's queue):

  * one task per batch (one adapter merged per forward pass): the job with the least work done so
    far, then the fewest batches left to do, then the oldest, picks the task, and every waiting job
    of that task adds inputs in the same order while the batch stays within ``max_batch_tokens``.
    A big request is cut between inputs, so a query that arrives behind a bulk load waits for the
    batch in progress, not for the whole load (least attained service: new and short work goes
    first). "Batches left", not tokens left: among jobs that fit one batch the oldest goes first,
    so a query one token longer than the others is not passed over while new ones keep coming.
  * while short requests keep arriving (one of at most ``latency_batch_tokens`` tokens in the last
    ``SHORT_RECENTLY_S`` seconds), a long request adds at most ``latency_batch_tokens`` to a pass, so
    a query that arrives meanwhile waits for a short pass, not a full one; many short requests still
    share one full pass, and a bulk load alone runs at the full budget.
  * a batch is ONE ``encoder.encode(texts, task, normalize=False)`` call, the raw mean-pooled vectors;
    each job then gets ``cut_and_normalize(rows, its dimensions, its normalize)``, the library's own last step,
    so requests with other dimensions or normalisation share the forward pass and get the very
    vectors ``encode`` would give them.
  * late chunking (the inputs of one request are one document) and token-id inputs run alone, and
    sliced the same way: a late-chunking document is planned into the library's windows
    (tokens.LateDocument), and each pass runs as many of its windows as fit the job's share (the
    long-request share above: ``latency_batch_tokens`` while short requests arrive, else
    ``max_batch_tokens``), at least one, pooling their token states as it goes; token-id inputs go
    as many sequences per pass. So a query waits for one slice of windows, not for the whole
    document, and a document whose client left stops after the slice in progress.

A job whose client left is dropped before its next piece runs. ``close()`` drains what is queued,
then stops the thread. Results go back to the event loop with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jinav3.errors import InvalidArgumentError
from jinav3.pooling import cut_and_normalize

from .errors import ApiError
from .tokens import LateDocument
from .validation import CHUNKS, IDS, LATE, TEXTS

log = logging.getLogger("jinav3.server")

SHORT_RECENTLY_S = 2.0  # how long a short request keeps long ones sliced (queries come in streams)
MERGE_AFTER_TOKENS = 2048  # a task whose passes add up to this many tokens since the last merge gets merged


@dataclass(eq=False)
class Job:
    """One request's work, in units the scheduler hands out: ``tokens`` per unit. A unit is an input (texts,
    token ids) or a window of the document (late chunking: ``items`` is ``[LateDocument]``, pooled in ``pooler``)."""

    kind: str
    task: str | None
    items: list
    tokens: list[int]
    dimensions: int | None
    normalize: bool
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    seq: int
    enqueued: float
    next: int = 0              # units [0, next) are handed to the worker
    served: int = 0            # tokens handed to the worker: least-served jobs go first
    left: int = 0              # tokens not yet handed to the worker
    done: int = 0              # units finished
    rows: list = field(default_factory=list)
    started: float | None = None
    inference_s: float = 0.0
    cancelled: bool = False
    # jinav3's extensions: max_length, window, overlap, chunker; all_tokens (token ids: every state, not the mean)
    options: dict = field(default_factory=dict)
    pooler: SpanSums | None = None               # late chunking: the span sums, window by window

    @property
    def document(self) -> LateDocument:
        return self.items[0]

    def vectors(self) -> Any:
        """(n, dimensions) float32; with all_tokens a list of (tokens, hidden) arrays, one per input."""
        if self.options.get("all_tokens"):
            return list(self.rows)
        if self.pooler is not None:
            return self.document.vectors(self.pooler.means(), self.dimensions, self.normalize)
        return np.stack(self.rows) if self.rows else np.zeros((0, 0), np.float32)


@dataclass(frozen=True)
class JobResult:
    vectors: Any         # np.ndarray (n, dimensions), or with all_tokens a list of (tokens, hidden) arrays
    queue_s: float       # enqueued -> its first batch started
    inference_s: float   # the forward passes it took part in


@dataclass(frozen=True)
class _Batch:
    kind: str
    task: str | None
    pieces: list[tuple[Job, int, int]]  # (job, first item, end)
    max_length: int | None = None       # TEXTS: the truncation every job of the batch asked for

    @property
    def tokens(self) -> int:
        return sum(sum(job.tokens[a:b]) for job, a, b in self.pieces)

    @property
    def inputs(self) -> int:
        """Units: inputs, or for late chunking windows."""
        return sum(b - a for _, a, b in self.pieces)


class Batcher:
    def __init__(self, encoder: Any, max_batch_tokens: int, metrics: Any = None,
                 clock: Callable[[], float] = time.perf_counter, latency_batch_tokens: int | None = None):
        self.encoder = encoder
        self.max_batch_tokens = int(max_batch_tokens)
        # a long request's share of a pass while short ones are arriving (None: no slicing)
        self.latency_batch_tokens = min(int(latency_batch_tokens or max_batch_tokens), self.max_batch_tokens)
        self._last_short: float | None = None  # when the last short request came
        self.metrics = metrics
        self.clock = clock
        self.forward_passes = 0   # encode / token_states calls
        self.task_switches = 0
        self._jobs: list[Job] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closing = False
        self._last_task: object = _UNSET  # no batch run yet: the first is no switch
        self._tokens_since_merge: dict[str | None, int] = {}  # per task, tokens run since the last merge
        self._thread = threading.Thread(target=self._run, name="jinav3-model", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------------------- event-loop side
    def submit(self, kind: str, task: str | None, items: list, tokens: list[int], dimensions: int | None,
               normalize: bool, options: dict | None = None) -> Job:
        """Queue a job (call from the event loop); await ``job.future`` for its ``JobResult``. Late chunking:
        ``items`` is ``[LateDocument]``; its windows are the units (``tokens`` is only the usage count)."""
        loop = asyncio.get_running_loop()
        pooler = None
        if kind in (LATE, CHUNKS):
            document: LateDocument = items[0]
            tokens = [end - start for start, end, _ in document.windows]
            pooler = SpanSums(document.tokens.spans, int(self.encoder.hidden_size))
        job = Job(kind, task, items, tokens, dimensions, normalize, loop.create_future(), loop, next(self._seq),
                  self.clock(), left=sum(tokens), rows=[None] * len(tokens), options=dict(options or {}),
                  pooler=pooler)
        with self._cond:
            if self._closing:
                raise ApiError(503, "the server is shutting down", code="shutting_down", headers={"Retry-After": "1"})
            if self._is_short(job):
                self._last_short = job.enqueued
            self._jobs.append(job)
            self._cond.notify()
        self._gauge()
        return job

    def cancel(self, job: Job) -> None:
        """The client left: drop what of the job has not started (a running batch finishes for the others)."""
        with self._cond:
            if job.cancelled or job.future.done():
                return
            job.cancelled = True
            queued = job in self._jobs
            if queued:
                self._jobs.remove(job)
        job.future.cancel()
        if self.metrics:
            self.metrics.dropped.inc()
        self._gauge()
        log.debug("dropped job %d (client gone, %d of %d units done)", job.seq, job.done, len(job.tokens))

    def close(self, timeout: float | None = None) -> None:
        """Finish every queued job, then stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def queued(self) -> int:
        return len(self._jobs)

    # ----------------------------------------------------------------------------- worker side
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closing:
                    self._cond.wait()
                if not self._jobs:
                    return  # closing, and nothing left
                batch = self._take()
            self._gauge()
            self._execute(batch)

    def _take(self) -> _Batch:
        """The next batch (holding the lock): see the module docstring for the policy."""
        order = sorted(self._jobs, key=lambda job: _priority(job, self.max_batch_tokens))
        head = order[0]
        long_share = self.latency_batch_tokens if self._short_recently() else self.max_batch_tokens
        if head.kind != TEXTS:
            return self._take_alone(head, long_share)
        budget, pieces = self.max_batch_tokens, list[tuple[Job, int, int]]()
        max_length = head.options.get("max_length")
        for job in (j for j in order if j.kind == TEXTS and j.task == head.task
                    and j.options.get("max_length") == max_length):
            share = budget if self._is_short(job) else min(budget, long_share)  # tokens this job may add
            end = job.next
            while end < len(job.items) and (job.tokens[end] <= share or not pieces and end == job.next):
                budget -= job.tokens[end]
                share -= job.tokens[end]
                end += 1
            if end > job.next:
                pieces.append(self._hand_out(job, end))
            if budget <= 0:
                break
        return _Batch(TEXTS, head.task, pieces, max_length)

    def _take_alone(self, job: Job, share: int) -> _Batch:
        """A job that runs alone (late chunking, token ids): its next units within ``share`` tokens, at least one."""
        end, taken = job.next + 1, job.tokens[job.next]
        while end < len(job.tokens) and taken + job.tokens[end] <= share:
            taken += job.tokens[end]
            end += 1
        return _Batch(job.kind, job.task, [self._hand_out(job, end)])

    def _hand_out(self, job: Job, end: int) -> tuple[Job, int, int]:
        """Units [job.next, end) go to the worker (holding the lock); a job handed out whole leaves the queue."""
        piece = (job, job.next, end)
        taken = sum(job.tokens[job.next:end])
        job.served += taken
        job.left -= taken
        job.next = end
        if job.next == len(job.tokens):
            self._jobs.remove(job)
        return piece

    def _is_short(self, job: Job) -> bool:
        """A request that fits one latency-sized pass (a query, a few short texts)."""
        return job.kind == TEXTS and job.served + job.left <= self.latency_batch_tokens

    def _short_recently(self) -> bool:
        return self._last_short is not None and self.clock() - self._last_short < SHORT_RECENTLY_S

    def _execute(self, batch: _Batch) -> None:
        live = [(job, a, b) for job, a, b in batch.pieces if not job.cancelled]
        if not live:
            return
        batch = _Batch(batch.kind, batch.task, live, batch.max_length)
        started = self.clock()
        for job, _, _ in live:
            if job.started is None:
                job.started = started
                if self.metrics:
                    self.metrics.queue_duration.observe(started - job.enqueued)
        try:
            results = self._forward(batch)
        except Exception as error:  # noqa: BLE001 (the server must keep serving; the jobs get the error)
            self._fail(batch, error)
            return
        elapsed = self.clock() - started
        self._record(batch, elapsed)
        for (job, a, b), rows in zip(live, results, strict=True):
            if rows is not None:  # late chunking pooled its windows' states into the job
                job.rows[a:b] = list(rows)
            job.done += b - a
            job.inference_s += elapsed
            if job.done == len(job.tokens) and not job.cancelled:
                first = started if job.started is None else job.started  # set above for every live job
                _settle(job, JobResult(job.vectors(), first - job.enqueued, job.inference_s))

    def _forward(self, batch: _Batch) -> list[Any]:
        """Vectors per piece, in piece order (None for late chunking: its windows' states are pooled)."""
        self._note_task(batch.task)
        if batch.kind == TEXTS:
            self._settle_task(batch.task, batch.tokens)
            texts = [t for job, a, b in batch.pieces for t in job.items[a:b]]
            raw = self.encoder.encode(texts, task=batch.task, normalize=False,  # (n, H): one adapter, pooled means
                                      **({"max_length": batch.max_length} if batch.max_length else {}))
            self._count_forward("texts")
            out, offset = [], 0
            for job, a, b in batch.pieces:
                out.append(cut_and_normalize(raw[offset: offset + b - a], job.dimensions, job.normalize))
                offset += b - a
            return out
        job, a, b = batch.pieces[0]
        if batch.kind in (LATE, CHUNKS):
            self._pool_windows(job, a, b)
            return [None]
        assert batch.kind == IDS
        rows = []
        for ids in job.items[a:b]:  # the Encoder has no batched entry point for given ids: one call each
            states = self.encoder.token_states(ids, task=job.task)
            self._count_forward("token_ids")
            if job.options.get("all_tokens"):
                rows.append(states)
            else:
                rows.append(cut_and_normalize(states.mean(axis=0, dtype=np.float32)[None], job.dimensions,
                                              job.normalize)[0])
        return [rows]

    def _pool_windows(self, job: Job, a: int, b: int) -> None:
        """Windows [a, b) of a late-chunking document: each one forward pass (a window fits the model's length), its
        kept token states added to the span sums, as ``jinav3.late_chunking.pool_documents`` does."""
        assert job.pooler is not None
        ids = job.document.tokens.ids
        for start, end, keep in job.document.windows[a:b]:
            states = self.encoder.token_states(ids[start:end], task=job.task)
            self._count_forward("late_chunking")
            job.pooler.add(start + keep, states[keep:])

    def _settle_task(self, task: str | None, tokens: int) -> None:
        """Merge a task that keeps coming in small passes. The encoder runs a small pass of a task other than its
        merged one as low-rank corrections (no re-merge, but 2-18% more time per pass on the CPU, measured on the
        tiny and medium checkpoints), and decides call by call, so that identical calls give identical vectors.
        The scheduler sees the stream: once a task's passes add up to MERGE_AFTER_TOKENS tokens since the last
        merge, it is merged (``encoder.adapter``), and a stream of queries runs at full speed. Vectors from a
        server were never bit-identical across batches (a batch's make-up changes the rounding), only within
        tolerance of each other and of the reference."""
        adapter = getattr(self.encoder, "adapter", None)
        if adapter is None:
            return
        total = self._tokens_since_merge.get(task, 0) + tokens
        if total < MERGE_AFTER_TOKENS:
            self._tokens_since_merge[task] = total
            return
        self._tokens_since_merge.clear()
        with adapter(task):  # merges it, unless it is the merged one already
            pass

    def _note_task(self, task: str | None) -> None:
        if self._last_task is not _UNSET and task != self._last_task:
            self.task_switches += 1
            if self.metrics:
                self.metrics.task_switches.inc()
        self._last_task = task

    def _count_forward(self, kind: str) -> None:
        self.forward_passes += 1
        if self.metrics:
            self.metrics.forward_passes.labels(kind).inc()

    def _record(self, batch: _Batch, elapsed: float) -> None:
        if not self.metrics:
            return
        m = self.metrics
        m.inference_duration.observe(elapsed)
        m.batch_tokens.observe(batch.tokens)
        m.batch_inputs.observe(batch.inputs)
        m.batch_requests.observe(len(batch.pieces))
        m.tokens_embedded.inc(batch.tokens)
        m.inputs_embedded.inc(batch.inputs)

    def _fail(self, batch: _Batch, error: Exception) -> None:
        if isinstance(error, InvalidArgumentError):
            api_error = ApiError.from_library(error)
        else:
            log.exception("a batch of %d inputs failed", batch.inputs)
            api_error = ApiError(500, f"embedding failed: {type(error).__name__}: {error}", code="inference_failed")
        with self._cond:
            for job, _, _ in batch.pieces:  # the rest of a failed job is not worth running
                job.cancelled = True
                if job in self._jobs:
                    self._jobs.remove(job)
        for job, _, _ in batch.pieces:
            _settle(job, api_error)

    def _gauge(self) -> None:
        if self.metrics:
            self.metrics.queue_depth.set(len(self._jobs))


_UNSET = object()


class SpanSums:
    """A late-chunking document's span sums, fed window by window: the pooling of
    ``jinav3.late_chunking`` (each span's mean token state), kept here because the worker runs a
    document's windows between other requests' passes."""

    def __init__(self, spans: list[tuple[int, int]], hidden: int):
        self.spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
        self.sums = np.zeros((len(self.spans), hidden), dtype=np.float32)

    def add(self, position: int, states: np.ndarray) -> None:
        """``states`` (n, H): the kept states of the document's tokens ``position .. position+n-1``."""
        lo = np.maximum(self.spans[:, 0], position)
        hi = np.minimum(self.spans[:, 1], position + len(states))
        for s in np.flatnonzero(hi > lo):  # the spans this window touches (a few per window)
            self.sums[s] += states[lo[s] - position: hi[s] - position].sum(axis=0)

    def means(self) -> np.ndarray:
        counts = (self.spans[:, 1] - self.spans[:, 0]).astype(np.float32)[:, None]
        return self.sums / counts


def _priority(job: Job, budget: int) -> tuple[int, int, int]:
    """Least served first, then fewest batches left (ceil(left / budget)), then the oldest."""
    return job.served, -(-job.left // budget), job.seq


def _settle(job: Job, outcome: JobResult | BaseException) -> None:
    """Resolve the job's future on its loop (from the worker thread); nothing if it was cancelled."""

    def resolve() -> None:
        if job.future.done():
            return
        if isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            job.future.set_result(outcome)

    try:
        job.loop.call_soon_threadsafe(resolve)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


def _windows(options: dict) -> dict:
    return {k: options[k] for k in ("window", "overlap") if options.get(k) is not None}
