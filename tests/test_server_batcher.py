"""The server's scheduler (integrations/server/batcher.py) on its own: how it cuts passes from waiting jobs.

A stand-in encoder records each pass; a gate holds the first pass so that the jobs under test are all
queued before the scheduler picks the next one; the clock is the test's."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

pytest.importorskip("fastapi")

from jinav3.integrations.server.batcher import SHORT_RECENTLY_S, Batcher  # noqa: E402 - after importorskip
from jinav3.integrations.server.validation import TEXTS  # noqa: E402 - after importorskip


class RecordingEncoder:
    """Stands in for the Encoder: one row of ones per text; records every pass; the first waits for ``go``."""

    def __init__(self):
        self.passes: list[list[str]] = []
        self.holding = threading.Event()
        self.go = threading.Event()

    def encode(self, texts, task=None, normalize=False, **kwargs):
        self.passes.append(list(texts))
        if len(self.passes) == 1:
            self.holding.set()
            assert self.go.wait(10)
        return np.ones((len(texts), 4), np.float32)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_jobs(clock: Clock, max_batch_tokens: int, latency_batch_tokens: int,
             steps: list[tuple[str, int, int] | float]) -> list[list[str]]:
    """Queue a blocker, then, while it runs, ``steps``: jobs (name, inputs, tokens each) or seconds the
    clock moves on. Returns the passes after the blocker's."""
    encoder = RecordingEncoder()
    batcher = Batcher(encoder, max_batch_tokens, clock=clock, latency_batch_tokens=latency_batch_tokens)

    async def main():
        blocker = batcher.submit(TEXTS, "retrieval.passage", ["blocker"], [max_batch_tokens + 1], None, True)
        await asyncio.get_running_loop().run_in_executor(None, encoder.holding.wait, 10)
        queued = []
        for step in steps:
            if isinstance(step, float):
                clock.now += step
            else:
                name, n, tokens = step
                queued.append(batcher.submit(TEXTS, "retrieval.passage", [f"{name}{i}" for i in range(n)],
                                             [tokens] * n, None, True))
        encoder.go.set()
        for job in [blocker, *queued]:
            await asyncio.wait_for(job.future, 10)

    asyncio.run(main())
    batcher.close(10)
    return encoder.passes[1:]


def test_a_bulk_load_alone_runs_full_passes():
    passes = run_jobs(Clock(), 200, 50, [("bulk", 40, 10)])  # 400 tokens: two passes of 200
    assert [len(p) for p in passes] == [20, 20]


def test_while_short_requests_arrive_a_long_one_is_sliced():
    clock = Clock()
    passes = run_jobs(clock, 200, 50, [("bulk", 40, 10), ("query", 1, 8)])
    # the query goes first, with the bulk job's share of that pass (50 tokens); then 50-token passes
    assert passes[0] == ["query0"] + [f"bulk{i}" for i in range(5)]
    assert [len(p) for p in passes[1:]] == [5] * 7
    assert sorted(t for p in passes for t in p) == sorted([f"bulk{i}" for i in range(40)] + ["query0"])


def test_many_short_requests_share_one_full_pass():
    passes = run_jobs(Clock(), 200, 50, [(f"q{j}-", 1, 10) for j in range(15)] + [("bulk", 40, 10)])
    assert len(passes[0]) == 15 + 5  # every query (150 tokens) plus the bulk job's 50-token share
    assert all(len(p) <= 20 for p in passes)


def test_slicing_ends_once_short_requests_stop():
    passes = run_jobs(Clock(), 200, 50, [("query", 1, 10), SHORT_RECENTLY_S + 1.0, ("bulk", 40, 10)])
    assert passes[0] == ["query0"] + [f"bulk{i}" for i in range(19)]  # the full pass: 10 + 190 tokens
    assert [len(p) for p in passes[1:]] == [20, 1]
