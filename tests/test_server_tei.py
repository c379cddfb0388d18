"""text-embeddings-inference's protocol on ``jinav3 serve`` (issue 27): /embed, POST /, /embed_all, TEI's /info
fields and error body, against the golden vectors, with TEI's real clients: huggingface_hub's InferenceClient
(sync and async), langchain-huggingface, Haystack's HuggingFaceAPI embedders and LlamaIndex's
TextEmbeddingsInference.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # full tier: a real server on loopback

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from helpers import NORMALIZED, RAW, golden  # noqa: E402
from servers import serve_app  # noqa: E402

from jinav3.integrations.server import create_app  # noqa: E402

KEY = "tei-test-key-0123456789"
PROMPTS = {None: "text-matching", "query": "retrieval.query", "passage": "retrieval.passage",
           "document": "retrieval.passage", "retrieval.query": "retrieval.query",
           "retrieval.passage": "retrieval.passage", "separation": "separation", "classification": "classification",
           "text-matching": "text-matching"}


@pytest.fixture(scope="module")
def texts(golden_inputs) -> list[str]:
    return golden_inputs["texts"]


@pytest.fixture(scope="module")
def url(encoder):
    with serve_app(create_app(encoder, max_client_batch_size=16)) as base:
        yield base


@pytest.fixture(scope="module")
def keyed_url(encoder):
    with serve_app(create_app(encoder, api_key=KEY)) as base:
        yield base


@pytest.fixture(scope="module")
def http(url):
    with httpx.Client(base_url=url, timeout=60) as client:
        yield client


def post(http, path: str, **body) -> list:
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


# ============================================================================================ the protocol
@pytest.mark.parametrize("prompt_name", list(PROMPTS))
def test_embed_prompt_name_selects_the_task(http, texts, prompt_name):
    body = {"inputs": texts} if prompt_name is None else {"inputs": texts, "prompt_name": prompt_name}
    got = np.array(post(http, "/embed", **body), dtype=np.float32)
    np.testing.assert_allclose(got, golden(f"encode_{PROMPTS[prompt_name]}.npy"), **NORMALIZED)


def test_root_route_dimensions_and_normalize(http, texts):
    got = np.array(post(http, "/", inputs=texts, dimensions=32), dtype=np.float32)
    np.testing.assert_allclose(got, golden("encode_text-matching_dim32.npy"), **NORMALIZED)
    raw = np.array(post(http, "/embed", inputs=texts, prompt_name="query", normalize=False), dtype=np.float32)
    np.testing.assert_allclose(raw, golden("encode_retrieval.query_unnormalized.npy"), **RAW)
    single = post(http, "/embed", inputs=texts[0])  # one string: still a list of one vector, as TEI answers
    np.testing.assert_allclose(np.array(single, dtype=np.float32), golden("encode_text-matching.npy")[:1],
                               **NORMALIZED)


def test_embed_all_is_every_token_state(http, texts):
    for index in (0, 4):
        states = post(http, "/embed_all", inputs=[texts[index]], prompt_name="passage")
        assert len(states) == 1
        np.testing.assert_allclose(np.array(states[0], dtype=np.float32),
                                   golden(f"tokens_retrieval.passage_input{index}.npy"), **RAW)
    both = post(http, "/embed_all", inputs=texts[:2])  # ragged: each input its own token count
    assert [len(s) for s in both] == [10, 14]  # golden n_tokens_with_special (text-matching has no instruction)
    means = np.stack([np.array(s, dtype=np.float32).mean(axis=0) for s in both])
    expected = golden("encode_text-matching.npy")[:2]
    np.testing.assert_allclose(means / np.linalg.norm(means, axis=1, keepdims=True), expected, **NORMALIZED)


def test_truncate_right_and_left(http, encoder):
    tail = " ".join(f"tail{i}" for i in range(3000))  # longer than the model's 8192 tokens on its own
    long_a, long_b = "alpha beta gamma " * 200 + tail, "completely different words " * 300 + tail
    refused = http.post("/embed", json={"inputs": [texts_short := "short", long_a]})
    assert refused.status_code == 422
    assert refused.json()["error_type"] == "Validation" and refused.json()["error"].startswith("inputs[1]: ")
    right = np.array(post(http, "/embed", inputs=[texts_short, long_a], truncate=True), dtype=np.float32)
    np.testing.assert_allclose(right, encoder.encode([texts_short, long_a], task="text-matching"), **NORMALIZED)
    left_a, left_b = (np.array(post(http, "/embed", inputs=[text], truncate=True, truncation_direction=direction),
                               dtype=np.float32)[0] for text, direction in ((long_a, "left"), (long_b, "Left")))
    np.testing.assert_allclose(left_a, left_b, **NORMALIZED)  # both kept the same tail: their starts were cut
    assert not np.allclose(left_a, right[1], atol=1e-3)
    states = post(http, "/embed_all", inputs=[long_a], truncate=True, truncation_direction="left")
    assert len(states[0]) <= encoder.max_length


def test_info_has_tei_fields_next_to_jinav3s(http):
    info = http.get("/info").json()
    for field in ("model_id", "model_sha", "model_dtype", "served_model_name", "model_type",
                  "max_concurrent_requests", "max_input_length", "max_batch_tokens", "max_batch_requests",
                  "max_client_batch_size", "auto_truncate", "tokenization_workers", "version"):
        assert field in info, field
    assert info["model_type"] == {"embedding": {"pooling": "mean"}} and info["max_client_batch_size"] == 16
    assert info["tasks"] and info["task_instructions"] and info["dimensions"]["max"] == 64  # jinav3's own stay
    assert info["prompt_names"]["query"] == "retrieval.query"


@pytest.mark.parametrize("body, status, error_type, named", [
    ({"inputs": ["a"], "prompt_name": "search_query"}, 422, "Validation", "prompt_name"),
    ({"inputs": []}, 400, "Empty", "inputs"),
    ({"inputs": ["a"], "truncation_direction": "middle"}, 422, "Validation", "truncation_direction"),
    ({"inputs": ["a"], "dimensions": 0}, 422, "Validation", "dimensions"),
    ({"inputs": ["a"], "normalize": "yes"}, 422, "Validation", "normalize"),
    ({"inputs": 3}, 422, "Validation", "inputs"),
    ({"inputs": ["a"] * 17}, 413, "Validation", "inputs"),
    ({}, 422, "Validation", "inputs"),
])
def test_bad_requests_get_tei_error_bodies(http, body, status, error_type, named):
    for path in ("/embed", "/"):
        response = http.post(path, json=body)
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error", "error_type"}
        assert response.json()["error_type"] == error_type and response.json()["error"].startswith(f"{named}:")
    if named == "prompt_name":  # the allowed values are listed
        for name in ("retrieval.query", "query", "passage", "document", "text-matching"):
            assert name in response.json()["error"]
    malformed = http.post("/embed", content=b'{"inputs": ["a"', headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error_type"] == "Validation"


def test_api_key_metrics_and_the_other_dialects_keep_their_shape(keyed_url, http):
    denied = httpx.post(f"{keyed_url}/embed", json={"inputs": "a"})
    assert denied.status_code == 401 and denied.json()["error_type"] == "Unauthorized" and KEY not in denied.text
    allowed = httpx.post(f"{keyed_url}/embed", json={"inputs": "a"}, headers={"Authorization": f"Bearer {KEY}"})
    assert allowed.status_code == 200
    openai_shape = http.post("/v1/embeddings", json={"input": ["a"], "task": "nope"}).json()
    assert openai_shape["error"]["param"] == "task" and "detail" in openai_shape
    for route in ("/embed", "/embed_all"):  # counted by route (this test's own requests: tests run in any order)
        assert http.post(route, json={"inputs": "a"}).status_code == 200
    metrics = http.get("/metrics").text
    assert 'route="/embed",status="200"' in metrics and 'route="/embed_all",status="200"' in metrics


# ============================================================================================ real clients
def test_huggingface_hub_inference_client(url, texts):
    hub = pytest.importorskip("huggingface_hub")
    client = hub.InferenceClient(model=url)
    got = client.feature_extraction(texts, prompt_name="query")
    assert got.dtype == np.float32 and got.shape == (10, 64)
    np.testing.assert_allclose(got, golden("encode_retrieval.query.npy"), **NORMALIZED)
    np.testing.assert_allclose(client.feature_extraction(texts, dimensions=32),
                               golden("encode_text-matching_dim32.npy"), **NORMALIZED)
    np.testing.assert_allclose(client.feature_extraction(texts, normalize=False, prompt_name="query"),
                               golden("encode_retrieval.query_unnormalized.npy"), **RAW)
    assert client.feature_extraction(texts[0]).shape == (1, 64)
    with pytest.raises(hub.errors.HfHubHTTPError, match="prompt_name"):
        client.feature_extraction(texts, prompt_name="search_query")


def test_huggingface_hub_async_client_with_a_key(keyed_url, texts):
    hub = pytest.importorskip("huggingface_hub")

    async def run() -> list[np.ndarray]:
        client = hub.AsyncInferenceClient(model=keyed_url, token=KEY)
        return await asyncio.gather(*(client.feature_extraction([text], prompt_name="passage") for text in texts))

    got = np.concatenate(asyncio.run(run()))
    np.testing.assert_allclose(got, golden("encode_retrieval.passage.npy"), **NORMALIZED)


def test_langchain_huggingface_endpoint_embeddings(url, texts):
    """langchain-huggingface 1.2 refuses a URL as ``model`` (langchain-ai/docs#4364); its clients can still be
    pointed at the server, which then answers with the library's vectors."""
    pytest.importorskip("langchain_huggingface")
    from huggingface_hub import AsyncInferenceClient, InferenceClient
    from langchain_huggingface import HuggingFaceEndpointEmbeddings

    embeddings = HuggingFaceEndpointEmbeddings(model="jinaai/jina-embeddings-v3",
                                               model_kwargs={"prompt_name": "passage"})
    embeddings.client, embeddings.async_client = InferenceClient(model=url), AsyncInferenceClient(model=url)
    np.testing.assert_allclose(embeddings.embed_documents(texts), golden("encode_retrieval.passage.npy"),
                               **NORMALIZED)
    query = asyncio.run(embeddings.aembed_query(texts[1]))
    np.testing.assert_allclose(query, golden("encode_retrieval.passage.npy")[1], **NORMALIZED)


def test_haystack_huggingface_api_embedders(url, texts):
    pytest.importorskip("haystack_integrations.components.embedders.huggingface_api")
    from haystack import Document
    from haystack_integrations.components.embedders.huggingface_api import (
        HuggingFaceAPIDocumentEmbedder,
        HuggingFaceAPITextEmbedder,
    )

    text_embedder = HuggingFaceAPITextEmbedder(api_type="text_embeddings_inference", api_params={"url": url},
                                               token=None, normalize=True)
    text_embedder.warm_up()
    got = text_embedder.run(text=texts[2])["embedding"]
    np.testing.assert_allclose(got, golden("encode_text-matching.npy")[2], **NORMALIZED)
    documents = HuggingFaceAPIDocumentEmbedder(api_type="text_embeddings_inference", api_params={"url": url},
                                               token=None, normalize=True, batch_size=4)
    documents.warm_up()
    embedded = documents.run(documents=[Document(content=t) for t in texts])["documents"]
    np.testing.assert_allclose([d.embedding for d in embedded], golden("encode_text-matching.npy"), **NORMALIZED)


def test_llama_index_text_embeddings_inference(url, texts):
    pytest.importorskip("llama_index.embeddings.text_embeddings_inference")
    from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

    model = TextEmbeddingsInference(model_name="jina-embeddings-v3", base_url=url, embed_batch_size=4)
    np.testing.assert_allclose(model.get_text_embedding_batch(texts), golden("encode_text-matching.npy"),
                               **NORMALIZED)
    got = asyncio.run(model.aget_query_embedding(texts[3]))
    np.testing.assert_allclose(got, golden("encode_text-matching.npy")[3], **NORMALIZED)


# ============================================================================================ issue 28 leftover
@pytest.mark.parametrize("escape, side", [("\\udfff", "trailing (low)"), ("\\udc00", "trailing (low)"),
                                          ("\\ud800", "leading (high)"), ("\\udbff", "leading (high)")])
def test_a_lone_surrogate_escape_is_named_for_its_side(http, escape, side):
    for path, field in (("/v1/embeddings", "input"), ("/embed", "inputs")):
        body = f'{{"{field}": ["ok", "tail {escape} here"]}}'.encode()
        response = http.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        message = response.json()["detail"] if path == "/v1/embeddings" else response.json()["error"]
        assert f"lone {side} surrogate {escape}" in message, message
