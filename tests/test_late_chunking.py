"""Late chunking against the golden outputs of jina-ai/late-chunking, and its own guarantees."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import GOLDEN, golden

from jinav3 import InvalidArgumentError
from jinav3.late_chunking import sentence_spans, windows

SPEC = json.loads((GOLDEN / "late_chunking.json").read_text())
LONG = SPEC["long"]
LONG_DOCUMENT = LONG["full_input"][len(SPEC["instruction"]):]
NORMALIZED = dict(atol=1e-5, rtol=0)
RAW = dict(atol=1e-4, rtol=1e-4)


def test_list_late_chunking_matches_golden(encoder):
    vectors = encoder.encode(SPEC["texts"], task="retrieval.passage", late_chunking=True)
    np.testing.assert_allclose(vectors, golden("late_chunking_normalized.npy"), **NORMALIZED)
    raw = encoder.encode(SPEC["texts"], task="retrieval.passage", late_chunking=True, normalize=False)
    np.testing.assert_allclose(raw, golden("late_chunking.npy"), **RAW)


def test_list_late_chunking_on_the_native_layout(native_encoder):
    vectors = native_encoder.encode(SPEC["texts"], task="retrieval.passage", late_chunking=True)
    np.testing.assert_allclose(vectors, golden("late_chunking_normalized.npy"), **NORMALIZED)


def test_joint_token_states_match_golden(encoder):
    states = encoder.token_states(SPEC["input_ids"], task="retrieval.passage")
    np.testing.assert_allclose(states, golden("late_chunking_tokens.npy"), **RAW)


def test_late_chunking_differs_from_isolated_pieces(encoder):
    isolated = encoder.encode(SPEC["texts"], task="retrieval.passage")
    contextual = encoder.encode(SPEC["texts"], task="retrieval.passage", late_chunking=True)
    assert not np.allclose(isolated, contextual, atol=1e-3)


def test_long_late_chunking_matches_golden(encoder):
    assert [list(w[:2]) for w in windows(LONG["n_tokens"], 64, 16)] == LONG["windows"]
    states = encoder.token_states(LONG["input_ids"], task="retrieval.passage", window=64, overlap=16)
    np.testing.assert_allclose(states, golden("long_late_chunking_tokens.npy"), **RAW)
    chunks = encoder.late_chunk(LONG_DOCUMENT, task="retrieval.passage", chunker="tokens", chunk_size=32,
                                window=64, overlap=16, normalize=False)
    np.testing.assert_allclose(np.stack([c.embedding for c in chunks]), golden("long_late_chunking.npy"), **RAW)


def test_long_list_late_chunking_uses_windows(encoder):
    """A joined list longer than the window still gives one vector per piece, from windowed states."""
    pieces = [s for s in LONG_DOCUMENT.split(". ") if s]
    vectors = encoder.encode(pieces, task="retrieval.passage", late_chunking=True, window=64, overlap=16)
    assert vectors.shape == (len(pieces), 64)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    full_context = encoder.encode(pieces, task="retrieval.passage", late_chunking=True)
    assert not np.allclose(vectors, full_context, atol=1e-4)  # windows really changed the context


def test_late_chunking_dimensions_cut_before_normalising(encoder):
    raw = encoder.encode(SPEC["texts"], task="retrieval.passage", late_chunking=True, normalize=False)
    cut = encoder.encode(SPEC["texts"], task="retrieval.passage", late_chunking=True, dimensions=32)
    expected = raw[:, :32] / np.linalg.norm(raw[:, :32], axis=1, keepdims=True)
    np.testing.assert_allclose(cut, expected, **NORMALIZED)


@pytest.mark.parametrize("chunker,kwargs", [("sentences", {}), ("tokens", {"chunk_size": 7})])
def test_offsets_round_trip(encoder, chunker, kwargs):
    document = "  Erster Satz hier.  Second sentence!\n中文句子。另一个句子？ Última frase sin punto  "
    chunks = encoder.late_chunk(document, chunker=chunker, **kwargs)
    assert chunks
    for i, chunk in enumerate(chunks):
        assert chunk.index == i
        assert chunk.text and chunk.text == document[chunk.start:chunk.end]
        assert chunk.text == chunk.text.strip()
        assert chunk.embedding.shape == (64,) and chunk.embedding.dtype == np.float32
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)


def test_sentence_chunker_is_multilingual():
    document = "One. Two! Three? 四。五！六？Seven\nEight"
    texts = [document[a:b] for a, b in sentence_spans(document)]
    assert texts == ["One.", "Two!", "Three?", "四。", "五！", "六？", "Seven", "Eight"]
    assert sentence_spans("version 3.8 is out. Next") == [(0, 19), (20, 24)]


def test_explicit_character_spans(encoder):
    document = "Berlin is the capital of Germany. It has about 3.8 million inhabitants."
    spans = [(0, 33), (34, len(document))]
    chunks = encoder.late_chunk(document, chunker=spans)
    assert [(c.start, c.end) for c in chunks] == spans
    sentences = encoder.late_chunk(document, chunker="sentences")
    np.testing.assert_allclose(np.stack([c.embedding for c in chunks]), np.stack([c.embedding for c in sentences]),
                               **NORMALIZED)


def test_many_documents_equal_one_by_one(encoder):
    documents = [LONG_DOCUMENT, "Kurzes Dokument. Zwei Sätze.", "", "   ", SPEC["texts"][3] + SPEC["texts"][4]]
    together = encoder.late_chunk_documents(documents, chunker="sentences", window=64, overlap=16)
    assert len(together) == len(documents)
    assert together[2] == [] and together[3] == []
    for document, chunks in zip(documents, together, strict=True):
        alone = encoder.late_chunk(document, chunker="sentences", window=64, overlap=16)
        assert [(c.start, c.end, c.text) for c in chunks] == [(c.start, c.end, c.text) for c in alone]
        for a, b in zip(chunks, alone, strict=True):
            np.testing.assert_allclose(a.embedding, b.embedding, **NORMALIZED)


def test_long_document_beyond_the_model_context(encoder):
    """Far past max_length (8194 tokens): windows of the default size, bounded memory."""
    document = " ".join([LONG_DOCUMENT] * 40)  # about 11,500 tokens
    chunks = encoder.late_chunk(document, chunker="tokens", chunk_size=256)
    n_tokens = len(encoder.tokenizer(document)["input_ids"])
    assert n_tokens > encoder.max_length
    assert len(chunks) >= (n_tokens - 2) // 256
    assert all(np.isfinite(c.embedding).all() for c in chunks)
    assert chunks[-1].end <= len(document)


def test_query_task_and_no_task(encoder):
    document = "Short one. Another one."
    query = encoder.late_chunk(document, task="retrieval.query")
    plain = encoder.late_chunk(document, task=None)
    assert len(query) == len(plain) == 2
    assert not np.allclose(query[0].embedding, plain[0].embedding, atol=1e-3)


@pytest.mark.parametrize("call,argument", [
    (lambda e: e.late_chunk("a. b.", chunker="tokens", chunk_size=0), "chunk_size"),
    (lambda e: e.late_chunk("a. b.", chunker="tokens"), "chunk_size"),
    (lambda e: e.late_chunk("a. b.", chunker="words"), "chunker"),
    (lambda e: e.late_chunk("a. b.", window=64, overlap=64), "overlap"),
    (lambda e: e.late_chunk("a. b.", window=1), "window"),
    (lambda e: e.late_chunk("abcdef", chunker=[(0, 3), (2, 5)]), r"chunker\[1\]"),
    (lambda e: e.late_chunk("abcdef", chunker=[(0, 9)]), r"chunker\[0\]"),
    (lambda e: e.late_chunk("abcdef", chunker=[(3, 3)]), r"chunker\[0\]"),
    (lambda e: e.late_chunk("abcdef", chunker=[(3, 1)]), r"chunker\[0\]"),
    (lambda e: e.late_chunk(b"bytes"), "document"),
    (lambda e: e.late_chunk_documents(["a", 5]), r"documents\[1\]"),
    (lambda e: e.late_chunk("a. b.", task="search"), "task"),
    (lambda e: e.encode(["a", " "], late_chunking=True), r"texts\[1\]"),
    (lambda e: e.encode(["a", "b"], task=["retrieval.query", "separation"], late_chunking=True), "task"),
])
def test_bad_input_rejected(encoder, call, argument):
    with pytest.raises(InvalidArgumentError, match=rf"^{argument}"):
        call(encoder)


def test_empty_list_late_chunking(encoder):
    assert encoder.encode([], late_chunking=True).shape == (0, 64)


@pytest.mark.slow  # a 200,000-token document
def test_200k_token_document_runs_a_window_batch_at_a_time(encoder):
    """A 200,000-token document: each forward pass sees at most one token budget of windows, and only
    per-chunk sums are kept (the states of a batch are dropped once pooled)."""
    document = " ".join([LONG_DOCUMENT] * 700)
    seen: list[int] = []

    def count_tokens(module, args, kwargs):  # packed: one (1, tokens) row per pass
        seen.append(int(kwargs["input_ids"].numel()))

    hook = encoder.model.register_forward_pre_hook(count_tokens, with_kwargs=True)
    try:
        chunks = encoder.late_chunk(document, chunker="tokens", chunk_size=512)
    finally:
        hook.remove()
    instruction = encoder.instruction("retrieval.passage")
    n_tokens = len(encoder.tokenizer(instruction + document, verbose=False)["input_ids"])
    n_document = n_tokens - 2 - len(encoder.tokenizer(instruction, add_special_tokens=False)["input_ids"])
    assert n_tokens > 200_000
    assert len(chunks) == -(-n_document // 512)  # ceil: every 512 document tokens, the last one shorter
    assert len(seen) > 20 and max(seen) <= max(encoder.max_tokens_per_batch, encoder.max_length)
    assert all(np.isfinite(c.embedding).all() for c in chunks)


@pytest.mark.parametrize("chunker, chunk_size", [("sentences", None), ("tokens", 5)])
def test_chunk_spans_say_where_the_chunks_fall_without_embedding(encoder, chunker, chunk_size):
    documents = ["Berlin is big. It has 3.8 million people!  Many parks.", "   ", "茶起源于中国。唐代人开始饮茶。",
                 "One sentence without an end"]
    chunked = encoder.late_chunk_documents(documents, chunker=chunker, chunk_size=chunk_size)
    spans = encoder.chunk_spans(documents, chunker=chunker, chunk_size=chunk_size)
    assert spans == [[(c.start, c.end) for c in chunks] for chunks in chunked]
    assert spans[1] == [] and all(spans[i] for i in (0, 2, 3))
    one = "Alpha beta. Gamma delta."
    assert encoder.chunk_spans([one], chunker=[(0, 5), (12, 24)]) == [[(0, 5), (12, 24)]]
