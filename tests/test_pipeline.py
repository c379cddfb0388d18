"""The encode pipeline: streaming token-budget batches, background tokenisation, lagged readback."""

import threading
import time

import numpy as np
import pytest
import torch
from helpers import GOLDEN, NORMALIZED, golden

from jinav3 import Encoder, pipeline
from jinav3 import encoder as encoder_module
from jinav3.batching import PACKED_WINDOW_BATCHES, token_budget_batches, windowed_batches
from jinav3.tasks import TASKS


# ----------------------------------------------------------------------------------- batching
def test_packed_budget_counts_real_tokens():
    lengths = [30, 60, 30, 30]
    assert list(token_budget_batches(lengths, 120)) == [[1, 0], [2, 3]]  # rows x longest: 2 x 60, 2 x 30
    assert list(token_budget_batches(lengths, 120, packed=True)) == [[1, 0, 2], [3]]  # 60 + 30 + 30


def _chunks(lengths, size):
    rows = [(i, [7] * n) for i, n in enumerate(lengths)]
    return [rows[a : a + size] for a in range(0, len(rows), size)]


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("max_rows", [None, 3])
def test_windowed_batches_cover_every_row_once_within_budget(packed, max_rows):
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(1, 60, 500)] + [300]  # one row over the budget
    budget = 128
    batches = list(windowed_batches(_chunks(lengths, 17), budget, max_rows, packed))
    seen = sorted(i for batch in batches for i, _ in batch)
    assert seen == list(range(len(lengths)))
    for batch in batches:
        sizes = [len(ids) for _, ids in batch]
        cost = sum(sizes) if packed else len(sizes) * max(sizes)
        assert cost <= budget or len(batch) == 1
        assert max_rows is None or len(batch) <= max_rows


def test_windowed_batches_start_before_the_stream_ends():
    """The first batch comes out once a window's worth of tokens is in, not at the end."""
    pulled = []

    def chunks():
        for chunk in _chunks([10] * 400, 10):
            pulled.append(len(chunk))
            yield chunk

    first = next(windowed_batches(chunks(), 100, packed=True))
    assert sum(len(ids) for _, ids in first) == 100
    assert sum(pulled) * 10 <= PACKED_WINDOW_BATCHES * 100 + 100  # a window plus one chunk, not all 400 rows


# ----------------------------------------------------------------------------------- background
def test_in_background_yields_everything_in_order():
    assert list(pipeline.in_background(iter(range(100)), depth=3)) == list(range(100))


def test_in_background_raises_the_producers_error():
    def failing():
        yield 1
        raise RuntimeError("tokenizer broke")

    items = pipeline.in_background(failing())
    assert next(items) == 1
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        next(items)


def test_in_background_stops_its_thread_when_the_consumer_leaves():
    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    before = threading.active_count()
    items = pipeline.in_background(endless(), depth=2)
    for item in items:
        if item == 5:
            break
    items.close()
    assert threading.active_count() == before
    stopped_at = len(produced)
    time.sleep(0.1)
    assert len(produced) == stopped_at <= 5 + 1 + 2 + 1  # at most depth (+ one in hand) ahead


# ----------------------------------------------------------------------------------- readback
def test_lagged_readback_stores_each_batch_one_step_late():
    out = np.zeros((4, 2), dtype=np.float32)
    stored = []
    readback = pipeline.LaggedReadback(out, stored.append)
    readback.put([2, 0], torch.tensor([[1.0, 1.0], [2.0, 2.0]]))
    assert not out.any() and stored == []  # nothing stored until the next batch arrives
    readback.put([3], torch.tensor([[3.0, 3.0]]))
    assert out[2, 0] == 1 and out[0, 0] == 2 and out[3, 0] == 0 and stored == [2]
    readback.flush()
    assert out[3, 0] == 3 and stored == [2, 1]
    readback.flush()  # nothing pending: no-op
    assert stored == [2, 1]


# ----------------------------------------------------------------------------------- the Encoder
@pytest.fixture(scope="module")
def overlapping_encoder():
    """The golden model with background tokenisation on (the default, pinned here) and a
    budget so small that every text is its own window."""
    return Encoder.from_pretrained(GOLDEN, device="cpu", max_tokens_per_batch=40, overlap_tokenization=True)


@pytest.fixture
def small_chunks(monkeypatch):
    """Two texts per tokenizer call, and a record of every background pipeline started."""
    monkeypatch.setattr(encoder_module, "CHUNK_TEXTS", 2)
    started = []
    real = pipeline.in_background
    monkeypatch.setattr(pipeline, "in_background", lambda items, **kw: started.append(1) or real(items, **kw))
    return started


@pytest.mark.parametrize("packed", [True, False])
def test_background_tokenisation_in_small_chunks_matches_golden(overlapping_encoder, golden_inputs, small_chunks,
                                                                packed):
    texts = golden_inputs["texts"]
    tasks = [TASKS[i % 5] for i in range(len(texts))] + ["retrieval.passage"] * len(texts)
    vectors = overlapping_encoder.with_options(packed=packed).encode(texts + texts, task=tasks, batch_size=2)
    assert small_chunks == [1]
    for i, task in enumerate(tasks):
        np.testing.assert_allclose(vectors[i], golden(f"encode_{task}.npy")[i % len(texts)], **NORMALIZED)


def test_one_chunk_needs_no_thread(overlapping_encoder, small_chunks):
    overlapping_encoder.encode(["one query", "two"], task="retrieval.query")
    assert small_chunks == []


def test_a_failing_forward_pass_stops_the_tokenizer_thread(
    overlapping_encoder, golden_inputs, monkeypatch, small_chunks
):
    def broken(module, args, kwargs):
        raise RuntimeError("device lost")

    before = threading.active_count()
    hook = overlapping_encoder.model.register_forward_pre_hook(broken, with_kwargs=True)
    try:
        with pytest.raises(RuntimeError, match="device lost"):
            overlapping_encoder.encode(golden_inputs["texts"] * 50, task="retrieval.passage")
    finally:
        hook.remove()
    assert small_chunks == [1] and threading.active_count() == before


@pytest.mark.slow  # many threads, many calls
def test_concurrent_tokenize_calls_keep_their_own_truncation(encoder):
    """Threads tokenising with different max_length at once (the background tokeniser next to a
    caller's thread, or two callers): the fast tokenizer keeps truncation as shared state, so without
    the Encoder's tokenizer lock one call silently truncates at another call's length."""
    texts = [("word " * 400) + str(i) for i in range(200)]
    errors = []

    def work(max_length):
        try:
            for _ in range(20):
                lengths = {len(ids) for ids in encoder.tokenize(texts, max_length)}
                assert lengths == {max_length}, f"asked {max_length}, got {sorted(lengths)}"
        except Exception as error:  # collected: pytest does not see a thread's exception
            errors.append(error)

    threads = [threading.Thread(target=work, args=(m,)) for m in (16, 300, 16, 300)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
