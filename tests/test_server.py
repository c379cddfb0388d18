"""``jinav3 serve`` against a real uvicorn server on 127.0.0.1, with the golden tiny model and real clients.

Every answer is compared with ``Encoder.encode`` on the same texts: the server must give the
library's vectors, whatever else is batched with them.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # full tier: a real jinav3 serve on loopback


httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from helpers import SAMPLE_QUERIES  # noqa: E402

from jinav3.integrations.cli.serve import add_serve_command, cmd_serve  # noqa: E402
from jinav3.integrations.server import Limits, create_app  # noqa: E402

TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]
TEXTS = ["Sunscreen should be reapplied every two hours.", "Kompost braucht Luft und Feuchtigkeit.", "茶道の歴史",
         "", "a short one"]
ATOL = dict(atol=1e-5, rtol=0)
ROOT = Path(__file__).resolve().parents[1]


# ============================================================================================ servers
@contextmanager
def running(app, **config):
    """``app`` on uvicorn in a background thread, on a free port of 127.0.0.1; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,
                                           log_level=config.pop("log_level", "warning"), **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def base_url(encoder):
    with running(create_app(encoder, served_model_names=["my-embedder"])) as url:
        yield url


@pytest.fixture(scope="module")
def http(base_url):
    with httpx.Client(base_url=base_url, timeout=60) as client:
        yield client


def embed(http, **body) -> np.ndarray:
    response = http.post("/v1/embeddings", json=body)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [d["index"] for d in data] == list(range(len(data)))
    return np.array([d["embedding"] for d in data], dtype=np.float32)


def counter(text: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for family in text_string_to_metric_families(text) if family.name == name
               for s in family.samples if s.name == name + "_total")


class HeldEncoder:
    """The real encoder behind a gate: ``encode`` waits for ``release`` and records what it was given."""

    def __init__(self, encoder):
        self._encoder = encoder
        self.entered = threading.Event()
        self.release = threading.Event()
        self.seen: list[str] = []

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def encode(self, texts, *args, **kwargs):
        self.seen.extend(texts)
        self.entered.set()
        assert self.release.wait(30)
        return self._encoder.encode(texts, *args, **kwargs)


# ============================================================================================ the Jina dialect
@pytest.mark.parametrize("task", TASKS + [None])
def test_jina_dialect_every_task_equals_encode(http, encoder, task):
    inputs = [TEXTS[0], {"text": TEXTS[1]}, TEXTS[2], TEXTS[3]]
    got = embed(http, model="jina-embeddings-v3", input=inputs, task=task)
    np.testing.assert_allclose(got, encoder.encode([TEXTS[0], TEXTS[1], TEXTS[2], TEXTS[3]], task=task), **ATOL)


def test_task_absent_is_text_matching_and_options_apply(http, encoder):
    np.testing.assert_allclose(embed(http, input=TEXTS), encoder.encode(TEXTS, task="text-matching"), **ATOL)
    got = embed(http, input=TEXTS, task="retrieval.query", dimensions=32, normalized=False)
    np.testing.assert_allclose(got, encoder.encode(TEXTS, task="retrieval.query", dimensions=32, normalize=False),
                               **ATOL)
    single = http.post("/v1/embeddings", json={"input": {"text": "one"}, "dimensions": 7}).json()
    assert len(single["data"]) == 1 and len(single["data"][0]["embedding"]) == 7
    assert single["object"] == "list" and single["data"][0]["object"] == "embedding"
    assert single["usage"]["prompt_tokens"] == single["usage"]["total_tokens"] > 0


def test_empty_string_is_embedded_as_the_library_does(http, encoder):
    """milvus-model's dimension probe: input [""], task null."""
    np.testing.assert_allclose(embed(http, input=[""], task=None), encoder.encode([""], task=None), **ATOL)


def test_output_formats(http, encoder):
    expected = encoder.encode(TEXTS, task="separation")
    for field in ("embedding_type", "encoding_type"):  # encoding_type: LlamaIndex's spelling
        body = http.post("/v1/embeddings", json={"input": TEXTS, "task": "separation", field: "base64"}).json()
        got = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in body["data"]])
        np.testing.assert_allclose(got, expected, **ATOL)
    bits = np.packbits(expected > 0, axis=1)
    ubinary = http.post("/v1/embeddings", json={"input": TEXTS, "task": "separation",
                                                "embedding_type": "ubinary"}).json()
    assert np.array_equal(np.array([d["embedding"] for d in ubinary["data"]], dtype=np.uint8), bits)
    binary = http.post("/v1/embeddings", json={"input": TEXTS, "task": "separation", "encoding_type": "binary"}).json()
    signed = np.array([d["embedding"] for d in binary["data"]])
    assert signed.min() >= -128 and signed.max() <= 127
    assert np.array_equal((signed + 128).astype(np.uint8), bits)  # as LlamaIndex unpacks it
    keyed = http.post("/v1/embeddings", json={"input": TEXTS[:2], "task": "separation",
                                              "embedding_type": ["float", "ubinary"]}).json()
    first = keyed["data"][0]["embedding"]
    assert set(first) == {"float", "ubinary"}
    np.testing.assert_allclose(first["float"], expected[0], **ATOL)
    assert first["ubinary"] == bits[0].tolist()


def test_late_chunking_equals_the_library(http, encoder):
    pieces = ["Tea came to Japan from China.", "It became a ceremony.", "Its masters wrote rules for it."]
    got = embed(http, input=pieces, task="retrieval.passage", late_chunking=True)
    np.testing.assert_allclose(got, encoder.encode(pieces, task="retrieval.passage", late_chunking=True), **ATOL)
    # Past the model's length the library's windows apply: no cap (and /info says so).
    long_pieces = [" ".join(["word"] * 1500) + "." for _ in range(6)]
    got = embed(http, input=long_pieces, late_chunking=True, dimensions=32)
    np.testing.assert_allclose(got, encoder.encode(long_pieces, late_chunking=True, dimensions=32), **ATOL)
    assert http.get("/info").json()["late_chunking"]["max_document_length"] is None


@pytest.mark.parametrize("chunking", [dict(chunker="sentences"), dict(chunker="tokens", chunk_size=3),
                                      dict(chunker=[[0, 10], [12, 40]]),
                                      dict(chunker="sentences", window=8, overlap=2)])
def test_jinav3_chunker_extension_equals_late_chunk(http, encoder, chunking):
    """jinav3's extension (RemoteEncoder's exact late chunking): ONE document and its chunker in, one embedding
    per chunk out with its start/end, as Encoder.late_chunk gives them."""
    doc = "Tea came to Japan from China.  It became a ceremony.\nIts masters wrote rules for it."
    response = http.post("/v1/embeddings", json={"input": [doc], "late_chunking": True, "task": "retrieval.passage",
                                                 "dimensions": 16, **chunking})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    chunker = chunking["chunker"] if isinstance(chunking["chunker"], str) else [tuple(c) for c in chunking["chunker"]]
    options = {k: v for k, v in chunking.items() if k != "chunker"}
    chunks = encoder.late_chunk(doc, chunker=chunker, dimensions=16, **options)
    assert [(d["start"], d["end"]) for d in data] == [(c.start, c.end) for c in chunks]
    np.testing.assert_allclose([d["embedding"] for d in data], [c.embedding for c in chunks], **ATOL)


def test_jinav3_max_length_extension_and_info(http, encoder):
    got = embed(http, input=TEXTS, task="retrieval.query", max_length=5)
    np.testing.assert_allclose(got, encoder.encode(TEXTS, task="retrieval.query", max_length=5), **ATOL)
    info = http.get("/info").json()
    assert info["task_instructions"] == {t: encoder.instruction(t) for t in TASKS} and info["tokenize"] is True
    assert info["late_chunking"]["chunker"] == ["sentences", "tokens", "spans"]
    for body, field in [({"input": ["a", "b"], "late_chunking": True, "chunker": "sentences"}, "chunker"),
                        ({"input": "a", "chunker": "sentences"}, "chunker"),
                        ({"input": "a", "chunk_size": 3}, "chunk_size"),
                        ({"input": "a", "window": 8}, "window"),
                        ({"input": ["a"], "late_chunking": True, "max_length": 8}, "max_length"),
                        ({"input": "a", "max_length": 1}, "max_length"),
                        ({"input": ["abc"], "late_chunking": True, "chunker": [[0, 9]]}, "chunker[0]"),
                        ({"input": ["abc"], "late_chunking": True, "chunker": "tokens"}, "chunk_size"),
                        ({"input": ["abc"], "late_chunking": True, "window": 1}, "window")]:
        response = http.post("/v1/embeddings", json=body)
        assert response.status_code == 422 and response.json()["detail"].startswith(field + ":"), (body, response.text)


def test_truncate(http, encoder):
    long_text = "word " * 9000
    refused = http.post("/v1/embeddings", json={"input": ["short", long_text]})
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    tokens = len(encoder.tokenizer(long_text)["input_ids"])
    assert "input[1]" in detail and str(tokens) in detail and "truncate" in detail, detail
    got = embed(http, input=["short", long_text], truncate=True)
    np.testing.assert_allclose(got, encoder.encode(["short", long_text]), **ATOL)  # the library truncates


# ============================================================================================ the OpenAI dialect
def test_openai_dialect_token_ids_and_extra_fields(http, encoder):
    tokenized = http.post("/tokenize", json={"inputs": TEXTS[:3]}).json()
    ids = [[t["id"] for t in tokens] for tokens in tokenized]
    assert ids == encoder.tokenizer(TEXTS[:3])["input_ids"]
    expected = encoder.encode(TEXTS[:3], task="retrieval.query")
    np.testing.assert_allclose(embed(http, input=ids, task="retrieval.query"), expected, **ATOL)
    without_specials = [row[1:-1] for row in ids]  # the ids of the text alone work as well
    np.testing.assert_allclose(embed(http, input=without_specials, task="retrieval.query"), expected, **ATOL)
    np.testing.assert_allclose(embed(http, input=ids[0], dimensions=16),
                               encoder.encode(TEXTS[:1], dimensions=16), **ATOL)
    body = http.post("/v1/embeddings", json={"input": TEXTS, "model": "my-embedder", "encoding_format": "base64",
                                             "user": "u1", "task": "classification"}).json()
    got = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in body["data"]])
    np.testing.assert_allclose(got, encoder.encode(TEXTS, task="classification"), **ATOL)
    assert body["model"] == "my-embedder"


def test_tokenize_is_tei_shaped(http, encoder):
    tokens = http.post("/tokenize", json={"inputs": "hello world", "add_special_tokens": True}).json()
    assert len(tokens) == 1 and tokens[0][0] == {"id": 0, "text": "<s>", "special": True, "start": None, "stop": None}
    words = [t for t in tokens[0] if not t["special"]]
    assert all("hello world"[t["start"]:t["stop"]] == t["text"] for t in words)
    plain = http.post("/tokenize", json={"inputs": ["hello world"], "add_special_tokens": False}).json()
    assert [t["id"] for t in plain[0]] == encoder.tokenizer("hello world", add_special_tokens=False)["input_ids"]


def test_openai_client(base_url, encoder):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    default = client.embeddings.create(model="jina-embeddings-v3", input=TEXTS)  # the client asks for base64
    np.testing.assert_allclose(np.array([d.embedding for d in default.data]), encoder.encode(TEXTS), **ATOL)
    floats = client.embeddings.create(model="jina-embeddings-v3", input=TEXTS[:2], encoding_format="float",
                                      dimensions=32, extra_body={"task": "retrieval.query"})
    np.testing.assert_allclose(np.array([d.embedding for d in floats.data]),
                               encoder.encode(TEXTS[:2], task="retrieval.query", dimensions=32), **ATOL)
    assert default.usage.prompt_tokens > 0
    with pytest.raises(openai.UnprocessableEntityError, match="dimensions"):
        client.embeddings.create(model="jina-embeddings-v3", input="x", dimensions=4096)


def test_jina_haystack(base_url, encoder):
    embedders = pytest.importorskip("haystack_integrations.components.embedders.jina")
    from haystack import Document
    from haystack.utils import Secret

    key = Secret.from_token("unused")
    text = embedders.JinaTextEmbedder(api_key=key, task="retrieval.query", dimensions=32,
                                      base_url=f"{base_url}/v1/embeddings")
    got = text.run("how do I compost at home?")["embedding"]
    np.testing.assert_allclose(got, encoder.encode("how do I compost at home?", task="retrieval.query", dimensions=32),
                               **ATOL)
    documents = [Document(content=t) for t in TEXTS[:3]]
    docs = embedders.JinaDocumentEmbedder(api_key=key, task="retrieval.passage", progress_bar=False,
                                          base_url=f"{base_url}/v1/embeddings")
    embedded = docs.run(documents)["documents"]
    np.testing.assert_allclose([d.embedding for d in embedded], encoder.encode(TEXTS[:3], task="retrieval.passage"),
                               **ATOL)


def test_langchain_openai_embeddings(base_url, encoder):
    langchain_openai = pytest.importorskip("langchain_openai")
    embeddings = langchain_openai.OpenAIEmbeddings(base_url=f"{base_url}/v1", api_key="unused",
                                                   model="jina-embeddings-v3", check_embedding_ctx_length=False)
    np.testing.assert_allclose(embeddings.embed_documents(TEXTS[:3]), encoder.encode(TEXTS[:3]), **ATOL)
    np.testing.assert_allclose(embeddings.embed_query(SAMPLE_QUERIES[0]), encoder.encode(SAMPLE_QUERIES[0]), **ATOL)


# ============================================================================================ bad requests
BAD = [
    (b"{not json", 400, "JSON"),
    (b"[1, 2]", 422, "body"),
    ({"model": "jina-embeddings-v3"}, 422, "input"),
    ({"input": []}, 422, "input"),
    ({"input": "x", "task": "retrieval"}, 422, "task"),
    ({"input": "x", "task": 3}, 422, "task"),
    ({"input": "x", "dimensions": 0}, 422, "dimensions"),
    ({"input": "x", "dimensions": 65}, 422, "dimensions"),
    ({"input": "x", "dimensions": "32"}, 422, "dimensions"),
    ({"input": "x", "dimensions": True}, 422, "dimensions"),
    ({"input": "x", "model": "text-embedding-3-small"}, 422, "jina-embeddings-v3"),
    ({"input": [[5, 100000]]}, 422, "input[0][1]"),
    ({"input": [-1]}, 422, "input[0]"),
    ({"input": 5}, 422, "input"),
    ({"input": ["a", None]}, 422, "input[1]"),
    ({"input": ["a", 3]}, 422, "input[1]"),
    ({"input": [{"image": "http://x/y.png"}]}, 422, "text"),
    ({"input": [{"text": 5}]}, 422, "input[0].text"),
    ({"input": "x", "embedding_type": "int8"}, 422, "embedding_type"),
    ({"input": "x", "encoding_format": "binary"}, 422, "encoding_format"),
    ({"input": "x", "embedding_type": "float", "encoding_format": "base64"}, 422, "conflicts"),
    ({"input": "x", "normalized": "yes"}, 422, "normalized"),
    ({"input": [[1, 2]], "late_chunking": True}, 422, "late_chunking"),
    ({"input": ["a", " "], "late_chunking": True}, 422, "input[1]"),
    ({"input": [""] * 2049}, 413, "max-client-batch-size"),
]


@pytest.mark.parametrize("body,status,named", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_requests_are_clear_4xx(http, body, status, named):
    response = (http.post("/v1/embeddings", content=body, headers={"content-type": "application/json"})
                if isinstance(body, bytes) else http.post("/v1/embeddings", json=body))
    assert response.status_code == status, response.text
    error = response.json()
    assert named in error["detail"] and error["error"]["message"] == error["detail"], error
    assert error["error"]["type"] == "invalid_request_error"


def test_server_keeps_serving_after_errors(http, encoder):
    for body, _, _ in BAD[:6]:
        http.post("/v1/embeddings", content=body if isinstance(body, bytes) else None,
                  json=None if isinstance(body, bytes) else body)
    assert http.get("/health").status_code == 200
    np.testing.assert_allclose(embed(http, input=["still here"]), encoder.encode(["still here"]), **ATOL)
    missing = http.get("/v2/nothing")
    assert missing.status_code == 404 and "routes" in missing.json()["detail"]
    assert http.get("/v1/embeddings").status_code == 405


def test_wrong_model_names_what_is_served(http, encoder):
    detail = http.post("/v1/embeddings", json={"input": "x", "model": "nope"}).json()["detail"]
    for name in ("jina-embeddings-v3", "my-embedder", encoder.name, "tiny-v3"):
        assert name in detail
    for name in ("jina-embeddings-v3", "my-embedder", encoder.name, encoder.label, "tiny-v3"):
        assert http.post("/v1/embeddings", json={"input": "x", "model": name}).status_code == 200, name


# ============================================================================================ operations
def test_health_info_metrics_headers(http, encoder):
    assert http.get("/health").json() == {"status": "ok"}
    info = http.get("/info").json()
    assert info["model_label"] == encoder.label and info["model_identity"] == encoder.name
    assert info["tasks"] == TASKS and info["dimensions"] == {"min": 1, "max": encoder.hidden_size}
    assert info["max_input_length"] == encoder.max_length and info["max_client_batch_size"] == 2048
    response = http.post("/v1/embeddings", json={"input": ["timed"]})
    for header in ("x-queue-time", "x-inference-time", "x-total-time", "x-tokenization-time"):
        assert float(response.headers[header]) >= 0, header
    metrics = http.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("jinav3_requests_total", "jinav3_request_duration_seconds", "jinav3_queue_duration_seconds",
                 "jinav3_batch_tokens", "jinav3_batch_inputs", "jinav3_tokens_embedded_total", "jinav3_queue_depth",
                 "jinav3_forward_passes_total", "jinav3_task_switches_total"):
        assert name in metrics.text, name
    assert 'route="/v1/embeddings",status="200"' in metrics.text
    assert http.get("/v1/models").json()["data"][0]["id"] == "my-embedder"


def test_concurrent_mixed_requests_batch_and_match_encode(base_url, http, encoder):
    """32 clients x 10 requests of mixed tasks, dimensions, normalisation and formats: each answer is
    its own request's ``encode``, and the scheduler ran fewer forward passes than requests."""
    rng = np.random.default_rng(0)
    cases = []
    for i in range(320):
        task = TASKS[i % 5] if i % 7 else None
        texts = [f"{SAMPLE_QUERIES[int(j) % 4]} {i}-{j}" for j in rng.integers(0, 100, 1 + i % 3)]
        cases.append(dict(input=texts, task=task, dimensions=[None, 32, 16][i % 3], normalized=i % 4 != 0,
                          embedding_type=["float", "base64"][i % 2]))
    expected = [encoder.encode(c["input"], task=c["task"], dimensions=c["dimensions"], normalize=c["normalized"])
                for c in cases]
    before = counter(http.get("/metrics").text, "jinav3_forward_passes")

    def client(k: int) -> list:
        with httpx.Client(base_url=base_url, timeout=60) as own:
            bodies = [(i, {f: v for f, v in cases[i].items() if v is not None or f == "task"})  # task null stays
                      for i in range(k, len(cases), 32)]
            return [(i, own.post("/v1/embeddings", json=body)) for i, body in bodies]

    with ThreadPoolExecutor(32) as pool:
        answers = [a for part in pool.map(client, range(32)) for a in part]
    for i, response in answers:
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        got = (np.array([d["embedding"] for d in data], np.float32) if cases[i]["embedding_type"] == "float" else
               np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in data]))
        np.testing.assert_allclose(got, expected[i], **ATOL)
    passes = counter(http.get("/metrics").text, "jinav3_forward_passes") - before
    assert 0 < passes < len(cases), passes


# ============================================================================================ limits
def test_full_queue_429_and_a_departed_client_is_dropped(encoder):
    held = HeldEncoder(encoder)
    app = create_app(held, limits=Limits(max_concurrent_requests=2, max_request_bytes=2000))
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as http, ThreadPoolExecutor(2) as pool:
        first = pool.submit(http.post, "/v1/embeddings", json={"input": ["first"]})
        assert held.entered.wait(10)

        def leaves():  # queued behind the held batch, then gives up
            with httpx.Client(base_url=url, timeout=0.5) as impatient:
                with pytest.raises(httpx.ReadTimeout):
                    impatient.post("/v1/embeddings", json={"input": ["abandoned"]})

        pool.submit(leaves).result()
        deadline = time.monotonic() + 10  # the server sees the disconnect and drops the queued job
        while counter(http.get("/metrics").text, "jinav3_dropped_requests") < 1:
            assert time.monotonic() < deadline, "the departed client's job was not dropped"
            time.sleep(0.02)
        too_big = http.post("/v1/embeddings", json={"input": ["x" * 3000]})  # said by Content-Length
        assert too_big.status_code == 413 and "max-request-bytes" in too_big.json()["detail"]
        chunked = http.post("/v1/embeddings", content=iter([b'{"input": "', b"x" * 3000, b'"}']),
                            headers={"content-type": "application/json"})  # no Content-Length: counted while read
        assert chunked.status_code == 413 and "max-request-bytes" in chunked.json()["detail"]
        held.release.set()
        assert first.result().status_code == 200
        assert "abandoned" not in held.seen  # its work never ran
        assert counter(http.get("/metrics").text, "jinav3_dropped_requests") == 1
        assert http.post("/v1/embeddings", json={"input": ["after"]}).status_code == 200


def test_429_at_once_with_retry_after(encoder):
    held = HeldEncoder(encoder)
    with running(create_app(held, max_concurrent_requests=1)) as url, httpx.Client(base_url=url, timeout=30) as http, \
            ThreadPoolExecutor(1) as pool:
        first = pool.submit(http.post, "/v1/embeddings", json={"input": ["first"]})
        assert held.entered.wait(10)
        started = time.monotonic()
        busy = http.post("/v1/embeddings", json={"input": ["second"]})
        assert busy.status_code == 429 and time.monotonic() - started < 2
        assert busy.headers["retry-after"] == "1"
        assert "max-concurrent-requests" in busy.json()["detail"] and busy.json()["error"]["type"] == "rate_limit_error"
        held.release.set()
        assert first.result().status_code == 200
        assert http.post("/v1/embeddings", json={"input": ["third"]}).status_code == 200


def test_503_while_the_model_loads(encoder):
    loaded = threading.Event()

    def load():
        assert loaded.wait(30)
        return encoder

    with running(create_app(load)) as url, httpx.Client(base_url=url, timeout=30) as http:
        health = http.get("/health")
        assert health.status_code == 503 and "loading" in health.json()["detail"]
        refused = http.post("/v1/embeddings", json={"input": "x"})
        assert refused.status_code == 503 and refused.headers["retry-after"]
        loaded.set()
        deadline = time.monotonic() + 30
        while http.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        np.testing.assert_allclose(embed(http, input=["x"]), encoder.encode(["x"]), **ATOL)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_api_key(encoder):
    key = "sk-test-5c1e7d0a9b"
    records = _Records()
    root = logging.getLogger()
    root.addHandler(records)
    old_level = logging.getLogger("jinav3").level
    logging.getLogger("jinav3").setLevel(logging.DEBUG)
    try:
        with running(create_app(encoder, api_key=key), log_level="debug") as url, \
                httpx.Client(base_url=url, timeout=30) as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key},
                            {"Authorization": f"Bearer {key}x"}):
                refused = http.post("/v1/embeddings", json={"input": "x"}, headers=headers)
                assert refused.status_code == 401, headers
                error = refused.json()
                assert "API key" in error["detail"] and error["error"]["type"] == "authentication_error"
                assert key not in refused.text
            auth = {"Authorization": f"Bearer {key}"}
            assert http.post("/v1/embeddings", json={"input": "x"}, headers=auth).status_code == 200
            assert http.get("/health").status_code == 200  # open, for load balancers
            assert http.get("/info").status_code == 401
            info = http.get("/info", headers=auth)
            assert info.status_code == 200 and key not in info.text
            assert key not in http.get("/metrics", headers=auth).text
    finally:
        root.removeHandler(records)
        logging.getLogger("jinav3").setLevel(old_level)
    assert records.lines and not any(key in line for line in records.lines)


# ============================================================================================ command line
def test_serve_command_flags(monkeypatch, tmp_path):
    from jinav3.integrations.cli import UsageError
    from jinav3.integrations.cli.serve import read_api_key

    parser = argparse.ArgumentParser()
    add_serve_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--model", "m", "--served-model-name", "a", "--served-model-name", "b",
                              "--max-batch-tokens", "512", "--api-key-env", "JV3_TEST_KEY"])
    assert args.handler is cmd_serve and args.host == "127.0.0.1" and args.port == 8080
    assert args.served_model_name == ["a", "b"] and args.max_batch_tokens == 512
    monkeypatch.delenv("JV3_TEST_KEY", raising=False)
    with pytest.raises(UsageError, match="not set"):
        read_api_key(args)
    monkeypatch.setenv("JV3_TEST_KEY", " secret ")
    assert read_api_key(args) == "secret"
    args.api_key_env = "sk-looks-like-a-key"
    with pytest.raises(UsageError, match="NAME") as refused:
        read_api_key(args)
    assert "sk-looks" not in str(refused.value)
    keyfile = tmp_path / "key"
    keyfile.write_text("from-file\n")
    assert read_api_key(argparse.Namespace(api_key_env=None, api_key_file=str(keyfile))) == "from-file"


def test_body_timeout_flag_and_limit(encoder, capsys):
    parser = argparse.ArgumentParser()
    add_serve_command(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["serve"]).body_timeout == 30.0
    assert parser.parse_args(["serve", "--body-timeout", "1.5"]).body_timeout == 1.5
    for bad in ("0", "-1", "nan", "inf", "soon"):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", "--body-timeout", bad])
        assert "--body-timeout: must be a positive number of seconds" in capsys.readouterr().err
    for bad in (0, -2.0, float("nan"), True, "30"):
        with pytest.raises(ValueError, match="body_timeout_s: must be a positive number of seconds"):
            create_app(encoder, body_timeout_s=bad)


def test_missing_server_extra_gives_the_install_hint():
    code = ("import sys\n"
            "sys.modules['fastapi'] = None  # as if not installed\n"
            "from jinav3.integrations.cli.serve import add_serve_command  # the command line still lists `serve`\n"
            "assert callable(add_serve_command)\n"
            "try:\n"
            "    from jinav3.integrations.server import create_app\n"
            "except ImportError as error:\n"
            "    print(error)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install "jinav3[server]"' in out


LAUNCHER = """
import sys, time
from jinav3 import Encoder
from jinav3.integrations.server import create_app
from jinav3.integrations.cli.serve import run

class Slow:  # every batch takes a while, so requests are in flight when SIGTERM comes
    def __init__(self, encoder): self._encoder = encoder
    def __getattr__(self, name): return getattr(self._encoder, name)
    def encode(self, *args, **kwargs):
        time.sleep(0.4)
        return self._encoder.encode(*args, **kwargs)

run(create_app(Slow(Encoder.from_pretrained(sys.argv[1], device="cpu"))), "127.0.0.1", int(sys.argv[2]), "warning")
sys.exit(0)
"""


def test_sigterm_answers_what_is_in_flight_then_exits_0(golden_dir, encoder, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, str(launcher), str(golden_dir), str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "the server did not come up"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        texts = [[f"in flight {i}", "second"] if i % 2 else [f"in flight {i}"] for i in range(6)]
        tasks = [TASKS[i % 5] for i in range(6)]  # different tasks: several batches, about 2 s of work
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(httpx.post, f"{url}/v1/embeddings", json={"input": t, "task": k}, timeout=60)
                       for t, k in zip(texts, tasks, strict=True)]
            _wait_in_flight(url, 6, deadline)
            process.send_signal(signal.SIGTERM)
            answers = [f.result() for f in futures]
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    for response, t, k in zip(answers, texts, tasks, strict=True):
        assert response.status_code == 200, response.text
        np.testing.assert_allclose([d["embedding"] for d in response.json()["data"]], encoder.encode(t, task=k), **ATOL)


def _wait_in_flight(url: str, n: int, deadline: float) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    while time.monotonic() < deadline:
        families = text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
        if any(s.value >= n for f in families if f.name == "jinav3_requests_in_flight" for s in f.samples):
            return
        time.sleep(0.02)
    raise AssertionError("the requests never got in flight")


def test_benchmark_runs_end_to_end_on_the_tiny_model(tmp_path):
    from benchmarks import server_bench

    report = server_bench.main(["--size", "tiny", "--concurrency", "1,4", "--requests", "8", "--passage-tokens", "1500",
                                "--mixed-queries", "3", "--workdir", str(tmp_path / "work"), "--replicas", "",
                                "--json", str(tmp_path / "bench.json")])
    assert report["shutdown"]["exit_status"] == 0
    assert report["single_query"]["4"]["forward_passes"] >= 1 and report["bulk"]["tokens_per_s"] > 0
    assert report["mixed"]["queries"] == 3 and report["mixed"]["open_loop"]["p50_ms"] > 0 and set(report["goals"]) == {
        "many_clients_vs_one_batch", "many_clients_vs_one_pass_each", "bulk_vs_in_process",
        "query_p50_under_load_vs_idle"}
    assert report["in_process"]["batch_queries"] == 64 and "ray_serve" not in report
    assert (tmp_path / "bench.json").exists()


# ============================================================================================ hostile clients
# One `jinav3 serve` for these: a key, 8 slots, a 3 s body deadline, its log in a file. Raw sockets play the
# clients that stall, trickle or leave mid-upload; every wait is bounded by a socket timeout or a deadline.
HOSTILE_KEY = "sk-hostile-4e1f9a"
BODY_TIMEOUT_S = 3.0
AUTH = {"Authorization": f"Bearer {HOSTILE_KEY}"}


@pytest.fixture(scope="module")
def hostile(golden_dir, tmp_path_factory):
    from servers import jinav3_serve

    log = tmp_path_factory.mktemp("hostile") / "serve.log"
    with jinav3_serve(golden_dir, "--max-concurrent-requests", "8", "--body-timeout", str(BODY_TIMEOUT_S),
                      "--api-key-env", "JV3_HOSTILE_KEY", "--log-level", "info", log=log,
                      JV3_HOSTILE_KEY=HOSTILE_KEY) as served:
        yield served


def partial_upload(port: int, target: str = "/v1/embeddings", sent: bytes = b'{"input": ["sta') -> socket.socket:
    """A client that sends its headers and the start of a 100-byte body, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=BODY_TIMEOUT_S + 10)
    sock.sendall(f"POST {target} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {HOSTILE_KEY}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode() + sent)
    return sock


def answer_of(sock: socket.socket) -> tuple[int, bytes]:
    """(status, everything read) once the server closes the connection (the socket's timeout bounds it). Closing
    with body bytes unread may reset the connection after the answer: what came before counts."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        if not data:
            raise
    return int(data.split(b" ", 2)[1]), data


def nothing_yet(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
        return False
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(BODY_TIMEOUT_S + 10)


def statuses(url: str) -> dict[str, float]:
    """jinav3_requests_total of /v1/embeddings by status."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", headers=AUTH).text
    return {s.labels["status"]: s.value for f in text_string_to_metric_families(text) if f.name == "jinav3_requests"
            for s in f.samples if s.name == "jinav3_requests_total" and s.labels["route"] == "/v1/embeddings"}


def test_stalled_uploads_hold_no_slot_and_get_408_at_the_body_deadline(hostile, encoder):
    """As many stalled uploads as --max-concurrent-requests: a normal request is still served (no 429) while
    they stall, and each stalled one gets 408 (naming --body-timeout) at the deadline, then its connection closes."""
    before = statuses(hostile.url)
    stalled = [partial_upload(hostile.port) for _ in range(8)]
    try:
        sent = time.monotonic()
        served = httpx.post(f"{hostile.url}/v1/embeddings", json={"input": ["served"]}, headers=AUTH, timeout=30)
        assert served.status_code == 200, served.text
        assert all(nothing_yet(sock) for sock in stalled), "the stalled uploads were answered before the normal one"
        np.testing.assert_allclose([d["embedding"] for d in served.json()["data"]], encoder.encode(["served"]), **ATOL)
        for sock in stalled:
            status, data = answer_of(sock)
            assert status == 408 and b"--body-timeout" in data, data
        waited = time.monotonic() - sent
        assert BODY_TIMEOUT_S - 0.5 < waited < BODY_TIMEOUT_S + 8, waited
    finally:
        for sock in stalled:
            sock.close()
    after = statuses(hostile.url)
    assert after.get("408", 0) - before.get("408", 0) == 8 and after.get("429", 0) == before.get("429", 0)


def test_a_trickled_body_gets_408_at_the_deadline_not_per_read(hostile):
    """One byte every 0.2 s never lets the connection go idle: the deadline is for the whole body."""
    sock = partial_upload(hostile.port, sent=b"{")
    try:
        started = time.monotonic()
        while nothing_yet(sock):
            assert time.monotonic() - started < BODY_TIMEOUT_S + 8, "no answer to a body trickled past the deadline"
            try:
                sock.sendall(b" ")
            except OSError:  # the server answered and closed meanwhile
                break
            time.sleep(0.2)
        status, data = answer_of(sock)
        assert status == 408 and time.monotonic() - started > BODY_TIMEOUT_S - 0.5, data
    finally:
        sock.close()


def test_a_client_leaving_mid_upload_is_a_quiet_499(hostile):
    before = statuses(hostile.url)
    for _ in range(5):
        partial_upload(hostile.port).close()
    deadline = time.monotonic() + 10
    while statuses(hostile.url).get("499", 0) - before.get("499", 0) < 5:
        assert time.monotonic() < deadline, f"not counted as 499: {statuses(hostile.url)}"
        time.sleep(0.05)
    after = statuses(hostile.url)
    assert after.get("500", 0) == before.get("500", 0), after
    log = hostile.log_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
    assert log.count("the client left before sending its whole body") >= 5


KEYS_IN_QUERIES = [("api_key", HOSTILE_KEY, ""), ("token", HOSTILE_KEY, "&x=1"), ("access_token", HOSTILE_KEY, ""),
                   ("apikey", HOSTILE_KEY, ""), ("password", "pw-Other-1", ""), ("secret", "s-Other-2", ""),
                   ("api%5Fkey", "k-Other-3", ""), ("API_KEY", "K-OTHER-4", ""),
                   ("k", HOSTILE_KEY, "")]  # no token-like name: scrubbed as the server's own key


@pytest.mark.parametrize("name, value, rest", KEYS_IN_QUERIES, ids=[k[0] for k in KEYS_IN_QUERIES])
def test_a_key_in_the_query_string_is_never_logged(hostile, name, value, rest):
    """Refused or not, the target goes to uvicorn's access log: token-like values and the server's key are ***."""
    for headers in ({}, AUTH):
        response = httpx.post(f"{hostile.url}/v1/embeddings?x=0&{name}={value}{rest}", json={"input": "x"},
                              headers=headers, timeout=30)
        assert response.status_code == (200 if headers else 401) and value not in response.text
    deadline = time.monotonic() + 10
    while f"&{name}=***{rest} " not in hostile.log_text():  # the access line is written after the answer
        assert time.monotonic() < deadline, hostile.log_text()[-2000:]
        time.sleep(0.05)
    assert value not in hostile.log_text()


TWO_AUTHORIZATIONS = [(f"Bearer {HOSTILE_KEY}", "Bearer wrong"), ("Bearer wrong", f"Bearer {HOSTILE_KEY}"),
                      (f"Bearer {HOSTILE_KEY}", f"Bearer {HOSTILE_KEY}")]


@pytest.mark.parametrize("first, second", TWO_AUTHORIZATIONS, ids=["right-wrong", "wrong-right", "right-right"])
def test_two_authorization_headers_are_refused(hostile, first, second):
    response = httpx.post(f"{hostile.url}/v1/embeddings", json={"input": "x"}, timeout=30,
                          headers=[("Authorization", first), ("Authorization", second)])
    assert response.status_code == 400, response.text
    assert "Authorization" in response.json()["detail"] and "once" in response.json()["detail"]
    assert HOSTILE_KEY not in response.text


def test_a_busy_port_is_one_error_line_before_the_model_loads(golden_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        done = subprocess.run([sys.executable, "-m", "jinav3.integrations.cli", "serve", "--model", str(golden_dir),
                               "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr  # as every option value found unusable before any work
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stderr.startswith("jinav3: error: "), done.stderr
    assert f"127.0.0.1:{port}" in done.stderr and "in use" in done.stderr and "--port" in done.stderr
    assert "Errno" not in done.stderr and "loaded" not in done.stderr + done.stdout


class SlowWindows:
    """The real encoder; each call for token states (one late-chunking window) takes 100 ms more and is counted."""

    def __init__(self, encoder):
        self._encoder = encoder
        self.windows = 0

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def token_states(self, ids, *args, **kwargs):
        time.sleep(0.1)
        self.windows += 1
        return self._encoder.token_states(ids, *args, **kwargs)


def test_late_chunking_interleaves_with_queries_and_stops_when_its_client_leaves(encoder):
    """A long document runs a slice of windows per pass (at most --max-batch-tokens of them, 2048 here: four
    windows of 512), so a query waits for a slice, not the document; once its client leaves, nothing more of it
    runs than the slice in progress."""
    from jinav3.late_chunking import windows

    slow = SlowWindows(encoder)
    document = " ".join(f"Sentence {i} is about tea." for i in range(2000))
    total = len(windows(len(encoder.tokenizer(encoder.instruction("text-matching") + document)["input_ids"]), 512, 64))
    assert total > 30
    body = json.dumps({"input": [document], "late_chunking": True, "window": 512, "overlap": 64}).encode()
    with running(create_app(slow)) as url, httpx.Client(base_url=url, timeout=30) as http:
        port = int(url.rsplit(":", 1)[1])
        leaving = socket.create_connection(("127.0.0.1", port), timeout=30)
        leaving.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(body) + body)
        deadline = time.monotonic() + 30
        while slow.windows < 2:
            assert time.monotonic() < deadline, "the late-chunking request never started"
            time.sleep(0.01)
        query = http.post("/v1/embeddings", json={"input": ["tea"], "task": "retrieval.query"})
        at_answer = slow.windows
        assert query.status_code == 200 and at_answer < total // 2, (at_answer, total)  # a slice or a few, not all
        np.testing.assert_allclose([d["embedding"] for d in query.json()["data"]],
                                   encoder.encode(["tea"], task="retrieval.query"), **ATOL)
        leaving.close()
        while counter(http.get("/metrics").text, "jinav3_dropped_requests") < 1:
            assert time.monotonic() < deadline, "the departed client's document was not dropped"
            time.sleep(0.01)
        at_drop = slow.windows
        assert http.post("/v1/embeddings", json={"input": ["after"]}).status_code == 200  # the worker moved on
        assert slow.windows <= at_drop + 4 and slow.windows < total, (at_drop, slow.windows, total)


def test_hostile_clients_benchmark_runs_on_the_tiny_model(tmp_path):
    from benchmarks import hostile_clients

    report = hostile_clients.main(["--stalled", "2", "--document-bytes", "50000", "--late-client-s", "2",
                                   "--queries", "2", "--json", str(tmp_path / "hostile.json")])
    assert report["stalled_uploads"]["statuses"] == [200] and report["one_window_ms"] > 0
    assert report["late_chunking"]["query_ms_after_client_left"]["n"] == 2 and (tmp_path / "hostile.json").exists()
