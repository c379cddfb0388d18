"""PineconeStore with the real ``pinecone`` SDK against PineconeDouble (a local test double of
Pinecone's REST API, tests/doubles/pinecone_double.py, which enforces Pinecone's documented limits),
plus live tests against Pinecone itself when PINECONE_API_KEY is set.
"""

from __future__ import annotations

import os
import time
import uuid

import numpy as np
import pytest
from doubles.pinecone_double import PineconeDouble
from test_store_common import (
    DOCUMENTS,
    QUERIES,
    Backend,
    FakeEncoder,
    StoreContract,
    assert_ranking,
    brute_force,
    corpus,
)

from jinav3.errors import InvalidArgumentError, PartialWriteError, SignatureMismatchError

pytest.importorskip("pinecone")

from pinecone import Pinecone  # noqa: E402 - after importorskip

from jinav3.integrations.pinecone import PineconeStore, decode_tag, encode_tag  # noqa: E402 - after importorskip

SCHEME = "pinecone"  # the store registry's kind these tests run the StoreContract on (test_store_registry.py)


KEY = "test-key"


class PineconeBackend(Backend):
    chunk_text_limit = 40_960
    ascii_ids_only = True
    name = "pinecone-double"

    def __init__(self, double: PineconeDouble):
        self.double = double
        self.client = Pinecone(api_key=KEY, host=double.host)

    def make(self, encoder, name, **kwargs):
        return PineconeStore(encoder, name.replace("_", "-"), client=self.client, **kwargs)

    def native_filter(self, key, value):
        return {key: {"$eq": value}}

    def fail_upserts(self, store, after, status, times=None):
        self.double.fail_after("/vectors/upsert", after, status=status, times=times, index=store.index_name)

    def heal(self, store):
        self.double.clear_failures()


@pytest.fixture(scope="module")
def double():
    with PineconeDouble(api_key=KEY) as d:
        yield d
        assert d.internal_errors == []


@pytest.fixture(scope="module")
def backend(double):
    return PineconeBackend(double)


@pytest.fixture
def pc(double):
    return Pinecone(api_key=KEY, host=double.host)


def _index(prefix="idx"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class TestPinecone(StoreContract):
    pass


# ============================================================================================ limits
def big_encoder():
    enc = FakeEncoder()
    enc.hidden_size = 1024
    return enc


def test_upserts_stay_within_1000_vectors_and_2_mb(double, pc):
    store = PineconeStore(big_encoder(), _index(), client=pc, batch_size=2500)
    store.add([f"record number {i}" for i in range(2500)])
    assert store.count() == 2500
    sent = double.requests_to("/vectors/upsert", index=store.index_name)
    assert sum(r.vector_count for r in sent) == 2500 and all(r.status == 200 for r in sent)
    assert max(r.vector_count for r in sent) <= 1000
    assert max(r.body_bytes for r in sent) <= 2 * 1024 * 1024

    store = PineconeStore(big_encoder(), _index(), client=pc)
    long_texts = [f"{i} " + "lorem ipsum dolor " * 2000 for i in range(60)]  # ~36 KB of text each
    store.add(long_texts)
    sent = double.requests_to("/vectors/upsert", index=store.index_name)
    assert store.count() == 60 and len(sent) > 1
    assert all(r.status == 200 and r.body_bytes <= 2 * 1024 * 1024 for r in sent)


def test_pinecone_limits_are_checked_before_writing(double, pc, encoder):
    store = PineconeStore(encoder, _index(), client=pc)
    bad = [
        ([{"text": "x" * 41_000}], r"^records\[0\].metadata: with the text is \d+ bytes"),
        ([{"text": "t", "metadata": {"blob": "b" * 41_000}}], r"^records\[0\].metadata"),
        ([{"text": "t", "metadata": {"nested": {"a": 1}}}], r"^records\[0\].metadata: 'nested'"),
        ([{"text": "t", "metadata": {"ints": [1, 2]}}], r"^records\[0\].metadata: 'ints'"),
        ([{"text": "t", "metadata": {"_text": "mine"}}], r"^records\[0\].metadata: key '_text' is reserved"),
        ([{"id": "i" * 513, "text": "t"}], r"^records\[0\].id: is 513 bytes"),
        ([{"id": "ü" * 257, "text": "t"}], r"^records\[0\].id: is 514 bytes"),
    ]
    for records, pattern in bad:
        with pytest.raises(InvalidArgumentError, match=pattern):
            store.add(records)
    with pytest.raises(InvalidArgumentError, match=r"chunk suffix"):
        store.add([{"id": "i" * 500, "text": "One. Two."}], late_chunking=True)
    assert double.requests_to("/vectors/upsert", index=store.index_name) == []
    store.add([{"id": "i" * 512, "text": "t"}, {"text": "x" * 30_000}])  # at the limits
    assert store.count() == 2


def test_null_metadata_values_are_left_out(double, pc, encoder):
    store = PineconeStore(encoder, _index(), client=pc)
    store.add([{"id": "a", "text": "t", "metadata": {"lang": "de", "missing": None, "tags": ["x", "y"], "n": 2.5}}])
    assert store.get(["a"])[0].metadata == {"lang": "de", "tags": ["x", "y"], "n": 2.5}
    stored = double.vectors(store.index_name)["a"]["metadata"]
    fingerprint = stored.pop("_fingerprint")  # of the text and metadata as given (stores/records.py)
    assert len(fingerprint) == 32 and int(fingerprint, 16) >= 0
    assert stored == {"lang": "de", "tags": ["x", "y"], "n": 2.5, "_text": "t", "_doc_id": "a", "_chunk": -1,
                      "_extent": 0}


# ============================================================================================ index, signature
def test_signature_lives_in_the_index_tags(double, pc, encoder):
    name = _index()
    store = PineconeStore(encoder, name, client=pc, dimensions=32, model_name="jinaai/jina-embeddings-v3")
    tags = pc.describe_index(name).tags
    assert tags == {"jinav3_model": "jinaai+2Fjina-embeddings-v3", "jinav3_dimensions": "32",
                    "jinav3_passage_task": "retrieval.passage", "jinav3_query_task": "retrieval.query"}
    assert pc.describe_index(name).dimension == 32 and pc.describe_index(name).metric == "cosine"
    with pytest.raises(SignatureMismatchError, match=r"'jinaai/jina-embeddings-v3'.*'other/model'"):
        PineconeStore(encoder, name, client=pc, dimensions=32, model_name="other/model")
    assert store.count() == 0


def test_tag_encoding_round_trips():
    for value in ["jinaai/jina-embeddings-v3", "/home/ü ser/models/v3", "plain.name_1-2", "a+b", "x" * 119]:
        encoded = encode_tag(value)
        assert len(encoded) <= 120 and decode_tag(encoded) == value
        assert all(c.isalnum() or c in "_.@ -+" for c in encoded)
    long = encode_tag("/very/long/" * 30)
    assert len(long) == 120 and "@sha256-" in long and encode_tag("/very/long/" * 30 + "x") != long


def test_open_an_existing_index_by_host(double, pc, encoder):
    name = _index()
    PineconeStore(encoder, name, client=pc).add(corpus(5))
    host = pc.describe_index(name).host
    store = PineconeStore(encoder, None, host=host, api_key=KEY)
    assert store.count() == 5
    assert_ranking(store.search(QUERIES[0], top_k=3), brute_force(encoder, corpus(5), QUERIES[0]), 3)
    with pytest.raises(SignatureMismatchError, match="32"):
        PineconeStore(encoder, None, host=host, api_key=KEY, dimensions=32)
    with pytest.raises(InvalidArgumentError, match="^index:"):
        PineconeStore(encoder, None, api_key=KEY)


def test_api_key_is_required(monkeypatch, encoder):
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    with pytest.raises(InvalidArgumentError, match="^api_key:"):
        PineconeStore(encoder, "docs")


def test_namespaces_are_separate(double, pc, encoder):
    name = _index()
    en = PineconeStore(encoder, name, client=pc, namespace="en")
    de = PineconeStore(encoder, name, client=pc, namespace="de")
    records = corpus(20)
    en.add([r for r in records if r["metadata"]["lang"] == "en"])
    de.add([r for r in records if r["metadata"]["lang"] != "en"])
    assert en.count() + de.count() == 20 and en.count() > 0 and de.count() > 0
    assert all(h.metadata["lang"] == "en" for h in en.search(QUERIES[0], top_k=20))
    en.delete([r["id"] for r in records])
    assert en.count() == 0 and de.count() > 0
    assert double.namespaces(name) == {"de": de.count()}


# ============================================================================================ failures
def test_transient_errors_beyond_the_sdk_retries_are_retried(double, pc, encoder):
    store = PineconeStore(encoder, _index(), client=pc, batch_size=5, retries=5, backoff=0)
    double.fail_next("/vectors/upsert", 503, times=12, index=store.index_name)
    store.add(corpus(10))
    assert store.count() == 10
    failed = [r for r in double.requests_to("/vectors/upsert", index=store.index_name) if r.status == 503]
    assert len(failed) == 12


def test_permanent_failure_midway_with_late_chunking(double, pc, encoder):
    store = PineconeStore(encoder, _index(), client=pc, batch_size=1, retries=1, backoff=0)
    double.fail_after("/vectors/upsert", 2, status=400, index=store.index_name)
    with pytest.raises(PartialWriteError) as e:
        store.add(DOCUMENTS, late_chunking=True)
    assert e.value.written_ids == ["doc-a", "doc-b"] and e.value.failed_ids == ["doc-c"]
    double.clear_failures()
    store.add(DOCUMENTS, late_chunking=True)
    n = sum(len(c) for c in encoder.late_chunk_documents([d["text"] for d in DOCUMENTS]))
    assert store.count() == n == len(double.vectors(store.index_name))


# ============================================================================================ live
LIVE_KEY = os.environ.get("PINECONE_API_KEY")


@pytest.mark.skipif(not LIVE_KEY, reason="set PINECONE_API_KEY to run the live Pinecone tests (they create and delete "
                                         "a serverless index; JINAV3_PINECONE_CLOUD / _REGION pick where)")
def test_live_pinecone(encoder):
    name = f"jinav3-test-{uuid.uuid4().hex[:8]}"
    pc = Pinecone(api_key=LIVE_KEY)
    cloud = os.environ.get("JINAV3_PINECONE_CLOUD", "aws")
    region = os.environ.get("JINAV3_PINECONE_REGION", "us-east-1")
    try:
        store = PineconeStore(encoder, name, client=pc, namespace="live", cloud=cloud, region=region)

        def settle(count, timeout=120):
            deadline = time.monotonic() + timeout
            while store.count() != count and time.monotonic() < deadline:
                time.sleep(2)
            assert store.count() == count

        records = corpus(20)
        store.add(records)
        settle(20)
        time.sleep(5)  # queries are eventually consistent too
        np.testing.assert_allclose(np.stack([h.vector for h in store.get([r["id"] for r in records])]),
                                   encoder.encode_passages([r["text"] for r in records]), atol=1e-5)
        hits = store.search(QUERIES[0], top_k=5)
        expected = brute_force(encoder, records, QUERIES[0])
        assert all(abs(h.score - expected[h.id]) < 1e-3 for h in hits)
        assert all(h.metadata["lang"] == "de" for h in store.search(QUERIES[1], top_k=5, filter={"lang": "de"}))
        with pytest.raises(SignatureMismatchError):
            PineconeStore(encoder, name, client=pc, dimensions=32)
        store.add(DOCUMENTS, late_chunking=True)
        n = sum(len(c) for c in encoder.late_chunk_documents([d["text"] for d in DOCUMENTS]))
        settle(20 + n)
        store.delete([r["id"] for r in records])
        settle(n)
    finally:
        if pc.has_index(name):
            pc.delete_index(name)
