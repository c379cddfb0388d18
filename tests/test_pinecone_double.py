"""Tests of PineconeDouble (a test double of Pinecone's REST API, not Pinecone), driven through
the REAL ``pinecone`` SDK so that the double is known to speak what the SDK sends and expects."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from doubles.pinecone_double import (
    MAX_METADATA_BYTES,
    MAX_REQUEST_BYTES,
    PineconeDouble,
)

pinecone = pytest.importorskip("pinecone")

from pinecone import (  # noqa: E402 - after importorskip
    ConflictError,
    ForbiddenException,
    NotFoundException,
    Pinecone,
    PineconeApiException,
    RateLimitException,
    ServerlessSpec,
    ServiceException,
    UnauthorizedException,
)

KEY = "test-key"
DIM = 4
SPEC = ServerlessSpec(cloud="aws", region="us-east-1")


def _status(exc: BaseException) -> int:
    return getattr(exc, "status_code", None) or getattr(exc, "status", None)


@pytest.fixture
def double():
    with PineconeDouble(api_key=KEY) as d:
        yield d
    assert d.internal_errors == []


@pytest.fixture
def pc(double):
    client = Pinecone(api_key=KEY, host=double.host)
    yield client
    client.close()


@pytest.fixture
def index(pc):
    pc.create_index(name="docs", dimension=DIM, metric="cosine", spec=SPEC)
    idx = pc.Index(host=pc.describe_index("docs").host)
    yield idx
    idx.close()


def raw(url: str, method: str = "GET", body=None, *, key: str | None = KEY, version="2025-10"):
    """Send a request without the SDK (to reach checks the SDK would make client-side)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if key is not None:
        req.add_header("Api-Key", key)
    if version is not None:
        req.add_header("X-Pinecone-Api-Version", version)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read()
            return resp.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, (json.loads(text) if text else None)


# ---------------------------------------------------------------------------
# control plane
# ---------------------------------------------------------------------------


def test_create_describe_list_delete_index(double, pc):
    assert not pc.has_index("docs")
    pc.create_index(
        name="docs",
        dimension=8,
        metric="dotproduct",
        spec=ServerlessSpec(cloud="gcp", region="europe-west4"),
        tags={"team": "search"},
    )
    desc = pc.describe_index("docs")
    assert desc.name == "docs"
    assert desc.dimension == 8
    assert desc.metric == "dotproduct"
    assert desc.status.ready is True
    assert desc.spec.serverless.cloud == "gcp"
    assert desc.spec.serverless.region == "europe-west4"
    assert desc.deletion_protection == "disabled"
    assert dict(desc.tags) == {"team": "search"}
    assert desc.host == double.index_host("docs")
    assert desc.host.startswith("http://127.0.0.1:") and desc.host != double.host
    assert pc.has_index("docs")
    assert pc.list_indexes().names() == ["docs"]

    pc.delete_index("docs")
    assert not pc.has_index("docs")
    assert pc.list_indexes().names() == []


def test_control_plane_errors_raise_sdk_exceptions(pc):
    with pytest.raises(NotFoundException) as e:
        pc.describe_index("missing")
    assert _status(e.value) == 404
    pc.create_index(name="docs", dimension=DIM, spec=SPEC)
    with pytest.raises(ConflictError) as e:
        pc.create_index(name="docs", dimension=DIM, spec=SPEC)
    assert _status(e.value) == 409
    with pytest.raises(PineconeApiException) as e:
        pc.create_index(name="zero", dimension=0, spec=SPEC)
    assert _status(e.value) == 400
    with pytest.raises(NotFoundException):
        pc.delete_index("missing")


def test_deletion_protection(pc):
    pc.create_index(name="keep", dimension=DIM, spec=SPEC, deletion_protection="enabled")
    assert pc.describe_index("keep").deletion_protection == "enabled"
    with pytest.raises(ForbiddenException) as e:
        pc.delete_index("keep")
    assert _status(e.value) == 403
    pc.configure_index("keep", deletion_protection="disabled")
    pc.delete_index("keep")
    assert not pc.has_index("keep")


def test_index_by_name_resolves_host(double, pc):
    pc.create_index(name="byname", dimension=DIM, spec=SPEC)
    idx = pc.Index("byname")
    idx.upsert(vectors=[("a", [1.0, 0, 0, 0])])
    assert double.namespaces("byname") == {"": 1}


def test_describe_shape_follows_api_version(double):
    double.create_index("shape", dimension=3, metric="euclidean")
    status, old = raw(f"{double.host}/indexes/shape", version="2025-10")
    assert status == 200
    assert old["dimension"] == 3 and old["metric"] == "euclidean"
    assert old["spec"] == {"serverless": {"cloud": "aws", "region": "us-east-1"}}
    status, new = raw(f"{double.host}/indexes/shape", version="2026-07")
    assert status == 200
    assert new["schema"]["fields"]["_values"] == {
        "type": "dense_vector",
        "dimension": 3,
        "metric": "euclidean",
    }
    assert new["deployment"] == {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"}
    assert old["host"] == new["host"] == double.index_host("shape")


def test_create_rejects_bad_requests_server_side(double):
    base = {"name": "ok", "dimension": 4, "metric": "cosine",
            "spec": {"serverless": {"cloud": "aws", "region": "us-east-1"}}}
    for bad in (
        {**base, "name": "Bad_Name"},
        {**base, "dimension": 0},
        {**base, "dimension": 20001},
        {**base, "metric": "manhattan"},
        {**base, "spec": {"serverless": {"cloud": "ibm", "region": "x"}}},
        {**base, "spec": {"pod": {"environment": "x", "pod_type": "p1.x1"}}},
    ):
        status, body = raw(f"{double.host}/indexes", "POST", bad)
        assert status == 400, bad
        assert body["error"]["code"] == "INVALID_ARGUMENT" and body["status"] == 400
    assert double.index_names() == []


# ---------------------------------------------------------------------------
# data plane
# ---------------------------------------------------------------------------


def _cos(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_upsert_query_fetch_stats(double, index):
    rng = np.random.default_rng(0)
    vecs = {f"v{i}": rng.normal(size=DIM).tolist() for i in range(20)}
    resp = index.upsert(
        vectors=[(vid, v, {"n": i, "text": f"doc {i}"}) for i, (vid, v) in enumerate(vecs.items())]
    )
    assert resp.upserted_count == 20

    q = rng.normal(size=DIM).tolist()
    res = index.query(vector=q, top_k=5, include_metadata=True, include_values=True)
    expected = sorted(vecs, key=lambda vid: -_cos(q, vecs[vid]))[:5]
    assert [m.id for m in res.matches] == expected
    for m in res.matches:
        assert m.score == pytest.approx(_cos(q, vecs[m.id]), abs=1e-5)
        assert m.values == pytest.approx(vecs[m.id], abs=1e-6)
        assert m.metadata["text"] == f"doc {m.metadata['n']}"
    bare = index.query(vector=q, top_k=3)
    assert all(not m.values and not m.metadata for m in bare.matches)

    by_id = index.query(id="v3", top_k=1)
    assert by_id.matches[0].id == "v3"
    assert by_id.matches[0].score == pytest.approx(1.0, abs=1e-5)

    fetched = index.fetch(ids=["v1", "v2", "nope"])
    assert set(fetched.vectors) == {"v1", "v2"}
    assert fetched.vectors["v1"].values == pytest.approx(vecs["v1"], abs=1e-6)
    assert fetched.vectors["v1"].metadata == {"n": 1, "text": "doc 1"}

    stats = index.describe_index_stats()
    assert stats.dimension == DIM
    assert stats.total_vector_count == 20
    assert stats.namespaces[""].vector_count == 20


def test_values_are_stored_as_float32(double, index):
    index.upsert(vectors=[("a", [0.1, 0.2, 0.3, 0.4])])
    stored = index.fetch(ids=["a"]).vectors["a"].values
    assert stored == np.asarray([0.1, 0.2, 0.3, 0.4], np.float32).tolist()


@pytest.mark.parametrize(
    ("metric", "expected_order", "expected_scores"),
    [
        ("cosine", ["a", "b", "c"], [1.0, 0.70710677, 0.0]),
        ("dotproduct", ["c", "a", "b"], [0.0, 2.0, 1.0]),  # scores checked by id below
        ("euclidean", ["a", "b", "c"], [0.0, 1.0, 2.0]),  # squared distance, ascending
    ],
)
def test_metrics(double, pc, metric, expected_order, expected_scores):
    pc.create_index(name=f"m-{metric}", dimension=2, metric=metric, spec=SPEC)
    idx = pc.Index(host=pc.describe_index(f"m-{metric}").host)
    idx.upsert(vectors=[("a", [1.0, 0.0]), ("b", [1.0, 1.0]), ("c", [0.0, 1.0])])
    res = idx.query(vector=[1.0, 0.0], top_k=3)
    if metric == "dotproduct":
        scores = {m.id: m.score for m in res.matches}
        assert scores == pytest.approx({"a": 1.0, "b": 1.0, "c": 0.0})
        assert [m.id for m in res.matches][-1] == "c"
    else:
        assert [m.id for m in res.matches] == expected_order
        assert [m.score for m in res.matches] == pytest.approx(expected_scores, abs=1e-6)


def test_namespaces_are_isolated(double, index):
    index.upsert(vectors=[("a", [1.0, 0, 0, 0])], namespace="one")
    index.upsert(vectors=[("a", [0, 1.0, 0, 0]), ("b", [0, 0, 1.0, 0])], namespace="two")
    assert [m.id for m in index.query(vector=[1.0, 0, 0, 0], top_k=10, namespace="one").matches] == ["a"]
    assert len(index.query(vector=[1.0, 0, 0, 0], top_k=10, namespace="two").matches) == 2
    assert index.query(vector=[1.0, 0, 0, 0], top_k=10).matches == []
    stats = index.describe_index_stats()
    assert {ns: s.vector_count for ns, s in stats.namespaces.items()} == {"one": 1, "two": 2}
    assert stats.total_vector_count == 3
    assert double.vectors("docs", "two")["a"]["values"] == [0, 1.0, 0, 0]


def test_upsert_overwrites_and_update_merges(double, index):
    index.upsert(vectors=[("a", [1.0, 0, 0, 0], {"x": 1, "y": "old"})])
    index.upsert(vectors=[("a", [0, 1.0, 0, 0], {"x": 2})])
    assert double.vectors("docs")["a"] == {"values": [0, 1.0, 0, 0], "metadata": {"x": 2}}
    index.update(id="a", values=[0, 0, 1.0, 0], set_metadata={"y": "new"})
    assert double.vectors("docs")["a"] == {"values": [0, 0, 1.0, 0], "metadata": {"x": 2, "y": "new"}}
    assert double.namespaces("docs") == {"": 1}


def test_delete_by_ids_filter_and_all(double, index):
    index.upsert(
        vectors=[(f"d{i}", [1.0, float(i), 0, 0], {"parity": "even" if i % 2 == 0 else "odd"})
                 for i in range(10)],
        namespace="ns",
    )
    index.delete(ids=["d0", "d1"], namespace="ns")
    assert double.namespaces("docs") == {"ns": 8}
    index.delete(filter={"parity": {"$eq": "odd"}}, namespace="ns")
    assert sorted(double.vectors("docs", "ns")) == ["d2", "d4", "d6", "d8"]
    index.delete(delete_all=True, namespace="ns")
    assert double.namespaces("docs") == {}
    assert index.describe_index_stats().total_vector_count == 0
    # serverless Pinecone answers 404 for a delete in a namespace that holds nothing
    with pytest.raises(NotFoundException):
        index.delete(ids=["d2"], namespace="ns")


def test_list_paginates_by_prefix(index):
    index.upsert(vectors=[(f"doc1#{i:02d}", [1.0, 0, 0, float(i)]) for i in range(7)]
                 + [("doc2#00", [0, 1.0, 0, 0])])
    page = index.list_paginated(prefix="doc1#", limit=3)
    assert [v.id for v in page.vectors] == ["doc1#00", "doc1#01", "doc1#02"]
    seen = []
    token = None
    while True:
        page = index.list_paginated(prefix="doc1#", limit=3, pagination_token=token)
        seen += [v.id for v in page.vectors]
        if page.pagination is None or not page.pagination.next:
            break
        token = page.pagination.next
    assert seen == [f"doc1#{i:02d}" for i in range(7)]


def test_fetch_by_metadata(index):
    index.upsert(vectors=[(f"x{i}", [1.0, 0, 0, float(i)], {"g": "a" if i < 3 else "b"})
                          for i in range(6)])
    res = index.fetch_by_metadata(filter={"g": "a"})
    assert sorted(res.vectors) == ["x0", "x1", "x2"]


def test_deleted_index_data_plane_is_404(pc, index):
    index.upsert(vectors=[("a", [1.0, 0, 0, 0])])
    pc.delete_index("docs")
    with pytest.raises(NotFoundException):
        index.query(vector=[1.0, 0, 0, 0], top_k=1)


# ---------------------------------------------------------------------------
# metadata filters
# ---------------------------------------------------------------------------

FILTER_DATA = {
    "a": {"genre": "drama", "year": 2019, "rating": 7.5, "tags": ["x", "y"], "free": True},
    "b": {"genre": "comedy", "year": 2020, "rating": 6.0, "tags": ["y"], "free": False},
    "c": {"genre": "drama", "year": 2021, "tags": ["z"]},
    "d": {"genre": "action", "year": 2022, "rating": 8.0},
    "e": {"year": "2020"},  # a string, not a number
}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"genre": "drama"}, "ac"),
        ({"genre": {"$eq": "drama"}}, "ac"),
        ({"genre": {"$ne": "drama"}}, "bde"),  # missing field counts as "not equal"
        ({"year": {"$gt": 2020}}, "cd"),
        ({"year": {"$gte": 2020}}, "bcd"),  # "2020" (string) is not a number
        ({"year": {"$lt": 2020}}, "a"),
        ({"year": {"$lte": 2020}}, "ab"),
        ({"year": 2020}, "b"),
        ({"year": "2020"}, "e"),
        ({"rating": {"$gte": 6, "$lt": 8}}, "ab"),
        ({"genre": {"$in": ["comedy", "action"]}}, "bd"),
        ({"genre": {"$nin": ["comedy", "action"]}}, "ace"),
        ({"rating": {"$exists": True}}, "abd"),
        ({"rating": {"$exists": False}}, "ce"),
        ({"tags": "y"}, "ab"),  # list field: any element
        ({"tags": {"$eq": "x"}}, "a"),
        ({"tags": {"$in": ["x", "z"]}}, "ac"),
        ({"tags": {"$nin": ["y"]}}, "cde"),
        ({"tags": {"$ne": "y"}}, "cde"),
        ({"free": True}, "a"),
        ({"free": {"$eq": 1}}, ""),  # booleans are not numbers
        ({"$and": [{"genre": "drama"}, {"year": {"$gt": 2020}}]}, "c"),
        ({"$or": [{"genre": "comedy"}, {"rating": {"$gte": 8}}]}, "bd"),
        ({"genre": "drama", "rating": {"$exists": True}}, "a"),  # implicit $and
        ({"$or": [{"$and": [{"genre": "drama"}, {"free": True}]}, {"year": {"$in": [2022]}}]}, "ad"),
        ({}, "abcde"),  # an empty filter matches everything (llama-index sends {})
    ],
)
def test_filters(index, flt, expected):
    index.upsert(vectors=[(vid, [1.0, float(i), 0, 0], md)
                          for i, (vid, md) in enumerate(FILTER_DATA.items())])
    res = index.query(vector=[1.0, 0, 0, 0], top_k=10, filter=flt)
    assert "".join(sorted(m.id for m in res.matches)) == expected


@pytest.mark.parametrize(
    "flt",
    [
        {"genre": {"$regex": "dr.*"}},
        {"$not": {"genre": "drama"}},
        {"year": {"$gt": "2020"}},
        {"genre": {"$in": "drama"}},
        {"rating": {"$exists": 1}},
        {"$and": []},
        {"genre": {"nested": "object"}},
    ],
)
def test_invalid_filters_are_400(index, flt):
    index.upsert(vectors=[("a", [1.0, 0, 0, 0], {"genre": "drama"})])
    with pytest.raises(PineconeApiException) as e:
        index.query(vector=[1.0, 0, 0, 0], top_k=1, filter=flt)
    assert _status(e.value) == 400


# ---------------------------------------------------------------------------
# limits
# ---------------------------------------------------------------------------


def _assert_400(fn, *args, **kwargs):
    with pytest.raises(PineconeApiException) as e:
        fn(*args, **kwargs)
    assert _status(e.value) == 400, e.value
    return e.value


def test_upsert_limit_1000_vectors(double, index):
    vecs = [(f"v{i}", [1.0, 0, 0, float(i)]) for i in range(1001)]
    _assert_400(index.upsert, vectors=vecs)
    assert double.namespaces("docs") == {}  # nothing half-written
    index.upsert(vectors=vecs[:1000])
    assert double.namespaces("docs") == {"": 1000}
    # the SDK's own batching stays within the limit
    double.clear_requests()
    index.upsert(vectors=[(f"w{i}", [1.0, 0, 0, float(i)]) for i in range(2500)],
                 batch_size=1000, show_progress=False)
    sent = double.requests_to("/vectors/upsert")
    assert sorted(r.vector_count for r in sent) == [500, 1000, 1000]
    assert all(r.status == 200 for r in sent)


def test_request_body_limit(double, pc):
    pc.create_index(name="wide", dimension=1000, spec=SPEC)
    idx = pc.Index(host=pc.describe_index("wide").host)
    v = [0.123456789] * 1000
    err = _assert_400(idx.upsert, vectors=[(f"v{i}", v) for i in range(200)])
    assert "exceeds the maximum supported size" in str(err)
    big = double.requests[-1]
    assert big.body_bytes > MAX_REQUEST_BYTES and big.status == 400 and big.vector_count == 200
    idx.upsert(vectors=[(f"v{i}", v) for i in range(100)])
    assert double.requests[-1].body_bytes < MAX_REQUEST_BYTES


def _rejected(fn, *args, **kwargs):
    """The SDK refuses the call: either the double answered 400, or a newer SDK caught it first."""
    with pytest.raises((PineconeApiException, ValueError, TypeError)) as e:
        fn(*args, **kwargs)
    if isinstance(e.value, PineconeApiException):
        assert _status(e.value) == 400, e.value


def _upsert_raw(double, vectors, index="docs"):
    return raw(f"{double.index_host(index)}/vectors/upsert", "POST", {"vectors": vectors})


def test_metadata_limits(double, index):
    def md_of_size(n):  # compact JSON size of {"t": "..."} is len + 8
        return {"t": "x" * (n - 8)}

    index.upsert(vectors=[("ok", [1.0, 0, 0, 0], md_of_size(MAX_METADATA_BYTES))])
    err = _assert_400(index.upsert, vectors=[("big", [1.0, 0, 0, 0], md_of_size(MAX_METADATA_BYTES + 1))])
    assert "40960 bytes" in str(err)
    _rejected(index.upsert, vectors=[("n", [1.0, 0, 0, 0], {"k": None})])
    _rejected(index.upsert, vectors=[("o", [1.0, 0, 0, 0], {"k": {"nested": 1}})])
    _rejected(index.upsert, vectors=[("l", [1.0, 0, 0, 0], {"k": [1, 2]})])
    index.upsert(vectors=[("types", [1.0, 0, 0, 0], {"s": "a", "i": 1, "f": 1.5, "b": False, "l": ["a"]})])
    # the double itself enforces every rule, whatever the SDK checks client-side
    for md in ({"k": None}, {"k": {"nested": 1}}, {"k": [1, 2]}, md_of_size(MAX_METADATA_BYTES + 1)):
        status, body = _upsert_raw(double, [{"id": "raw", "values": [1, 0, 0, 0], "metadata": md}])
        assert status == 400 and body["code"] == 3, md
    assert sorted(double.vectors("docs")) == ["ok", "types"]


def test_id_and_vector_limits(double, index):
    index.upsert(vectors=[("i" * 512, [1.0, 0, 0, 0])])
    _assert_400(index.upsert, vectors=[("i" * 513, [1.0, 0, 0, 0])])
    _rejected(index.upsert, vectors=[("", [1.0, 0, 0, 0])])
    err = _assert_400(index.upsert, vectors=[("short", [1.0, 0, 0])])
    assert "dimension 3 does not match the dimension of the index 4" in str(err)
    _rejected(index.upsert, vectors=[("zero", [0.0, 0, 0, 0])])
    _assert_400(index.query, vector=[1.0, 0], top_k=1)
    _rejected(index.query, vector=[1.0, 0, 0, 0], top_k=10_001)
    index.query(vector=[1.0, 0, 0, 0], top_k=10_000)
    assert list(double.vectors("docs")) == ["i" * 512]
    # the double itself enforces every rule, whatever the SDK checks client-side
    url = double.index_host("docs")
    for top_k in (0, 10_001, 1.5, None):
        assert raw(f"{url}/query", "POST", {"vector": [1, 0, 0, 0], "topK": top_k})[0] == 400
    for vectors in (
        [],
        [{"id": "", "values": [1, 0, 0, 0]}],
        [{"id": "z", "values": [0, 0, 0, 0]}],
        [{"id": "n", "values": [1, None, 0, 0]}],
        [{"id": 7, "values": [1, 0, 0, 0]}],
        [{"id": "\u00e9" * 257, "values": [1, 0, 0, 0]}],  # 514 bytes in UTF-8
    ):
        status, body = _upsert_raw(double, vectors)
        assert status == 400 and body["code"] == 3 and body["message"], vectors
    assert raw(f"{url}/vectors/fetch?ids=" + "&ids=".join(map(str, range(1001))))[0] == 400
    assert raw(f"{url}/vectors/delete", "POST", {"ids": [str(i) for i in range(1001)]})[0] == 400
    assert list(double.vectors("docs")) == ["i" * 512]


# ---------------------------------------------------------------------------
# auth
# ---------------------------------------------------------------------------


def test_wrong_api_key_is_401(double, index):
    bad = Pinecone(api_key="wrong", host=double.host)
    with pytest.raises(UnauthorizedException) as e:
        bad.list_indexes()
    assert _status(e.value) == 401
    bad_idx = bad.Index(host=double.index_host("docs"))
    with pytest.raises(UnauthorizedException):
        bad_idx.upsert(vectors=[("a", [1.0, 0, 0, 0])])
    assert double.namespaces("docs") == {}
    assert raw(f"{double.host}/indexes", key=None)[0] == 401
    assert raw(f"{double.index_host('docs')}/describe_index_stats", "POST", {}, key=None)[0] == 401


# ---------------------------------------------------------------------------
# failure injection and recording
# ---------------------------------------------------------------------------


def test_transient_429_is_retried_by_the_sdk(double, index):
    rule = double.fail_next("/vectors/upsert", status=429, times=2, retry_after=0)
    index.upsert(vectors=[("a", [1.0, 0, 0, 0])])
    assert rule.fired == 2
    assert [r.status for r in double.requests_to("/vectors/upsert")] == [429, 429, 200]
    assert double.namespaces("docs") == {"": 1}


def test_persistent_429_and_5xx_surface_after_sdk_retries(double, index):
    double.fail_next("/vectors/upsert", status=429, times=10, retry_after=0)
    with pytest.raises(RateLimitException) as e:
        index.upsert(vectors=[("a", [1.0, 0, 0, 0])])
    assert _status(e.value) == 429
    attempts = len(double.requests_to("/vectors/upsert"))
    assert attempts == 4  # the SDK's own retries: 1 try + 3 retries (9.x/10.x default RetryConfig)
    double.clear_failures()
    double.fail_next("/query", status=503, times=10)  # Retry-After: 0 by default
    with pytest.raises(ServiceException):
        index.query(vector=[1.0, 0, 0, 0], top_k=1)
    assert double.namespaces("docs") == {}


def test_non_retryable_failure_is_sent_once(double, index):
    double.fail_next("/vectors/upsert", status=400, times=5)
    _assert_400(index.upsert, vectors=[("a", [1.0, 0, 0, 0])])
    assert [r.status for r in double.requests_to("/vectors/upsert")] == [400]


def test_permanent_failure_after_successes(double, index):
    rule = double.fail_after("/vectors/upsert", successes=1, status=400, message="boom")
    index.upsert(vectors=[("a", [1.0, 0, 0, 0])])
    err = _assert_400(index.upsert, vectors=[("b", [0, 1.0, 0, 0])])
    assert "boom" in str(err)
    _assert_400(index.upsert, vectors=[("c", [0, 0, 1.0, 0])])
    assert rule.fired == 2 and rule.seen == 3
    assert sorted(double.vectors("docs")) == ["a"]
    index.query(vector=[1.0, 0, 0, 0], top_k=1)  # other paths unaffected
    double.clear_failures()
    index.upsert(vectors=[("b", [0, 1.0, 0, 0])])
    assert sorted(double.vectors("docs")) == ["a", "b"]


def test_partial_failure_in_sdk_batched_upsert(double, index):
    double.fail_after("/vectors/upsert", successes=2, status=400)
    resp = index.upsert(vectors=[(f"v{i}", [1.0, 0, 0, float(i)]) for i in range(50)],
                        batch_size=10, max_concurrency=1, show_progress=False)
    if hasattr(resp, "failed_batch_count"):  # SDK >= 9 reports per-batch failures
        assert resp.failed_batch_count == 3
        assert resp.upserted_count == 20
    assert double.namespaces("docs") == {"": 20}


def test_failure_injection_on_control_plane(double, pc):
    double.fail_next("/indexes", status=500, times=1, method="POST", retry_after=0)
    pc.create_index(name="retry", dimension=DIM, spec=SPEC)  # SDK retries 500 once
    assert [r.status for r in double.requests_to("/indexes") if r.method == "POST"] == [500, 201]


def test_requests_are_recorded(double, index):
    double.clear_requests()
    index.upsert(vectors=[("a", [1.0, 0, 0, 0]), ("b", [0, 1.0, 0, 0])], namespace="n")
    index.fetch(ids=["a"], namespace="n")
    index.query(vector=[1.0, 0, 0, 0], top_k=1, namespace="n")
    methods_paths = [(r.method, r.path, r.vector_count, r.status, r.index) for r in double.requests]
    assert methods_paths == [
        ("POST", "/vectors/upsert", 2, 200, "docs"),
        ("GET", "/vectors/fetch", 1, 200, "docs"),
        ("POST", "/query", 0, 200, "docs"),
    ]
    assert double.requests[0].body_bytes > 0
    assert double.requests[0].api_version


def test_concurrent_clients(double, index):
    def worker(t):
        idx = Pinecone(api_key=KEY, host=double.host).Index(host=double.index_host("docs"))
        for b in range(5):
            idx.upsert(vectors=[(f"t{t}-{b}-{i}", [1.0, float(t), float(b), float(i)])
                                for i in range(20)], namespace=f"ns{t % 2}")
            idx.query(vector=[1.0, 0, 0, 0], top_k=3, namespace=f"ns{t % 2}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert double.namespaces("docs") == {"ns0": 400, "ns1": 400}
    assert sum(1 for r in double.requests if r.path == "/vectors/upsert" and r.status == 200) == 40


def test_stop_releases_ports(double, pc):
    pc.create_index(name="tmp", dimension=DIM, spec=SPEC)
    host = double.index_host("tmp")
    double.stop()
    with pytest.raises(OSError):  # connection refused: the port is closed
        raw(f"{host}/describe_index_stats", "POST", {})
