"""Collection: a store without a model (issue 24). Points embedded elsewhere are written and searched by vector
exactly as a VectorStore writes and searches them, on a real embedded Qdrant and Milvus Lite."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import sample_passages

from jinav3.errors import InvalidArgumentError, SignatureMismatchError, StoreError
from jinav3.integrations.stores.records import normalize_records
from jinav3.integrations.stores.signature import Signature
from jinav3.integrations.stores.vector_store import embed_points

pytest.importorskip("qdrant_client")
pymilvus = pytest.importorskip("pymilvus")

from jinav3.integrations.milvus import MilvusCollection, MilvusStore  # noqa: E402 - after importorskip
from jinav3.integrations.pinecone import PineconeCollection  # noqa: E402 - after importorskip
from jinav3.integrations.qdrant import QdrantCollection, QdrantStore  # noqa: E402 - after importorskip

RECORDS = [{"id": r["id"], "text": r["text"], "metadata": {"lang": r["lang"]}} for r in sample_passages(8)]


@pytest.fixture(params=["qdrant", "milvus"])
def kind(request, tmp_path):
    """(store class, collection class, where): a real embedded store of each kind."""
    if request.param == "qdrant":
        return QdrantStore, QdrantCollection, {"path": str(tmp_path / "qdrant")}
    return MilvusStore, MilvusCollection, {"uri": str(tmp_path / "milvus.db")}


def _signature(encoder, dimensions=None):
    return Signature(encoder.name, encoder.output_size(dimensions), "retrieval.passage", "retrieval.query",
                     model_label=encoder.label)


def test_points_written_by_a_collection_are_what_add_writes(kind, encoder):
    Store, Collection, where = kind
    points = embed_points(encoder, normalize_records(RECORDS), task="retrieval.passage", dimensions=64,
                          late_chunking=False)
    with Collection(_signature(encoder, 64), "c", **where) as collection:
        assert collection.write_points(points).written == [r["id"] for r in RECORDS]
        assert collection.count() == len(RECORDS)
        query = encoder.encode_queries(["how do I test a new cream?"], dimensions=64)[0]
        by_vector = collection.search_by_vector(query, top_k=3)
    with Store(encoder, "c", dimensions=64, **where) as store:  # the same collection, with a model
        by_text = store.search("how do I test a new cream?", top_k=3)
        stored = store.get([r["id"] for r in RECORDS])
    assert [h.id for h in by_vector] == [h.id for h in by_text]
    np.testing.assert_allclose([h.score for h in by_vector], [h.score for h in by_text], atol=1e-5)
    passages = encoder.encode_passages([r["text"] for r in RECORDS], dimensions=64)
    np.testing.assert_allclose(np.stack([h.vector for h in stored]), passages, atol=1e-5)


def test_a_collection_opened_as_it_is_takes_its_signature(kind, encoder):
    Store, Collection, where = kind
    with Store(encoder, "c", dimensions=32, **where) as store:
        store.add(RECORDS[:3])
    with Collection(None, "c", **where) as collection:  # no model, no signature: the stored one
        assert collection.signature == store.signature and collection.dimensions == 32
        assert collection.count() == 3
        with pytest.raises(StoreError, match="expected"):  # a query of another size is refused, not sent
            collection.search_by_vector(np.ones(64, np.float32))
        with pytest.raises(InvalidArgumentError, match="^mode: "):
            collection.search_by_vector(np.ones(32, np.float32), mode="sparse")  # a dense collection
    with pytest.raises(SignatureMismatchError, match="dimensions"):
        Collection(_signature(encoder, 16), "c", **where)
    with pytest.raises(StoreError, match="does not exist"):
        Collection(None, "nothing_here", **where)


def test_limits_need_no_connection():
    """What Ray's workers and `jinav3 index` check rows with: the class's limits, no client, no instance."""
    limits = PineconeCollection.record_limits()
    with pytest.raises(InvalidArgumentError, match=r"^records\[0\]\.id: .*not ASCII"):
        limits.check_record({"id": "ünï", "text": "x"}, "records[0]")
    assert limits.check_record({"id": "a", "text": "x"}, "records[0]").id == "a"
    with pytest.raises(InvalidArgumentError, match="Milvus VARCHAR"):
        MilvusCollection.record_limits().check_record({"id": "a", "text": "x" * 70_000}, "row")
