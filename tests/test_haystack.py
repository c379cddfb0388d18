"""Haystack components end to end: real pipelines, real document stores, vectors checked against Encoder.

Stores: InMemoryDocumentStore, qdrant-haystack in local mode, milvus-haystack on Milvus Lite, and
pinecone-haystack against tests/doubles/pinecone_double.py (the real SDK over HTTP).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import HYBRID_TEXTS, SAMPLE_QUERIES, sample_passages

from jinav3.errors import InvalidArgumentError

pytestmark = pytest.mark.slow  # full tier: Haystack pipelines end to end


os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
pytest.importorskip("haystack", reason="needs the haystack extra: pip install 'jinav3[haystack]'")

from haystack import Document, Pipeline  # noqa: E402 - after importorskip
from haystack.components.preprocessors import DocumentSplitter  # noqa: E402 - after importorskip
from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever  # noqa: E402 - after importorskip
from haystack.components.writers import DocumentWriter  # noqa: E402 - after importorskip
from haystack.document_stores.in_memory import InMemoryDocumentStore  # noqa: E402 - after importorskip
from haystack.utils import ComponentDevice  # noqa: E402 - after importorskip

from jinav3.integrations.haystack import JinaV3DocumentEmbedder, JinaV3TextEmbedder  # noqa: E402 - after importorskip

REPO = Path(__file__).resolve().parents[1]
QUERIES = SAMPLE_QUERIES
ALLOWED = ["jinav3.integrations.haystack"]


passages = sample_passages


@pytest.fixture(scope="module")
def model(golden_dir) -> str:
    return str(golden_dir)


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    return [Document(content=p["text"], meta={"topic": p["topic"], "lang": p["lang"]}) for p in passages(12)]


def doc_embedder(model, **kw) -> JinaV3DocumentEmbedder:
    return JinaV3DocumentEmbedder(model=model, **{"device": "cpu", "progress_bar": False, **kw})


def text_embedder(model, **kw) -> JinaV3TextEmbedder:
    return JinaV3TextEmbedder(model=model, **{"device": "cpu", **kw})


def assert_ranked_like_brute_force(got: list[Document], expected: dict[str, float], top_k: int, exact_scores: bool):
    """``got`` is the brute-force top_k: at each rank the brute-force score of that rank (ties may swap ids)."""
    ranked = sorted(expected.values(), reverse=True)[:top_k]
    assert len(got) == len(ranked)
    assert len({d.id for d in got}) == len(got)
    np.testing.assert_allclose([expected[d.id] for d in got], ranked, atol=1e-5)
    if exact_scores:  # the store reports cosine itself
        np.testing.assert_allclose([d.score for d in got], ranked, atol=1e-4)


# ----------------------------------------------------------------------------- the components alone
def test_text_embedder_is_encode_queries(model, encoder):
    for query in QUERIES:
        out = text_embedder(model).run(text=query)
        assert isinstance(out["embedding"], list) and all(isinstance(x, float) for x in out["embedding"])
        np.testing.assert_allclose(out["embedding"], encoder.encode_queries(query), atol=1e-6)
    small = text_embedder(model, dimensions=16).run(text=QUERIES[0])["embedding"]
    np.testing.assert_allclose(small, encoder.encode_queries(QUERIES[0], dimensions=16), atol=1e-6)


def test_document_embedder_is_encode_passages_and_keeps_inputs(model, encoder, docs):
    out = doc_embedder(model, batch_size=5).run(documents=docs)["documents"]
    assert [d.id for d in out] == [d.id for d in docs]
    assert all(d.embedding is None for d in docs), "input documents must not be modified"
    assert all(o is not d for o, d in zip(out, docs, strict=True))
    np.testing.assert_allclose([d.embedding for d in out], encoder.encode_passages([d.content for d in docs]),
                               atol=1e-6)
    assert doc_embedder(model).run(documents=[])["documents"] == []


def test_meta_fields_to_embed(model, encoder, docs):
    embedder = doc_embedder(model, meta_fields_to_embed=["topic", "missing"], embedding_separator=" | ")
    out = embedder.run(documents=docs[:3])
    texts = [f"{d.meta['topic']} | {d.content}" for d in docs[:3]]
    np.testing.assert_allclose([d.embedding for d in out["documents"]], encoder.encode_passages(texts), atol=1e-6)


def test_task_override_and_normalize(model, encoder, docs):
    q = text_embedder(model, task="text-matching").run(text="hello")["embedding"]
    np.testing.assert_allclose(q, encoder.encode("hello", task="text-matching"), atol=1e-6)
    d = doc_embedder(model, task="separation", normalize=False).run(documents=docs[:2])["documents"]
    expected = encoder.encode([x.content for x in docs[:2]], task="separation", normalize=False)
    np.testing.assert_allclose([x.embedding for x in d], expected, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"task": "retrieval"}, "task"),
        ({"task": 3}, "task"),
        ({"dimensions": 0}, "dimensions"),
        ({"dimensions": True}, "dimensions"),
        ({"dimensions": "8"}, "dimensions"),
        ({"batch_size": 0}, "batch_size"),
        ({"normalize": "yes"}, "normalize"),
        ({"model": ""}, "model"),
        ({"device": "gpu0"}, "device"),
        ({"dtype": "int8"}, "dtype"),
    ],
)
def test_bad_arguments_fail_at_construction(model, kwargs, argument):
    for make in (text_embedder, doc_embedder):
        with pytest.raises(InvalidArgumentError, match=f"^{argument}:"):
            make(**{"model": model, **kwargs})


def test_document_only_arguments_are_checked(model):
    with pytest.raises(InvalidArgumentError, match="^late_chunking:"):
        doc_embedder(model, late_chunking="yes")
    with pytest.raises(InvalidArgumentError, match="^meta_fields_to_embed:"):
        doc_embedder(model, meta_fields_to_embed="title")


def test_dimensions_above_the_model_fail_at_warm_up(model, encoder):
    embedder = text_embedder(model, dimensions=encoder.hidden_size + 1)  # the size is known once loaded
    with pytest.raises(InvalidArgumentError, match="^dimensions:"):
        embedder.warm_up()


def test_wrong_input_types(model):
    with pytest.raises(TypeError, match="JinaV3DocumentEmbedder"):
        text_embedder(model).run(text=["a list"])
    with pytest.raises(TypeError, match="JinaV3TextEmbedder"):
        doc_embedder(model).run(documents="a string")


def test_components_with_the_same_settings_share_one_encoder(model):
    a, b, c = text_embedder(model), doc_embedder(model), doc_embedder(model, dimensions=8)
    for component in (a, b, c):
        component.warm_up()
    assert a.encoder is b.encoder is c.encoder
    d = JinaV3TextEmbedder(model=model, device=ComponentDevice.from_str("cpu"))
    assert d.device == "cpu"
    d.warm_up()
    assert d.encoder is a.encoder


class _ThreadRecorder:
    """Wraps the encoder to note which thread each encode ran on."""

    def __init__(self, encoder):
        self.encoder, self.threads = encoder, []

    def encode(self, *args, **kwargs):
        self.threads.append(threading.get_ident())
        return self.encoder.encode(*args, **kwargs)


def test_run_async_matches_run_in_a_worker_thread(model, docs):
    text, document = text_embedder(model), doc_embedder(model)
    text.warm_up(), document.warm_up()
    text.encoder, document.encoder = _ThreadRecorder(text.encoder), _ThreadRecorder(document.encoder)

    async def both():
        return await asyncio.gather(text.run_async(text="tea"), document.run_async(documents=docs[:4]))

    q, d = asyncio.run(both())
    assert q == text.run(text="tea")
    assert [x.embedding for x in d["documents"]] == [x.embedding for x in document.run(documents=docs[:4])["documents"]]
    main = threading.get_ident()
    assert text.encoder.threads[0] != main and document.encoder.threads[0] != main


# ----------------------------------------------------------------------------- late chunking
def test_late_chunking_groups_by_source_in_split_order(model, encoder, docs):
    splits = DocumentSplitter(split_by="word", split_length=8).run(documents=docs[:4])["documents"]
    lonely = [Document(content="a document without a source"), Document(content="   ", meta={"source_id": "x"})]
    shuffled = list(reversed(splits[::2])) + lonely + list(reversed(splits[1::2]))  # any arrival order
    out = doc_embedder(model, late_chunking=True).run(documents=shuffled)["documents"]
    assert [d.id for d in out] == [d.id for d in shuffled]
    got = {d.id: d.embedding for d in out}
    sources = list(dict.fromkeys(d.meta["source_id"] for d in splits))
    sizes = []
    for source in sources:  # a source split into one piece is still late-chunked (a group of one)
        group = sorted((d for d in splits if d.meta["source_id"] == source), key=lambda d: d.meta["split_id"])
        sizes.append(len(group))
        expected = encoder.encode([d.content for d in group], task="retrieval.passage", late_chunking=True)
        np.testing.assert_allclose([got[d.id] for d in group], expected, atol=1e-6)
        if len(group) > 1:
            assert not np.allclose(expected, encoder.encode_passages([d.content for d in group]), atol=1e-3)
    assert len(sources) == 4 and max(sizes) > 2
    np.testing.assert_allclose([got[d.id] for d in lonely], encoder.encode_passages([d.content for d in lonely]),
                               atol=1e-6)


def test_late_chunking_with_dimensions_in_an_indexing_pipeline(model, encoder, docs):
    store = InMemoryDocumentStore()
    indexing = Pipeline()
    indexing.add_component("split", DocumentSplitter(split_by="word", split_length=10))
    indexing.add_component("embed", doc_embedder(model, late_chunking=True, dimensions=32))
    indexing.add_component("write", DocumentWriter(document_store=store))
    indexing.connect("split", "embed")
    indexing.connect("embed", "write")
    indexing.run({"split": {"documents": docs[:3]}})
    stored = store.filter_documents()
    for source in {d.meta["source_id"] for d in stored}:
        group = sorted((d for d in stored if d.meta["source_id"] == source), key=lambda d: d.meta["split_id"])
        expected = encoder.encode([d.content for d in group], task="retrieval.passage", late_chunking=True,
                                  dimensions=32)
        np.testing.assert_allclose([d.embedding for d in group], expected, atol=1e-6)


# ----------------------------------------------------------------------------- pipelines over stores
@pytest.fixture(params=["in-memory", "qdrant", "milvus", "pinecone"])
def store(request, tmp_path, monkeypatch, encoder):
    """(document store, retriever class, whether its scores are plain cosine)."""
    dim = encoder.hidden_size
    if request.param == "in-memory":
        yield InMemoryDocumentStore(), InMemoryEmbeddingRetriever, True
    elif request.param == "qdrant":
        pytest.importorskip("haystack_integrations.document_stores.qdrant", reason="needs qdrant-haystack")
        from haystack_integrations.components.retrievers.qdrant import QdrantEmbeddingRetriever
        from haystack_integrations.document_stores.qdrant import QdrantDocumentStore

        store = QdrantDocumentStore(location=":memory:", embedding_dim=dim, recreate_index=True)
        yield store, QdrantEmbeddingRetriever, True
    elif request.param == "milvus":
        pytest.importorskip("milvus_haystack", reason="needs milvus-haystack")
        from milvus_haystack import MilvusDocumentStore, MilvusEmbeddingRetriever

        store = MilvusDocumentStore(
            connection_args={"uri": str(tmp_path / "milvus.db")},
            index_params={"index_type": "FLAT", "metric_type": "COSINE", "params": {}},
            drop_old=True,
        )
        yield store, MilvusEmbeddingRetriever, False  # Milvus reports (1 + cosine) / 2
    else:
        pytest.importorskip("haystack_integrations.document_stores.pinecone", reason="needs pinecone-haystack")
        from doubles.pinecone_double import PineconeDouble
        from haystack.utils import Secret
        from haystack_integrations.components.retrievers.pinecone import PineconeEmbeddingRetriever
        from haystack_integrations.document_stores.pinecone import PineconeDocumentStore

        with PineconeDouble(api_key="test-key") as double:
            monkeypatch.setenv("PINECONE_CONTROLLER_HOST", double.host)  # the SDK's own control-plane override
            store = PineconeDocumentStore(
                api_key=Secret.from_token("test-key"), index="docs", namespace="test", dimension=dim,
                show_progress=False,
            )
            yield store, PineconeEmbeddingRetriever, True


def test_index_and_query_pipelines_match_brute_force(model, encoder, docs, store):
    document_store, retriever_class, exact_scores = store
    indexing = Pipeline()
    indexing.add_component("split", DocumentSplitter(split_by="word", split_length=12))
    indexing.add_component("embed", doc_embedder(model))
    indexing.add_component("write", DocumentWriter(document_store=document_store))
    indexing.connect("split", "embed")
    indexing.connect("embed", "write")
    written = indexing.run({"split": {"documents": docs}})["write"]["documents_written"]
    stored = document_store.filter_documents()
    assert written == len(stored) > len(docs)

    passages = encoder.encode_passages([d.content for d in stored])
    top_k = 5
    query = Pipeline()
    query.add_component("embed", text_embedder(model))
    query.add_component("retrieve", retriever_class(document_store=document_store, top_k=top_k))
    query.connect("embed.embedding", "retrieve.query_embedding")
    for text in QUERIES:
        got = query.run({"embed": {"text": text}})["retrieve"]["documents"]
        expected = dict(zip([d.id for d in stored], (passages @ encoder.encode_queries(text)).tolist(), strict=True))
        assert_ranked_like_brute_force(got, expected, top_k, exact_scores)


def test_pipelines_round_trip_through_yaml(model, docs):
    store = InMemoryDocumentStore()
    indexing = Pipeline()
    indexing.add_component("embed",
                           doc_embedder(model, dimensions=24, meta_fields_to_embed=["topic"], late_chunking=True))
    indexing.add_component("write", DocumentWriter(document_store=store))
    indexing.connect("embed", "write")
    query = Pipeline()
    query.add_component("embed", text_embedder(model, dimensions=24, task="retrieval.query"))
    query.add_component("retrieve", InMemoryEmbeddingRetriever(document_store=store, top_k=3))
    query.connect("embed.embedding", "retrieve.query_embedding")

    for pipeline in (indexing, query):
        text = pipeline.dumps()
        loaded = Pipeline.loads(text, allowed_modules=ALLOWED)
        assert loaded.dumps() == text
        assert loaded.get_component("embed").to_dict() == pipeline.get_component("embed").to_dict()

    loaded_indexing = Pipeline.loads(indexing.dumps(), allowed_modules=ALLOWED)
    loaded_query = Pipeline.loads(query.dumps(), allowed_modules=ALLOWED)
    loaded_indexing.run({"embed": {"documents": docs[:6]}})
    got = loaded_query.run({"embed": {"text": "sunscreen"}})["retrieve"]["documents"]
    assert len(got) == 3
    stored = loaded_indexing.get_component("write").document_store.filter_documents()
    assert len(stored) == 6 and {len(d.embedding) for d in stored} == {24}


def test_to_dict_from_dict(model):
    embedder = doc_embedder(model, dimensions=8, batch_size=4, task="separation", late_chunking=True,
                            meta_fields_to_embed=["title"], embedding_separator=" ")
    data = embedder.to_dict()
    assert data == {
        "type": "jinav3.integrations.haystack.JinaV3DocumentEmbedder",
        "init_parameters": {
            "model": model, "device": "cpu", "dtype": "auto", "dimensions": 8, "batch_size": 4,
            "progress_bar": False, "normalize": True, "task": "separation", "meta_fields_to_embed": ["title"],
            "embedding_separator": " ", "late_chunking": True, "revision": None, "cache_dir": None,
            "local_files_only": False, "server_url": None,
            "api_key": {"type": "env_var", "env_vars": ["JINAV3_API_KEY"], "strict": False},
        },
    }
    assert JinaV3DocumentEmbedder.from_dict(data).to_dict() == data
    text = text_embedder(model, dimensions=8)
    assert JinaV3TextEmbedder.from_dict(text.to_dict()).to_dict() == text.to_dict()


def test_revision_cache_dir_local_files_only_and_component_device_serialise(model, tmp_path):
    """Issue 12 item 7: a pipeline file can pin a model revision; a ComponentDevice is stored as Haystack's own
    embedders store it (``device.to_dict()``) and comes back as a ComponentDevice."""
    embedder = JinaV3TextEmbedder(model=model, device=ComponentDevice.from_str("cpu"), revision="main",
                                  cache_dir=str(tmp_path), local_files_only=True)
    data = embedder.to_dict()["init_parameters"]
    assert data["device"] == ComponentDevice.from_str("cpu").to_dict() == {"type": "single", "device": "cpu"}
    assert (data["revision"], data["cache_dir"], data["local_files_only"]) == ("main", str(tmp_path), True)
    again = JinaV3TextEmbedder.from_dict(embedder.to_dict())
    assert isinstance(again.component_device, ComponentDevice) and again.device == "cpu"
    assert again.to_dict() == embedder.to_dict()
    again.warm_up()  # a local folder: revision and the cache do not apply, it loads as it is
    assert len(again.run("tea")["embedding"]) == again.encoder.hidden_size
    missing = JinaV3TextEmbedder(model="jinaai/not-in-any-cache", device="cpu", cache_dir=str(tmp_path),
                                 local_files_only=True)
    with pytest.raises(FileNotFoundError, match="local_files_only"):
        missing.warm_up()
    for argument, value in (("revision", 3), ("cache_dir", ""), ("local_files_only", "yes")):
        with pytest.raises(ValueError, match=f"^{argument}:"):
            JinaV3TextEmbedder(model=model, device="cpu", **{argument: value})


def test_importing_jinav3_imports_no_framework():
    code = ("import sys, jinav3, jinav3.integrations; "
            "print(any(m.split('.')[0] in ('haystack', 'llama_index') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_example_runs(golden_dir):
    env = {**os.environ, "JINAV3_MODEL": str(golden_dir), "HAYSTACK_TELEMETRY_ENABLED": "False"}
    out = subprocess.run([sys.executable, str(REPO / "examples" / "haystack_example.py")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "score" in out.stdout


# ============================================================================================ lexical (issue 25)
def test_sparse_embedders_with_qdrants_hybrid_retriever(model):
    """JinaV3SparseDocumentEmbedder / JinaV3SparseTextEmbedder (the model's tokenizer, BM25 weights) feed
    qdrant-haystack's sparse and hybrid retrievers in real pipelines; both serialise like Haystack's own."""
    from haystack_integrations.components.retrievers.qdrant import (
        QdrantHybridRetriever,
        QdrantSparseEmbeddingRetriever,
    )
    from haystack_integrations.document_stores.qdrant import QdrantDocumentStore

    from jinav3.integrations.haystack import JinaV3SparseDocumentEmbedder, JinaV3SparseTextEmbedder
    from jinav3.sparse import SparseEncoder

    store = QdrantDocumentStore(location=":memory:", embedding_dim=64, use_sparse_embeddings=True, sparse_idf=True)
    indexing = Pipeline()
    indexing.add_component("dense", doc_embedder(model))
    indexing.add_component("sparse", JinaV3SparseDocumentEmbedder(model=model))
    indexing.add_component("writer", DocumentWriter(document_store=store))
    indexing.connect("dense.documents", "sparse.documents")
    indexing.connect("sparse.documents", "writer.documents")
    indexing.run({"dense": {"documents": [Document(id=str(i), content=t) for i, t in enumerate(HYBRID_TEXTS)]}})
    stored = store.filter_documents()
    expected = SparseEncoder.from_pretrained(model).encode_documents(HYBRID_TEXTS)
    for doc in stored:
        assert doc.sparse_embedding.indices == expected[int(doc.id)].indices.tolist()
        assert len(doc.embedding) == 64

    lexical = Pipeline()
    lexical.add_component("sparse", JinaV3SparseTextEmbedder(model=model))
    lexical.add_component("retriever", QdrantSparseEmbeddingRetriever(document_store=store, top_k=3))
    lexical.connect("sparse.sparse_embedding", "retriever.query_sparse_embedding")
    hits = lexical.run({"sparse": {"text": "ZX-4410 Akku"}})["retriever"]["documents"]
    assert hits[0].content == HYBRID_TEXTS[0]  # the rare exact term wins (Qdrant's IDF)

    hybrid = Pipeline()
    hybrid.add_component("dense", text_embedder(model))
    hybrid.add_component("sparse", JinaV3SparseTextEmbedder(model=model))
    hybrid.add_component("retriever", QdrantHybridRetriever(document_store=store, top_k=5))
    hybrid.connect("dense.embedding", "retriever.query_embedding")
    hybrid.connect("sparse.sparse_embedding", "retriever.query_sparse_embedding")
    hits = hybrid.run({"dense": {"text": "ZX-4410 Akku"}, "sparse": {"text": "ZX-4410 Akku"}})["retriever"]["documents"]
    assert len(hits) == 5 and HYBRID_TEXTS[0] in [h.content for h in hits[:2]]

    again = Pipeline.loads(hybrid.dumps(), allowed_modules=ALLOWED + ["haystack_integrations"])
    assert again.get_component("sparse").to_dict() == hybrid.get_component("sparse").to_dict()
    assert JinaV3SparseDocumentEmbedder.from_dict(JinaV3SparseDocumentEmbedder(
        model=model, meta_fields_to_embed=["title"]).to_dict()).meta_fields_to_embed == ["title"]
    with pytest.raises(TypeError, match="expects a string"):
        JinaV3SparseTextEmbedder(model=model).run(text=["a list"])
