"""Host work overlapped with device work, so that an accelerator never waits for Python.

``Encoder.encode`` of many texts runs as a pipeline:

    background thread   instruction + text -> token ids, a chunk of texts at a time
                        (fast tokenizers release the GIL while they work)
    main thread         windows of tokenised texts -> length-sorted token-budget batches
                        -> packed (or padded) on pinned host memory, copied without blocking
                        -> forward pass, queued on the device (CUDA returns at once)
                        -> pooled vectors copied back asynchronously and read ONE batch later

so on CUDA the device has the next batch queued while the host tokenises, packs and stores results.
On a fast GPU, tokenising done first and in series would cost a large share of the run; on the CPU
it is a small share and the thread neither helps nor hurts (host costs: benchmarks/RESULTS.md). It
is used everywhere, so the path the GPU runs is the one the CPU tests run. A single chunk (a query,
a small batch) starts no thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from queue import Full, Queue
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

_DONE = object()


def in_background(items: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """Run the iterator ``items`` in a daemon thread, at most ``depth`` items ahead of the consumer.
    An exception in the thread is raised here; closing this generator (or leaving a for loop over
    it early) stops the thread at its next item."""
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[object, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                queue.put(entry, timeout=0.05)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as error:  # handed to the consumer, raised there
            put((_DONE, error))

    thread = threading.Thread(target=produce, name="jinav3-tokenize", daemon=True)
    thread.start()
    try:
        while True:
            item, error = queue.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()  # a producer waiting to put sees it within one put timeout
        thread.join()


class LaggedReadback:
    """Pooled vectors back to the host one batch late.

    ``put(rows, vectors)`` starts copying a batch's (n, H) float32 device tensor to pinned host memory
    without blocking (CUDA), then stores the PREVIOUS batch into ``out[rows]``: by then the device is
    already working on this batch. ``flush()`` stores the last one. On the CPU the copy is the tensor
    itself and nothing waits. ``accumulate``: add into ``out[rows]`` instead of storing (late
    chunking's partial span sums; the rows of one put are distinct)."""

    def __init__(self, out: np.ndarray, on_stored: Callable[[int], None] | None = None, accumulate: bool = False):
        self.out = out
        self.on_stored = on_stored
        self.accumulate = accumulate
        self._pending: tuple[Sequence[int] | np.ndarray, torch.Tensor, torch.cuda.Event | None] | None = None

    def put(self, rows: Sequence[int] | np.ndarray, vectors: torch.Tensor) -> None:
        if vectors.device.type == "cuda":
            host = vectors.to("cpu", non_blocking=True)  # lands in pinned memory: a real async copy
            ready = torch.cuda.Event()
            ready.record(torch.cuda.current_stream(vectors.device))  # that GPU's stream, e.g. cuda:1
        else:
            host, ready = vectors.cpu(), None
        self.flush()
        self._pending = (rows, host, ready)

    def flush(self) -> None:
        if self._pending is None:
            return
        rows, host, ready = self._pending
        self._pending = None
        if ready is not None:
            ready.synchronize()
        if self.accumulate:
            self.out[list(rows)] += host.numpy()
        else:
            self.out[list(rows)] = host.numpy()
        if self.on_stored is not None:
            self.on_stored(len(rows))
