"""LlamaIndex end to end: JinaV3Embedding in VectorStoreIndex over real stores, and late-chunking ingestion.

Stores: the default in-memory SimpleVectorStore, QdrantVectorStore on QdrantClient(":memory:"), and
MilvusVectorStore on Milvus Lite; every vector is checked against the Encoder it should equal.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import HYBRID_TEXTS, SAMPLE_QUERIES, sample_passages

pytestmark = pytest.mark.slow  # full tier: LlamaIndex pipelines end to end


pytest.importorskip("llama_index.core", reason="needs the llamaindex extra: pip install 'jinav3[llamaindex]'")

from llama_index.core import Document, StorageContext, VectorStoreIndex  # noqa: E402 - after importorskip
from llama_index.core.ingestion import IngestionPipeline  # noqa: E402 - after importorskip
from llama_index.core.node_parser import SentenceSplitter  # noqa: E402 - after importorskip
from llama_index.core.schema import MetadataMode, TextNode  # noqa: E402 - after importorskip

from jinav3.integrations.llama_index import JinaV3Embedding, JinaV3LateChunkingTransform  # noqa: E402 - after importorskip

REPO = Path(__file__).resolve().parents[1]
ARTICLES = REPO / "examples" / "data" / "articles"
QUERIES = SAMPLE_QUERIES


passages = sample_passages


@pytest.fixture(scope="module")
def model(golden_dir) -> str:
    return str(golden_dir)


@pytest.fixture(scope="module")
def embed(model) -> JinaV3Embedding:
    return JinaV3Embedding(model_name=model, device="cpu")


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    return [Document(text=p["text"], id_=p["id"], metadata={"topic": p["topic"]}) for p in passages(12)]


def splitter() -> SentenceSplitter:
    return SentenceSplitter(chunk_size=24, chunk_overlap=0)


def assert_ranked_like_brute_force(got, expected: dict[str, float], top_k: int):
    """``got`` (NodeWithScore) is the brute-force top_k: at each rank that rank's score (ties may swap ids)."""
    ranked = sorted(expected.values(), reverse=True)[:top_k]
    assert len(got) == len(ranked)
    assert len({n.node.node_id for n in got}) == len(got)
    np.testing.assert_allclose([expected[n.node.node_id] for n in got], ranked, atol=1e-5)
    np.testing.assert_allclose([n.score for n in got], ranked, atol=1e-4)  # every store here reports cosine


# ----------------------------------------------------------------------------- the embedding alone
def test_query_and_text_embeddings_equal_the_encoder(embed, encoder):
    texts = [p["text"] for p in passages(7)]
    for query in QUERIES:
        np.testing.assert_allclose(embed.get_query_embedding(query), encoder.encode_queries(query), atol=1e-6)
    np.testing.assert_allclose(embed.get_text_embedding(texts[0]), encoder.encode_passages(texts[0]), atol=1e-6)
    batch = embed.get_text_embedding_batch(texts)  # more texts than embed_batch_size=3 below would split
    np.testing.assert_allclose(batch, encoder.encode_passages(texts), atol=1e-6)
    assert isinstance(batch[0], list) and isinstance(batch[0][0], float)


def test_settings_dimensions_batch_size_tasks(model, encoder):
    texts = [p["text"] for p in passages(7)]
    small = JinaV3Embedding(model_name=model, device="cpu", dimensions=16, embed_batch_size=3)
    np.testing.assert_allclose(small.get_text_embedding_batch(texts), encoder.encode_passages(texts, dimensions=16),
                               atol=1e-6)
    np.testing.assert_allclose(small.get_query_embedding("tea"), encoder.encode_queries("tea", dimensions=16),
                               atol=1e-6)
    custom = JinaV3Embedding(model_name=model, device="cpu", query_task="text-matching", passage_task="text-matching",
                             normalize=False)
    np.testing.assert_allclose(custom.get_query_embedding("tea"),
                               encoder.encode("tea", task="text-matching", normalize=False), atol=1e-5)
    np.testing.assert_allclose(custom.get_text_embedding("tea"),
                               encoder.encode("tea", task="text-matching", normalize=False), atol=1e-5)


def test_async_methods_equal_sync_and_run_in_a_worker_thread(embed, encoder, monkeypatch):
    threads = []
    real = JinaV3Embedding.embed

    def recording(self, *args, **kwargs):
        threads.append(threading.get_ident())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(JinaV3Embedding, "embed", recording)
    texts = [p["text"] for p in passages(4)]

    async def run():
        return await asyncio.gather(
            embed.aget_query_embedding("tea"), embed.aget_text_embedding(texts[0]),
            embed.aget_text_embedding_batch(texts),
        )

    query, one, batch = asyncio.run(run())
    np.testing.assert_allclose(query, encoder.encode_queries("tea"), atol=1e-6)
    np.testing.assert_allclose(one, encoder.encode_passages(texts[0]), atol=1e-6)
    np.testing.assert_allclose(batch, encoder.encode_passages(texts), atol=1e-6)
    assert len(threads) == 3 and threading.get_ident() not in threads


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"dimensions": 0}, "dimensions"),
        ({"dimensions": -3}, "dimensions"),
        ({"dimensions": "8"}, "dimensions"),
        ({"dimensions": True}, "dimensions"),
        ({"query_task": "retrieval"}, "query_task"),
        ({"passage_task": "query"}, "passage_task"),
        ({"model_name": ""}, "model"),
        ({"device": "gpu0"}, "device"),
        ({"dtype": "int8"}, "dtype"),
    ],
)
def test_bad_arguments_fail_at_construction(model, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        JinaV3Embedding(**{"model_name": model, "device": "cpu", **kwargs})


def test_dimensions_above_the_model_fail_at_construction(model, encoder):
    with pytest.raises(ValueError, match="dimensions: must be an integer from 1 to"):
        JinaV3Embedding(model_name=model, device="cpu", dimensions=encoder.hidden_size + 1)


def test_shared_encoder_serialisation_and_pickling(model, embed):
    other = JinaV3Embedding(model_name=model, device="cpu", dimensions=8)
    assert other.encoder is embed.encoder
    assert JinaV3Embedding.class_name() == "JinaV3Embedding"
    data = other.to_dict()
    assert data["class_name"] == "JinaV3Embedding" and data["dimensions"] == 8 and data["model_name"] == model
    again = JinaV3Embedding.from_json(other.to_json())
    assert again.to_dict() == data and again.encoder is embed.encoder
    unpickled = pickle.loads(pickle.dumps(other))  # settings only; the model reloads from the shared cache
    assert unpickled.to_dict() == data and unpickled.encoder is embed.encoder


# ----------------------------------------------------------------------------- indexes over stores
@pytest.fixture(params=["in-memory", "qdrant", "milvus"])
def storage(request, tmp_path, encoder):
    if request.param == "in-memory":
        yield StorageContext.from_defaults()
    elif request.param == "qdrant":
        pytest.importorskip("llama_index.vector_stores.qdrant", reason="needs llama-index-vector-stores-qdrant")
        from llama_index.vector_stores.qdrant import QdrantVectorStore
        from qdrant_client import QdrantClient

        store = QdrantVectorStore(client=QdrantClient(location=":memory:"), collection_name="docs")
        yield StorageContext.from_defaults(vector_store=store)
    else:
        pytest.importorskip("llama_index.vector_stores.milvus", reason="needs llama-index-vector-stores-milvus")
        from llama_index.vector_stores.milvus import MilvusVectorStore

        store = MilvusVectorStore(uri=str(tmp_path / "milvus.db"), dim=encoder.hidden_size, overwrite=True,
                                  similarity_metric="IP")  # inner product of unit vectors: cosine
        yield StorageContext.from_defaults(vector_store=store)
        store.client.close()


def test_vector_store_index_retrieval_matches_brute_force(embed, encoder, documents, storage):
    nodes = splitter().get_nodes_from_documents(documents)
    assert len(nodes) > len(documents)
    index = VectorStoreIndex(nodes, storage_context=storage, embed_model=embed)
    texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]  # what LlamaIndex embeds
    passages_ = encoder.encode_passages(texts)
    top_k = 5
    retriever = index.as_retriever(similarity_top_k=top_k)
    for query in QUERIES:
        scores = (passages_ @ encoder.encode_queries(query)).tolist()
        expected = dict(zip([n.node_id for n in nodes], scores, strict=True))
        assert_ranked_like_brute_force(retriever.retrieve(query), expected, top_k)


def test_from_documents_with_async_embedding(embed, encoder, documents):
    index = VectorStoreIndex.from_documents(documents, embed_model=embed, transformations=[splitter()], use_async=True)
    stored = index.vector_store.to_dict()["embedding_dict"]
    nodes = {n.node_id: n for n in index.docstore.docs.values()}
    ids = list(stored)
    texts = [nodes[i].get_content(metadata_mode=MetadataMode.EMBED) for i in ids]
    np.testing.assert_allclose([stored[i] for i in ids], encoder.encode_passages(texts), atol=1e-6)


# ----------------------------------------------------------------------------- late chunking
def late_expected(encoder, nodes, **kw) -> dict[str, np.ndarray]:
    """What every node's vector must be: its document's nodes, in text order, late-chunked together."""
    out = {}
    for doc_id in dict.fromkeys(n.ref_doc_id for n in nodes):
        group = sorted((n for n in nodes if n.ref_doc_id == doc_id), key=lambda n: n.start_char_idx)
        vectors = encoder.encode([n.get_content() for n in group], task="retrieval.passage", late_chunking=True, **kw)
        out.update(zip([n.node_id for n in group], vectors, strict=True))
    return out


def test_late_chunking_transform_in_an_ingestion_pipeline(embed, encoder, documents):
    pipeline = IngestionPipeline(transformations=[splitter(), JinaV3LateChunkingTransform(embed_model=embed)])
    nodes = pipeline.run(documents=documents)
    expected = late_expected(encoder, nodes)
    assert max(sum(n.ref_doc_id == d for n in nodes) for d in {n.ref_doc_id for n in nodes}) > 2
    np.testing.assert_allclose([n.embedding for n in nodes], [expected[n.node_id] for n in nodes], atol=1e-6)
    plain = encoder.encode_passages([n.get_content() for n in nodes])
    assert not np.allclose([n.embedding for n in nodes], plain, atol=1e-3)

    # The index keeps the late vectors; queries still use retrieval.query.
    index = VectorStoreIndex(nodes, embed_model=embed)
    got = index.as_retriever(similarity_top_k=4).retrieve(QUERIES[0])
    scores = {n.node_id: float(np.dot(expected[n.node_id], encoder.encode_queries(QUERIES[0]))) for n in nodes}
    assert_ranked_like_brute_force(got, scores, 4)


def test_late_chunking_order_strays_and_async(model, encoder, documents):
    embed = JinaV3Embedding(model_name=model, device="cpu", dimensions=32)
    transform = JinaV3LateChunkingTransform(embed_model=embed)
    nodes = splitter().get_nodes_from_documents(documents[:4])
    shuffled = nodes[::-1]  # arrival order must not matter: start_char_idx decides
    strays = [TextNode(text="a node without a document"), TextNode(text="also alone")]
    out = asyncio.run(transform.acall(shuffled + strays))
    expected = late_expected(encoder, nodes, dimensions=32)
    np.testing.assert_allclose([n.embedding for n in shuffled], [expected[n.node_id] for n in shuffled], atol=1e-6)
    np.testing.assert_allclose([n.embedding for n in out[-2:]],
                               encoder.encode_passages([n.text for n in strays], dimensions=32), atol=1e-6)


def test_late_chunking_into_qdrant_through_the_pipeline(embed, encoder):
    pytest.importorskip("llama_index.vector_stores.qdrant", reason="needs llama-index-vector-stores-qdrant")
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    article = (ARTICLES / "printing-press-history.en.md").read_text(encoding="utf-8")
    store = QdrantVectorStore(client=QdrantClient(location=":memory:"), collection_name="late")
    pipeline = IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0),
                         JinaV3LateChunkingTransform(embed_model=embed)],
        vector_store=store,
    )
    nodes = pipeline.run(documents=[Document(text=article, id_="printing")])
    assert len(nodes) > 3
    expected = late_expected(encoder, nodes)
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed)
    query = "Who invented movable type printing in Europe?"
    scores = {n.node_id: float(np.dot(expected[n.node_id], encoder.encode_queries(query))) for n in nodes}
    assert_ranked_like_brute_force(index.as_retriever(similarity_top_k=3).retrieve(query), scores, 3)


def test_example_runs(golden_dir):
    env = {**os.environ, "JINAV3_MODEL": str(golden_dir)}
    out = subprocess.run([sys.executable, str(REPO / "examples" / "llama_index_example.py")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "score" in out.stdout


# ============================================================================================ lexical (issue 25)
def test_sparse_functions_in_qdrant_hybrid_retrieval(embed, model):
    """sparse_functions(model=...) gives QdrantVectorStore(enable_hybrid=True) its sparse_doc_fn / sparse_query_fn:
    sparse and hybrid queries through a real VectorStoreIndex."""
    pytest.importorskip("llama_index.vector_stores.qdrant", reason="needs llama-index-vector-stores-qdrant")
    from llama_index.core.vector_stores.types import VectorStoreQueryMode
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient, models

    from jinav3.integrations.llama_index import sparse_functions
    from jinav3.sparse import SparseEncoder

    doc_fn, query_fn = sparse_functions(model=model)
    indices, values = doc_fn(HYBRID_TEXTS)
    expected = SparseEncoder.from_pretrained(model).encode_documents(HYBRID_TEXTS)
    assert indices == [e.indices.tolist() for e in expected] and len(values) == len(HYBRID_TEXTS)
    assert set(query_fn(["Akku Akku"])[1][0]) == {1.0}
    store = QdrantVectorStore(client=QdrantClient(location=":memory:"), collection_name="hybrid", enable_hybrid=True,
                              sparse_doc_fn=doc_fn, sparse_query_fn=query_fn,
                              sparse_config=models.SparseVectorParams(modifier=models.Modifier.IDF))
    index = VectorStoreIndex.from_documents([Document(text=t, id_=str(i)) for i, t in enumerate(HYBRID_TEXTS)],
                                            storage_context=StorageContext.from_defaults(vector_store=store),
                                            embed_model=embed)
    sparse_hits = index.as_retriever(vector_store_query_mode=VectorStoreQueryMode.SPARSE,
                                     sparse_top_k=1).retrieve("ZX-4410 Akku")
    assert sparse_hits[0].node.get_content() == HYBRID_TEXTS[0]
    hybrid_hits = index.as_retriever(vector_store_query_mode=VectorStoreQueryMode.HYBRID, similarity_top_k=5,
                                     sparse_top_k=5, hybrid_top_k=5).retrieve("ZX-4410 Akku")
    assert len(hybrid_hits) == 5 and HYBRID_TEXTS[0] in [h.node.get_content() for h in hybrid_hits[:2]]
