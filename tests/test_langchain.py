"""LangChain end to end: JinaV3Embeddings in real vector stores, and late chunking of split documents.

Stores: langchain-core's InMemoryVectorStore, langchain-qdrant's QdrantVectorStore in Qdrant local mode
(":memory:") and langchain-milvus' Milvus on Milvus Lite (a file in tmp_path); every stored vector is
checked against the Encoder it should equal, every search against brute force over those vectors.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from helpers import HYBRID_TEXTS, SAMPLE_QUERIES, sample_passages

pytestmark = pytest.mark.slow  # full tier: LangChain stores end to end


pytest.importorskip("langchain_core", reason="needs the langchain extra: pip install 'jinav3[langchain]'")
pytest.importorskip("langchain_text_splitters", reason="needs the langchain extra: pip install 'jinav3[langchain]'")

from langchain_core.documents import Document  # noqa: E402 - after importorskip
from langchain_core.embeddings import Embeddings  # noqa: E402 - after importorskip
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402 - after importorskip
from langchain_text_splitters import RecursiveCharacterTextSplitter  # noqa: E402 - after importorskip

from jinav3.errors import InvalidArgumentError, install_hint  # noqa: E402 - after importorskip
from jinav3.integrations.langchain import JinaV3Embeddings, LateChunkedEmbeddings  # noqa: E402 - after importorskip

REPO = Path(__file__).resolve().parents[1]
ARTICLES = REPO / "examples" / "data" / "articles"
QUERIES = SAMPLE_QUERIES
EXACT = dict(atol=1e-6, rtol=0)  # the same model on the same inputs: only float noise


@pytest.fixture(scope="module")
def model(golden_dir) -> str:
    return str(golden_dir)


@pytest.fixture(scope="module")
def emb(model) -> JinaV3Embeddings:
    return JinaV3Embeddings(model=model, device="cpu")


def splitter(chunk_size: int = 80) -> RecursiveCharacterTextSplitter:
    # chunk_overlap=0: with late chunking the context comes from the source, not from repeated text
    return RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=0, add_start_index=True)


def split_passages(n: int = 12) -> list[Document]:
    """The first ``n`` sample passages split into several chunks each, every chunk with a uuid ``id``
    (Qdrant takes uuids or integers) and a ``chunk_id`` to recognise it in any store's results."""
    sources = [Document(page_content=p["text"], metadata={"source": p["id"], "topic": p["topic"]})
               for p in sample_passages(n)]
    chunks = splitter().split_documents(sources)
    for number, chunk in enumerate(chunks):
        chunk.metadata["chunk_id"] = f"{chunk.metadata['source']}#{number}"
        chunk.id = str(uuid.uuid5(uuid.NAMESPACE_URL, chunk.metadata["chunk_id"]))
    return chunks


def by_source(chunks: list[Document]) -> dict[str, list[Document]]:
    groups: dict[str, list[Document]] = {}
    for chunk in chunks:
        groups.setdefault(chunk.metadata["source"], []).append(chunk)
    return {source: sorted(group, key=lambda c: c.metadata["start_index"]) for source, group in groups.items()}


def late_chunk_expected(encoder, chunks: list[Document], **kwargs) -> dict[str, np.ndarray]:
    """What late chunking must give each chunk: ``Encoder.late_chunk`` on its source rebuilt from its
    chunks (in text order, joined by a space), with every chunk's span as the chunker."""
    expected = {}
    for group in by_source(chunks).values():
        texts = [c.page_content for c in group]
        joined = " ".join(texts)
        spans, position = [], 0
        for text in texts:
            spans.append((position, position + len(text)))
            position += len(text) + 1
        pieces = encoder.late_chunk(joined, chunker=spans, **kwargs)
        assert [p.text for p in pieces] == texts
        expected.update((c.metadata["chunk_id"], p.embedding) for c, p in zip(group, pieces, strict=True))
    return expected


def scores_by_chunk(chunks: list[Document], vectors: np.ndarray, query: np.ndarray) -> dict[str, float]:
    """Brute force: every chunk's score for ``query`` (cosine: all vectors are unit length)."""
    return dict(zip([c.metadata["chunk_id"] for c in chunks], (np.asarray(vectors) @ query).tolist(), strict=True))


def assert_ranked_like_brute_force(hits: list[tuple[Document, float]], expected: dict[str, float], k: int) -> None:
    """``hits`` (document, score) are the brute-force top k: at each rank that rank's score (ties may swap)."""
    ranked = sorted(expected.values(), reverse=True)[:k]
    ids = [doc.metadata["chunk_id"] for doc, _ in hits]
    assert len(hits) == len(ranked) and len(set(ids)) == len(ids)
    np.testing.assert_allclose([expected[i] for i in ids], ranked, atol=1e-5)
    np.testing.assert_allclose([score for _, score in hits], ranked, atol=1e-4)  # every store here: cosine


# ----------------------------------------------------------------------------- the embeddings alone
def test_documents_and_queries_equal_the_encoder(emb, encoder):
    texts = [p["text"] for p in sample_passages(7)]
    assert isinstance(emb, Embeddings)
    documents = emb.embed_documents(texts)
    np.testing.assert_allclose(documents, encoder.encode_passages(texts), **EXACT)
    assert isinstance(documents, list) and isinstance(documents[0], list) and isinstance(documents[0][0], float)
    for query in QUERIES:
        vector = emb.embed_query(query)
        assert isinstance(vector, list) and isinstance(vector[0], float)
        np.testing.assert_allclose(vector, encoder.encode_queries(query), **EXACT)
    assert emb.embed_documents([]) == []


def test_dimensions_normalize_batch_size_progress_and_tasks(model, encoder):
    texts = [p["text"] for p in sample_passages(7)]
    small = JinaV3Embeddings(model=model, device="cpu", dimensions=16, batch_size=3, show_progress=True)
    np.testing.assert_allclose(small.embed_documents(texts), encoder.encode_passages(texts, dimensions=16), **EXACT)
    np.testing.assert_allclose(small.embed_query("tea"), encoder.encode_queries("tea", dimensions=16), **EXACT)
    symmetric = JinaV3Embeddings(model, device="cpu", query_task="text-matching", passage_task="text-matching",
                                 normalize=False)
    raw = encoder.encode(["tea", "green tea"], task="text-matching", normalize=False)
    np.testing.assert_allclose(symmetric.embed_query("tea"), raw[0], atol=1e-5)
    np.testing.assert_allclose(symmetric.embed_documents(["tea", "green tea"]), raw, atol=1e-5)


def test_async_methods_equal_sync_and_run_in_a_worker_thread(emb, encoder, monkeypatch):
    texts = [p["text"] for p in sample_passages(4)]
    chunks = split_passages(2)
    late_in_this_thread = emb.embed_late_chunks(chunks)
    threads = []
    real = JinaV3Embeddings._embed

    def recording(self, *args, **kwargs):
        threads.append(threading.get_ident())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(JinaV3Embeddings, "_embed", recording)

    async def run():
        return await asyncio.gather(emb.aembed_query("tea"), emb.aembed_documents(texts),
                                    emb.aembed_late_chunks(chunks))

    query, documents, late = asyncio.run(run())
    np.testing.assert_allclose(query, encoder.encode_queries("tea"), **EXACT)
    np.testing.assert_allclose(documents, encoder.encode_passages(texts), **EXACT)
    np.testing.assert_allclose(late, late_in_this_thread, **EXACT)
    assert len(threads) >= 3 and threading.get_ident() not in threads


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"dimensions": 0}, "dimensions: must be a positive integer or None, got 0"),
        ({"dimensions": "8"}, "dimensions: must be a positive integer or None, got '8'"),
        ({"dimensions": True}, "dimensions: must be a positive integer or None, got True"),
        ({"batch_size": 0}, "batch_size: must be a positive integer or None, got 0"),
        ({"normalize": "yes"}, "normalize: must be True or False, got 'yes'"),
        ({"show_progress": 1}, "show_progress: must be True or False, got 1"),
        ({"query_task": "retrieval"}, "query_task: unknown task 'retrieval'"),
        ({"passage_task": "query"}, "passage_task: unknown task 'query'"),
        ({"model": ""}, "model: must be a hub id or a local folder, got ''"),
        ({"device": "gpu0"}, "device: "),
        ({"dtype": "int8"}, "dtype: "),
        ({"dimension": 256}, "dimension: is not a JinaV3Embeddings setting; use one of model, dimensions"),
    ],
)
def test_bad_arguments_fail_at_construction_with_the_library_error(model, settings, message):
    with pytest.raises(InvalidArgumentError) as refused:
        JinaV3Embeddings(**{"model": model, "device": "cpu", **settings})
    assert str(refused.value).startswith(message)


# batch_size is left out: ours also takes None (the token budget alone decides), so its message says so.
@pytest.mark.parametrize("setting, value", [("dimensions", 0), ("dimensions", 2.5), ("normalize", "no"),
                                            ("device", "gpu0"), ("dtype", "int8"), ("model", "")])
def test_the_same_mistake_gets_the_haystack_components_message(model, setting, value):
    pytest.importorskip("haystack", reason="needs the haystack extra")
    from jinav3.integrations.haystack import JinaV3TextEmbedder

    with pytest.raises(InvalidArgumentError) as ours:
        JinaV3Embeddings(**{"model": model, "device": "cpu", setting: value})
    with pytest.raises(InvalidArgumentError) as theirs:
        JinaV3TextEmbedder(**{"model": model, "device": "cpu", setting: value})
    assert str(ours.value) == str(theirs.value)


def test_dimensions_above_the_model_fail_at_construction(model, encoder):
    with pytest.raises(InvalidArgumentError, match="dimensions: must be an integer from 1 to"):
        JinaV3Embeddings(model=model, device="cpu", dimensions=encoder.hidden_size + 1)


def test_wrong_input_types_are_refused_before_any_work(emb):
    with pytest.raises(InvalidArgumentError, match="texts: must be a list of str, got one str"):
        emb.embed_documents("one text")
    with pytest.raises(InvalidArgumentError, match=r"texts\[1\]: must be a str, got int"):
        emb.embed_documents(["fine", 3])
    with pytest.raises(InvalidArgumentError, match="text: must be a str, got list"):
        emb.embed_query(["a query"])
    with pytest.raises(InvalidArgumentError, match=r"documents\[0\]: must be a langchain Document, got str"):
        emb.embed_late_chunks(["plain text"])
    with pytest.raises(InvalidArgumentError, match="source_key: must be a metadata key"):
        emb.embed_late_chunks([], source_key=None)
    with pytest.raises(InvalidArgumentError, match=r"documents\[0\]\.metadata\['source'\]: must name a source"):
        emb.embed_late_chunks([Document(page_content="x", metadata={"source": ["a", "b"]})])


def test_one_encoder_shared_with_llama_index_and_haystack_and_settings_round_trip(model, emb):
    other = JinaV3Embeddings(model=Path(model), device="cpu", dimensions=8)  # a path names the same model
    assert other.encoder is emb.encoder and other.model == model
    try:
        from jinav3.integrations.llama_index import JinaV3Embedding
    except ImportError:
        pass
    else:
        assert JinaV3Embedding(model_name=model, device="cpu").encoder is emb.encoder
    try:
        from jinav3.integrations.haystack import JinaV3DocumentEmbedder
    except ImportError:
        pass
    else:
        embedder = JinaV3DocumentEmbedder(model=model, device="cpu")
        embedder.warm_up()
        assert embedder.encoder is emb.encoder

    settings = other.model_dump()
    assert settings == {"model": model, "dimensions": 8, "normalize": True, "batch_size": None, "device": "cpu",
                        "dtype": "auto", "show_progress": False, "query_task": None, "passage_task": None,
                        "revision": None, "cache_dir": None, "local_files_only": False, "server_url": None}
    assert other.model_dump(exclude_unset=True) == {"model": model, "device": "cpu", "dimensions": 8}
    again = JinaV3Embeddings(**settings)
    assert again.model_dump() == settings and again.encoder is emb.encoder
    unpickled = pickle.loads(pickle.dumps(other))  # settings only: the model comes from the shared cache
    assert unpickled.model_dump() == settings and unpickled.encoder is emb.encoder
    assert len(pickle.dumps(other)) < 2_000
    for copied in (copy.deepcopy(other), other.model_copy(deep=True), other.model_copy(update={"dimensions": 4})):
        assert copied.encoder is emb.encoder  # copies share the model, never load or copy it again
    assert JinaV3Embeddings.model_validate(settings).encoder is emb.encoder  # pydantic's way in, no __init__


def test_missing_langchain_extra_gives_the_install_hint():
    code = ("import sys\n"
            "sys.modules['langchain_core'] = None  # as if not installed\n"
            "try:\n"
            "    import jinav3.integrations.langchain\n"
            "except ImportError as error:\n"
            "    print(error)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "JinaV3Embeddings needs langchain-core: " + install_hint("langchain")


# ----------------------------------------------------------------------------- real vector stores
@pytest.fixture(params=["in-memory", "qdrant", "milvus"])
def store_kind(request) -> str:
    if request.param == "qdrant":
        pytest.importorskip("langchain_qdrant", reason="needs langchain-qdrant (the langchain extra)")
    if request.param == "milvus":
        pytest.importorskip("langchain_milvus", reason="needs langchain-milvus (the langchain extra)")
    return request.param


class Stores:
    """Each store made from documents (the store embeds them) or given precomputed vectors, and read back."""

    def __init__(self, kind: str, tmp_path: Path, dim: int):
        self.kind, self.tmp_path, self.dim = kind, tmp_path, dim
        self.opened: list = []

    def from_documents(self, documents: list[Document], embedding: Embeddings):
        ids = [d.id for d in documents]
        if self.kind == "in-memory":
            store = InMemoryVectorStore.from_documents(documents, embedding, ids=ids)
        elif self.kind == "qdrant":
            from langchain_qdrant import QdrantVectorStore

            store = QdrantVectorStore.from_documents(documents, embedding, ids=ids, location=":memory:",
                                                     collection_name="docs")
        else:
            from langchain_milvus import Milvus

            store = Milvus.from_documents(documents, embedding, ids=ids, **self._milvus_settings())
        self.opened.append(store)
        return store

    def from_embeddings(self, documents: list[Document], vectors: list[list[float]], embedding: Embeddings):
        """langchain-milvus' add_embeddings: what a store that takes precomputed vectors offers."""
        from langchain_milvus import Milvus

        store = Milvus(embedding, **self._milvus_settings())
        store.add_embeddings([d.page_content for d in documents], vectors, metadatas=[d.metadata for d in documents],
                             ids=[d.id for d in documents])
        self.opened.append(store)
        return store

    def _milvus_settings(self) -> dict:
        # COSINE: langchain-milvus defaults to L2; a FLAT index searches exactly, as brute force does
        return dict(connection_args={"uri": str(self.tmp_path / "milvus.db")}, collection_name="docs",
                    index_params={"index_type": "FLAT", "metric_type": "COSINE"}, drop_old=True)

    def vectors(self, store, ids: list[str]) -> np.ndarray:
        """The stored vectors of ``ids``, read back from the database."""
        if self.kind == "in-memory":
            return np.array([store.store[i]["vector"] for i in ids])
        if self.kind == "qdrant":
            points = {str(p.id): p.vector for p in store.client.retrieve("docs", ids, with_vectors=True)}
            return np.array([points[i] for i in ids])
        rows = {r["pk"]: r["vector"] for r in store.client.get("docs", ids=ids, output_fields=["pk", "vector"])}
        return np.array([rows[i] for i in ids])

    def close(self) -> None:
        for store in self.opened:
            if self.kind == "milvus":
                store.client.close()
            elif self.kind == "qdrant":
                store.client.close()


@pytest.fixture
def stores(store_kind, tmp_path, encoder):
    made = Stores(store_kind, tmp_path, encoder.hidden_size)
    yield made
    made.close()


def test_stored_vectors_are_passages_and_search_is_brute_force_over_queries(emb, encoder, stores):
    chunks = split_passages()
    assert len(chunks) > 12  # the splitter made several chunks of most passages
    store = stores.from_documents(chunks, emb)
    passages = encoder.encode_passages([c.page_content for c in chunks])
    np.testing.assert_allclose(stores.vectors(store, [c.id for c in chunks]), passages, atol=1e-5)
    k = 5
    for query in QUERIES:
        scores = scores_by_chunk(chunks, passages, encoder.encode_queries(query))
        assert_ranked_like_brute_force(store.similarity_search_with_score(query, k=k), scores, k)
        found = store.similarity_search(query, k=k)
        assert [d.metadata["chunk_id"] for d in found] == \
               [d.metadata["chunk_id"] for d, _ in store.similarity_search_with_score(query, k=k)]


def test_async_search_through_the_store(emb, encoder):
    chunks = split_passages(6)

    async def run():
        store = await InMemoryVectorStore.afrom_documents(chunks, emb, ids=[c.id for c in chunks])
        return store, await store.asimilarity_search_with_score(QUERIES[0], k=3)

    store, hits = asyncio.run(run())
    passages = encoder.encode_passages([c.page_content for c in chunks])
    np.testing.assert_allclose([store.store[c.id]["vector"] for c in chunks], passages, **EXACT)
    scores = scores_by_chunk(chunks, passages, encoder.encode_queries(QUERIES[0]))
    assert_ranked_like_brute_force(hits, scores, 3)


# ----------------------------------------------------------------------------- late chunking
def test_late_chunks_equal_late_chunk_on_the_joined_source(emb, encoder):
    chunks = split_passages()
    expected = late_chunk_expected(encoder, chunks)
    assert max(len(group) for group in by_source(chunks).values()) > 2
    shuffled = chunks[::-1]  # arrival order must not matter: start_index decides
    got = emb.embed_late_chunks(shuffled)
    np.testing.assert_allclose(got, [expected[c.metadata["chunk_id"]] for c in shuffled], **EXACT)
    alone = encoder.encode_passages([c.page_content for c in shuffled])
    assert not np.allclose(got, alone, atol=1e-3)  # the context changed the vectors


def test_late_chunks_of_a_long_article_several_articles_at_once(emb, encoder):
    articles = [Document(page_content=p.read_text(encoding="utf-8"), metadata={"source": p.name})
                for p in sorted(ARTICLES.glob("*.md"))]
    chunks = splitter(chunk_size=300).split_documents(articles)  # English, German and Chinese
    for number, chunk in enumerate(chunks):
        chunk.metadata["chunk_id"] = f"{chunk.metadata['source']}#{number}"
    assert len(chunks) > 30 and len(by_source(chunks)) == 3
    expected = late_chunk_expected(encoder, chunks)
    np.testing.assert_allclose(emb.embed_late_chunks(chunks), [expected[c.metadata["chunk_id"]] for c in chunks],
                               **EXACT)


def test_late_chunks_strays_blanks_other_keys_and_dimensions(model, encoder):
    emb = JinaV3Embeddings(model=model, device="cpu", dimensions=32)
    parts = ["Gutenberg was a goldsmith from Mainz.", "Around 1450 he built a press.", "It printed Bibles."]
    chunks = [Document(page_content=text, metadata={"doc": "press"}) for text in parts]  # no start_index: input order
    strays = [Document(page_content="a chunk without a source"),
              Document(page_content="   ", metadata={"doc": "press"})]  # blank: nothing to pool
    got = emb.embed_late_chunks([strays[0], *chunks, strays[1]], source_key="doc")
    late = encoder.encode(parts, task="retrieval.passage", late_chunking=True, dimensions=32)
    np.testing.assert_allclose(got[1:4], late, **EXACT)
    np.testing.assert_allclose([got[0], got[4]], encoder.encode_passages([s.page_content for s in strays],
                                                                          dimensions=32), **EXACT)
    # the default key "source" is absent here: every chunk is embedded on its own
    np.testing.assert_allclose(emb.embed_late_chunks(chunks), encoder.encode_passages(parts, dimensions=32), **EXACT)
    assert emb.embed_late_chunks([]) == []


def test_late_chunked_embeddings_hand_out_each_vector_once(emb, encoder):
    first = Document(page_content="Introduction", metadata={"source": "a", "start_index": 0})
    second = Document(page_content="Introduction", metadata={"source": "b", "start_index": 0})
    rest = [Document(page_content="Tea came from China.", metadata={"source": "a", "start_index": 13}),
            Document(page_content="Presses came from Mainz.", metadata={"source": "b", "start_index": 13})]
    documents = [first, second, *rest]
    late = emb.with_late_chunks(documents)
    assert isinstance(late, LateChunkedEmbeddings) and late.waiting == 4
    vectors = emb.embed_late_chunks(documents)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-3)  # same text, different sources
    # a store asks in its own batches; same-text chunks get their own vectors, in document order
    got = late.embed_documents(["Introduction", "Tea came from China."]) + late.embed_documents(
        ["Introduction", "Presses came from Mainz.", "an unknown text"])
    np.testing.assert_allclose(got[:4], [vectors[0], vectors[2], vectors[1], vectors[3]], **EXACT)
    np.testing.assert_allclose(got[4], encoder.encode_passages("an unknown text"), **EXACT)
    assert late.waiting == 0
    np.testing.assert_allclose(late.embed_documents(["Introduction"]), encoder.encode_passages(["Introduction"]),
                               **EXACT)  # handed out once: now a plain passage
    np.testing.assert_allclose(late.embed_query("tea"), encoder.encode_queries("tea"), **EXACT)
    np.testing.assert_allclose(asyncio.run(late.aembed_query("tea")), encoder.encode_queries("tea"), **EXACT)


def test_late_chunked_vectors_in_real_stores_and_search(emb, encoder, stores):
    chunks = split_passages(8)
    expected = late_chunk_expected(encoder, chunks)
    if stores.kind == "milvus":  # takes precomputed vectors: add_embeddings
        store = stores.from_embeddings(chunks, emb.embed_late_chunks(chunks), emb)
    else:  # embeds documents itself: give it the late-chunked vectors to hand out
        late = emb.with_late_chunks(chunks)
        store = stores.from_documents(chunks, late)
        assert late.waiting == 0
    late_vectors = np.array([expected[c.metadata["chunk_id"]] for c in chunks])
    np.testing.assert_allclose(stores.vectors(store, [c.id for c in chunks]), late_vectors, atol=1e-5)
    for query in QUERIES[:2]:
        scores = scores_by_chunk(chunks, late_vectors, encoder.encode_queries(query))
        assert_ranked_like_brute_force(store.similarity_search_with_score(query, k=4), scores, 4)


# ============================================================================================ lexical (issue 25)
def test_sparse_embeddings_in_qdrant_hybrid_and_sparse_retrieval(model, emb):
    """JinaV3SparseEmbeddings implements langchain-qdrant's SparseEmbeddings: QdrantVectorStore in SPARSE and
    HYBRID retrieval modes (IDF on the collection's sparse vector), end to end."""
    from langchain_qdrant import QdrantVectorStore, RetrievalMode, SparseEmbeddings
    from qdrant_client import models

    from jinav3.integrations.langchain import JinaV3SparseEmbeddings
    from jinav3.sparse import SparseEncoder

    sparse = JinaV3SparseEmbeddings(model=model)
    assert isinstance(sparse, SparseEmbeddings)
    expected = SparseEncoder.from_pretrained(model).encode_documents(HYBRID_TEXTS)
    got = sparse.embed_documents(HYBRID_TEXTS)
    assert [v.indices for v in got] == [e.indices.tolist() for e in expected]
    assert set(sparse.embed_query("Akku Akku").values) == {1.0}
    idf = {"modifier": models.Modifier.IDF}
    lexical = QdrantVectorStore.from_texts(HYBRID_TEXTS, sparse_embedding=sparse, location=":memory:",
                                           collection_name="sparse", retrieval_mode=RetrievalMode.SPARSE,
                                           sparse_vector_params=idf)
    assert lexical.similarity_search("ZX-4410 Akku", k=1)[0].page_content == HYBRID_TEXTS[0]
    hybrid = QdrantVectorStore.from_texts(HYBRID_TEXTS, emb, sparse_embedding=sparse, location=":memory:",
                                          collection_name="hybrid", retrieval_mode=RetrievalMode.HYBRID,
                                          sparse_vector_params=idf)
    hits = hybrid.similarity_search("ZX-4410 Akku", k=5)
    assert len(hits) == 5 and HYBRID_TEXTS[0] in [h.page_content for h in hits[:2]]
    assert repr(sparse) == f"JinaV3SparseEmbeddings(model={model!r})"
