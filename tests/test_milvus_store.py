"""MilvusStore on real Milvus: Milvus Lite (in-process file) and a real Milvus 2.3.5 server.

The server runs from the PyPI package ``milvus`` in its own venv, found through
``$JINAV3_MILVUS_SERVER_PYTHON`` (see tests/milvus_server.py); without it only the server
parametrisation is skipped.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import HYBRID_DOCS
from test_store_common import ATOL, QUERIES, Backend, StoreContract, assert_ranking, brute_force, corpus
from test_store_common import FailingUpserts as CommonFailingUpserts

from jinav3.errors import InvalidArgumentError, SignatureMismatchError, StoreError

pymilvus = pytest.importorskip("pymilvus")

from pymilvus import DataType, MilvusClient  # noqa: E402 - after importorskip
from pymilvus.exceptions import MilvusException, MilvusUnavailableException  # noqa: E402 - after importorskip

from jinav3.integrations.milvus import MilvusStore  # noqa: E402 - after importorskip

SCHEME = "milvus"  # the store registry's kind these tests run the StoreContract on (test_store_registry.py)


class FailingUpserts(CommonFailingUpserts):
    """A MilvusClient stand-in whose upserts fail after ``after`` good ones."""

    def error(self, status: int) -> Exception:
        if status >= 500:
            return MilvusUnavailableException(message="injected: server unavailable")
        return MilvusException(code=1100, message="injected: invalid parameter")


class MilvusBackend(Backend):
    chunk_text_limit = 65_535
    def __init__(self, name: str, client: MilvusClient):
        self.name, self.client = name, client
        self.collections: list[str] = []

    def make(self, encoder, name, **kwargs):
        self.collections.append(name)
        return MilvusStore(encoder, name, client=self.client, **kwargs)

    def native_filter(self, key, value):
        return f'metadata["{key}"] == "{value}"'

    def fail_upserts(self, store, after, status, times=None):
        store.client = FailingUpserts(store.client, after, status, times)

    def heal(self, store):
        store.client = store.client.inner

    def cleanup(self):
        for name in dict.fromkeys(self.collections):
            if self.client.has_collection(name):
                self.client.drop_collection(name)


@pytest.fixture(scope="module", params=["lite", pytest.param("server", marks=pytest.mark.slow)])
def backend(request, tmp_path_factory):
    if request.param == "lite":
        client = MilvusClient(uri=str(tmp_path_factory.mktemp("milvus-lite") / "milvus.db"))
    else:
        client = MilvusClient(uri=request.getfixturevalue("milvus_uri"))
    b = MilvusBackend(request.param, client)
    yield b
    b.cleanup()
    client.close()


class TestMilvus(StoreContract):
    pass


# ============================================================================================ Milvus only
def test_lite_file_persists_and_checks_the_signature_on_reopen(encoder, tmp_path):
    uri = str(tmp_path / "docs.db")
    with MilvusStore(encoder, "docs", uri=uri) as store:
        store.add(corpus(8))
    with MilvusStore(encoder, "docs", uri=uri) as store:
        assert store.count() == 8
        assert_ranking(store.search(QUERIES[0], top_k=3), brute_force(encoder, corpus(8), QUERIES[0]), 3)
    with pytest.raises(SignatureMismatchError, match="32"):
        MilvusStore(encoder, "docs", uri=uri, dimensions=32)
    with pytest.raises(SignatureMismatchError, match="text-matching"):
        MilvusStore(encoder, "docs", uri=uri, query_task="text-matching")


def test_schema_and_signature_property(encoder, tmp_path):
    client = MilvusClient(uri=str(tmp_path / "m.db"))
    store = MilvusStore(encoder, "docs", client=client, dimensions=32)
    info = client.describe_collection("docs")
    fields = {f["name"]: f for f in info["fields"]}
    assert fields["id"]["is_primary"] and fields["id"]["type"] == DataType.VARCHAR
    assert fields["vector"]["params"]["dim"] == 32 and fields["metadata"]["type"] == DataType.JSON
    assert info["properties"]["jinav3.signature"] == store.signature.to_json()
    assert info["consistency_level_name"] == "Strong"
    store.add([{"id": "a1", "text": "One. Two.", "metadata": {"lang": "en"}}], late_chunking=True)
    row = client.get("docs", ids=["a1::chunk:1"], output_fields=["*"])[0]
    assert {k: row[k] for k in ("id", "doc_id", "chunk", "start", "end", "text", "metadata")} == {
        "id": "a1::chunk:1", "doc_id": "a1", "chunk": 1, "start": 5, "end": 9, "text": "Two.",
        "metadata": {"lang": "en"}}
    np.testing.assert_allclose(row["vector"], encoder.late_chunk("One. Two.", dimensions=32)[1].embedding, atol=ATOL)
    client.close()


def test_a_collection_made_before_fingerprints_is_written_as_before(encoder, tmp_path, monkeypatch):
    """Issue 29: a collection made by an earlier jinav3 has no ``fingerprint`` field (Milvus cannot add one):
    writing into it works, and a re-add writes every record again instead of skipping it."""
    client = MilvusClient(uri=str(tmp_path / "m.db"))
    add_field = MilvusClient.create_schema().add_field.__func__

    def without_fingerprint(schema, name, *args, **kwargs):
        return schema if name == "fingerprint" else add_field(schema, name, *args, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(type(MilvusClient.create_schema()), "add_field", without_fingerprint)
        MilvusStore(encoder, "old", client=client, dimensions=32)
    assert "fingerprint" not in {f["name"] for f in client.describe_collection("old")["fields"]}
    records = corpus(5)
    MilvusStore(encoder, "old", client=client, dimensions=32).add(records)
    again = MilvusStore(encoder, "old", client=client, dimensions=32)
    embedded = []
    embed = again._embed
    again._embed = lambda batch, *args: embedded.extend(r.id for r in batch) or embed(batch, *args)
    again.add(records)
    assert embedded == [r["id"] for r in records] and again.unchanged_in_last_add == 0
    assert again.count() == 5
    client.close()


def test_collections_made_elsewhere(encoder, tmp_path):
    client = MilvusClient(uri=str(tmp_path / "m.db"))
    client.create_collection("quick", dimension=64, metric_type="COSINE")
    with pytest.raises(StoreError, match="not made by jinav3"):
        MilvusStore(encoder, "quick", client=client)
    with pytest.raises(StoreError, match="does not exist"):
        MilvusStore(encoder, "missing", client=client, create=False)
    client.close()


def test_milvus_limits_are_checked_before_writing(encoder, tmp_path):
    store = MilvusStore(encoder, "docs", uri=str(tmp_path / "m.db"))
    with pytest.raises(InvalidArgumentError, match=r"^records\[1\].text: is 70000 bytes"):
        store.add(["short", "x" * 70_000])
    with pytest.raises(InvalidArgumentError, match=r"^records\[0\].id"):
        store.add([{"id": "i" * 1100, "text": "t"}])
    with pytest.raises(InvalidArgumentError, match=r"^records\[0\].metadata"):
        store.add([{"text": "t", "metadata": {"blob": "b" * 70_000}}])
    with pytest.raises(InvalidArgumentError, match="^filter:"):
        store.search("q", filter={"lang": {"$eq": "de"}})
    assert store.count() == 0
    store.close()


def test_a_lite_file_in_a_missing_folder_is_refused_and_creates_nothing(encoder, tmp_path):
    missing = tmp_path / "no" / "such" / "folder"
    with pytest.raises(InvalidArgumentError, match=r"^uri: the folder .*does not exist"):
        MilvusStore(encoder, "docs", uri=str(missing / "m.db"))
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("side", ["lite", pytest.param("server", marks=pytest.mark.slow)])
def test_a_collection_without_a_vector_index_is_indexed_before_anything_is_written(encoder, tmp_path, request, side):
    """Made with our schema but no index (another tool, or a crash between create and index): a
    write would land in a collection that cannot be loaded or searched. The store indexes it."""
    uri = str(tmp_path / "m.db") if side == "lite" else request.getfixturevalue("milvus_uri")
    client = MilvusClient(uri=uri)
    name = f"noindex_{side}_{os.getpid()}"
    if client.has_collection(name):
        client.drop_collection(name)
    with MilvusStore(encoder, name, client=client) as made:  # our schema, then the index dropped
        schema_signature = made.signature
    client.release_collection(name)
    for index in client.list_indexes(name, field_name="vector"):
        client.drop_index(name, index)
    assert not client.list_indexes(name, field_name="vector")
    store = MilvusStore(encoder, name, client=client)
    assert store.signature == schema_signature and client.list_indexes(name, field_name="vector")
    store.add(corpus(6))
    assert_ranking(store.search(QUERIES[0], top_k=3), brute_force(encoder, corpus(6), QUERIES[0]), 3)
    client.drop_collection(name)
    client.close()


@pytest.mark.slow  # the real Milvus server
def test_ids_that_need_escaping_match_exactly_on_the_server(encoder, request):
    """On a Milvus server a backslash id once matched nothing, so its stale chunks stayed: the chunk
    points of such documents are found and pruned by their parent id."""
    client = MilvusClient(uri=request.getfixturevalue("milvus_uri"))
    name = f"escape_{os.getpid()}"
    store = MilvusStore(encoder, name, client=client)
    try:
        ids = ["C:\\docs\\a.md", "O'Brien\\'s", 'q"uote\\"', "x\\n\ny"]
        store.add([{"id": i, "text": "One. Two. Three. Four."} for i in ids], late_chunking=True)
        assert store.count() == 16
        store.add([{"id": i, "text": "One. Two."} for i in ids], late_chunking=True)
        assert store.count() == 8
        assert sorted(h.id for h in store.get([store.chunk_id(i, n) for i in ids for n in range(4)])) == sorted(
            store.chunk_id(i, n) for i in ids for n in range(2))
        store.delete(ids)
        assert store.count() == 0
    finally:
        client.drop_collection(name)
        client.close()


# ============================================================================================ hybrid (issue 25)
def test_hybrid_on_milvus_lite(encoder, tmp_path):
    """Milvus weighs the model's own pieces by BM25 with IDF (its BM25 function over the term ids): the rare
    exact term wins, every document sharing a term is found, filters hold, and hybrid fuses both sides."""
    store = MilvusStore(encoder, "hybrid", uri=str(tmp_path / "h.db"), hybrid=True)
    weighed = []  # Milvus weighs the terms itself: no lexical vector is computed for a write (the text once)
    encode_documents = store.sparse_encoder.encode_documents
    store.sparse_encoder.encode_documents = lambda texts: weighed.append(texts) or encode_documents(texts)
    store.add(HYBRID_DOCS)
    assert weighed == []
    del store.sparse_encoder.encode_documents
    query = "ZX-4410 Akku"
    sparse_hits = store.search(query, top_k=5, mode="sparse")
    assert sparse_hits[0].id == "zx" and all(h.score > 0 for h in sparse_hits)
    shared = set(store.sparse_encoder.encode_queries([query])[0].indices.tolist())
    having = {d["id"] for d, v in zip(HYBRID_DOCS, store.sparse_encoder.encode_documents(
        [d["text"] for d in HYBRID_DOCS]), strict=True) if shared & set(v.indices.tolist())}
    assert {h.id for h in sparse_hits} == having
    dense_hits = store.search(query, top_k=5, mode="dense")
    assert_ranking(dense_hits, brute_force(encoder, HYBRID_DOCS, query), 5)
    hybrid_hits = store.search(query, top_k=5)  # hybrid by default on a hybrid collection
    fused: dict[str, float] = {}
    for ranking in ([h.id for h in dense_hits], [h.id for h in sparse_hits]):
        for rank, key in enumerate(ranking, start=1):  # Milvus's RRFRanker counts ranks from 1
            fused[key] = fused.get(key, 0.0) + 1 / (60 + rank)
    np.testing.assert_allclose([h.score for h in hybrid_hits], sorted(fused.values(), reverse=True)[:5], rtol=1e-5)
    assert {h.id for h in store.search("Akku", mode="hybrid", filter={"lang": "en"})} == {"dog", "rain"}
    # a re-added document loses its old terms; late chunks get their own
    store.add([{"id": "zx", "text": "Nur noch Katzen. Und ein Sofa."}], late_chunking=True)
    assert all(h.id != "zx" and h.parent_id != "zx" for h in store.search("ZX-4410", mode="sparse", top_k=5))
    assert store.search("Katzen", mode="sparse", top_k=1)[0].parent_id == "zx"
    reopened = MilvusStore(encoder, "hybrid", uri=str(tmp_path / "h.db"))
    assert reopened.hybrid
    store.close()
    reopened.close()


@pytest.mark.slow
def test_hybrid_is_refused_on_a_server_without_bm25(encoder, milvus_uri):
    with pytest.raises(InvalidArgumentError, match=r"^hybrid: this Milvus server is v?2\.3\.5[^;]*; .*Milvus 2\.5"):
        MilvusStore(encoder, "hybrid_refused", uri=milvus_uri, hybrid=True)
    client = MilvusClient(uri=milvus_uri)
    assert not client.has_collection("hybrid_refused")
    client.close()
