"""RemoteEncoder against a real ``jinav3 serve`` subprocess on 127.0.0.1 with the golden tiny model.

Every vector is compared with the local ``Encoder`` of the same model; the store contract suite runs with
stores filled through the server and expectations from the local encoder; the CLI, Haystack and LlamaIndex
go through it too. Retries and refusals are driven by a scripted HTTP stand-in (tests/servers.py). A live
test against the hosted Jina API runs only when JINA_API_KEY or JINAAI_API_KEY is set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from servers import StandIn, jina_answer, jinav3_serve  # noqa: E402
from test_store_common import DOCUMENTS, StoreContract, corpus  # noqa: E402

from jinav3 import RemoteEncoder, TextEncoder  # noqa: E402
from jinav3.errors import InvalidArgumentError, PartialWriteError, RemoteError, SignatureMismatchError  # noqa: E402

pytestmark = pytest.mark.slow  # a real server subprocess: the full tier (pytest --full)

KEY = "srv-K3y-5ecret-0b9d"
ATOL = dict(atol=1e-5, rtol=0)
TEXTS = ["Sunscreen should be reapplied every two hours.", "Kompost braucht Luft und Feuchtigkeit.", "茶道の歴史",
         "", "a short one"]
DOC = ("The printing press changed Europe.  Books became cheap.\nLiteracy spread quickly! Scholars could compare "
       "texts. Ideas moved faster than ever.")


@pytest.fixture(scope="module")
def server(golden_dir):
    with jinav3_serve(golden_dir, "--api-key-env", "JINAV3_TEST_SERVE_KEY", JINAV3_TEST_SERVE_KEY=KEY) as served:
        yield served


@pytest.fixture(scope="module")
def remote(server):
    with RemoteEncoder(server.url, api_key=KEY, backoff=0.05) as enc:
        yield enc


# ============================================================================================ vectors
def test_it_speaks_the_protocol_and_names_the_servers_model(remote, encoder):
    assert isinstance(remote, TextEncoder)
    assert remote.name == encoder.name and remote.hidden_size == encoder.hidden_size
    assert remote.max_length == encoder.max_length and remote.output_size(16) == 16
    assert all(remote.instruction(t) == encoder.instruction(t) for t in remote.info.instructions)


@pytest.mark.parametrize("kwargs", [
    dict(), dict(task="retrieval.query"), dict(task="retrieval.passage", dimensions=16), dict(task=None),
    dict(normalize=False), dict(task="retrieval.passage", max_length=6),
    dict(task=["separation", "classification", "text-matching", "retrieval.query", "retrieval.passage"] * 9),
])
def test_vectors_equal_the_local_encoder(remote, encoder, kwargs):
    texts = TEXTS * 9  # batch_size=4: 12 requests, 4 in flight, reassembled in order
    np.testing.assert_allclose(remote.encode(texts, batch_size=4, **kwargs), encoder.encode(texts, **kwargs), **ATOL)


def test_single_text_empty_list_late_chunking_and_async(remote, encoder):
    assert remote.encode("one").shape == (encoder.hidden_size,)
    assert remote.encode([], dimensions=8).shape == (0, 8)
    pieces = TEXTS[:3]
    np.testing.assert_allclose(remote.encode(pieces, late_chunking=True, task="retrieval.passage"),
                               encoder.encode(pieces, late_chunking=True, task="retrieval.passage"), **ATOL)
    np.testing.assert_allclose(remote.encode(pieces, late_chunking=True, window=6, overlap=2),
                               encoder.encode(pieces, late_chunking=True, window=6, overlap=2), **ATOL)
    got = asyncio.run(remote.aencode(TEXTS * 5, task="retrieval.query", dimensions=32, batch_size=3))
    np.testing.assert_allclose(got, encoder.encode(TEXTS * 5, task="retrieval.query", dimensions=32), **ATOL)


@pytest.mark.parametrize("kwargs", [dict(), dict(chunker="tokens", chunk_size=3), dict(chunker=[(0, 10), (12, 54)]),
                                    dict(window=8, overlap=2, dimensions=16), dict(task="text-matching")])
def test_late_chunks_equal_the_local_encoder(remote, encoder, kwargs):
    many = [DOC, "   ", DOCUMENTS[1]["text"], DOCUMENTS[2]["text"]]
    docs = [DOC] if isinstance(kwargs.get("chunker"), list) else many
    got, expected = remote.late_chunk_documents(docs, **kwargs), encoder.late_chunk_documents(docs, **kwargs)
    assert [[(c.index, c.text, c.start, c.end) for c in d] for d in got] == \
           [[(c.index, c.text, c.start, c.end) for c in d] for d in expected]
    for g, e in zip(got, expected, strict=True):
        for a, b in zip(g, e, strict=True):
            np.testing.assert_allclose(a.embedding, b.embedding, **ATOL)
    plan = {k: v for k, v in kwargs.items() if k in ("chunker", "chunk_size", "task")}
    assert remote.chunk_spans(docs, **plan) == encoder.chunk_spans(docs, **plan)  # tokens: via /tokenize


@pytest.mark.parametrize("call, argument", [
    (lambda r: r.encode(["a"], task="nope"), "task"),
    (lambda r: r.encode(["a", "b"], task=["retrieval.query"]), "task"),
    (lambda r: r.encode(["a"], dimensions=10_000), "dimensions"),
    (lambda r: r.encode(["a"], max_length=1), "max_length"),
    (lambda r: r.encode(["a"], normalize="yes"), "normalize"),
    (lambda r: r.encode([3]), "texts[0]"),
    (lambda r: r.encode(["a", " "], late_chunking=True), "texts[1]"),
    (lambda r: r.encode(["a"], window=8), "window"),
    (lambda r: r.late_chunk_documents(["a"], chunker="tokens"), "chunk_size"),
    (lambda r: r.late_chunk_documents(["a", "b"], chunker=[(0, 1)]), "chunker"),
    (lambda r: r.late_chunk("abc", chunker=[(0, 9)]), "chunker[0]"),
])
def test_bad_arguments_fail_before_any_request_as_locally(remote, encoder, call, argument):
    with pytest.raises(InvalidArgumentError) as local:
        call(encoder)
    with pytest.raises(InvalidArgumentError) as got:
        call(remote)
    # the same argument named, as the local encoder names it (the wording is the library's; see core/validation.py)
    assert str(got.value).startswith(argument + ":") and str(local.value).startswith(argument + ":")


# ============================================================================================ stores
def _remote_backend(inner, remote):
    """``inner`` (a store test backend) with every store filled through ``remote``: the contract's
    expectations still come from the local ``encoder`` fixture."""
    make = inner.make
    inner.make = lambda encoder, name, **kwargs: make(remote, name, **kwargs)
    inner.name = f"{inner.name} via jinav3 serve"
    return inner


@pytest.fixture(scope="module", params=["qdrant-local", "milvus-lite"])
def backend(request, tmp_path_factory, remote):
    if request.param == "qdrant-local":
        pytest.importorskip("qdrant_client")
        from qdrant_client import QdrantClient
        from test_qdrant_store import QdrantBackend

        client = QdrantClient(path=str(tmp_path_factory.mktemp("qdrant")))
        inner = QdrantBackend("qdrant local", client, True)
    else:
        pytest.importorskip("pymilvus")
        from pymilvus import MilvusClient
        from test_milvus_store import MilvusBackend

        client = MilvusClient(uri=str(tmp_path_factory.mktemp("milvus-lite") / "milvus.db"))
        inner = MilvusBackend("lite", client)
    yield _remote_backend(inner, remote)
    inner.cleanup()
    client.close()


class TestStoresThroughTheServer(StoreContract):
    """The whole store contract, with stores filled and searched through RemoteEncoder."""


def test_collections_are_shared_between_server_and_local_encoder(remote, encoder):
    pytest.importorskip("qdrant_client")
    from qdrant_client import QdrantClient

    from jinav3.integrations.qdrant import QdrantStore

    client = QdrantClient(location=":memory:")
    QdrantStore(remote, "through-server", client=client, dimensions=32).add(corpus(6))
    local = QdrantStore(encoder, "through-server", client=client, dimensions=32)
    hits = local.search("how often should sunscreen be reapplied?", top_k=3)
    back = QdrantStore(remote, "through-server", client=client, dimensions=32)
    assert [h.id for h in back.search("how often should sunscreen be reapplied?", top_k=3)] == [h.id for h in hits]
    QdrantStore(encoder, "local-first", client=client).add(corpus(3))
    assert QdrantStore(remote, "local-first", client=client).count() == 3
    with pytest.raises(SignatureMismatchError, match="other/model"):  # another model is still refused
        QdrantStore(remote, "local-first", client=client, model_name="other/model")
    with pytest.raises(RemoteError, match="serves"):  # a server of another model than expected
        QdrantStore(RemoteEncoder(remote.base_url, api_key=KEY, model_identity="other/model"), "x", client=client)


def test_hybrid_collections_next_to_a_remote_encoder(remote, encoder, golden_dir):
    """Issue 25: the lexical side needs only the model's tokenizer, so a hybrid store works with the dense side
    on a server; the tokenizer comes from sparse_encoder=, and a model that gives none is named before opening."""
    pytest.importorskip("qdrant_client")
    from qdrant_client import QdrantClient

    from jinav3.errors import InvalidArgumentError
    from jinav3.integrations.qdrant import QdrantStore
    from jinav3.sparse import SparseEncoder

    client = QdrantClient(location=":memory:")
    texts = ["Der ZX-4410 Akku hält zehn Stunden.", "Der Akku im Garten ist leer.", "Rain fills the old cistern."]
    through = QdrantStore(remote, "hybrid", client=client, dimensions=32, hybrid=True,
                          sparse_encoder=SparseEncoder.from_pretrained(golden_dir))
    through.add([{"id": str(i), "text": t} for i, t in enumerate(texts)])
    assert through.search("ZX-4410 Akku", mode="sparse")[0].id == "0"
    local = QdrantStore(encoder, "hybrid", client=client, dimensions=32)  # the same collection, locally
    for mode in ("dense", "sparse", "hybrid"):
        assert [h.id for h in local.search("Akku", mode=mode)] == [h.id for h in through.search("Akku", mode=mode)]
    assert remote.name.startswith("sha256:")  # a server of a local folder names it by fingerprint: no tokenizer
    with pytest.raises(InvalidArgumentError, match="^sparse_encoder: the encoder has no tokenizer here"):
        QdrantStore(remote, "hybrid", client=client, dimensions=32)


def test_a_server_killed_mid_add_is_a_partial_write_and_a_rerun_finishes(golden_dir):
    pytest.importorskip("qdrant_client")
    from qdrant_client import QdrantClient

    from jinav3.integrations.qdrant import QdrantStore

    records = corpus(12)
    with jinav3_serve(golden_dir) as served:
        enc = RemoteEncoder(served.url, retries=1, backoff=0.01, connect_timeout=2)
        store = QdrantStore(enc, "killed", client=QdrantClient(location=":memory:"), batch_size=4, overlap_writes=False)
        upsert = store._upsert

        def upsert_then_kill(points):
            upsert(points)
            served.kill()  # after the first batch is written: the next batch's embedding finds no server

        store._upsert = upsert_then_kill
        with pytest.raises(PartialWriteError) as e:
            store.add(records)
        assert e.value.written_ids == [r["id"] for r in records[:4]]
        assert e.value.failed_ids == [r["id"] for r in records[4:]]
        assert "could not be reached" in str(e.value) and store.count() == 4
        served.start()  # the same port
        store._upsert = upsert
        store.add(records)
        assert store.count() == 12  # nothing duplicated
        assert sorted(h.id for h in store.get([r["id"] for r in records], with_vectors=False)) == \
               sorted(r["id"] for r in records)


# ============================================================================================ retries, refusals
def test_429_and_503_are_retried_honouring_retry_after():
    script = [(429, {"detail": "slow down"}, {"Retry-After": "0.3"}), (503, {"detail": "busy"}, {}),
              (502, {"detail": "gateway"}, {})]
    with StandIn(script, jina_answer) as stand_in:
        enc = RemoteEncoder(stand_in.url, api_key=KEY, backoff=0.01, model_identity="some/model")
        vectors = enc.encode(["a", "b"], dimensions=8)
    assert vectors.shape == (2, 8) and list(vectors[:, 0]) == [1.0, 2.0]
    assert len(stand_in.requests) == 4 and stand_in.times[1] - stand_in.times[0] >= 0.29
    assert enc.name == "some/model"  # a server without jinav3's /info: the identity given
    body = stand_in.requests[-1]
    assert body["input"] == ["a", "b"] and body["dimensions"] == 8 and body["embedding_type"] == "float"
    assert stand_in.headers[-1]["Authorization"] == f"Bearer {KEY}"


def test_a_4xx_is_not_retried_and_names_the_servers_message_without_the_key(caplog):
    def echo_key(body):  # a server that quotes what it got, as some do
        return 400, {"detail": f"bad request (your key was {KEY})"}, {}

    with StandIn([], echo_key) as stand_in:
        enc = RemoteEncoder(stand_in.url, api_key=KEY, backoff=0.01)
        with pytest.raises(RemoteError) as e:
            enc.encode(["a"])
    assert len(stand_in.requests) == 1 and e.value.status == 400
    assert "bad request" in str(e.value) and KEY not in str(e.value) and KEY not in repr(e.value.__dict__)


def test_retries_give_up_with_a_clear_error(caplog):
    with StandIn([], lambda body: (503, {"detail": "down for maintenance"}, {})) as stand_in:
        enc = RemoteEncoder(stand_in.url, retries=2, backoff=0.01)
        with caplog.at_level(logging.WARNING, "jinav3.remote"), pytest.raises(RemoteError) as e:
            enc.encode(["a"])
    assert len(stand_in.requests) == 3 and "down for maintenance" in str(e.value) and e.value.status == 503
    assert len([r for r in caplog.records if "retry" in r.getMessage()]) == 2
    dead = RemoteEncoder(stand_in.url, retries=1, backoff=0.01, connect_timeout=1)  # nothing listens any more
    with pytest.raises(RemoteError, match="could not be reached"):
        dead.encode(["a"])


def test_a_wrong_key_is_a_401_naming_where_the_key_comes_from(server):
    with pytest.raises(RemoteError) as e:
        RemoteEncoder(server.url, api_key="wrong-key-123").encode(["a"])
    assert e.value.status == 401 and "API key" in str(e.value) and "wrong-key-123" not in str(e.value)


def test_the_hosted_api_limits_apply_without_jinav3_extensions():
    with StandIn([], lambda body: jina_answer(body, 1024)) as stand_in:
        enc = RemoteEncoder(stand_in.url)
        assert enc.name == "jinaai/jina-embeddings-v3" and enc.hidden_size == 1024
        with pytest.raises(InvalidArgumentError, match="^chunker:"):
            enc.late_chunk_documents([DOC], chunker="tokens", chunk_size=4)
        with pytest.raises(InvalidArgumentError, match="^max_length:"):
            enc.encode(["a"], max_length=16)
        with pytest.raises(InvalidArgumentError, match="^window:"):
            enc.encode(["a"], late_chunking=True, window=16)
        chunks = enc.late_chunk(DOC)  # the chunks' texts as the pieces of one late-chunking request
        assert [c.text for c in chunks] == stand_in.requests[-1]["input"] and stand_in.requests[-1]["late_chunking"]


def test_a_document_past_the_hosted_context_is_refused_or_windowed():
    def refuse_long(body):
        if body.get("late_chunking") and len(body["input"]) > 2:
            return 422, {"detail": "input exceeds the maximum of 8192 tokens"}, {}
        return jina_answer(body, 1024)

    with StandIn([], refuse_long) as stand_in:
        with pytest.raises(InvalidArgumentError, match=r"^documents\[0\]: is too long .*long_documents='windows'"):
            RemoteEncoder(stand_in.url).late_chunk(DOC)
        chunks = RemoteEncoder(stand_in.url, long_documents="windows").late_chunk(DOC)
    assert len(chunks) == 5 and [c.index for c in chunks] == list(range(5))
    assert [len(r["input"]) for r in stand_in.requests[-4:]] == [2, 3, 1, 2]  # halved until each fits


# ============================================================================================ secrets
def test_the_key_is_in_no_repr_pickle_or_message(server, monkeypatch):
    enc = RemoteEncoder(server.url, api_key=KEY)
    assert KEY not in repr(enc) and KEY not in str(enc.__dict__.get("url"))
    assert KEY.encode() not in pickle.dumps(enc)
    monkeypatch.setenv("JINAV3_API_KEY", KEY)  # an unpickled copy reads the key from the environment
    copy = pickle.loads(pickle.dumps(enc))
    assert copy.has_api_key and copy.encode("x").shape == (copy.hidden_size,)
    from jinav3.integrations import _encoder_cache

    a = _encoder_cache.get_encoder("m", server_url=server.url, api_key=KEY)
    assert a is _encoder_cache.get_encoder("m", server_url=server.url, api_key=KEY)
    assert a is not _encoder_cache.get_encoder("m", server_url=server.url, api_key=KEY + "x")
    assert not any(KEY in str(k) for k in _encoder_cache._encoders)


# ============================================================================================ CLI
def test_cli_index_and_search_through_the_server(server, encoder, tmp_path, monkeypatch, capsys):
    from jinav3.integrations.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JINAV3_API_KEY", KEY)
    corpus_file = tmp_path / "docs.jsonl"
    corpus_file.write_text("\n".join(json.dumps(r) for r in corpus(8)), encoding="utf-8")
    assert main(["index", str(corpus_file), "--server", server.url, "--quiet", "--late-chunking"]) == 0
    assert main(["index", str(corpus_file), "--server", server.url, "--quiet", "--collection", "whole"]) == 0
    out = capsys.readouterr()
    assert "Indexed 8 documents" in out.out and KEY not in out.out + out.err
    assert main(["search", "sunscreen", "--server", server.url, "--json", "--collection", "whole"]) == 0
    via_server = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["search", "sunscreen", "--model", str(encoder.checkpoint.source), "--device", "cpu", "--json",
                 "--collection", "whole"]) == 0  # the same collection with the local model
    local = json.loads(capsys.readouterr().out)
    assert [h["id"] for h in via_server] == [h["id"] for h in local]
    np.testing.assert_allclose([h["score"] for h in via_server], [h["score"] for h in local], atol=1e-4)
    assert main(["search", "x", "--server", server.url, "--model", "m"]) == 2
    assert "--server: the server chooses" in capsys.readouterr().err
    monkeypatch.delenv("JINAV3_API_KEY")
    monkeypatch.setenv("MY_SERVE_KEY", KEY)
    assert main(["search", "x", "--server", server.url, "--api-key-env", "MY_SERVE_KEY", "--collection", "whole"]) == 0
    monkeypatch.setenv("MY_SERVE_KEY", "not-the-key-42")
    assert main(["search", "x", "--server", server.url, "--server-api-key-env", "MY_SERVE_KEY"]) == 1
    err = capsys.readouterr().err
    assert "401" in err and "not-the-key-42" not in err and KEY not in err
    monkeypatch.setenv("JINAV3_API_KEY", KEY)
    assert main(["info"]) == 0
    shown = capsys.readouterr().out
    assert "JINAV3_API_KEY" in shown and "set (value hidden)" in shown and KEY not in shown


# ============================================================================================ frameworks
def test_haystack_pipeline_through_the_server(server, encoder, monkeypatch):
    pytest.importorskip("haystack")
    from haystack import Document, Pipeline
    from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
    from haystack.components.writers import DocumentWriter
    from haystack.document_stores.in_memory import InMemoryDocumentStore
    from haystack.utils import Secret

    from jinav3.integrations.haystack import JinaV3DocumentEmbedder, JinaV3TextEmbedder

    monkeypatch.setenv("JINAV3_API_KEY", KEY)
    docs = [Document(content=r["text"], id=r["id"]) for r in corpus(6)]
    store = InMemoryDocumentStore(embedding_similarity_function="cosine")
    indexing = Pipeline()
    indexing.add_component("embedder", JinaV3DocumentEmbedder(server_url=server.url, progress_bar=False))
    indexing.add_component("writer", DocumentWriter(store))
    indexing.connect("embedder", "writer")
    indexing.run({"embedder": {"documents": docs}})
    stored = {d.id: d.embedding for d in store.filter_documents()}
    expected = encoder.encode([d.content for d in docs], task="retrieval.passage")
    np.testing.assert_allclose([stored[d.id] for d in docs], expected, **ATOL)
    query = Pipeline()
    text = JinaV3TextEmbedder(server_url=server.url, api_key=Secret.from_env_var("JINAV3_API_KEY"), dimensions=None)
    query.add_component("text", text)
    query.add_component("retriever", InMemoryEmbeddingRetriever(store))
    query.connect("text.embedding", "retriever.query_embedding")
    hits = query.run({"text": {"text": "sunscreen"}})["retriever"]["documents"]
    assert hits and hits[0].id in stored
    data = text.to_dict()
    assert KEY not in json.dumps(data) and data["init_parameters"]["api_key"]["env_vars"] == ["JINAV3_API_KEY"]
    again = JinaV3TextEmbedder.from_dict(data)
    np.testing.assert_allclose(again.run("tea")["embedding"], encoder.encode("tea", task="retrieval.query"), **ATOL)
    got = asyncio.run(again.run_async("tea"))["embedding"]
    np.testing.assert_allclose(got, encoder.encode("tea", task="retrieval.query"), **ATOL)
    with pytest.raises(ValueError):  # Haystack refuses to serialise a token Secret: the key never lands in YAML
        JinaV3TextEmbedder(server_url=server.url, api_key=Secret.from_token(KEY)).to_dict()


def test_llama_index_through_the_server(server, encoder, monkeypatch):
    pytest.importorskip("llama_index.core")
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.bridge.pydantic import SecretStr
    from llama_index.core.node_parser import SentenceSplitter

    from jinav3.integrations.llama_index import JinaV3Embedding, JinaV3LateChunkingTransform

    embed = JinaV3Embedding(server_url=server.url, api_key=SecretStr(KEY))
    assert KEY not in embed.to_json() and KEY not in repr(embed) and KEY.encode() not in pickle.dumps(embed)
    assert embed.api_key is not None  # pickling left the original alone
    np.testing.assert_allclose(embed.get_query_embedding("tea"), encoder.encode("tea", task="retrieval.query"), **ATOL)
    got = asyncio.run(embed.aget_text_embedding_batch(TEXTS))
    np.testing.assert_allclose(got, encoder.encode(TEXTS, task="retrieval.passage"), **ATOL)
    index = VectorStoreIndex.from_documents([Document(text=r["text"], id_=r["id"]) for r in corpus(5)],
                                            embed_model=embed)
    assert index.as_retriever(similarity_top_k=2).retrieve("sunscreen")
    split = SentenceSplitter(chunk_size=24, chunk_overlap=0).get_nodes_from_documents([Document(text=DOC, id_="d")])
    nodes = JinaV3LateChunkingTransform(embed_model=embed)(split)
    expected = encoder.encode([n.get_content() for n in nodes], task="retrieval.passage", late_chunking=True)
    np.testing.assert_allclose([n.embedding for n in nodes], expected, **ATOL)


def test_langchain_through_the_server(server, encoder):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document
    from langchain_core.vectorstores import InMemoryVectorStore

    from jinav3.integrations.langchain import JinaV3Embeddings

    emb = JinaV3Embeddings(server_url=server.url, api_key=KEY)
    assert KEY not in repr(emb) and KEY not in emb.model_dump_json() and KEY.encode() not in pickle.dumps(emb)
    assert emb.api_key is not None and emb.encoder.name == encoder.name
    store = InMemoryVectorStore.from_texts(TEXTS, emb)
    stored = [store.store[i]["vector"] for i in store.store]
    np.testing.assert_allclose(stored, encoder.encode(TEXTS, task="retrieval.passage"), **ATOL)
    np.testing.assert_allclose(asyncio.run(emb.aembed_query("tea")), encoder.encode("tea", task="retrieval.query"),
                               **ATOL)
    parts = ["The printing press changed Europe.", "Books became cheap.", "Literacy spread quickly!"]
    chunks = [Document(page_content=text, metadata={"source": "press"}) for text in parts]
    expected = encoder.encode(parts, task="retrieval.passage", late_chunking=True)
    np.testing.assert_allclose(emb.embed_late_chunks(chunks), expected, **ATOL)


# ============================================================================================ live
LIVE_KEY = os.environ.get("JINA_API_KEY") or os.environ.get("JINAAI_API_KEY")


@pytest.mark.skipif(not LIVE_KEY, reason="set JINA_API_KEY (or JINAAI_API_KEY) to test against the hosted Jina API")
def test_the_hosted_jina_api():
    enc = RemoteEncoder.jina_api()
    assert enc.name == "jinaai/jina-embeddings-v3" and KEY not in repr(enc)
    vectors = enc.encode(["how often should sunscreen be reapplied?", "Reapply sunscreen every two hours."],
                         task=["retrieval.query", "retrieval.passage"], dimensions=64)
    assert vectors.shape == (2, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    chunks = enc.late_chunk(DOC, dimensions=32)
    assert [c.text for c in chunks] == [DOC[c.start:c.end] for c in chunks] and chunks[0].embedding.shape == (32,)
