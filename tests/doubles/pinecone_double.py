"""PineconeDouble: a test double of Pinecone's REST API, not Pinecone.

It is an in-process HTTP server (``http.server.ThreadingHTTPServer`` on
127.0.0.1, ephemeral ports) that speaks enough of Pinecone's control-plane and
data-plane REST API for the REAL ``pinecone`` Python SDK (9.x and 10.x, whose
data plane is REST over httpx) to run against it unchanged.  Nothing here talks
to Pinecone; it only imitates the wire format, the documented limits and the
error bodies, so that code using the SDK can be tested offline.

Layout (like the real service, every index has its own host):

* ``double.host`` -- the control plane (``Pinecone(api_key=..., host=double.host)``):
  ``POST /indexes``, ``GET /indexes``, ``GET|PATCH|DELETE /indexes/{name}``.
  Describe replies are shaped for the caller's ``X-Pinecone-Api-Version``:
  ``2026-07`` or later (SDK 10.x) gets ``schema`` + ``deployment``; older
  versions (SDK 9.x sends ``2025-10``) get ``dimension``/``metric``/``spec``.
* each index gets its own server/port; its ``host`` (``http://127.0.0.1:PORT``,
  scheme included so the SDK keeps plain http) is in the describe reply:
  ``POST /vectors/upsert``, ``POST /query``, ``GET /vectors/fetch``,
  ``POST /vectors/fetch_by_metadata``, ``POST /vectors/delete``,
  ``POST /vectors/update``, ``POST /describe_index_stats``, ``GET /vectors/list``.

Connecting::

    with PineconeDouble(api_key="test-key") as double:
        pc = Pinecone(api_key="test-key", host=double.host)
        pc.create_index(name="docs", dimension=8, metric="cosine",
                        spec=ServerlessSpec(cloud="aws", region="us-east-1"))
        index = pc.Index(host=pc.describe_index("docs").host)   # or pc.Index("docs")

Enforced limits (400, Pinecone-shaped body ``{"code": 3, "message": ..., "details": []}``):
at most 1,000 vectors per upsert, request body at most 2 MiB, metadata at most
40,960 bytes per vector (compact JSON), id non-empty and at most 512 bytes,
metadata values string / number / bool / list of strings (no null, no objects),
vector length equal to the index dimension and at least one non-zero value,
topK 1..10,000, at most 1,000 ids per fetch/delete.  A missing or wrong
``Api-Key`` gives 401.  Deleting from a namespace that holds no vectors gives
404 "Namespace not found", as serverless Pinecone does.

Semantics: vector values are stored as float32 (as Pinecone does), scores are
float32: cosine similarity, dot product, or squared euclidean distance
(ascending).  Metadata filters: ``$eq $ne $gt $gte $lt $lte $in $nin $exists
$and $or`` and the ``{"field": value}`` shorthand for ``$eq``; on a list-valued
field ``$eq``/``$in`` match when any element matches and ``$ne``/``$nin`` when
none does; ``$ne``/``$nin`` also match records without the field.

Test hooks: ``requests`` (list of :class:`RecordedRequest`), ``fail_next`` /
``fail_after`` (failure injection), ``vectors()``/``namespaces()`` (state
snapshots), ``create_index()`` (create without HTTP).  All state is guarded by
one lock; the double is safe to hit from many client threads.

Not modelled: sparse vectors, integrated inference / records / search, pod and
BYOC specs, namespaces API, imports, backups, collections, eventual
consistency (writes are visible at once).  Such requests get a 400/404 whose
message names PineconeDouble.
"""

from __future__ import annotations

import base64
import json
import math
import re
import socket
import threading
from array import array
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "PineconeDouble",
    "RecordedRequest",
    "FailureRule",
    "MAX_VECTORS_PER_UPSERT",
    "MAX_REQUEST_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_ID_BYTES",
    "MAX_TOP_K",
    "MAX_IDS_PER_REQUEST",
]

# Documented Pinecone operation limits.
MAX_VECTORS_PER_UPSERT = 1000
MAX_REQUEST_BYTES = 2 * 1024 * 1024  # "2 MB"
MAX_METADATA_BYTES = 40960  # "40 KB"; Pinecone's own error message says 40960 bytes
MAX_ID_BYTES = 512
MAX_TOP_K = 10_000
MAX_IDS_PER_REQUEST = 1000  # fetch and delete
MAX_DIMENSION = 20_000
MAX_LIST_LIMIT = 100
MAX_INDEX_NAME = 45
SCHEMA_API_VERSION = "2026-07"  # first API version whose index model has schema/deployment

_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_METRICS = ("cosine", "dotproduct", "euclidean")
_CLOUDS = ("aws", "gcp", "azure")

# HTTP status -> (gRPC code used by the data plane, code string used by the control plane)
_CODES = {
    400: (3, "INVALID_ARGUMENT"),
    401: (16, "UNAUTHENTICATED"),
    403: (7, "FORBIDDEN"),
    404: (5, "NOT_FOUND"),
    409: (6, "ALREADY_EXISTS"),
    412: (9, "FAILED_PRECONDITION"),
    413: (3, "INVALID_ARGUMENT"),
    429: (8, "RESOURCE_EXHAUSTED"),
    500: (13, "UNKNOWN"),
    502: (14, "UNAVAILABLE"),
    503: (14, "UNAVAILABLE"),
    504: (4, "DEADLINE_EXCEEDED"),
}

_DEFAULT_MESSAGES = {
    400: "Bad request",
    401: "Invalid API Key",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    429: "Too many requests. Please retry shortly.",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable. Please retry shortly.",
    504: "Deadline exceeded",
}


class RecordedRequest(NamedTuple):
    """One request the double received (recorded whatever the outcome)."""

    method: str
    path: str  # path only, no query string
    body_bytes: int  # size of the request body (the JSON) in bytes
    vector_count: int  # vectors in an upsert; ids in a fetch/delete; else 0
    status: int  # HTTP status the double answered with
    index: str | None  # index name for data-plane requests, None for the control plane
    api_version: str | None  # X-Pinecone-Api-Version header


@dataclass
class FailureRule:
    """A failure-injection rule; see :meth:`PineconeDouble.fail_next` / ``fail_after``."""

    path: str | None
    status: int
    skip: int  # matching requests still to let through before failing
    remaining: int | None  # failures still to inject; None = forever
    method: str | None = None
    index: str | None = None
    message: str | None = None
    retry_after: float | None = None
    fired: int = 0  # how many requests this rule has failed so far
    seen: int = 0  # how many requests matched this rule so far

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def _matches(self, method: str, path: str, index: str | None) -> bool:
        if self.path is not None and self.path != path:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.index is not None and self.index != index:
            return False
        return True


class _Error(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _bad(message: str) -> _Error:
    return _Error(400, message)


# ---------------------------------------------------------------------------
# value helpers
# ---------------------------------------------------------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _f32(values: list[float]) -> list[float]:
    return array("f", values).tolist()


def _f32_scalar(x: float) -> float:
    return array("f", [x])[0]


def _json_size(obj: Any) -> int:
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _same(a: Any, b: Any) -> bool:
    """Equality with JSON typing: bools only equal bools, numbers compare numerically."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return float(a) == float(b)
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return False


# ---------------------------------------------------------------------------
# metadata filters
# ---------------------------------------------------------------------------

_FIELD_OPS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")


def _validate_filter(flt: Any, where: str = "filter") -> None:
    if not isinstance(flt, dict):
        raise _bad(f"{where} must be a JSON object, got {type(flt).__name__}")
    for key, cond in flt.items():
        if key in ("$and", "$or"):
            if not isinstance(cond, list) or not cond:
                raise _bad(f"{where}: {key} requires a non-empty array of filter objects")
            for i, sub in enumerate(cond):
                _validate_filter(sub, f"{where}.{key}[{i}]")
        elif key.startswith("$"):
            raise _bad(f"{where}: unsupported top-level operator {key!r}")
        else:
            _validate_condition(key, cond, where)


def _validate_condition(fname: str, cond: Any, where: str) -> None:
    if not isinstance(cond, dict):
        # shorthand {"field": value} == {"field": {"$eq": value}}
        if isinstance(cond, str) or _is_number(cond) or isinstance(cond, bool):
            return
        raise _bad(
            f"{where}: invalid value for field {fname!r}: expected a string, number, "
            f"boolean or an operator object, got {json.dumps(cond)}"
        )
    if not cond:
        raise _bad(f"{where}: empty operator object for field {fname!r}")
    for op, val in cond.items():
        if op not in _FIELD_OPS:
            raise _bad(f"{where}: unsupported operator {op!r} for field {fname!r}")
        if op in ("$eq", "$ne"):
            if not (isinstance(val, str) or _is_number(val) or isinstance(val, bool)):
                raise _bad(f"{where}: {op} for field {fname!r} needs a string, number or boolean")
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            if not _is_number(val):
                raise _bad(f"{where}: {op} for field {fname!r} needs a number")
        elif op in ("$in", "$nin"):
            if not isinstance(val, list):
                raise _bad(f"{where}: {op} for field {fname!r} needs an array")
            for x in val:
                if not (isinstance(x, str) or _is_number(x)):
                    raise _bad(
                        f"{where}: {op} for field {fname!r} accepts only strings and numbers"
                    )
        elif op == "$exists":
            if not isinstance(val, bool):
                raise _bad(f"{where}: $exists for field {fname!r} needs a boolean")


def _match(flt: dict[str, Any], md: dict[str, Any]) -> bool:
    for key, cond in flt.items():
        if key == "$and":
            if not all(_match(sub, md) for sub in cond):
                return False
        elif key == "$or":
            if not any(_match(sub, md) for sub in cond):
                return False
        else:
            ops = cond if isinstance(cond, dict) else {"$eq": cond}
            for op, val in ops.items():
                if not _match_op(op, val, key in md, md.get(key)):
                    return False
    return True


def _eq_any(stored: Any, val: Any) -> bool:
    if isinstance(stored, list):
        return any(_same(x, val) for x in stored)
    return _same(stored, val)


def _match_op(op: str, val: Any, present: bool, stored: Any) -> bool:
    if op == "$exists":
        return present == val
    if op == "$eq":
        return present and _eq_any(stored, val)
    if op == "$ne":
        return not (present and _eq_any(stored, val))
    if op == "$in":
        return present and any(_eq_any(stored, v) for v in val)
    if op == "$nin":
        return not (present and any(_eq_any(stored, v) for v in val))
    # numeric comparisons: only numbers (not bools, strings or lists) take part
    if not present or not _is_number(stored):
        return False
    if op == "$gt":
        return stored > val
    if op == "$gte":
        return stored >= val
    if op == "$lt":
        return stored < val
    return stored <= val  # $lte


# ---------------------------------------------------------------------------
# index state
# ---------------------------------------------------------------------------


@dataclass
class _Record:
    values: list[float]
    metadata: dict[str, Any] | None


@dataclass
class _Index:
    name: str
    dimension: int
    metric: str
    cloud: str
    region: str
    deletion_protection: str = "disabled"
    tags: dict[str, str] = field(default_factory=dict)
    vector_field: str = "_values"
    extra_fields: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    host: str = ""
    deleted: bool = False
    server: Any = None
    namespaces: dict[str, dict[str, _Record]] = field(default_factory=dict)

    def describe(self, api_version: str | None) -> dict[str, Any]:
        status = {"ready": True, "state": "Ready"}
        if api_version is not None and api_version >= SCHEMA_API_VERSION:
            fields = {
                self.vector_field: {
                    "type": "dense_vector",
                    "dimension": self.dimension,
                    "metric": self.metric,
                }
            }
            fields.update(self.extra_fields)
            out: dict[str, Any] = {
                "name": self.name,
                "status": status,
                "schema": {"fields": fields},
                "deployment": {
                    "deployment_type": "managed",
                    "cloud": self.cloud,
                    "region": self.region,
                },
                "deletion_protection": self.deletion_protection,
                "host": self.host,
                "read_capacity": {"mode": "OnDemand", "status": {"state": "Ready"}},
            }
        else:
            out = {
                "name": self.name,
                "dimension": self.dimension,
                "metric": self.metric,
                "host": self.host,
                "status": status,
                "spec": {"serverless": {"cloud": self.cloud, "region": self.region}},
                "vector_type": "dense",
                "deletion_protection": self.deletion_protection,
                "created_at": self.created_at,
            }
        if self.tags:
            out["tags"] = dict(self.tags)
        return out


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, double: PineconeDouble, index_name: str | None):
        self.double = double
        self.index_name = index_name
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"pinecone-double-{index_name or 'control'}",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close_all(self) -> None:
        self.shutdown()
        self.server_close()
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PineconeDouble/1.0"
    server: _Server

    def setup(self) -> None:
        super().setup()
        try:  # answer in one segment; avoids Nagle + delayed-ACK stalls of ~40 ms
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        with self.server._conns_lock:
            self.server._conns.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server._conns_lock:
                self.server._conns.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # silence the default stderr access log

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        status, payload, headers = self.server.double._handle(
            self.command, self.path, self.headers, body, self.server.index_name
        )
        data = b"" if payload is None else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self._headers_buffer.append(b"\r\n" + data)  # headers and body in one write
        self.flush_headers()

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _dispatch


# ---------------------------------------------------------------------------
# the double
# ---------------------------------------------------------------------------


class PineconeDouble:
    """A test double of Pinecone's REST API, not Pinecone.

    Args:
        api_key: the key every request must carry in its ``Api-Key`` header.
        max_request_bytes / max_vectors_per_upsert / max_metadata_bytes /
        max_id_bytes / max_top_k: the enforced limits (Pinecone's by default).
        missing_namespace_delete_404: answer a delete in a namespace without
            vectors with 404 "Namespace not found" (serverless Pinecone does).

    Use as a context manager or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        api_key: str = "pinecone-double-key",
        *,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_vectors_per_upsert: int = MAX_VECTORS_PER_UPSERT,
        max_metadata_bytes: int = MAX_METADATA_BYTES,
        max_id_bytes: int = MAX_ID_BYTES,
        max_top_k: int = MAX_TOP_K,
        missing_namespace_delete_404: bool = True,
    ) -> None:
        self.api_key = api_key
        self.max_request_bytes = max_request_bytes
        self.max_vectors_per_upsert = max_vectors_per_upsert
        self.max_metadata_bytes = max_metadata_bytes
        self.max_id_bytes = max_id_bytes
        self.max_top_k = max_top_k
        self.missing_namespace_delete_404 = missing_namespace_delete_404
        self.requests: list[RecordedRequest] = []
        self.internal_errors: list[BaseException] = []  # bugs in the double itself (answered 500)
        self._lock = threading.RLock()
        self._indexes: dict[str, _Index] = {}
        self._servers: list[_Server] = []
        self._rules: list[FailureRule] = []
        self._control: _Server | None = None
        self._request_seq = 0

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> PineconeDouble:
        with self._lock:
            if self._control is None:
                self._control = self._start_server(None)
        return self

    def stop(self) -> None:
        with self._lock:
            servers, self._servers = self._servers, []
            self._control = None
        for s in servers:
            s.close_all()

    def __enter__(self) -> PineconeDouble:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.host if self._control else "stopped"
        return f"<PineconeDouble (test double, not Pinecone) {state}>"

    @property
    def host(self) -> str:
        """Control-plane URL, e.g. ``http://127.0.0.1:54321``; pass as ``Pinecone(host=...)``."""
        if self._control is None:
            raise RuntimeError("PineconeDouble is not started")
        return self._control.url

    def _start_server(self, index_name: str | None) -> _Server:
        server = _Server(self, index_name)
        server.thread.start()
        self._servers.append(server)
        return server

    # -- direct state access for tests ---------------------------------------

    def create_index(
        self,
        name: str,
        dimension: int,
        metric: str = "cosine",
        *,
        cloud: str = "aws",
        region: str = "us-east-1",
        deletion_protection: str = "disabled",
        tags: dict[str, str] | None = None,
    ) -> str:
        """Create an index without going through HTTP; returns its data-plane host."""
        body = {
            "name": name,
            "dimension": dimension,
            "metric": metric,
            "spec": {"serverless": {"cloud": cloud, "region": region}},
            "deletion_protection": deletion_protection,
        }
        if tags:
            body["tags"] = tags
        with self._lock:
            try:
                return self._create_index(body).host
            except _Error as e:
                raise ValueError(e.message) from None

    def index_host(self, name: str) -> str:
        with self._lock:
            return self._get_index(name).host

    def index_names(self) -> list[str]:
        with self._lock:
            return list(self._indexes)

    def namespaces(self, index: str) -> dict[str, int]:
        """``{namespace: vector_count}`` for an index (only namespaces holding vectors)."""
        with self._lock:
            return {ns: len(recs) for ns, recs in self._get_index(index).namespaces.items()}

    def vectors(self, index: str, namespace: str = "") -> dict[str, dict[str, Any]]:
        """Snapshot ``{id: {"values": [...], "metadata": {...} | None}}`` of one namespace."""
        with self._lock:
            recs = self._get_index(index).namespaces.get(namespace, {})
            return {
                vid: {
                    "values": list(r.values),
                    "metadata": None if r.metadata is None else json.loads(json.dumps(r.metadata)),
                }
                for vid, r in recs.items()
            }

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def requests_to(self, path: str, *, index: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path equals ``path`` (optionally for one index)."""
        with self._lock:
            return [
                r for r in self.requests if r.path == path and (index is None or r.index == index)
            ]

    # -- failure injection -------------------------------------------------

    def fail_next(
        self,
        path: str | None,
        status: int = 429,
        times: int = 1,
        *,
        method: str | None = None,
        index: str | None = None,
        message: str | None = None,
        retry_after: float | None = 0.0,
    ) -> FailureRule:
        """Fail the next ``times`` requests to ``path`` with ``status`` (a transient fault).

        ``path`` is the URL path without query (``"/vectors/upsert"``) or None for any.
        ``retry_after`` is sent as a ``Retry-After`` header (default 0, so the SDK's own
        retries of 408/429/5xx do not sleep; None omits the header and the SDK then backs
        off for 0.25 s and more per retry).  The failed request has no effect on stored data.
        """
        return self._add_rule(path, status, 0, times, method, index, message, retry_after)

    def fail_after(
        self,
        path: str | None,
        successes: int,
        status: int = 400,
        *,
        times: int | None = None,
        method: str | None = None,
        index: str | None = None,
        message: str | None = None,
        retry_after: float | None = 0.0,
    ) -> FailureRule:
        """Let ``successes`` matching requests through, then fail every later one
        (or only ``times`` of them) with ``status`` -- a permanent fault by default.
        Other arguments as for :meth:`fail_next`."""
        return self._add_rule(path, status, successes, times, method, index, message, retry_after)

    def clear_failures(self) -> None:
        with self._lock:
            self._rules.clear()

    def _add_rule(self, path, status, skip, times, method, index, message, retry_after):
        if not 400 <= int(status) <= 599:
            raise ValueError("status must be an HTTP error status (400..599)")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        if skip < 0:
            raise ValueError("successes must be >= 0")
        rule = FailureRule(
            path=path,
            status=int(status),
            skip=skip,
            remaining=times,
            method=method.upper() if method else None,
            index=index,
            message=message,
            retry_after=retry_after,
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def _injected(self, method: str, path: str, index: str | None) -> _Error | None:
        for rule in self._rules:
            if rule.exhausted or not rule._matches(method, path, index):
                continue
            rule.seen += 1
            if rule.skip > 0:
                rule.skip -= 1
                continue
            rule.fired += 1
            if rule.remaining is not None:
                rule.remaining -= 1
            headers = {}
            if rule.retry_after is not None:
                headers["Retry-After"] = f"{rule.retry_after:g}"
            msg = rule.message or _DEFAULT_MESSAGES.get(rule.status, "Injected failure")
            return _Error(rule.status, msg, headers)
        return None

    # -- request handling --------------------------------------------------

    def _handle(
        self, method: str, raw_path: str, headers: Any, body: bytes, index_name: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(raw_path)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        api_version = headers.get("X-Pinecone-Api-Version")
        with self._lock:
            self._request_seq += 1
            extra = {"x-pinecone-request-id": f"pinecone-double-{self._request_seq}"}
            parsed: Any = None
            count = 0
            try:
                if body:
                    try:
                        parsed = json.loads(body)
                    except ValueError:
                        parsed = _Error(400, "Invalid request body: not valid JSON")
                count = _count_vectors(path, parsed, query)
                if headers.get("Api-Key") != self.api_key:
                    raise _Error(401, "Invalid API Key")
                injected = self._injected(method, path, index_name)
                if injected is not None:
                    raise injected
                if isinstance(parsed, _Error):
                    raise parsed
                if index_name is None:
                    status, payload = self._control_plane(method, path, parsed, api_version)
                else:
                    status, payload = self._data_plane(
                        index_name, method, path, parsed, query, len(body)
                    )
            except _Error as e:
                status = e.status
                extra.update(e.headers)
                payload = _error_body(e.status, e.message, data_plane=index_name is not None)
            except Exception as e:  # a bug in the double: make it loud, never silent
                self.internal_errors.append(e)
                status = 500
                payload = _error_body(
                    500,
                    f"PineconeDouble internal error (a bug in the test double): {e!r}",
                    data_plane=index_name is not None,
                )
            self.requests.append(
                RecordedRequest(method, path, len(body), count, status, index_name, api_version)
            )
            return status, payload, extra

    # -- control plane -----------------------------------------------------

    def _get_index(self, name: str) -> _Index:
        idx = self._indexes.get(name)
        if idx is None:
            raise _Error(404, f"Resource {name} not found")
        return idx

    def _control_plane(self, method: str, path: str, body: Any, api_version: str | None):
        if path in ("/indexes", "/indexes/"):
            if method == "GET":
                return 200, {"indexes": [i.describe(api_version) for i in self._indexes.values()]}
            if method == "POST":
                return 201, self._create_index(_require_object(body)).describe(api_version)
        elif path == "/indexes/create-for-model":
            raise _bad("PineconeDouble does not support integrated-inference indexes")
        elif path.startswith("/indexes/"):
            name = unquote(path[len("/indexes/") :])
            if "/" not in name:
                if method == "GET":
                    return 200, self._get_index(name).describe(api_version)
                if method == "DELETE":
                    idx = self._get_index(name)
                    if idx.deletion_protection == "enabled":
                        raise _Error(
                            403,
                            f"Deletion protection is enabled for index '{name}'. "
                            "Disable deletion protection before retrying.",
                        )
                    idx.deleted = True
                    idx.namespaces.clear()
                    del self._indexes[name]
                    return 202, None
                if method == "PATCH":
                    return 200, self._configure_index(name, _require_object(body)).describe(
                        api_version
                    )
        raise _Error(404, f"PineconeDouble does not implement {method} {path}")

    def _create_index(self, body: dict[str, Any]) -> _Index:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise _bad("Invalid request: name is required")
        if len(name) > MAX_INDEX_NAME or not _NAME_RE.match(name):
            raise _bad(
                f"Invalid index name {name!r}: must be 1-{MAX_INDEX_NAME} characters of lowercase "
                "letters, digits and '-', starting and ending with a letter or digit"
            )
        vector_field = "_values"
        extra_fields: dict[str, Any] = {}
        if "schema" in body or "deployment" in body:  # API 2026-07 request shape
            dimension, metric, vector_field, extra_fields = _parse_schema(body.get("schema"))
            dep = body.get("deployment")
            if not isinstance(dep, dict):
                raise _bad("Invalid request: deployment is required")
            if dep.get("deployment_type") != "managed":
                raise _bad(
                    "PineconeDouble supports only managed (serverless) deployments, "
                    f"got deployment_type={dep.get('deployment_type')!r}"
                )
            cloud, region = dep.get("cloud"), dep.get("region")
        else:  # API <= 2025-10 request shape
            dimension = body.get("dimension")
            metric = body.get("metric", "cosine")
            vtype = body.get("vector_type", "dense")
            if vtype != "dense":
                raise _bad(f"PineconeDouble supports only dense indexes, got vector_type={vtype!r}")
            spec = body.get("spec")
            if not isinstance(spec, dict) or not isinstance(spec.get("serverless"), dict):
                raise _bad(
                    "PineconeDouble supports only serverless indexes: "
                    "spec must be {'serverless': {'cloud': ..., 'region': ...}}"
                )
            cloud, region = spec["serverless"].get("cloud"), spec["serverless"].get("region")
        if not _is_number(dimension) or int(dimension) != dimension:
            raise _bad("Invalid request: dimension is required and must be an integer")
        dimension = int(dimension)
        if not 1 <= dimension <= MAX_DIMENSION:
            raise _bad(f"Invalid dimension {dimension}: must be between 1 and {MAX_DIMENSION}")
        if metric not in _METRICS:
            raise _bad(f"Invalid metric {metric!r}: expected one of cosine, dotproduct, euclidean")
        if cloud not in _CLOUDS:
            raise _bad(f"Invalid cloud {cloud!r}: expected one of aws, gcp, azure")
        if not isinstance(region, str) or not region:
            raise _bad("Invalid request: region is required")
        dp = body.get("deletion_protection") or "disabled"
        if dp not in ("enabled", "disabled"):
            raise _bad(f"Invalid deletion_protection {dp!r}: expected 'enabled' or 'disabled'")
        tags = body.get("tags") or {}
        _validate_tags(tags)
        if name in self._indexes:
            raise _Error(409, f"Resource {name} already exists")
        idx = _Index(
            name=name,
            dimension=dimension,
            metric=metric,
            cloud=cloud,
            region=region,
            deletion_protection=dp,
            tags={k: v for k, v in tags.items() if v != ""},
            vector_field=vector_field,
            extra_fields=extra_fields,
            created_at=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        )
        idx.server = self._start_server(name)
        idx.host = idx.server.url
        self._indexes[name] = idx
        return idx

    def _configure_index(self, name: str, body: dict[str, Any]) -> _Index:
        idx = self._get_index(name)
        dp = body.get("deletion_protection")
        if dp is not None:
            if dp not in ("enabled", "disabled"):
                raise _bad(f"Invalid deletion_protection {dp!r}: expected 'enabled' or 'disabled'")
            idx.deletion_protection = dp
        tags = body.get("tags")
        if tags is not None:
            _validate_tags(tags)
            for k, v in tags.items():
                if v == "":
                    idx.tags.pop(k, None)
                else:
                    idx.tags[k] = v
        return idx

    # -- data plane --------------------------------------------------------

    def _data_plane(
        self,
        index_name: str,
        method: str,
        path: str,
        body: Any,
        query: dict[str, list[str]],
        body_len: int,
    ):
        idx = self._indexes.get(index_name)
        if idx is None or idx.deleted or idx.host == "":
            raise _Error(404, f"Index {index_name} not found")
        if body_len > self.max_request_bytes:
            raise _bad(
                f"Request size {body_len / 1048576:.1f}MB exceeds the maximum supported size of "
                f"{self.max_request_bytes / 1048576:g}MB"
            )
        route = (method, path)
        if route == ("POST", "/vectors/upsert"):
            return 200, self._upsert(idx, _require_object(body))
        if route == ("POST", "/query"):
            return 200, self._query(idx, _require_object(body))
        if route == ("GET", "/vectors/fetch"):
            return 200, self._fetch(idx, query)
        if route == ("POST", "/vectors/fetch_by_metadata"):
            return 200, self._fetch_by_metadata(idx, _require_object(body))
        if route == ("POST", "/vectors/delete"):
            return 200, self._delete(idx, _require_object(body))
        if route == ("POST", "/vectors/update"):
            return 200, self._update(idx, _require_object(body))
        if route in (("POST", "/describe_index_stats"), ("GET", "/describe_index_stats")):
            return 200, self._stats(idx, body if body is not None else {})
        if route == ("GET", "/vectors/list"):
            return 200, self._list(idx, query)
        raise _Error(404, f"PineconeDouble does not implement {method} {path}")

    def _check_id(self, vid: Any, where: str) -> str:
        if not isinstance(vid, str):
            raise _bad(f"{where}: id must be a string")
        if vid == "":
            raise _bad(f"{where}: id must not be empty")
        n = len(vid.encode("utf-8"))
        if n > self.max_id_bytes:
            raise _bad(f"{where}: id length {n} bytes exceeds the maximum of {self.max_id_bytes}")
        return vid

    def _check_values(self, values: Any, idx: _Index, where: str, *, query: bool = False) -> list:
        if not isinstance(values, list):
            raise _bad(f"{where}: values must be an array of numbers")
        for x in values:
            if not _is_number(x) or not math.isfinite(x):
                raise _bad(f"{where}: values must contain only finite numbers, got {x!r}")
        if len(values) != idx.dimension:
            what = "Query vector" if query else "Vector"
            raise _bad(
                f"{what} dimension {len(values)} does not match the dimension of the index "
                f"{idx.dimension}"
            )
        if not query and not any(values):
            raise _bad(f"{where}: Dense vectors must contain at least one non-zero value")
        return _f32([float(x) for x in values])

    def _check_metadata(self, md: Any, where: str) -> dict[str, Any] | None:
        if md is None:
            return None
        if not isinstance(md, dict):
            raise _bad(f"{where}: metadata must be a JSON object")
        for key, val in md.items():
            if val is None:
                raise _bad(
                    f"{where}: metadata field {key!r} is null; null metadata values are not "
                    "supported (remove the key instead)"
                )
            if isinstance(val, (str, bool)) or (_is_number(val) and math.isfinite(val)):
                continue
            if isinstance(val, list) and all(isinstance(x, str) for x in val):
                continue
            raise _bad(
                f"{where}: metadata field {key!r} has an unsupported value "
                f"{json.dumps(val)[:80]}; values must be a string, number, boolean or list of "
                "strings"
            )
        size = _json_size(md)
        if size > self.max_metadata_bytes:
            raise _bad(
                f"metadata size is {size} bytes, which exceeds the limit of "
                f"{self.max_metadata_bytes} bytes per vector"
            )
        return json.loads(json.dumps(md))

    def _upsert(self, idx: _Index, body: dict[str, Any]) -> dict[str, Any]:
        vectors = body.get("vectors")
        if not isinstance(vectors, list):
            raise _bad("Invalid request: vectors must be an array")
        if not vectors:
            raise _bad("Invalid request: vectors must contain at least one vector")
        if len(vectors) > self.max_vectors_per_upsert:
            raise _bad(
                f"Batch size {len(vectors)} exceeds the maximum of {self.max_vectors_per_upsert} "
                "vectors per upsert request"
            )
        ns = _namespace(body)
        staged: list[tuple[str, _Record]] = []
        for i, v in enumerate(vectors):
            where = f"vectors[{i}]"
            if not isinstance(v, dict):
                raise _bad(f"{where}: must be an object")
            if v.get("sparseValues") is not None or v.get("sparse_values") is not None:
                raise _bad(f"{where}: PineconeDouble does not support sparse values")
            vid = self._check_id(v.get("id"), where)
            values = self._check_values(v.get("values"), idx, where)
            md = self._check_metadata(v.get("metadata"), where)
            staged.append((vid, _Record(values, md)))
        space = idx.namespaces.setdefault(ns, {})
        for vid, rec in staged:
            space[vid] = rec
        return {"upsertedCount": len(staged)}

    def _filter_of(self, body: dict[str, Any]) -> dict[str, Any] | None:
        flt = body.get("filter")
        if flt is None:
            return None
        _validate_filter(flt)
        return flt

    def _query(self, idx: _Index, body: dict[str, Any]) -> dict[str, Any]:
        top_k = body.get("topK", body.get("top_k"))
        if not _is_number(top_k) or int(top_k) != top_k:
            raise _bad("Invalid request: topK is required and must be an integer")
        if not 1 <= top_k <= self.max_top_k:
            raise _bad(f"topK must be between 1 and {self.max_top_k}, got {top_k}")
        if body.get("sparseVector") is not None:
            raise _bad("PineconeDouble does not support sparse query vectors")
        if body.get("queries") is not None:
            raise _bad("The 'queries' parameter is deprecated and not supported")
        vec, qid = body.get("vector"), body.get("id")
        if (vec is None) == (qid is None):
            raise _bad("Invalid request: exactly one of vector or id must be provided")
        ns = _namespace(body)
        flt = self._filter_of(body)
        space = idx.namespaces.get(ns, {})
        if vec is not None:
            q = self._check_values(vec, idx, "vector", query=True)
        else:
            qid = self._check_id(qid, "id")
            rec = space.get(qid)
            if rec is None:
                return {"matches": [], "namespace": ns, "usage": {"readUnits": 1}}
            q = rec.values
        include_values = bool(body.get("includeValues", False))
        include_md = bool(body.get("includeMetadata", False))
        scored = []
        qn = math.sqrt(sum(x * x for x in q))
        for vid, rec in space.items():
            if flt is not None and not _match(flt, rec.metadata or {}):
                continue
            scored.append((_score(idx.metric, q, qn, rec.values), vid, rec))
        if idx.metric == "euclidean":
            scored.sort(key=lambda t: (t[0], t[1]))
        else:
            scored.sort(key=lambda t: (-t[0], t[1]))
        matches = []
        for score, vid, rec in scored[: int(top_k)]:
            m: dict[str, Any] = {"id": vid, "score": score, "values": []}
            if include_values:
                m["values"] = list(rec.values)
            if include_md and rec.metadata is not None:
                m["metadata"] = json.loads(json.dumps(rec.metadata))
            matches.append(m)
        return {"matches": matches, "namespace": ns, "usage": {"readUnits": 1}}

    def _vector_out(self, vid: str, rec: _Record) -> dict[str, Any]:
        out: dict[str, Any] = {"id": vid, "values": list(rec.values)}
        if rec.metadata is not None:
            out["metadata"] = json.loads(json.dumps(rec.metadata))
        return out

    def _fetch(self, idx: _Index, query: dict[str, list[str]]) -> dict[str, Any]:
        ids = query.get("ids") or []
        if not ids:
            raise _bad("Invalid request: ids must contain at least one id")
        if len(ids) > MAX_IDS_PER_REQUEST:
            raise _bad(f"Fetch of {len(ids)} ids exceeds the maximum of {MAX_IDS_PER_REQUEST}")
        ns = (query.get("namespace") or [""])[0]
        space = idx.namespaces.get(ns, {})
        found = {vid: self._vector_out(vid, space[vid]) for vid in ids if vid in space}
        return {"vectors": found, "namespace": ns, "usage": {"readUnits": 1}}

    def _fetch_by_metadata(self, idx: _Index, body: dict[str, Any]) -> dict[str, Any]:
        flt = self._filter_of(body)
        if flt is None:
            raise _bad("Invalid request: filter is required")
        limit = body.get("limit", 100)
        if not _is_number(limit) or not 1 <= limit <= 10_000:
            raise _bad("limit must be between 1 and 10000")
        ns = _namespace(body)
        space = idx.namespaces.get(ns, {})
        ids = sorted(vid for vid, r in space.items() if _match(flt, r.metadata or {}))
        ids = _after_token(ids, body.get("paginationToken"))
        page, more = ids[: int(limit)], len(ids) > int(limit)
        out: dict[str, Any] = {
            "vectors": {vid: self._vector_out(vid, space[vid]) for vid in page},
            "namespace": ns,
            "usage": {"readUnits": 1},
        }
        if more:
            out["pagination"] = {"next": _token(page[-1])}
        return out

    def _delete(self, idx: _Index, body: dict[str, Any]) -> dict[str, Any]:
        ns = _namespace(body)
        ids = body.get("ids")
        delete_all = body.get("deleteAll", False) is True
        flt = body.get("filter")
        modes = (ids is not None) + delete_all + (flt is not None)
        if modes != 1:
            raise _bad("Invalid request: provide exactly one of ids, deleteAll or filter")
        if ids is not None:
            if not isinstance(ids, list) or not ids:
                raise _bad("Invalid request: ids must be a non-empty array")
            if len(ids) > MAX_IDS_PER_REQUEST:
                raise _bad(f"Delete of {len(ids)} ids exceeds the maximum of {MAX_IDS_PER_REQUEST}")
            for i, vid in enumerate(ids):
                self._check_id(vid, f"ids[{i}]")
        if flt is not None:
            _validate_filter(flt)
        space = idx.namespaces.get(ns)
        if not space:
            if self.missing_namespace_delete_404:
                raise _Error(404, "Namespace not found")
            return {}
        if delete_all:
            space.clear()
        elif ids is not None:
            for vid in ids:
                space.pop(vid, None)
        else:
            for vid in [v for v, r in space.items() if _match(flt, r.metadata or {})]:
                del space[vid]
        if not space:
            del idx.namespaces[ns]
        return {}

    def _update(self, idx: _Index, body: dict[str, Any]) -> dict[str, Any]:
        ns = _namespace(body)
        vid, flt = body.get("id"), body.get("filter")
        if (vid is None) == (flt is None):
            raise _bad("Invalid request: provide exactly one of id or filter")
        if body.get("sparseValues") is not None:
            raise _bad("PineconeDouble does not support sparse values")
        values = body.get("values")
        set_md = body.get("setMetadata")
        space = idx.namespaces.get(ns, {})
        if vid is not None:
            vid = self._check_id(vid, "id")
            new_values = None if values is None else self._check_values(values, idx, "values")
            md = self._check_metadata(set_md, "setMetadata")
            rec = space.get(vid)
            if rec is not None:
                merged = dict(rec.metadata or {})
                merged.update(md or {})
                self._check_metadata(merged, "metadata")  # size limit after merge
                if new_values is not None:
                    rec.values = new_values
                if md:
                    rec.metadata = merged
            return {}
        _validate_filter(flt)
        if values is not None:
            raise _bad("Invalid request: values cannot be updated by filter")
        md = self._check_metadata(set_md, "setMetadata") or {}
        hits = [r for r in space.values() if _match(flt, r.metadata or {})]
        if not body.get("dryRun", False):
            for r in hits:
                merged = dict(r.metadata or {})
                merged.update(md)
                r.metadata = merged
        return {"matchedRecords": len(hits)}

    def _stats(self, idx: _Index, body: Any) -> dict[str, Any]:
        if isinstance(body, dict) and body.get("filter") is not None:
            raise _bad(
                "Serverless and starter indexes do not support describing index stats with "
                "metadata filtering"
            )
        namespaces = {ns: {"vectorCount": len(r)} for ns, r in idx.namespaces.items() if r}
        return {
            "namespaces": namespaces,
            "dimension": idx.dimension,
            "indexFullness": 0.0,
            "totalVectorCount": sum(n["vectorCount"] for n in namespaces.values()),
            "metric": idx.metric,
            "vectorType": "dense",
        }

    def _list(self, idx: _Index, query: dict[str, list[str]]) -> dict[str, Any]:
        ns = (query.get("namespace") or [""])[0]
        prefix = (query.get("prefix") or [""])[0]
        raw_limit = (query.get("limit") or ["100"])[0]
        try:
            limit = int(raw_limit)
        except ValueError:
            raise _bad(f"limit must be an integer, got {raw_limit!r}") from None
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise _bad(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        space = idx.namespaces.get(ns, {})
        ids = sorted(v for v in space if v.startswith(prefix))
        ids = _after_token(ids, (query.get("paginationToken") or [None])[0])
        page, more = ids[:limit], len(ids) > limit
        out: dict[str, Any] = {
            "vectors": [{"id": v} for v in page],
            "namespace": ns,
            "usage": {"readUnits": 1},
        }
        if more:
            out["pagination"] = {"next": _token(page[-1])}
        return out


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


def _error_body(status: int, message: str, *, data_plane: bool) -> dict[str, Any]:
    grpc_code, name = _CODES.get(status, (2, "UNKNOWN"))
    if data_plane:
        return {"code": grpc_code, "message": message, "details": []}
    return {"error": {"code": name, "message": message}, "status": status}


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _bad("Invalid request body: expected a JSON object")
    return body


def _namespace(body: dict[str, Any]) -> str:
    ns = body.get("namespace") or ""
    if not isinstance(ns, str):
        raise _bad("namespace must be a string")
    return ns


def _count_vectors(path: str, parsed: Any, query: dict[str, list[str]]) -> int:
    if path == "/vectors/fetch":
        return len(query.get("ids") or [])
    if isinstance(parsed, dict):
        for key in ("vectors", "ids"):
            val = parsed.get(key)
            if isinstance(val, list):
                return len(val)
    return 0


def _score(metric: str, q: list[float], qn: float, v: list[float]) -> float:
    if metric == "euclidean":
        return _f32_scalar(sum((a - b) * (a - b) for a, b in zip(q, v, strict=True)))
    dot = sum(a * b for a, b in zip(q, v, strict=True))
    if metric == "dotproduct":
        return _f32_scalar(dot)
    vn = math.sqrt(sum(b * b for b in v))
    return _f32_scalar(dot / (qn * vn)) if qn and vn else 0.0


def _token(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode("utf-8")).decode("ascii")


def _after_token(ids: list[str], token: str | None) -> list[str]:
    if not token:
        return ids
    try:
        last = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except Exception:
        raise _bad("Invalid pagination token") from None
    return [v for v in ids if v > last]


def _validate_tags(tags: Any) -> None:
    if not isinstance(tags, dict):
        raise _bad("tags must be an object of string keys and values")
    for k, v in tags.items():
        if not isinstance(v, str):
            raise _bad(f"tag {k!r} must have a string value")


def _parse_schema(schema: Any) -> tuple[int, str, str, dict[str, Any]]:
    if not isinstance(schema, dict) or not isinstance(schema.get("fields"), dict):
        raise _bad("Invalid request: schema.fields is required")
    dense = []
    extra: dict[str, Any] = {}
    for fname, spec in schema["fields"].items():
        if not isinstance(spec, dict):
            raise _bad(f"schema field {fname!r} must be an object")
        ftype = spec.get("type")
        if ftype == "dense_vector":
            dense.append((fname, spec))
        elif ftype in ("string", "string_list", "boolean", "integer", "float", None):
            extra[fname] = dict(spec)
        else:
            raise _bad(f"PineconeDouble does not support schema fields of type {ftype!r}")
    if len(dense) != 1:
        raise _bad("PineconeDouble supports exactly one dense_vector field per index")
    fname, spec = dense[0]
    return spec.get("dimension"), spec.get("metric", "cosine"), fname, extra
