"""QdrantStore on real Qdrant: local mode in memory and in a folder, and a server when JINAV3_QDRANT_URL is set."""

from __future__ import annotations

import hashlib
import json
import os
import uuid

import httpx
import numpy as np
import pytest
from helpers import HYBRID_DOCS
from test_store_common import ATOL, QUERIES, Backend, StoreContract, assert_ranking, brute_force, corpus
from test_store_common import FailingUpserts as CommonFailingUpserts

from jinav3.errors import InvalidArgumentError, SignatureMismatchError, StoreError
from jinav3.integrations.stores.records import uuid_for

qdrant_client = pytest.importorskip("qdrant_client")

from qdrant_client import QdrantClient, models  # noqa: E402 - after importorskip
from qdrant_client.http.exceptions import UnexpectedResponse  # noqa: E402 - after importorskip

from jinav3.integrations.qdrant import QdrantStore  # noqa: E402 - after importorskip

SCHEME = "qdrant"  # the store registry's kind these tests run the StoreContract on (test_store_registry.py)


QDRANT_URL = os.environ.get("JINAV3_QDRANT_URL")


class FailingUpserts(CommonFailingUpserts):
    """A QdrantClient stand-in that fails upserts after ``after`` good ones."""

    def error(self, status: int) -> Exception:
        return UnexpectedResponse(status_code=status, reason_phrase="injected", content=b"injected",
                                  headers=httpx.Headers())


class QdrantBackend(Backend):
    def __init__(self, name: str, client: QdrantClient, persistent: bool):
        self.name, self.client, self.persistent = name, client, persistent
        self.collections: list[str] = []

    def make(self, encoder, name, **kwargs):
        self.collections.append(name)
        return QdrantStore(encoder, name, client=self.client, **kwargs)

    def native_filter(self, key, value):
        return models.Filter(must=[models.FieldCondition(key=f"metadata.{key}", match=models.MatchValue(value=value))])

    def fail_upserts(self, store, after, status, times=None):
        store.client = FailingUpserts(store.client, after, status, times)

    def heal(self, store):
        store.client = store.client.inner

    def cleanup(self):
        for name in self.collections:
            if self.client.collection_exists(name):
                self.client.delete_collection(name)


@pytest.fixture(scope="module", params=["memory", pytest.param("path", marks=pytest.mark.slow),
                                        pytest.param("server", marks=pytest.mark.slow)])
def backend(request, tmp_path_factory):
    if request.param == "memory":
        client, persistent = QdrantClient(location=":memory:"), True
    elif request.param == "path":
        client, persistent = QdrantClient(path=str(tmp_path_factory.mktemp("qdrant"))), True
    else:
        if not QDRANT_URL:
            pytest.skip("set JINAV3_QDRANT_URL (e.g. http://127.0.0.1:6333) to run the Qdrant suite on a server")
        client, persistent = QdrantClient(url=QDRANT_URL, api_key=os.environ.get("JINAV3_QDRANT_API_KEY")), True
    b = QdrantBackend(request.param, client, persistent)
    yield b
    b.cleanup()
    client.close()


class TestQdrant(StoreContract):
    pass


# ============================================================================================ Qdrant only
def test_path_mode_persists_and_checks_the_signature_on_reopen(encoder, tmp_path):
    with QdrantStore(encoder, "docs", path=str(tmp_path / "q")) as store:
        store.add(corpus(8))
    with QdrantStore(encoder, "docs", path=str(tmp_path / "q")) as store:
        assert store.count() == 8
        assert_ranking(store.search(QUERIES[0], top_k=3), brute_force(encoder, corpus(8), QUERIES[0]), 3)
    with pytest.raises(SignatureMismatchError, match="32"):
        QdrantStore(encoder, "docs", path=str(tmp_path / "q"), dimensions=32)
    with QdrantStore(encoder, "docs", path=str(tmp_path / "q")) as store:  # the refused open released the folder
        assert store.count() == 8


def test_location_memory_and_default_path(encoder, tmp_path, monkeypatch):
    store = QdrantStore(encoder, "docs", location=":memory:")
    assert store.add(["hello there"]) and store.count() == 1
    store.close()
    monkeypatch.chdir(tmp_path)
    with QdrantStore(encoder, "docs") as store:
        store.add(["x"])
    assert (tmp_path / "qdrant-data").is_dir()


def test_where_arguments_are_checked(encoder):
    with pytest.raises(InvalidArgumentError, match="^client:"):
        QdrantStore(encoder, "docs", location=":memory:", url="http://localhost:6333")
    with pytest.raises(InvalidArgumentError, match="^api_key:"):
        QdrantStore(encoder, "docs", location=":memory:", api_key="k")
    with pytest.raises(InvalidArgumentError, match="^collection:"):
        QdrantStore(encoder, "", location=":memory:")
    with pytest.raises(InvalidArgumentError, match="^dimensions:"):
        QdrantStore(encoder, "docs", location=":memory:", dimensions=65)


def test_collections_made_elsewhere(encoder):
    client = QdrantClient(location=":memory:")
    client.create_collection("plain", vectors_config=models.VectorParams(size=64, distance=models.Distance.COSINE))
    store = QdrantStore(encoder, "plain", client=client)  # no signature: size and metric checked, a warning logged
    store.add(["fine"])
    client.create_collection("dot", vectors_config=models.VectorParams(size=64, distance=models.Distance.DOT))
    with pytest.raises(SignatureMismatchError, match="'dot'"):
        QdrantStore(encoder, "dot", client=client)
    client.create_collection("small", vectors_config=models.VectorParams(size=16, distance=models.Distance.COSINE))
    with pytest.raises(SignatureMismatchError, match="16"):
        QdrantStore(encoder, "small", client=client)
    named = {"a": models.VectorParams(size=64, distance=models.Distance.COSINE)}
    client.create_collection("named", vectors_config=named)
    with pytest.raises(StoreError, match="named vectors"):
        QdrantStore(encoder, "named", client=client)
    with pytest.raises(StoreError, match="does not exist"):
        QdrantStore(encoder, "missing", client=client, create=False)


def test_point_layout(encoder):
    client = QdrantClient(location=":memory:")
    store = QdrantStore(encoder, "docs", client=client, dimensions=32)
    store.add([{"id": "a1", "text": "One. Two.", "metadata": {"lang": "en"}}], late_chunking=True)
    assert client.get_collection("docs").config.metadata["jinav3"] == store.signature.to_dict()
    point = client.retrieve("docs", [uuid_for("a1::chunk:1")], with_vectors=True)[0]
    namespace = uuid.UUID("6f2d1c0e-5a4b-5c3d-9e8f-0a1b2c3d4e5f")
    assert point.id == uuid_for("a1::chunk:1") == str(uuid.uuid5(namespace, "a1::chunk:1"))
    # the record's content fingerprint: version 1, text, metadata, how it was cut (stores/records.py)
    made_from = json.dumps([1, "One. Two.", {"lang": "en"}, [True, "sentences", None]], separators=(",", ":"))
    assert point.payload == {"id": "a1::chunk:1", "doc_id": "a1", "chunk": 1, "text": "Two.",
                             "metadata": {"lang": "en"}, "start": 5, "end": 9, "extent": 2,
                             "fingerprint": hashlib.sha256(made_from.encode()).hexdigest()[:32]}
    np.testing.assert_allclose(point.vector, encoder.late_chunk("One. Two.", dimensions=32)[1].embedding, atol=ATOL)


def test_a_converted_copy_of_the_model_opens_the_same_collection(encoder, native_encoder):
    """`jinav3 convert` then `--model DST`: same model, same signature, same vectors."""
    client = QdrantClient(location=":memory:")
    store = QdrantStore(encoder, "converted", client=client)
    store.add(["Aloe vera soothes irritated skin.", "Green tea is rich in antioxidants."])
    again = QdrantStore(native_encoder, "converted", client=client)
    assert again.signature == store.signature and again.count() == 2
    np.testing.assert_allclose([h.score for h in again.search("skin care", top_k=2)],
                               [h.score for h in store.search("skin care", top_k=2)], atol=1e-5)


def test_points_written_without_extents_are_pruned_by_condition(encoder, monkeypatch):
    """Points from a jinav3 that recorded no extent (issue 29): their stale chunks are found by the parent
    id, as before, and the rewritten document gets extents."""
    client = QdrantClient(location=":memory:")
    old = QdrantStore(encoder, "docs", client=client, dimensions=32)
    old.tracks_extents = False  # writes as the earlier layout did
    old.add([{"id": "d", "text": "One. Two. Three. Four."}, {"id": "e", "text": "Five."}], late_chunking=True)
    assert "extent" not in client.retrieve("docs", [uuid_for("d::chunk:0")])[0].payload
    pruned: list[list[str]] = []
    original = QdrantStore._prune

    def prune(self, docs, keep):
        pruned.append(docs)
        return original(self, docs, keep)
    monkeypatch.setattr(QdrantStore, "_prune", prune)
    store = QdrantStore(encoder, "docs", client=client, dimensions=32)
    store.add([{"id": "d", "text": "One. Two."}, {"id": "e", "text": "Five."}], late_chunking=True)
    assert sorted(doc for docs in pruned for doc in docs) == ["d", "e"]  # by condition, as before
    assert sorted(h.id for h in store.get([store.chunk_id("d", i) for i in range(4)] + ["e::chunk:0"])) == [
        "d::chunk:0", "d::chunk:1", "e::chunk:0"]
    assert client.retrieve("docs", [uuid_for("d::chunk:1")])[0].payload["extent"] == 2


@pytest.mark.parametrize("fields, shown", [({"lang": "text"}, "index type must be one of"),
                                           ({"a.b": "keyword"}, "top-level metadata keys"),
                                           (["lang"], "must map metadata keys")])
def test_index_fields_are_checked_before_anything_opens(encoder, tmp_path, fields, shown):
    with pytest.raises(InvalidArgumentError, match=f"^index_fields: .*{shown}"):
        QdrantStore(encoder, "docs", path=str(tmp_path / "q"), index_fields=fields)
    assert not (tmp_path / "q").exists()


def test_index_fields_make_payload_indexes_on_metadata_keys(encoder, monkeypatch):
    """Issue 29: payload indexes on the metadata keys filters use (a server plans filtered searches with
    them; on a server the schema is read back, in local mode the requests are checked)."""
    client = QdrantClient(url=QDRANT_URL) if QDRANT_URL else QdrantClient(location=":memory:")
    asked: list[tuple[str, object]] = []
    original = client.create_payload_index

    def create_payload_index(collection, field, field_schema=None, **kwargs):
        asked.append((field, field_schema))
        return original(collection, field, field_schema=field_schema, **kwargs)
    monkeypatch.setattr(client, "create_payload_index", create_payload_index)
    name = f"indexed_{uuid.uuid4().hex[:8]}"
    store = QdrantStore(encoder, name, client=client, dimensions=32,
                        index_fields={"lang": "keyword", "year": "integer"})
    assert ("metadata.lang", models.PayloadSchemaType.KEYWORD) in asked
    assert ("metadata.year", models.PayloadSchemaType.INTEGER) in asked
    store.add([{"id": "a", "text": "Hallo Welt.", "metadata": {"lang": "de", "year": 2024}}])
    assert [h.id for h in store.search("Welt", filter={"lang": "de", "year": 2024})] == ["a"]
    if QDRANT_URL:
        schema = client.get_collection(name).payload_schema
        assert {"metadata.lang", "metadata.year"} <= set(schema)
        client.delete_collection(name)


# ============================================================================================ hybrid (issue 25)
def bm25_scores(sparse, docs, query):
    """Qdrant's sparse score with Modifier.IDF, computed here: sum over shared terms of idf(t) * w(t, d)."""
    vectors = sparse.encode_documents([d["text"] for d in docs])
    df: dict[int, int] = {}
    for v in vectors:
        for i in v.indices.tolist():
            df[i] = df.get(i, 0) + 1
    q = set(sparse.encode_queries([query])[0].indices.tolist())
    n = len(docs)
    return {d["id"]: sum(np.log(1 + (n - df[i] + 0.5) / (df[i] + 0.5)) * w for i, w in v.as_dict().items() if i in q)
            for d, v in zip(docs, vectors, strict=True)}


def rrf(rankings, k):
    """Reciprocal rank fusion as Qdrant computes it: ranks counted from 0."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking):
            scores[key] = scores.get(key, 0.0) + 1 / (k + rank)
    return scores


@pytest.mark.parametrize("where", ["memory", "path"])
def test_hybrid_search_modes_equal_their_definitions(encoder, tmp_path, where):
    kwargs = {"location": ":memory:"} if where == "memory" else {"path": str(tmp_path / "q")}
    store = QdrantStore(encoder, "hybrid", hybrid=True, **kwargs)
    assert store.hybrid and store.signature.to_dict()["hybrid"] is True
    store.add(HYBRID_DOCS)
    query = "ZX-4410 Akku"
    lexical = bm25_scores(store.sparse_encoder, HYBRID_DOCS, query)
    sparse_hits = store.search(query, top_k=5, mode="sparse")
    assert sparse_hits[0].id == "zx"  # the rare exact term wins
    assert {h.id for h in sparse_hits} == {d for d, s in lexical.items() if s > 0}
    np.testing.assert_allclose([h.score for h in sparse_hits], [lexical[h.id] for h in sparse_hits], rtol=1e-5)
    dense = brute_force(encoder, HYBRID_DOCS, query)
    dense_hits = store.search(query, top_k=5, mode="dense")
    assert_ranking(dense_hits, dense, 5)
    for k in (60, 1):
        fused = rrf([[h.id for h in dense_hits], [h.id for h in sparse_hits]], k)
        hybrid_hits = store.search(query, top_k=5, mode="hybrid", rrf_k=k)
        np.testing.assert_allclose([h.score for h in hybrid_hits], sorted(fused.values(), reverse=True)[:5],
                                   rtol=1e-6)
    assert [h.id for h in store.search(query, top_k=5)] == [h.id for h in store.search(query, top_k=5, mode="hybrid")]
    got = store.get([d["id"] for d in HYBRID_DOCS])  # the stored vectors are the dense ones
    np.testing.assert_allclose(np.stack([h.vector for h in got]),
                               encoder.encode_passages([d["text"] for d in HYBRID_DOCS]), atol=ATOL)
    assert {h.id for h in store.search("Akku", mode="hybrid", filter={"lang": "en"})} == {"dog", "rain"}
    assert [h.id for h in store.search("Akku", mode="sparse", filter={"lang": "en"})] == []


def test_hybrid_collections_keep_their_kind_and_refuse_mixing(encoder, tmp_path):
    client = QdrantClient(location=":memory:")
    QdrantStore(encoder, "h", client=client, hybrid=True).add(HYBRID_DOCS[:2])
    reopened = QdrantStore(encoder, "h", client=client)  # no hybrid=: kept
    assert reopened.hybrid and reopened.search("Akku", mode="sparse")
    with pytest.raises(SignatureMismatchError, match="hybrid: it has True, this store uses False"):
        QdrantStore(encoder, "h", client=client, hybrid=False)
    dense = QdrantStore(encoder, "d", client=client)
    dense.add(HYBRID_DOCS[:2])
    with pytest.raises(SignatureMismatchError, match="hybrid: it has False, this store uses True"):
        QdrantStore(encoder, "d", client=client, hybrid=True)
    for mode in ("sparse", "hybrid"):
        with pytest.raises(InvalidArgumentError, match=f"^mode: '{mode}' needs a hybrid collection"):
            dense.search("Akku", mode=mode)
    for kwargs, argument in ((dict(mode="lexical"), "mode"), (dict(rrf_k=0), "rrf_k"), (dict(rrf_k="60"), "rrf_k")):
        with pytest.raises(InvalidArgumentError, match=f"^{argument}:"):
            reopened.search("Akku", **kwargs)
    with pytest.raises(InvalidArgumentError, match="^hybrid:"):
        QdrantStore(encoder, "x", client=client, hybrid="yes")


def test_hybrid_late_chunks_and_readds_replace_their_terms(encoder):
    store = QdrantStore(encoder, "h", location=":memory:", hybrid=True)
    store.add([{"id": "doc", "text": "Eins ist gut. Der ZX-4410 Akku ist leer. Drei ist besser."},
               *HYBRID_DOCS[2:]], late_chunking=True)
    hits = store.search("ZX-4410", mode="sparse", top_k=1)
    assert hits[0].parent_id == "doc" and "ZX-4410" in hits[0].text
    grouped = store.search("ZX-4410 Akku", top_k=2, group_by_document=True)
    assert grouped[0].id == "doc"
    store.add([{"id": "doc", "text": "Nur noch Katzen."}], late_chunking=True)  # fewer chunks, other words
    assert store.count() == 1 + 3
    assert all(h.parent_id != "doc" for h in store.search("ZX-4410", mode="sparse", top_k=5))
    assert store.search("Katzen", mode="sparse", top_k=1)[0].parent_id == "doc"


def test_stores_without_hybrid_refuse_it_before_opening(encoder):
    from jinav3.integrations.pinecone import PineconeStore

    with pytest.raises(InvalidArgumentError, match="^hybrid: Pinecone stores hold dense vectors only"):
        PineconeStore(encoder, "idx", api_key="never-used", hybrid=True)


def test_a_rerun_reads_earlier_points_a_few_batches_at_a_time(encoder, tmp_path):
    """Issue 29: a re-add into a collection this object did not make looks up the next batches' documents with
    this batch's (few, large reads: a server's read can cost a consistency wait), and still removes exactly
    the stale points: chunked documents re-added whole lose their chunks."""
    records = [{"id": f"d{i}", "text": f"Rivers carry silt {i}. Farmers rotate crops {i}. Bees visit {i}."}
               for i in range(40)]
    with QdrantStore(encoder, "c", path=str(tmp_path / "q"), dimensions=16) as store:
        store.add(records, late_chunking=True, batch_size=4)
        chunked = store.count()
    assert chunked > len(records)
    with QdrantStore(encoder, "c", path=str(tmp_path / "q"), dimensions=16) as store:
        store.max_keys_per_read = 16  # 8 documents per lookup: the batch's 4 and the next batch's 4
        reads = []
        read = store._read_stamps
        store._read_stamps = lambda keys: reads.append(len(keys)) or read(keys)
        store.add(records, batch_size=4)
        assert reads == [16] * 5  # 10 batches, one lookup every other batch
        assert store.count() == len(records)  # every chunk of the earlier version removed
        assert store._read_ahead == {}  # nothing kept past the add
        assert {h.id for h in store.get([r["id"] for r in records])} == {r["id"] for r in records}

