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
from jinav3.integrations.server.validation import LATE, TEXTS  # noqa: E402 - after importorskip


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


# ============================================================================================ merging a stream's task
def test_a_stream_of_small_queries_gets_its_task_merged(monkeypatch):
    """One query at a time runs on the resident (passage) weights as corrections; once the queries add up to
    MERGE_AFTER_TOKENS tokens, the scheduler merges the query task, and the vectors stay the golden ones."""
    import json

    from helpers import GOLDEN, golden

    from jinav3 import Encoder
    from jinav3.integrations.server import batcher as batcher_module

    monkeypatch.setattr(batcher_module, "MERGE_AFTER_TOKENS", 40)
    encoder = Encoder.from_pretrained(GOLDEN, device="cpu")
    with encoder.adapter("retrieval.passage"):
        pass
    merges = encoder.lora.merges
    texts = json.loads((GOLDEN / "inputs.json").read_text())["texts"]
    expected = golden("encode_retrieval.query.npy")
    batcher = Batcher(encoder, 2048)
    seen = []

    async def one_by_one():
        for text in texts:
            job = batcher.submit(TEXTS, "retrieval.query", [text], [12], None, True)
            seen.append(((await asyncio.wait_for(job.future, 30)).vectors[0], encoder.lora.active))

    asyncio.run(one_by_one())
    batcher.close(10)
    actives = [active for _, active in seen]
    assert actives[:3] == ["retrieval_passage"] * 3 and actives[-1] == "retrieval_query", actives  # 12 tokens each
    assert encoder.lora.merges == merges + 1
    np.testing.assert_allclose(np.stack([v for v, _ in seen]), expected, atol=1e-5, rtol=0)


# ============================================================================================ late chunking
class WindowEncoder(RecordingEncoder):
    """Also runs late-chunking windows: token states of ones (each token's state is its id), recorded as
    ("window", first id); the first call of either kind waits for ``go``."""

    hidden_size = 2

    def token_states(self, ids, task=None):
        self.passes.append([f"window{ids[0]}"])
        if len(self.passes) == 1:
            self.holding.set()
            assert self.go.wait(10)
        return np.array([[float(i), 1.0] for i in ids], np.float32)


def late_document(length: int, window: int, overlap: int, spans: list[tuple[int, int]]):
    from jinav3.integrations.server.tokens import LateDocument
    from jinav3.late_chunking import TokenizedDocument, windows

    return LateDocument(TokenizedDocument(list(range(length)), spans), windows(length, window, overlap))


def test_a_late_chunking_document_runs_window_by_window_and_queries_go_between():
    encoder = WindowEncoder()
    clock = Clock()
    batcher = Batcher(encoder, 200, clock=clock, latency_batch_tokens=50)
    document = late_document(400, 100, 20, [(0, 150), (150, 400)])  # windows at 0, 80, ..., 320: five of 100 tokens

    async def main():
        late = batcher.submit(LATE, "retrieval.passage", [document], [400], None, False)
        await asyncio.get_running_loop().run_in_executor(None, encoder.holding.wait, 10)
        query = batcher.submit(TEXTS, "retrieval.query", ["query"], [8], None, True)
        encoder.go.set()
        return await asyncio.wait_for(late.future, 10), await asyncio.wait_for(query.future, 10)

    late, _ = asyncio.run(main())
    batcher.close(10)
    # the first slice ran at the full budget (two windows of 100), then the query, then one window a pass
    assert encoder.passes == [["window0"], ["window80"], ["query"], ["window160"], ["window240"], ["window320"]]
    # pooled as the library pools: each span's mean of its tokens' states (a token's state is [its id, 1])
    expected = np.array([[np.mean(range(0, 150)), 1.0], [np.mean(range(150, 400)), 1.0]], np.float32)
    np.testing.assert_allclose(late.vectors, expected, rtol=1e-6)


def test_a_cancelled_late_chunking_document_runs_no_more_windows():
    encoder = WindowEncoder()
    batcher = Batcher(encoder, 100, clock=Clock(), latency_batch_tokens=50)
    document = late_document(400, 100, 20, [(0, 400)])

    async def main():
        late = batcher.submit(LATE, None, [document], [400], None, True)
        await asyncio.get_running_loop().run_in_executor(None, encoder.holding.wait, 10)
        batcher.cancel(late)  # the client left while the first window ran
        encoder.go.set()
        after = batcher.submit(TEXTS, None, ["after"], [5], None, True)
        await asyncio.wait_for(after.future, 10)
        return late

    late = asyncio.run(main())
    batcher.close(10)
    assert encoder.passes == [["window0"], ["after"]] and late.future.cancelled()
