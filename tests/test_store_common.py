"""The shared store machinery (integrations/stores/: Collection, VectorStore, records, signature, filters,
retries, writer), and the contract every store must meet.

``StoreContract`` holds the tests that run on every store; test_qdrant_store.py, test_milvus_store.py
and test_pinecone_store.py subclass it with a ``backend`` fixture (see ``Backend`` below). The rest
of this file tests the shared parts on their own, with an in-memory store.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jinav3.errors import InvalidArgumentError, PartialWriteError, SignatureMismatchError, StoreError
from jinav3.integrations.store import Signature, VectorStore
from jinav3.integrations.stores import records as records_module
from jinav3.integrations.stores.filters import check_portable_filter, parse_filter
from jinav3.integrations.stores.records import (
    WHOLE,
    Point,
    group_by_document,
    make_hit,
    normalize_records,
    point_key,
    text_id,
    uuid_for,
)
from jinav3.integrations.stores.retries import call_with_retry, is_transient
from jinav3.integrations.stores.signature import check_signature

PASSAGES = Path(__file__).resolve().parents[1] / "examples" / "data" / "passages.jsonl"
ATOL = 1e-5


def corpus(n: int = 40) -> list[dict]:
    """The first ``n`` sample passages as records (id, text, metadata lang/topic)."""
    rows = [json.loads(line) for line in PASSAGES.read_text(encoding="utf-8").splitlines() if line.strip()][:n]
    return [{"id": r["id"], "text": r["text"], "metadata": {"lang": r["lang"], "topic": r["topic"]}} for r in rows]


DOCUMENTS = [
    {"id": "doc-a", "text": "The printing press changed Europe. Books became cheap. Literacy spread quickly! "
                            "Scholars could compare texts. Ideas moved faster than ever.", "metadata": {"lang": "en"}},
    {"id": "doc-b", "text": "Kompost braucht Luft und Feuchtigkeit. Grünes und braunes Material wechseln sich ab. "
                            "Nach einigen Monaten entsteht Humus.", "metadata": {"lang": "de"}},
    {"id": "doc-c", "text": "茶起源于中国。唐代人开始饮茶。宋代流行点茶。", "metadata": {"lang": "zh"}},
]
QUERIES = ["how did books change society?", "wie mache ich Kompost?", "tea history in China",
           "sensitive skin cream", "saving money for retirement"]


# ============================================================================================ records, ids
def test_plain_strings_get_a_hash_of_their_text_as_id():
    recs = normalize_records(["hello", {"text": "world", "metadata": {"k": 1}}, {"id": 7, "text": "x"}])
    assert [r.id for r in recs] == [text_id("hello"), text_id("world"), "7"]
    assert recs[0].id == "txt-" + __import__("hashlib").sha256(b"hello").hexdigest()[:32]
    assert recs[1].metadata == {"k": 1} and recs[0].metadata == {}


@pytest.mark.parametrize("records, argument", [
    ([{"id": "a"}], "records[0].text"),
    ([{"text": ""}], "records[0].text"),
    (["ok", "   \n"], "records[1].text"),
    ([{"text": 3}], "records[0].text"),
    ([{"text": "x", "metadata": {"when": object()}}], "records[0].metadata"),
    ([{"text": "x", "metadata": {"s": {1, 2}}}], "records[0].metadata"),
    ([{"text": "x", "metadata": {"f": float("nan")}}], "records[0].metadata"),
    ([{"text": "x", "metadata": {1: "a"}}], "records[0].metadata"),
    ([{"text": "x", "metadata": ["a"]}], "records[0].metadata"),
    ([{"text": "x", "lang": "de"}], "records[0]"),
    ([{"text": "x", "id": ""}], "records[0].id"),
    ([{"text": "x", "id": "a::chunk:1"}], "records[0].id"),
    ([{"text": "x", "id": 1.5}], "records[0].id"),
    ([{"text": "x", "id": "a"}, {"text": "y", "id": "a"}], "records[1].id"),
    ("just a string", "records"),
    ({"text": "a dict"}, "records"),
    ([3], "records[0]"),
])
def test_bad_records_name_the_argument(records, argument):
    with pytest.raises(InvalidArgumentError) as e:
        normalize_records(records)
    assert str(e.value).startswith(argument + ":"), str(e.value)


def test_identical_duplicates_are_written_once():
    recs = normalize_records(["same", "same", {"id": "a", "text": "t"}, {"id": "a", "text": "t"}])
    assert [r.id for r in recs] == [text_id("same"), "a"]


def test_point_keys_and_uuids_are_deterministic():
    assert point_key("a1") == "a1" and point_key("a1", WHOLE) == "a1"
    assert point_key("a1", 3) == "a1::chunk:3"
    assert uuid_for("a1") == uuid_for("a1") != uuid_for("a1::chunk:0")
    assert uuid.UUID(uuid_for("a1")).version == 5
    assert uuid_for("a1") == str(uuid.uuid5(records_module.ID_NAMESPACE, "a1"))


# ============================================================================================ signature
def test_signature_round_trip_and_differences():
    sig = Signature("jinaai/jina-embeddings-v3", 512, "retrieval.passage", "retrieval.query")
    assert Signature.from_json(sig.to_json()) == sig == Signature.from_dict(sig.to_dict())
    other = Signature("other/model", 256, "retrieval.passage", "text-matching")
    diffs = sig.differences(other)
    assert len(diffs) == 3 and any("512" in d and "256" in d for d in diffs)
    assert any("jinaai/jina-embeddings-v3" in d and "other/model" in d for d in diffs)
    with pytest.raises(StoreError):
        Signature.from_json("{not json")


def test_check_signature_names_both_values():
    sig = Signature("m", 64, "retrieval.passage", "retrieval.query")
    check_signature("x", sig, size=64, metric="cosine", stored=sig)
    with pytest.raises(SignatureMismatchError, match=r"it has 32.*gives 64"):
        check_signature("x", sig, size=32, metric="cosine", stored=None)
    with pytest.raises(SignatureMismatchError, match=r"'dot'.*'cosine'"):
        check_signature("x", sig, size=64, metric="dot", stored=None)
    with pytest.raises(SignatureMismatchError, match=r"model: it has 'n', this store uses 'm'"):
        other = Signature("n", 64, "retrieval.passage", "retrieval.query")
        check_signature("x", sig, size=64, metric="cosine", stored=other)


# ============================================================================================ filters
def test_portable_filter_parsing():
    assert parse_filter({"lang": "de", "n": [1, 2], "ok": True}) == [("lang", ["de"]), ("n", [1, 2]), ("ok", [True])]
    assert parse_filter({"lang": {"$eq": "de"}}) is None  # a native (Pinecone-style) filter
    assert parse_filter({"$and": []}) is None and parse_filter("lang == 'de'") is None
    for bad in ({"lang": []}, {"lang": None}, {"a.b": 1}, {}, "expr", {"lang": {"$in": ["a"]}}, {"x": float("inf")}):
        with pytest.raises(InvalidArgumentError, match="^filter:"):
            check_portable_filter(bad, "a native filter")


# ============================================================================================ hits
def test_group_by_document_keeps_the_best_chunk_first():
    hits = [make_hit("a::chunk:1", 0.9, "a1", {"k": 1}, "a", 1, 5, 9),
            make_hit("b", 0.8, "b", {}, "b", WHOLE, None, None),
            make_hit("a::chunk:0", 0.7, "a0", {"k": 1}, "a", 0, 0, 4)]
    assert hits[1].parent_id is None and hits[1].chunk is None and hits[0].parent_id == "a"
    groups = group_by_document(hits)
    assert [(g.id, g.score, g.text, g.chunk) for g in groups] == [("a", 0.9, "a1", 1), ("b", 0.8, "b", None)]
    assert [c.id for c in groups[0].chunks] == ["a::chunk:1", "a::chunk:0"]
    assert group_by_document(hits, top_k=1)[0].id == "a"


# ============================================================================================ retries
class _HTTPError(Exception):
    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.status_code = status


@pytest.mark.parametrize("exc, transient", [
    (TimeoutError("t"), True), (ConnectionResetError("c"), True), (_HTTPError(429), True), (_HTTPError(503), True),
    (_HTTPError(400), False), (_HTTPError(404), False), (ValueError("bad"), False),
])
def test_transient_errors(exc, transient):
    assert is_transient(exc) is transient


def test_transient_error_in_the_cause_chain():
    try:
        try:
            raise TimeoutError("deep")
        except TimeoutError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


def test_retry_backs_off_exponentially_then_gives_up():
    sleeps, calls = [], []

    def flaky():
        calls.append(1)
        raise _HTTPError(503)

    with pytest.raises(_HTTPError):
        call_with_retry(flaky, what="t", retries=3, backoff=0.1, max_backoff=0.25, sleep=sleeps.append)
    assert len(calls) == 4 and len(sleeps) == 3
    assert 0.05 <= sleeps[0] <= 0.1 and 0.1 <= sleeps[1] <= 0.2 and 0.125 <= sleeps[2] <= 0.25  # capped

    results = iter([_HTTPError(429), _HTTPError(500), "ok"])

    def recovers():
        r = next(results)
        if isinstance(r, Exception):
            raise r
        return r

    assert call_with_retry(recovers, what="t", retries=5, backoff=0, max_backoff=0, sleep=sleeps.append) == "ok"
    permanent = []
    with pytest.raises(ValueError):
        call_with_retry(lambda: permanent.append(1) or (_ for _ in ()).throw(ValueError("no")), what="t",
                        retries=5, backoff=0, max_backoff=0)
    assert len(permanent) == 1


class FailingUpserts:
    """A store client stand-in whose upserts fail after ``after`` good ones (all else passes through);
    each store's tests say how its client fails (``error``)."""

    def __init__(self, inner, after: int, status: int, times: int | None):
        self.inner, self.after, self.status, self.times = inner, after, status, times
        self.calls = self.fired = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def error(self, status: int) -> Exception:
        raise NotImplementedError

    def upsert(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.after and (self.times is None or self.fired < self.times):
            self.fired += 1
            raise self.error(self.status)
        return self.inner.upsert(*args, **kwargs)


# ============================================================================================ the pipeline
class FakeEncoder:
    """A deterministic encoder with the Encoder protocol (for pipeline tests without the model)."""

    name = "fake/encoder"
    hidden_size = 8

    def __init__(self):
        self.calls = 0
        self.fail_on_call: int | None = None

    def output_size(self, dimensions=None):
        return self.hidden_size if dimensions is None else int(dimensions)

    def _vec(self, text, task):
        seed = int.from_bytes(__import__("hashlib").sha256(f"{task}|{text}".encode()).digest()[:4], "little")
        v = np.random.default_rng(seed).standard_normal(self.hidden_size).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode(self, texts, task=None, dimensions=None, **_):
        self.calls += 1
        if self.fail_on_call == self.calls:
            raise RuntimeError("encoder exploded")
        return np.stack([self._vec(t, task)[: self.output_size(dimensions)] for t in texts])

    def late_chunk_documents(self, documents, task=None, chunker="sentences", chunk_size=None, dimensions=None, **_):
        out = []
        for doc in documents:
            chunks = []
            for m in re.finditer(r"[^.!?\s][^.!?]*[.!?]?", doc):
                chunks.append(FakeChunk(len(chunks), m.group(), m.start(), m.end(), self._vec(m.group() + doc, task)))
            out.append(chunks)
        return out


@dataclasses.dataclass
class FakeChunk:
    index: int
    text: str
    start: int
    end: int
    embedding: np.ndarray


class MemoryStore(VectorStore):
    """The smallest VectorStore: a dict. ``fail`` hooks inject errors into upserts."""

    kind = "Memory"
    max_points_per_request = 4

    def __init__(self, encoder, db=None, **options):
        super().__init__(encoder, **options)
        self.db: dict[str, Point] = {} if db is None else db
        self.upserts: list[list[str]] = []
        self.fail_upsert: dict[int, BaseException] = {}  # upsert call number (1-based) -> error
        self.fail_prune: BaseException | None = None  # every removal of stale points fails with this
        self.threads: set[str] = set()
        self._open()

    where = "memory store"

    def _describe(self):
        return True, self.dimensions, "cosine", self.signature

    def _create(self):
        raise AssertionError

    def _upsert(self, points):
        self.upserts.append([p.key for p in points])
        self.threads.add(threading.current_thread().name)
        err = self.fail_upsert.get(len(self.upserts))
        if err is not None:
            raise err
        for p in points:
            self.db[p.key] = p

    def _query(self, vector, limit, native_filter):
        scored = sorted(self.db.values(), key=lambda p: -float(p.vector @ vector))[:limit]
        return [make_hit(p.key, float(p.vector @ vector), p.text, p.metadata, p.doc_id, p.chunk, p.start, p.end)
                for p in scored]

    def _fetch(self, keys, with_vectors):
        return [make_hit(k, None, p.text, p.metadata, p.doc_id, p.chunk, p.start, p.end,
                         p.vector if with_vectors else None)
                for k in keys if (p := self.db.get(k)) is not None]

    def _delete(self, ids):
        for k in [k for k, p in self.db.items() if k in ids or p.doc_id in ids]:
            del self.db[k]

    def _prune(self, doc_ids, keep_chunks):
        if self.fail_prune is not None:
            raise self.fail_prune
        def stale(p):
            if keep_chunks is None:
                return p.chunk >= 0
            return p.chunk >= keep_chunks or p.chunk == WHOLE

        for k in [k for k, p in self.db.items() if p.doc_id in doc_ids and stale(p)]:
            del self.db[k]

    def _count(self):
        return len(self.db)

    def _translate_filter(self, conditions):
        return conditions


@pytest.mark.parametrize("overlap", [True, False])
def test_add_writes_in_requests_and_overlaps_writes(overlap):
    store = MemoryStore(FakeEncoder(), overlap_writes=overlap, batch_size=5)
    ids = store.add([f"text {i}" for i in range(12)])
    assert len(ids) == 12 and store.count() == 12
    assert [len(u) for u in store.upserts] == [4, 1, 4, 1, 2]  # batches of 5 records, requests of <= 4 points
    assert (store.threads == {n for n in store.threads if n.startswith("jinav3-write")}) is overlap
    store.add([f"text {i}" for i in range(12)])
    assert store.count() == 12


@pytest.mark.parametrize("overlap", [True, False])
def test_permanent_failure_reports_written_and_failed_ids_then_rerun_finishes(overlap):
    records = [{"id": f"r{i}", "text": f"text {i}"} for i in range(10)]
    store = MemoryStore(FakeEncoder(), overlap_writes=overlap, batch_size=4, retries=2, backoff=0)
    store.fail_upsert = {2: ValueError("disk full")}  # 2nd request = 2nd batch (4 points per request)
    with pytest.raises(PartialWriteError) as e:
        store.add(records)
    assert e.value.written_ids == ["r0", "r1", "r2", "r3"]
    assert e.value.failed_ids == [f"r{i}" for i in range(4, 10)]
    assert "disk full" in str(e.value) and "again" in str(e.value)
    assert isinstance(e.value.__cause__, ValueError)
    store.fail_upsert = {}
    store.add(records)
    assert store.count() == 10 and sorted(store.db) == sorted(r["id"] for r in records)


def test_a_record_counts_as_written_only_when_all_its_points_are():
    # 4 points per request: the 3-chunk record "b" straddles the failing 2nd request
    records = [{"id": "a", "text": "A1. A2."}, {"id": "b", "text": "B1. B2. B3."}, {"id": "c", "text": "C1."}]
    store = MemoryStore(FakeEncoder(), batch_size=10, retries=0)
    store.fail_upsert = {2: ValueError("disk full")}
    with pytest.raises(PartialWriteError) as e:
        store.add(records, late_chunking=True)
    assert (e.value.written_ids, e.value.failed_ids, e.value.unpruned_ids) == (["a"], ["b", "c"], [])
    assert "b::chunk:0" in store.db and "writing batch 1 of 1 failed" in str(e.value)
    store.fail_upsert = {}
    store.add(records, late_chunking=True)
    assert sorted(store.db) == ["a::chunk:0", "a::chunk:1", "b::chunk:0", "b::chunk:1", "b::chunk:2", "c::chunk:0"]


@pytest.mark.parametrize("overlap", [True, False])
def test_a_failed_cleanup_is_its_own_condition_and_a_rerun_finishes(overlap):
    store = MemoryStore(FakeEncoder(), batch_size=2, retries=1, backoff=0, overlap_writes=overlap)
    store.add([{"id": "d", "text": "One. Two. Three. Four. Five."}], late_chunking=True)
    records = [{"id": "d", "text": "One. Two."}, {"id": "e", "text": "E."}, {"id": "f", "text": "F."}]
    store.fail_prune = ValueError("delete refused")
    with pytest.raises(PartialWriteError) as e:
        store.add(records)
    # the first batch's points are all stored: written, but d's old chunks are still there
    assert (e.value.written_ids, e.value.failed_ids, e.value.unpruned_ids) == (["d", "e"], ["f"], ["d", "e"])
    message = str(e.value)
    assert "removing stale points of batch 1 of 2 failed" in message and "2 of 3 records were written" in message
    assert "d::chunk:4" in store.db and "d" in store.db
    store.fail_prune = None
    store.add(records)
    assert sorted(store.db) == ["d", "e", "f"]


def test_transient_failures_are_retried():
    store = MemoryStore(FakeEncoder(), batch_size=4, retries=3, backoff=0)
    store.fail_upsert = {1: TimeoutError("slow"), 2: _HTTPError(503)}
    store.add([f"t{i}" for i in range(4)])
    assert store.count() == 4 and len(store.upserts) == 3


def test_embedding_failure_midway_is_a_partial_write():
    enc = FakeEncoder()
    store = MemoryStore(enc, batch_size=3)
    enc.fail_on_call = 2
    with pytest.raises(PartialWriteError) as e:
        store.add([f"t{i}" for i in range(7)])
    assert len(e.value.written_ids) == 3 and len(e.value.failed_ids) == 4
    enc.fail_on_call = 1  # a failure before anything was written is the error itself
    enc.calls = 0
    with pytest.raises(RuntimeError, match="exploded"):
        MemoryStore(enc).add(["x"])


def test_bad_input_writes_nothing():
    store = MemoryStore(FakeEncoder())
    for records in ([*(f"t{i}" for i in range(200)), {"text": ""}], [{"text": "a", "metadata": {"x": object()}}]):
        with pytest.raises(InvalidArgumentError):
            store.add(records)
    assert store.upserts == []
    for kwargs, argument in ((dict(batch_size=0), "batch_size"), (dict(task="nope"), "task"),
                             (dict(task="text-matching"), "task"), (dict(chunk_size=5), "chunk_size"),
                             (dict(late_chunking=True, chunker="words"), "chunker"),
                             (dict(late_chunking=True, chunker="tokens"), "chunk_size"),
                             (dict(late_chunking="yes"), "late_chunking")):
        with pytest.raises(InvalidArgumentError, match=f"^{argument}:"):
            store.add(["fine"], **kwargs)
    with pytest.raises(InvalidArgumentError, match="^chunker:"):
        store.add(["a", "b"], late_chunking=True, chunker=[(0, 1)])
    for top_k in (0, -1, 1.5, True, "3"):
        with pytest.raises(InvalidArgumentError, match="^top_k:"):
            store.search("q", top_k=top_k)
    for query in ("", "  ", None, ["q"]):
        with pytest.raises(InvalidArgumentError, match="^query:"):
            store.search(query)
    assert store.upserts == []


def test_rechunking_removes_stale_chunks_and_switching_modes_leaves_one_kind():
    store = MemoryStore(FakeEncoder())
    store.add([{"id": "d", "text": "One. Two. Three. Four."}], late_chunking=True)
    assert sorted(store.db) == [f"d::chunk:{i}" for i in range(4)]
    store.add([{"id": "d", "text": "One. Two."}], late_chunking=True)
    assert sorted(store.db) == ["d::chunk:0", "d::chunk:1"]
    store.add([{"id": "d", "text": "One. Two."}])
    assert sorted(store.db) == ["d"]
    store.add([{"id": "d", "text": "One. Two. Three."}], late_chunking=True)
    assert sorted(store.db) == [f"d::chunk:{i}" for i in range(3)]
    store.delete(["d"])
    assert store.count() == 0


def test_group_by_document_fetches_enough_hits():
    store = MemoryStore(FakeEncoder())
    docs = [{"id": f"d{i}", "text": " ".join(f"Sentence {j} of {i}." for j in range(6))} for i in range(5)]
    store.add(docs, late_chunking=True)
    groups = store.search("Sentence 1", top_k=5, group_by_document=True)
    assert sorted(g.id for g in groups) == [f"d{i}" for i in range(5)]
    assert all(g.score == g.chunks[0].score and g.chunks[0].parent_id == g.id for g in groups)
    assert [g.score for g in groups] == sorted((g.score for g in groups), reverse=True)


def test_signature_of_a_store():
    store = MemoryStore(FakeEncoder(), dimensions=4, passage_task="text-matching", query_task="text-matching")
    assert store.signature == Signature("fake/encoder", 4, "text-matching", "text-matching")
    named = MemoryStore(FakeEncoder(), model_name="jinaai/jina-embeddings-v3")
    assert named.signature.model == "jinaai/jina-embeddings-v3"
    with pytest.raises(InvalidArgumentError, match="^passage_task:"):
        MemoryStore(FakeEncoder(), passage_task="retrieval")
    with pytest.raises(InvalidArgumentError, match="^retries:"):
        MemoryStore(FakeEncoder(), retries=-1)


# ============================================================================================ the contract
class Backend:
    """What a store test module provides (as the ``backend`` fixture) to run :class:`StoreContract`.

    ``make(encoder, name, **kwargs)`` opens (or creates) collection ``name``; two calls with the same
    name must reach the same collection. ``native_filter(key, value)`` is the store's own filter for
    ``metadata[key] == value``. ``fail_upserts(store, after, status)`` makes upserts fail after
    ``after`` successful ones (``status`` 503: transient, 400: permanent) until ``heal(store)``.
    """

    name = "backend"
    persistent = True
    chunk_text_limit: int | None = None  # bytes of text (with metadata) a chunk may have on this store
    ascii_ids_only = False  # Pinecone: its SDK refuses other vector ids

    def make(self, encoder, name: str, **kwargs) -> VectorStore:
        raise NotImplementedError

    def native_filter(self, key: str, value: Any) -> Any:
        raise NotImplementedError

    def fail_upserts(self, store: VectorStore, after: int, status: int, times: int | None = None) -> None:
        raise NotImplementedError

    def heal(self, store: VectorStore) -> None:
        raise NotImplementedError

    def settle(self, store: VectorStore, count: int) -> None:
        """Wait until ``store.count() == count`` on eventually consistent services (no-op elsewhere)."""


_names = itertools.count()


_cache: dict = {}


def _encode_cached(encoder, texts: tuple, task, dimensions):
    key = (id(encoder), texts, task, dimensions)
    if key not in _cache:
        _cache[key] = encoder.encode(list(texts), task=task, dimensions=dimensions)
    return _cache[key]


def brute_force(encoder, records, query, task="retrieval.query", passage_task="retrieval.passage", dimensions=None):
    """``{id: cosine}`` of ``query`` against every record, from the encoder directly."""
    p = _encode_cached(encoder, tuple(r["text"] for r in records), passage_task, dimensions)
    q = _encode_cached(encoder, (query,), task, dimensions)[0]
    scores = p @ q
    return {r["id"]: float(s) for r, s in zip(records, scores, strict=True)}


def assert_ranking(hits, expected: dict[str, float], top_k: int):
    """Hits equal brute force: same scores in the same order, each hit's own score right (ties may swap)."""
    best = sorted(expected.values(), reverse=True)[:top_k]
    assert len(hits) == len(best)
    np.testing.assert_allclose([h.score for h in hits], best, atol=ATOL, rtol=0)
    for h in hits:
        assert abs(h.score - expected[h.id]) <= ATOL, (h.id, h.score, expected[h.id])
    assert len({h.id for h in hits}) == len(hits)


# ============================================================================================ hostile input
# Ids a hostile (or merely Windows-using) user writes. Every one must be stored, fetched, searched,
# re-added and deleted exactly; REFUSED ones must be refused before anything is written.
HOSTILE_IDS = [
    "O'Brien notes.md", 'say "hi"', "back\\slash", "new\nline", "carriage\rreturn", "tab\tstop", "emoji 🙂🎉",
    "C:\\Users\\o'brien\\notes.md", "\\\\server\\share", "\\'", "x\\n", "a\\x41\\u0041", "ünïcödé ✓ 中文",
    "doc::chunk", "::chunk", "chunk:3", "a::b::c", " leading and trailing ", "$and", "id in ['x']",
    'x" or id != "', "] or true or [", "%s{0}", "#", "1",
]
REFUSED_IDS = {
    "nul\x00byte": "control character", "bell\x07": "control character", "del\x7f": "control character",
    "lone \ud800 surrogate": "lone surrogate", "doc::chunk:1": "reserved for chunk ids", "   ": "non-empty",
}


def hostile_records() -> list[dict]:
    texts = [r["text"] for r in corpus(len(HOSTILE_IDS))]
    return [{"id": rid, "text": f"Record {i}: {text}", "metadata": {"n": i, "lang": "en"}}
            for i, (rid, text) in enumerate(zip(HOSTILE_IDS, texts, strict=True))]


def sentences(n: int, tag: str = "") -> str:
    """A document the sentence chunker cuts into exactly ``n`` chunks."""
    words = ["Rivers carry silt to the sea", "Farmers rotate crops each year", "Bees pollinate the orchard",
             "Rain fills the old cistern", "Wind turns the mill stones", "Snow covers the high pass"]
    return " ".join(f"{words[i % len(words)]} {tag}{i}." for i in range(n))


class HostileInputContract:
    """Ids, re-add shapes and limits that once lost, duplicated or stranded data (issue 11). Mixed
    into :class:`StoreContract`, so it runs on every store."""

    def stored_keys(self, store, doc_ids, max_chunks: int = 16) -> set[str]:
        keys = [k for d in doc_ids for k in [d] + [store.chunk_id(d, i) for i in range(max_chunks)]]
        return {h.id for h in store.get(keys, with_vectors=False)}

    def test_hostile_ids_round_trip(self, backend, encoder, name):
        records = hostile_records()
        store = backend.make(encoder, name)
        if backend.ascii_ids_only:
            for r in records:
                if not r["id"].isascii():
                    with pytest.raises(InvalidArgumentError, match=r"^records\[1\]\.id: .*ASCII"):
                        store.add([records[0], r])
            records = [r for r in records if r["id"].isascii()]
            assert store.count() == 0
        assert store.add(records, batch_size=7) == [r["id"] for r in records]
        backend.settle(store, len(records))
        assert store.count() == len(records)
        got = store.get([r["id"] for r in records])
        assert [h.id for h in got] == [r["id"] for r in records]
        np.testing.assert_allclose(np.stack([h.vector for h in got]),
                                   encoder.encode_passages([r["text"] for r in records]), atol=ATOL)
        hits = store.search(QUERIES[0], top_k=len(records))
        assert sorted(h.id for h in hits) == sorted(r["id"] for r in records)
        for r in records[:6]:  # filters on metadata still reach each hostile id
            assert [h.id for h in store.search(QUERIES[0], top_k=3, filter={"n": r["metadata"]["n"]})] == [r["id"]]
        # the same documents late-chunked: every whole point is replaced by its chunks, nothing stale
        chunked = [dict(r, text=sentences(3, tag=str(i))) for i, r in enumerate(records)]
        store.add(chunked, late_chunking=True, batch_size=5)
        backend.settle(store, 3 * len(records))
        assert store.count() == 3 * len(records)
        assert self.stored_keys(store, [r["id"] for r in records], 4) == {
            store.chunk_id(r["id"], i) for r in records for i in range(3)}
        hit = store.get([store.chunk_id(records[0]["id"], 1)])[0]
        assert hit.parent_id == records[0]["id"] and hit.chunk == 1
        # and back to whole records: the chunks go
        store.add(records[:9])
        backend.settle(store, 9 + 3 * (len(records) - 9))
        assert self.stored_keys(store, [r["id"] for r in records[:9]], 4) == {r["id"] for r in records[:9]}
        # deleting by the hostile document ids removes their points, and only theirs
        store.delete([r["id"] for r in records])
        backend.settle(store, 0)
        assert store.count() == 0

    @pytest.mark.parametrize("bad_id", sorted(REFUSED_IDS))
    def test_unusable_ids_are_refused_before_any_write(self, backend, encoder, name, bad_id):
        store = backend.make(encoder, name)
        with pytest.raises(InvalidArgumentError, match=r"^records\[3\]\.id: .*" + re.escape(REFUSED_IDS[bad_id])):
            store.add([*corpus(3), {"id": bad_id, "text": "text"}])
        assert store.count() == 0

    def test_ids_at_the_length_limit(self, backend, encoder, name):
        store = backend.make(encoder, name)
        limit = store.max_id_bytes
        if limit is None:
            long_id = "é" * 2000  # no limit: a long id works like any other
            store.add([{"id": long_id, "text": "a long id"}])
            backend.settle(store, 1)
            assert [h.id for h in store.get([long_id])] == [long_id]
            return
        exact = ("x" * limit if backend.ascii_ids_only
                 else "é" * (limit // 2) + "x" * (limit % 2))  # exactly `limit` bytes of UTF-8
        assert len(exact.encode()) == limit
        with pytest.raises(InvalidArgumentError, match=r"^records\[1\]\.id: .*bytes"):
            store.add([{"id": "ok", "text": "fine"}, {"id": exact + "x", "text": "one byte too long"}])
        with pytest.raises(InvalidArgumentError, match=r"^records\[0\]\.id: .*chunk suffix"):
            store.add([{"id": exact, "text": sentences(2)}], late_chunking=True)
        assert store.count() == 0
        store.add([{"id": exact, "text": "exactly at the limit"}])
        backend.settle(store, 1)
        assert [h.id for h in store.get([exact])] == [exact]
        store.delete([exact])
        backend.settle(store, 0)
        assert store.count() == 0

    @pytest.mark.parametrize("record, argument", [
        ({"id": "s", "text": "lone \udc00 surrogate"}, r"records\[2\]\.text"),
        ({"id": "s", "text": "t", "metadata": {"k": "lone \ud83d"}}, r"records\[2\]\.metadata"),
        ({"id": "s", "text": "t", "metadata": {"big": 2**64}}, r"records\[2\]\.metadata"),
        ({"id": "s", "text": "t", "metadata": {"nested": [1, {"big": -(2**63) - 1}]}}, r"records\[2\]\.metadata"),
    ])
    def test_values_no_store_holds_are_refused_before_any_write(self, backend, encoder, name, record, argument):
        store = backend.make(encoder, name)
        with pytest.raises(InvalidArgumentError, match="^" + argument):
            store.add([*corpus(2), record], batch_size=1)
        assert store.count() == 0

    def test_a_chunk_past_the_store_limit_is_refused_before_any_write(self, backend, encoder, name):
        store = backend.make(encoder, name)
        huge = "word " * 14_000 + "end."  # one sentence of 70 kB: more than Milvus or Pinecone keep per chunk
        records = [*corpus(3), {"id": "huge", "text": "A short first sentence. " + huge}]
        if backend.chunk_text_limit is None:
            store.add(records, late_chunking=True, batch_size=1)
            backend.settle(store, 3 * 1 + 2)
            return
        with pytest.raises(InvalidArgumentError, match=r"^records\[3\]\.text: chunk 'huge::chunk:1'"):
            store.add(records, late_chunking=True, batch_size=1)
        assert store.count() == 0

    def test_readd_with_other_shapes_leaves_exactly_the_new_points(self, backend, encoder, name):
        store = backend.make(encoder, name)
        doc, other = "O'Brien notes.md", "neighbour"
        store.add([{"id": other, "text": sentences(4, "n")}], late_chunking=True)

        def add(text, **options):
            store.add([{"id": doc, "text": text}], **options)

        def expect(keys):
            backend.settle(store, len(keys) + 4)
            assert self.stored_keys(store, [doc]) == set(keys)
            assert store.count() == len(keys) + 4
            assert self.stored_keys(store, [other]) == {store.chunk_id(other, i) for i in range(4)}

        add(sentences(10), late_chunking=True)
        expect([store.chunk_id(doc, i) for i in range(10)])
        store.delete([store.chunk_id(doc, 0), store.chunk_id(doc, 3)])  # gaps, as a crash mid-pruning leaves
        expect([store.chunk_id(doc, i) for i in range(10) if i not in (0, 3)])
        add(sentences(5), late_chunking=True)  # fewer chunks
        expect([store.chunk_id(doc, i) for i in range(5)])
        store.delete([store.chunk_id(doc, 0)])
        add(sentences(1))  # chunked -> whole, with chunk 0 gone
        expect([doc])
        add(sentences(12), late_chunking=True)  # whole -> more chunks
        expect([store.chunk_id(doc, i) for i in range(12)])
        add(sentences(2), late_chunking=True, chunker="tokens", chunk_size=4)
        n = len(encoder.late_chunk(sentences(2), chunker="tokens", chunk_size=4))
        expect([store.chunk_id(doc, i) for i in range(n)])
        add(sentences(3))
        expect([doc])


    def test_stale_points_are_found_by_key_after_reopening_and_after_a_cut_short_prune(self, backend, encoder, name,
                                                                                       monkeypatch):
        """Issue 29: a collection this object made is never searched for stale points; a reopened one looks
        them up by key (two points per document, no delete by condition), also after a prune that failed."""
        first = backend.make(encoder, name)
        assert first.tracks_extents
        calls: dict[str, int] = {"_read_stamps": 0, "_prune": 0, "_delete_keys": 0}

        def spy(method):
            original = getattr(type(first), method)

            def counted(self, *args):
                calls[method] += 1
                return original(self, *args)
            return counted
        for method in calls:
            monkeypatch.setattr(type(first), method, spy(method))
        first.add([{"id": "doc", "text": sentences(6)}, *corpus(5)], late_chunking=True, batch_size=2)
        first.add(corpus(5))  # the same records again, whole: their chunks known without asking the store
        assert calls == {"_read_stamps": 0, "_prune": 0, "_delete_keys": 1}
        backend.settle(first, 6 + 5)

        again = backend.make(encoder, name)
        again.add([{"id": "doc", "text": sentences(2)}], late_chunking=True)  # fewer chunks
        assert calls["_read_stamps"] == 1 and calls["_prune"] == 0
        backend.settle(again, 2 + 5)
        assert self.stored_keys(again, ["doc"]) == {again.chunk_id("doc", 0), again.chunk_id("doc", 1)}
        assert calls["_delete_keys"] == 2
        again.add(corpus(5))  # unchanged: nothing stale, nothing deleted
        assert calls == {"_read_stamps": 2, "_prune": 0, "_delete_keys": 2}

        def refuse(self, keys):
            raise ValueError("delete refused")
        monkeypatch.setattr(type(again), "_delete_keys", refuse)
        with pytest.raises(PartialWriteError) as e:
            backend.make(encoder, name, retries=0).add([{"id": "doc", "text": sentences(1)}])  # chunked -> whole
        assert e.value.unpruned_ids == ["doc"]
        monkeypatch.undo()
        backend.settle(again, 1 + 2 + 5)
        assert self.stored_keys(again, ["doc"]) == {"doc", again.chunk_id("doc", 0), again.chunk_id("doc", 1)}
        rerun = backend.make(encoder, name)
        rerun.add([{"id": "doc", "text": sentences(1)}])  # the re-run finds the old chunks from the new point
        backend.settle(rerun, 1 + 5)
        assert self.stored_keys(rerun, ["doc"]) == {"doc"}
        rerun = backend.make(encoder, name)
        rerun.add([{"id": "doc", "text": sentences(3)}], late_chunking=True)  # whole -> chunked, reopened
        backend.settle(rerun, 3 + 5)
        assert self.stored_keys(rerun, ["doc"]) == {rerun.chunk_id("doc", i) for i in range(3)}


    def test_unchanged_records_are_neither_embedded_nor_written_again(self, backend, encoder, name):
        """Issue 29: every point carries its record's content fingerprint; a re-add skips the records stored
        exactly as they would be written (whole or late-chunked, in this object's collection or reopened),
        and writes again those whose text, metadata or chunking changed, or whose chunks are not all there."""
        doc = {"id": "doc", "text": sentences(4)}
        records = corpus(6)
        embedded: list[str] = []

        def watched(store):
            embed = store._embed
            store._embed = lambda batch, *args: embedded.extend(r.id for r in batch) or embed(batch, *args)
            return store

        store = watched(backend.make(encoder, name))
        store.add(records, batch_size=4)
        store.add([doc], late_chunking=True)
        store.add(records)  # the collection this object made: known without a lookup
        assert embedded == [r["id"] for r in records] + ["doc"] and store.unchanged_in_last_add == 6
        backend.settle(store, 6 + 4)
        before = {h.id: h.vector for h in store.get([r["id"] for r in records])}

        embedded.clear()
        again = watched(backend.make(encoder, name))  # reopened: read from the stored points
        again.add(records, batch_size=4)
        again.add([doc], late_chunking=True)
        assert embedded == [] and again.unchanged_in_last_add == 1
        changed = [dict(records[0], text=records[0]["text"] + " More."),
                   dict(records[1], metadata={**records[1]["metadata"], "v": 2}), *records[2:]]
        again.add([*changed, doc])  # doc re-added whole: a new shape
        assert embedded == [records[0]["id"], records[1]["id"], "doc"] and again.unchanged_in_last_add == 4
        backend.settle(again, 6 + 1)
        assert self.stored_keys(again, ["doc"]) == {"doc"}
        after = {h.id: h.vector for h in again.get([r["id"] for r in records])}
        for r in records[2:]:
            np.testing.assert_array_equal(after[r["id"]], before[r["id"]])
        assert again.get([records[1]["id"]])[0].metadata["v"] == 2

        embedded.clear()
        again.add([doc], late_chunking=True)
        backend.settle(again, 6 + 4)
        again.delete([again.chunk_id("doc", 2)])  # a document missing a chunk is not stored whole
        backend.settle(again, 6 + 3)
        watched(backend.make(encoder, name)).add([doc], late_chunking=True)
        assert embedded == ["doc", "doc"]
        backend.settle(again, 6 + 4)
        assert self.stored_keys(again, ["doc"]) == {again.chunk_id("doc", i) for i in range(4)}
        embedded.clear()
        watched(backend.make(encoder, name)).add(changed, skip_unchanged=False)
        assert embedded == [r["id"] for r in changed]


class StoreContract(HostileInputContract):
    """Tests every store passes. Subclasses provide the ``backend`` fixture."""

    @pytest.fixture
    def name(self, request):
        return f"t{next(_names)}_{uuid.uuid4().hex[:8]}"

    def test_stored_vectors_equal_encode_passages(self, backend, encoder, name):
        records = corpus(30)
        store = backend.make(encoder, name)
        ids = store.add(records, batch_size=8)
        assert ids == [r["id"] for r in records]
        backend.settle(store, len(records))
        assert store.count() == len(records)
        stored = store.get(ids)
        assert [h.id for h in stored] == ids
        expected = encoder.encode_passages([r["text"] for r in records])
        np.testing.assert_allclose(np.stack([h.vector for h in stored]), expected, atol=ATOL, rtol=0)
        assert [h.text for h in stored] == [r["text"] for r in records]
        assert [h.metadata for h in stored] == [r["metadata"] for r in records]
        assert all(h.score is None and h.parent_id is None and h.chunk is None for h in stored)

    def test_search_equals_brute_force_over_encode_queries(self, backend, encoder, name):
        records = corpus(40)
        store = backend.make(encoder, name)
        store.add(records)
        backend.settle(store, len(records))
        for query in QUERIES:
            expected = brute_force(encoder, records, query)
            hits = store.search(query, top_k=10)
            assert_ranking(hits, expected, 10)
            by_id = {r["id"]: r for r in records}
            assert all(h.text == by_id[h.id]["text"] and h.metadata == by_id[h.id]["metadata"] for h in hits)
        assert len(store.search(QUERIES[0], top_k=100)) == len(records)

    def test_dimensions_cut_vectors(self, backend, encoder, name):
        records = corpus(12)
        store = backend.make(encoder, name, dimensions=32)
        store.add(records)
        backend.settle(store, len(records))
        np.testing.assert_allclose(np.stack([h.vector for h in store.get([r["id"] for r in records])]),
                                   encoder.encode_passages([r["text"] for r in records], dimensions=32), atol=ATOL)
        assert_ranking(store.search(QUERIES[0], top_k=5), brute_force(encoder, records, QUERIES[0], dimensions=32), 5)

    def test_readding_overwrites(self, backend, encoder, name):
        records = corpus(20)
        store = backend.make(encoder, name)
        store.add(records)
        backend.settle(store, 20)
        changed = [dict(r, metadata={**r["metadata"], "v": 2}) for r in records[:5]]
        store.add(records[5:] + changed, batch_size=7)
        backend.settle(store, 20)
        assert store.count() == 20
        assert all(h.metadata["v"] == 2 for h in store.get([r["id"] for r in changed]))
        store.add([r["text"] for r in records[:3]] * 2)  # no ids: a hash of the text, written once
        backend.settle(store, 23)
        store.add([r["text"] for r in records[:3]])
        backend.settle(store, 23)
        assert store.count() == 23

    def test_size_mismatch_is_refused_before_writing(self, backend, encoder, name):
        store = backend.make(encoder, name, dimensions=32)
        store.add(["one", "two"])
        backend.settle(store, 2)
        with pytest.raises(SignatureMismatchError) as e:
            backend.make(encoder, name)
        assert "32" in str(e.value) and "64" in str(e.value)
        assert store.count() == 2

    @pytest.mark.parametrize("change, shown", [
        (dict(model_name="jinaai/jina-embeddings-v3"), "jinaai/jina-embeddings-v3"),
        (dict(query_task="text-matching"), "text-matching"),
        (dict(passage_task="text-matching"), "text-matching"),
    ])
    def test_signature_mismatch_is_refused(self, backend, encoder, name, change, shown):
        store = backend.make(encoder, name)
        store.add(["one"])
        with pytest.raises(SignatureMismatchError) as e:
            backend.make(encoder, name, **change)
        assert shown in str(e.value) and ("retrieval" in str(e.value) or str(encoder.name) in str(e.value))
        backend.settle(store, 1)
        assert store.count() == 1
        same = backend.make(encoder, name)  # the same signature opens fine
        assert same.signature == store.signature

    def test_symmetric_tasks(self, backend, encoder, name):
        records = corpus(10)
        store = backend.make(encoder, name, passage_task="text-matching", query_task="text-matching")
        store.add(records)
        backend.settle(store, 10)
        got = np.stack([h.vector for h in store.get([r["id"] for r in records])])
        np.testing.assert_allclose(got, encoder.encode([r["text"] for r in records], task="text-matching"), atol=ATOL)
        assert_ranking(store.search(QUERIES[0], top_k=4),
                       brute_force(encoder, records, QUERIES[0], "text-matching", "text-matching"), 4)
        # a per-call query task is allowed; writing another kind than the signature's is not
        assert_ranking(store.search(QUERIES[0], top_k=4, task="retrieval.query"),
                       brute_force(encoder, records, QUERIES[0], "retrieval.query", "text-matching"), 4)
        with pytest.raises(InvalidArgumentError, match="^task:"):
            store.add(["x"], task="retrieval.passage")

    def test_filters(self, backend, encoder, name):
        records = corpus(60)
        records[0]["metadata"].update(n=7, flag=True)
        records[1]["metadata"].update(n=8, flag=False)
        records[2]["metadata"].update(n=2.5)
        store = backend.make(encoder, name)
        store.add(records)
        backend.settle(store, len(records))
        q = QUERIES[1]

        def check(flt, keep):
            subset = [r for r in records if keep(r["metadata"])]
            hits = store.search(q, top_k=5, filter=flt)
            assert_ranking(hits, brute_force(encoder, subset, q), min(5, len(subset)))

        check({"lang": "de"}, lambda m: m["lang"] == "de")
        check({"lang": ["de", "fr"]}, lambda m: m["lang"] in ("de", "fr"))
        check({"lang": "en", "topic": ["cooking", "travel"]},
              lambda m: m["lang"] == "en" and m["topic"] in ("cooking", "travel"))
        check({"n": 7}, lambda m: m.get("n") == 7)
        check({"n": [7, 8]}, lambda m: m.get("n") in (7, 8))
        check({"flag": False}, lambda m: m.get("flag") is False)
        check({"n": 2.5}, lambda m: m.get("n") == 2.5)
        check({"n": [7, 2.5]}, lambda m: m.get("n") in (7, 2.5))
        assert store.search(q, filter={"no_such_key": "x"}) == []  # a missing key never matches
        assert store.search(q, filter={"lang": "xx"}) == []
        hits = store.search(q, top_k=5, filter=backend.native_filter("lang", "de"))
        subset = [r for r in records if r["metadata"]["lang"] == "de"]
        assert_ranking(hits, brute_force(encoder, subset, q), 5)
        with pytest.raises(InvalidArgumentError, match="^filter:"):
            store.search(q, filter={"lang": []})

    def test_delete(self, backend, encoder, name):
        records = corpus(20)
        store = backend.make(encoder, name)
        store.add(records)
        backend.settle(store, 20)
        gone = [r["id"] for r in records[:5]]
        store.delete(gone + ["never-added"])
        backend.settle(store, 15)
        assert store.count() == 15
        assert store.get(gone) == []
        hits = store.search(QUERIES[0], top_k=20)
        assert not {h.id for h in hits} & set(gone) and len(hits) == 15
        store.delete([])
        assert store.count() == 15

    def test_late_chunked_documents(self, backend, encoder, name):
        store = backend.make(encoder, name)
        store.add(corpus(5))
        store.add(DOCUMENTS, late_chunking=True, chunker="sentences", batch_size=2)
        chunks = encoder.late_chunk_documents([d["text"] for d in DOCUMENTS])
        n_chunks = sum(len(c) for c in chunks)
        assert all(len(c) >= 3 for c in chunks)
        backend.settle(store, 5 + n_chunks)
        assert store.count() == 5 + n_chunks
        for doc, doc_chunks in zip(DOCUMENTS, chunks, strict=True):
            got = store.get([store.chunk_id(doc["id"], c.index) for c in doc_chunks])
            assert [h.chunk for h in got] == [c.index for c in doc_chunks]
            assert all(h.parent_id == doc["id"] and h.metadata == doc["metadata"] for h in got)
            assert [(h.start, h.end, h.text) for h in got] == [(c.start, c.end, c.text) for c in doc_chunks]
            assert all(doc["text"][h.start:h.end] == h.text for h in got)
            np.testing.assert_allclose(np.stack([h.vector for h in got]), np.stack([c.embedding for c in doc_chunks]),
                                       atol=ATOL)
        query = QUERIES[0]
        q = encoder.encode_queries([query])[0]
        expected = {store.chunk_id(d["id"], c.index): float(c.embedding @ q)
                    for d, cs in zip(DOCUMENTS, chunks, strict=True) for c in cs}
        expected.update(brute_force(encoder, corpus(5), query))
        hits = store.search(query, top_k=8)
        assert_ranking(hits, expected, 8)
        # grouped: one hit per document, scored by its best chunk
        best: dict[str, float] = {}
        for key, score in expected.items():
            doc = key.split("::chunk:")[0]
            best[doc] = max(best.get(doc, -2.0), score)
        groups = store.search(query, top_k=6, group_by_document=True)
        assert_ranking(groups, best, 6)
        for g in groups:
            assert g.chunks and g.chunks[0].score == pytest.approx(g.score)
            assert all(c.document_id == g.id for c in g.chunks)
        # filters apply to chunks; deleting a document deletes its chunks
        de = store.search("Kompost", top_k=10, filter={"lang": "de"})
        assert de and all(h.parent_id == "doc-b" or h.metadata["lang"] == "de" for h in de)
        store.delete(["doc-a"])
        backend.settle(store, 5 + n_chunks - len(chunks[0]))
        assert store.count() == 5 + n_chunks - len(chunks[0])
        # re-adding a shorter version leaves no stale chunks
        store.add([{"id": "doc-b", "text": "Kompost braucht Luft. Sonst fault er."}], late_chunking=True)
        backend.settle(store, 5 + 2 + len(chunks[2]))
        assert store.count() == 5 + 2 + len(chunks[2])
        got = store.get([store.chunk_id("doc-b", i) for i in range(5)])
        assert [h.id for h in got] == ["doc-b::chunk:0", "doc-b::chunk:1"]

    def test_failure_midway_then_rerun_leaves_one_copy(self, backend, encoder, name):
        records = corpus(30)
        store = backend.make(encoder, name, batch_size=10, retries=2, backoff=0)
        backend.fail_upserts(store, after=1, status=400)
        with pytest.raises(PartialWriteError) as e:
            store.add(records)
        assert e.value.written_ids == [r["id"] for r in records[:10]]
        assert e.value.failed_ids == [r["id"] for r in records[10:]]
        backend.heal(store)
        backend.settle(store, 10)
        assert store.count() == 10
        store.add(records)
        backend.settle(store, 30)
        assert store.count() == 30
        assert sorted(h.id for h in store.get([r["id"] for r in records])) == sorted(r["id"] for r in records)
        assert len(store.search(QUERIES[0], top_k=100)) == 30

    def test_transient_failures_are_retried(self, backend, encoder, name):
        records = corpus(12)
        store = backend.make(encoder, name, batch_size=4, retries=4, backoff=0)
        backend.fail_upserts(store, after=1, status=503, times=3)
        store.add(records)
        backend.heal(store)
        backend.settle(store, 12)
        assert store.count() == 12

    def test_bad_input_writes_nothing(self, backend, encoder, name):
        store = backend.make(encoder, name)
        for records in ([*corpus(5), {"id": "x", "text": ""}], [*corpus(5), {"id": "y"}],
                        [*corpus(5), {"text": "z", "metadata": {"when": object()}}]):
            with pytest.raises(InvalidArgumentError, match=r"^records\[5\]"):
                store.add(records)
        assert store.count() == 0
        with pytest.raises(InvalidArgumentError, match="^top_k:"):
            store.search("q", top_k=0)

    def test_reopen_keeps_points_and_signature(self, backend, encoder, name):
        if not backend.persistent:
            pytest.skip(f"{backend.name} does not persist")
        store = backend.make(encoder, name)
        store.add(corpus(7))
        backend.settle(store, 7)
        again = backend.make(encoder, name)
        assert again.count() == 7
        assert_ranking(again.search(QUERIES[3], top_k=3), brute_force(encoder, corpus(7), QUERIES[3]), 3)


def test_chunkers_reach_the_encoder(encoder):
    store = MemoryStore(encoder)
    text = "Alpha beta gamma. Delta epsilon zeta eta theta."
    store.add([{"id": "s", "text": text}], late_chunking=True, chunker=[(0, 5), (6, 16)])
    points = sorted(store.db.values(), key=lambda p: p.chunk)
    assert [(p.start, p.end, p.text) for p in points] == [(0, 5, "Alpha"), (6, 16, "beta gamma")]
    expected = encoder.late_chunk(text, chunker=[(0, 5), (6, 16)])
    np.testing.assert_allclose(store.db["s::chunk:1"].vector, expected[1].embedding, atol=ATOL)
    store.add([{"id": "s", "text": text}], late_chunking=True, chunker="tokens", chunk_size=4)
    chunks = encoder.late_chunk(text, chunker="tokens", chunk_size=4)
    assert sorted(store.db) == sorted(store.chunk_id("s", c.index) for c in chunks) and len(chunks) > 2


def test_stores_need_only_the_encoder_protocol(encoder):
    """The stores depend on jinav3.protocol.TextEncoder, which the Encoder and other backends speak."""
    from jinav3.protocol import TextEncoder

    assert isinstance(encoder, TextEncoder)
    assert isinstance(FakeEncoder(), TextEncoder)
    assert not isinstance(object(), TextEncoder)

