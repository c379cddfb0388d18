"""What the Qdrant, Milvus and Pinecone helpers share: records, ids, signature, filters, batching.

Each store module is thin: it opens its client, creates or checks the collection, translates the
portable filter and moves points in and out. Everything that must behave the same on every store
lives here:

* records: ``{"id": ..., "text": ..., "metadata": {...}}`` dicts or plain strings, all checked before
  anything is encoded or written (:func:`normalize_records`);
* ids: :func:`point_key` is THE id function. A record's key is the caller's id (or ``"txt-"`` + a hash of
  the text); chunk *n* of a late-chunked document is ``"<parent id>::chunk:<n>"``. Each store maps the
  key to what it accepts (Qdrant: a UUIDv5 of the key; Milvus: the key as its VARCHAR primary key;
  Pinecone: the key, at most 512 bytes), so writing the same records twice overwrites;
* the embedding :class:`Signature` (model, dimensions, passage and query tasks) recorded with the
  collection and compared when it is opened;
* the portable filter ``{"key": value, "key2": [v1, v2]}`` (equality / any-of on metadata);
* batched writes with retries on transient errors, the encoding of the next batch overlapping the
  write of the previous one, and :class:`~jinav3.errors.PartialWriteError` when a write fails for good.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import random
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import PartialWriteError, SignatureMismatchError, StoreError, invalid
from ..identity import same_model
from ..validation import int_in_range, positive_int
from ..protocol import TextEncoder
from ..tasks import check_task, index_task, search_task

log = logging.getLogger("jinav3.integrations")

CHUNK_MARK = "::chunk:"
"""Separator between a parent id and a chunk number in a chunk's key; not allowed in caller ids."""

ID_NAMESPACE = uuid.UUID("6f2d1c0e-5a4b-5c3d-9e8f-0a1b2c3d4e5f")
"""Namespace of the UUIDv5 point ids (Qdrant). Changing it would orphan every stored point."""

WHOLE = -1
"""The ``chunk`` number stored with a record that was embedded whole (not late-chunked)."""

SIGNATURE_VERSION = 1
METRIC = "cosine"
_SCALARS = (str, int, float, bool)
# Room kept for the chunk suffix when checking id lengths before chunking: "::chunk:" + 6 digits.
_CHUNK_SUFFIX_ROOM = len(CHUNK_MARK) + 6


# ============================================================================================ ids
def text_id(text: str) -> str:
    """The id of a record given without one: ``"txt-"`` + the first 32 hex digits of SHA-256(text)."""
    return "txt-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def point_key(doc_id: str, chunk: int | None = None) -> str:
    """THE id function: a record's key is its id; chunk ``n`` of document ``doc_id`` is
    ``"<doc_id>::chunk:<n>"``. Stores map the key to their own id type (:func:`uuid_for`)."""
    if chunk is None or chunk == WHOLE:
        return doc_id
    return f"{doc_id}{CHUNK_MARK}{int(chunk)}"


def uuid_for(key: str) -> str:
    """The UUIDv5 of a point key (Qdrant's point id)."""
    return str(uuid.uuid5(ID_NAMESPACE, key))


# ============================================================================================ records
@dataclass(frozen=True)
class Record:
    """One normalised input record."""

    id: str
    text: str
    metadata: dict[str, Any]


@dataclass
class Point:
    """One vector to write: a whole record (``chunk == -1``) or one chunk of a late-chunked record."""

    key: str
    doc_id: str
    chunk: int
    vector: np.ndarray
    text: str
    metadata: dict[str, Any]
    start: int | None = None
    end: int | None = None


# Characters no id may hold: C0 controls other than tab, newline and carriage return, and DEL. NUL
# cannot be written in a Milvus Lite expression nor sent to Pinecone; the others are never meant.
_ID_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_INT_METADATA = 2**63 - 1  # Milvus JSON and Pinecone numbers hold no integer beyond int64


def check_unicode(value: str, where: str) -> str:
    """``value`` if it is valid Unicode text (no lone surrogate, which no store can encode as UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise invalid(where, f"contains a lone surrogate ({value[e.start]!r} at position {e.start}); "
                             "text must be valid Unicode") from None
    return value


def _check_id(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise invalid(where, f"must be a non-empty str (or an int), got {type(value).__name__}")
    value = check_unicode(str(value), where)
    if not value.strip():
        raise invalid(where, "must be a non-empty string")
    if CHUNK_MARK in value:
        raise invalid(where, f"{value!r} contains {CHUNK_MARK!r}, which is reserved for chunk ids")
    bad = _ID_FORBIDDEN.search(value)
    if bad:
        raise invalid(where, f"{value!r} contains the control character {bad.group()!r} at position {bad.start()}; "
                             "ids may hold any other character (tabs and line breaks included)")
    return value


def _check_json_value(value: Any, where: str) -> None:
    """Walk a JSON value for what json.dumps lets through but stores refuse."""
    if isinstance(value, str):
        check_unicode(value, where)
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -MAX_INT_METADATA - 1 <= value <= MAX_INT_METADATA:
            raise invalid(where, f"the integer {value} does not fit in 64 bits (-2**63 .. 2**63-1), which is what "
                                 "Milvus and Pinecone store; write it as a string")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_unicode(key, where)
            _check_json_value(item, where)
    elif isinstance(value, list):
        for item in value:
            _check_json_value(item, where)


def check_metadata(metadata: Any, where: str) -> dict[str, Any]:
    """A JSON object with string keys whose values JSON can hold (no NaN/inf, valid Unicode, integers
    within 64 bits), copied."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise invalid(where, f"must be a dict of JSON values, got {type(metadata).__name__}")
    for key in metadata:
        if not isinstance(key, str) or not key:
            raise invalid(where, f"keys must be non-empty strings, got {key!r}")
    try:
        copied = json.loads(json.dumps(dict(metadata), allow_nan=False))
    except (TypeError, ValueError) as e:
        raise invalid(where, f"must be JSON-serialisable (str, int, float, bool, None, list, dict): {e}") from None
    _check_json_value(copied, where)
    return copied


def normalize_records(records: Any) -> list[Record]:
    """Check and normalise ``records`` (dicts with text / id / metadata, or plain strings).

    Identical duplicates (same id, text and metadata, e.g. the same string twice) are written once;
    the same id with a different text or metadata is an error.
    """
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
        raise invalid("records", f"must be a list of dicts or strings, got {type(records).__name__}")
    out: list[Record] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(records):
        where = f"records[{i}]"
        if isinstance(item, str):
            text, rid, metadata = item, None, {}
        elif isinstance(item, Mapping):
            unknown = sorted(set(item) - {"id", "text", "metadata"})
            if unknown:
                raise invalid(where, f"unknown keys {unknown}; a record has 'text', optional 'id' and optional "
                                     "'metadata' (put your own fields inside 'metadata')")
            if "text" not in item:
                raise invalid(f"{where}.text", "is missing; every record needs a text to embed")
            text, rid, metadata = item["text"], item.get("id"), item.get("metadata")
        else:
            raise invalid(where, f"must be a dict or a str, got {type(item).__name__}")
        if not isinstance(text, str):
            raise invalid(f"{where}.text", f"must be a str, got {type(text).__name__}")
        check_unicode(text, f"{where}.text")
        if not text.strip():
            raise invalid(f"{where}.text", "is empty; there is nothing to embed")
        rid = text_id(text) if rid is None else _check_id(rid, f"{where}.id")
        record = Record(rid, text, check_metadata(metadata, f"{where}.metadata"))
        if rid in seen:
            if out[seen[rid]] == record:
                continue
            raise invalid(f"{where}.id", f"{rid!r} is also the id of records[{seen[rid]}] with another text or "
                                         "metadata; ids must be unique within one add()")
        seen[rid] = len(out)
        out.append(record)
    return out


def check_ids(ids: Any, argument: str = "ids") -> list[str]:
    if isinstance(ids, (str, int)) and not isinstance(ids, bool):
        ids = [ids]
    if isinstance(ids, (bytes, Mapping)) or not isinstance(ids, Iterable):
        raise invalid(argument, f"must be a list of ids, got {type(ids).__name__}")
    out = []
    for i, value in enumerate(ids):
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            raise invalid(f"{argument}[{i}]", f"must be a non-empty str, got {value!r}")
        out.append(check_unicode(str(value), f"{argument}[{i}]"))
    return list(dict.fromkeys(out))


def check_top_k(top_k: Any, maximum: int | None = None) -> int:
    if maximum is None:
        return positive_int(top_k, "top_k")  # type: ignore[return-value]  # never None without allow_none
    return int_in_range(top_k, "top_k", 1, maximum, note="on this store")  # type: ignore[return-value]


def json_size(obj: Any) -> int:
    """Bytes of compact UTF-8 JSON (how Pinecone measures metadata)."""
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


# ============================================================================================ signature
@dataclass(frozen=True)
class Signature:
    """What the vectors in a collection are: model, size, metric and the tasks on each side.

    ``model`` is the model's identity (``jinav3.identity``: a hub id, or a local folder's recorded name
    or content fingerprint), so the same weights match however their folder is spelled;
    ``model_label`` is a readable name shown beside it (never compared).
    """

    model: str
    dimensions: int
    passage_task: str
    query_task: str
    metric: str = METRIC
    version: int = SIGNATURE_VERSION
    model_label: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = {"model": self.model, "dimensions": self.dimensions, "passage_task": self.passage_task,
               "query_task": self.query_task, "metric": self.metric, "version": self.version}
        if self.model_label is not None and self.model_label != self.model:
            out["model_label"] = self.model_label
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Signature":
        try:
            label = data.get("model_label")
            return cls(str(data["model"]), int(data["dimensions"]), str(data["passage_task"]),
                       str(data["query_task"]), str(data.get("metric", METRIC)), int(data.get("version", 1)),
                       None if label is None else str(label))
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(f"unreadable jinav3 signature {dict(data)!r}: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> "Signature":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise StoreError(f"unreadable jinav3 signature {text!r}: {e}") from None

    @property
    def shown_model(self) -> str:
        """``model`` with its readable label, for messages."""
        if self.model_label and self.model_label != self.model:
            return f"{self.model} ({self.model_label})"
        return self.model

    def differences(self, other: "Signature") -> list[str]:
        """``["dimensions: collection 64, encoder 32", ...]`` for every field that differs (self = stored).
        The model is compared by identity (:func:`jinav3.identity.same_model`), so a signature written
        before identities, holding the folder as it was typed, still matches the same weights."""
        out = []
        if not same_model(self.model, other.model):
            out.append(f"model: it has {self.shown_model!r}, this store uses {other.shown_model!r}")
        for name in ("dimensions", "passage_task", "query_task", "metric"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                out.append(f"{name}: it has {a!r}, this store uses {b!r}")
        return out


def check_signature(where: str, expected: Signature, *, size: int | None, metric: str | None,
                    stored: Signature | None) -> None:
    """Refuse to open ``where`` when its vector size, metric or recorded signature differs."""
    problems = []
    if size is not None and int(size) != expected.dimensions:
        problems.append(f"vector size: it has {int(size)}, this store's encoder gives "
                        f"{expected.dimensions} (dimensions={expected.dimensions})")
    if metric is not None and metric.lower() != expected.metric:
        problems.append(f"metric: it uses {metric!r}, jinav3 needs {expected.metric!r}")
    if stored is not None:
        problems += [p for p in stored.differences(expected)
                     if not (size is not None and p.startswith("dimensions"))
                     and not (metric is not None and p.startswith("metric"))]
    if problems:
        raise SignatureMismatchError(
            f"{where} was made for other embeddings, so nothing was written: " + "; ".join(problems)
            + ". Open it with the same model, dimensions and tasks, or use another collection.")
    if stored is None:
        log.warning("%s records no jinav3 signature (made by another tool?); only its size and metric were checked", where)


# ============================================================================================ filters
def parse_filter(filter: Any) -> list[tuple[str, list[Any]]] | None:
    """The portable filter ``{"key": value, "key2": [v1, v2]}`` as ``[(key, [values]), ...]``.

    Returns None when ``filter`` is not portable (a store may take it as its native filter). A value
    is a str, int, float or bool; a list means any-of. All conditions must hold. A key missing from
    a record's metadata never matches.
    """
    if not isinstance(filter, Mapping) or not filter:
        return None
    out = []
    for key, value in filter.items():
        if not isinstance(key, str) or not key or key.startswith("$"):
            return None
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values or not all(isinstance(v, _SCALARS) for v in values):
            return None
        out.append((key, values))
    return out


def check_portable_filter(filter: Any, native_hint: str) -> list[tuple[str, list[Any]]]:
    """:func:`parse_filter` or a clear error naming what is allowed."""
    parsed = parse_filter(filter)
    if parsed is None:
        raise invalid("filter", f"must be a portable filter {{'key': value, 'key2': [v1, v2]}} (values str, int, "
                                f"float or bool; a non-empty list means any-of) or {native_hint}, got {filter!r}")
    for key, values in parsed:
        if any(c in key for c in '."[]\\'):
            raise invalid("filter", f"portable filter keys may not contain . \" [ ] or \\, got {key!r}; "
                                    f"use {native_hint} for nested metadata")
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise invalid("filter", f"{key!r}: {v} cannot be matched")
    return parsed


# ============================================================================================ hits
@dataclass
class Hit:
    """One search result. ``score`` is the cosine similarity (None for points read by ``get``).

    For a late-chunked document's chunk: ``id`` is the chunk's id, ``parent_id`` the document's id,
    ``chunk`` its number, ``start``/``end`` its character offsets in the document. A hit from
    ``group_by_document=True`` stands for one document: ``id`` is the document's id, ``score`` its
    best chunk's, ``text`` and offsets that chunk's, and ``chunks`` its chunks among the results.
    """

    id: str
    score: float | None
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None
    chunk: int | None = None
    start: int | None = None
    end: int | None = None
    chunks: list["Hit"] | None = None
    vector: np.ndarray | None = field(default=None, repr=False)

    @property
    def document_id(self) -> str:
        """The id of the document this hit belongs to (its parent for a chunk)."""
        return self.parent_id if self.parent_id is not None else self.id


def make_hit(key: str, score: float | None, text: str, metadata: dict, doc_id: str | None, chunk: int | None,
             start: int | None, end: int | None, vector: Any = None) -> Hit:
    is_chunk = chunk is not None and int(chunk) != WHOLE
    return Hit(
        id=key, score=None if score is None else float(score), text=text, metadata=dict(metadata or {}),
        parent_id=(doc_id if is_chunk else None), chunk=(int(chunk) if is_chunk else None),
        start=(int(start) if is_chunk and start is not None else None),
        end=(int(end) if is_chunk and end is not None else None),
        vector=None if vector is None else np.asarray(vector, dtype=np.float32),
    )


def group_by_document(hits: Sequence[Hit], top_k: int | None = None) -> list[Hit]:
    """Group chunk hits by their document, best score first (hits must be sorted by score)."""
    groups: dict[str, Hit] = {}
    for hit in hits:
        doc = hit.document_id
        if doc not in groups:
            groups[doc] = Hit(id=doc, score=hit.score, text=hit.text, metadata=hit.metadata, chunk=hit.chunk,
                              start=hit.start, end=hit.end, chunks=[])
        groups[doc].chunks.append(hit)
    out = list(groups.values())
    return out if top_k is None else out[:top_k]


# ============================================================================================ retries
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_TRANSIENT_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"}


def is_transient(exc: BaseException) -> bool:
    """Timeouts, dropped connections, HTTP 408/429/5xx and gRPC UNAVAILABLE-like errors, anywhere in
    the exception's cause chain."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (TimeoutError, ConnectionError)):
            return True
        for attr in ("status_code", "status", "http_status"):
            code = getattr(exc, attr, None)
            if isinstance(code, int) and not isinstance(code, bool) and (code in _TRANSIENT_STATUS or 500 <= code < 600):
                return True
        code = getattr(exc, "code", None)
        if callable(code):
            try:
                name = getattr(code(), "name", None)
            except Exception:  # noqa: BLE001 - a foreign code() that needs arguments
                name = None
            if name in _TRANSIENT_GRPC:
                return True
        name, module = type(exc).__name__, type(exc).__module__ or ""
        if module.startswith(("httpx", "httpcore")) and name in (
                "ReadTimeout", "ConnectTimeout", "WriteTimeout", "PoolTimeout", "ConnectError", "RemoteProtocolError",
                "ReadError", "WriteError"):
            return True
        if module.startswith(("pymilvus", "pinecone")) and name in (
                "MilvusUnavailableException", "PineconeTimeoutError", "PineconeConnectionError", "ServiceError",
                "RateLimitError"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def call_with_retry(fn: Callable[[], Any], *, what: str, retries: int, backoff: float, max_backoff: float,
                    transient: Callable[[BaseException], bool] = is_transient,
                    sleep: Callable[[float], None] = time.sleep) -> Any:
    """Run ``fn``; on a transient error wait ``backoff * 2**attempt`` (jittered, capped) and try again,
    at most ``retries`` more times. Permanent errors and the last transient one are raised."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as e:
            if attempt >= retries or not transient(e):
                raise
            delay = min(max_backoff, backoff * (2 ** attempt)) * random.uniform(0.5, 1.0)
            log.warning("%s failed (%s: %s); retry %d of %d in %.2fs", what, type(e).__name__, e, attempt + 1,
                        retries, delay)
            if delay > 0:
                sleep(delay)
            attempt += 1


# ============================================================================================ the base
class VectorStore(ABC):
    """A collection of jina-embeddings-v3 vectors in some vector database.

    Subclasses open their client, then call :meth:`_open`; they implement the ``_``-prefixed
    abstract methods. Writing embeds with the passage task and searching with the query task
    (``retrieval.passage`` / ``retrieval.query`` unless ``passage_task`` / ``query_task`` say otherwise).
    """

    kind = "store"  # "Qdrant", "Milvus", "Pinecone": used in messages
    max_points_per_request = 256
    max_request_bytes: int | None = None
    max_id_bytes: int | None = None
    max_top_k: int | None = None
    default_batch_size = 64
    native_filter_hint = "a native filter"

    def __init__(self, encoder: TextEncoder, *, dimensions: int | None = None, passage_task: str | None = None,
                 query_task: str | None = None, model_name: str | None = None, batch_size: int | None = None,
                 retries: int = 5, backoff: float = 0.5, max_backoff: float = 30.0, overlap_writes: bool = True,
                 adopt_signature: bool = False):
        self.encoder = encoder
        self.dimensions = int(encoder.output_size(dimensions))
        self.passage_task = index_task(passage_task)
        self.query_task = search_task(query_task)
        name = model_name if model_name is not None else getattr(encoder, "name", None)
        if not isinstance(name, str) or not name:
            raise invalid("model_name", "the encoder has no name; pass model_name= to record in the signature")
        label = getattr(encoder, "label", None) if model_name is None else None
        self.signature = Signature(name, self.dimensions, self.passage_task, self.query_task,
                                   model_label=label if isinstance(label, str) else None)
        if not isinstance(adopt_signature, bool):
            raise invalid("adopt_signature", f"must be True or False, got {adopt_signature!r}")
        # With adopt_signature, what the caller left unset is read from an existing collection's signature.
        self._adoptable = {arg for arg, value in (("dimensions", dimensions), ("passage_task", passage_task),
                                                    ("query_task", query_task)) if value is None} \
            if adopt_signature else set()
        self.batch_size = positive_int(batch_size, "batch_size", allow_none=True) or self.default_batch_size
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise invalid("retries", f"must be an integer >= 0, got {retries!r}")
        for arg, value in (("backoff", backoff), ("max_backoff", max_backoff)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise invalid(arg, f"must be a number of seconds >= 0, got {value!r}")
        self.retries, self.backoff, self.max_backoff = retries, float(backoff), float(max_backoff)
        self.overlap_writes = bool(overlap_writes)

    # ------------------------------------------------------------------------------ opening
    @property
    @abstractmethod
    def where(self) -> str:
        """``"Qdrant collection 'docs'"``: for messages."""

    @abstractmethod
    def _describe(self) -> tuple[bool, int | None, str | None, Signature | None]:
        """(exists, vector size, metric, stored signature or None)."""

    @abstractmethod
    def _create(self) -> None:
        """Create the collection for ``self.signature`` (size, cosine metric, signature recorded)."""

    def _open(self, create: bool = True) -> None:
        exists, size, metric, stored = self._retry(self._describe, "describe")
        if not exists:
            if not create:
                raise StoreError(f"{self.where} does not exist (create=False)")
            self._retry(self._create, "create")
            exists, size, metric, stored = self._retry(self._describe, "describe")
            if not exists:
                raise StoreError(f"{self.where} was created but cannot be found")
        elif stored is not None and self._adoptable:
            self._adopt(stored)
        check_signature(self.where, self.signature, size=size, metric=metric, stored=stored)

    def _adopt(self, stored: Signature) -> None:
        """Take the dimensions and tasks the caller did not give from the collection's signature."""
        if "dimensions" in self._adoptable:
            self.dimensions = int(self.encoder.output_size(stored.dimensions))
        if "passage_task" in self._adoptable:
            self.passage_task = index_task(stored.passage_task)
        if "query_task" in self._adoptable:
            self.query_task = search_task(stored.query_task)
        self.signature = dataclasses.replace(self.signature, dimensions=self.dimensions,
                                             passage_task=self.passage_task, query_task=self.query_task)

    # ------------------------------------------------------------------------------ store-specific
    @abstractmethod
    def _upsert(self, points: list[Point]) -> None:
        """Write (insert or overwrite) one request's worth of points."""

    @abstractmethod
    def _query(self, vector: np.ndarray, limit: int, native_filter: Any) -> list[Hit]:
        """The ``limit`` nearest points, best first, as hits with cosine similarity scores."""

    @abstractmethod
    def _fetch(self, keys: list[str], with_vectors: bool) -> list[Hit]:
        """The points with these keys that exist (any order)."""

    @abstractmethod
    def _delete(self, ids: list[str]) -> None:
        """Delete points whose key is in ``ids`` and every chunk of a document whose id is in ``ids``."""

    @abstractmethod
    def _prune(self, doc_ids: list[str], keep_chunks: int | None) -> None:
        """Delete stale points of re-written documents: with ``keep_chunks=None`` (written whole) their
        chunks; with ``keep_chunks=n`` their whole-record point and chunks numbered n and above."""

    @abstractmethod
    def _count(self) -> int:
        ...

    @abstractmethod
    def _translate_filter(self, conditions: list[tuple[str, list[Any]]]) -> Any:
        """The native filter for a parsed portable filter."""

    def _native_filter(self, filter: Any) -> Any:
        """A filter of the store's own kind, passed through, or None when ``filter`` is not one."""
        return None

    def _check_record(self, record: Record, where: str, late_chunking: bool) -> None:
        """Store-specific limits on one record (id length, metadata size, ...); raise before writing."""
        if self.max_id_bytes is not None:
            room = _CHUNK_SUFFIX_ROOM if late_chunking else 0
            size = len(record.id.encode("utf-8"))
            if size + room > self.max_id_bytes:
                raise invalid(f"{where}.id", f"is {size} bytes; {self.kind} ids may have at most {self.max_id_bytes} "
                                             f"bytes{' including the chunk suffix (' + str(room) + ' bytes)' if room else ''}")

    def _check_chunk(self, point: Point, where: str) -> None:
        """Store-specific limits on one chunk (its text, its metadata with the text); ``where`` names the
        record for the message. Called before anything is written (see ``_check_planned_chunks``)."""

    def _request_size(self, point: Point) -> int:
        """Bytes one point adds to a write request (only used when ``max_request_bytes`` is set)."""
        return 0

    def close(self) -> None:
        """Release the client (a no-op unless the store opened it)."""

    def __repr__(self) -> str:
        sig = self.signature
        return (f"{type(self).__name__}({self.where}, model={sig.model!r}, dimensions={sig.dimensions}, "
                f"tasks={sig.passage_task}/{sig.query_task})")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------ public API
    def add(self, records: Any, late_chunking: bool = False, chunker: str | Sequence[tuple[int, int]] = "sentences",
            chunk_size: int | None = None, batch_size: int | None = None, task: str | None = None,
            show_progress: bool = False) -> list[str]:
        """Embed ``records`` with the passage task and write them; returns their ids, in order.

        records: dicts ``{"id": ..., "text": ..., "metadata": {...}}`` (id and metadata optional) or
        plain strings; a record without an id gets ``"txt-" + sha256(text)[:32]``. Writing a record
        again overwrites it (and removes chunks it no longer has). late_chunking: split each record with
        ``chunker`` (``"sentences"``, ``"tokens"`` with ``chunk_size``, or (start, end) character spans
        for a single record) and write one point per chunk, embedded in the context of the whole record.
        batch_size: records embedded per step (default: the store's); each step's points are written in
        requests within the store's limits while the next step is being embedded. Everything is checked
        before anything is written; a write that fails for good after retries raises
        :class:`~jinav3.errors.PartialWriteError` naming the record ids written and not written; running
        the same ``add`` again finishes the job.
        """
        task = self._write_task(task)
        batch_size = positive_int(batch_size, "batch_size", allow_none=True) or self.batch_size
        if not isinstance(late_chunking, bool):
            raise invalid("late_chunking", f"must be True or False, got {late_chunking!r}")
        recs = normalize_records(records)
        if late_chunking:
            self._check_chunker(chunker, chunk_size, len(recs))
        elif chunk_size is not None:
            raise invalid("chunk_size", "only applies with late_chunking=True")
        for i, record in enumerate(recs):
            self._check_record(record, f"records[{i}]", late_chunking)
        if late_chunking:
            self._check_planned_chunks(recs, task, chunker, chunk_size)
        if not recs:
            return []
        batches = [recs[i:i + batch_size] for i in range(0, len(recs), batch_size)]
        progress = _progress(len(recs), show_progress, f"Writing to {self.where}")
        report = _WriteReport()
        writer = BatchWriter(functools.partial(self._write_batch, report=report), self.overlap_writes)
        try:
            for b, batch in enumerate(batches):
                label = f"batch {b + 1} of {len(batches)}"
                try:
                    points = self._embed(batch, task, late_chunking, chunker, chunk_size)
                except Exception as e:
                    self._stop(writer, report, recs, e, f"embedding {label}")
                try:
                    writer.submit(points, batch, label=label)  # first waits for the previous batch's write
                except _BatchFailure as e:
                    self._stop(writer, report, recs, e, "")
                progress.update(len(batch))
            try:
                writer.wait()
            except _BatchFailure as e:
                self._stop(writer, report, recs, e, "")
        finally:
            writer.close()
            progress.close()
        return [r.id for r in recs]

    def search(self, query: str, top_k: int = 10, filter: Any = None, task: str | None = None,
               group_by_document: bool = False) -> list[Hit]:
        """The ``top_k`` best hits for ``query`` (embedded with the query task), best first.

        filter: the portable ``{"key": value, "key2": [v1, v2]}`` (all must hold; a list is any-of; a
        key a record lacks never matches) or the store's native filter. group_by_document: one hit per
        document (late-chunked records grouped by parent, scored by their best chunk).
        """
        if not isinstance(query, str):
            raise invalid("query", f"must be a str, got {type(query).__name__}")
        if not query.strip():
            raise invalid("query", "is empty; there is nothing to search for")
        top_k = check_top_k(top_k, self.max_top_k)
        task = self.query_task if task is None else search_task(check_task(task, "task"))
        native = self._filter(filter)
        vector = self._embed_query(query, task)
        if not group_by_document:
            return self._retry(lambda: self._query(vector, top_k, native), "search")
        limit = top_k * 4 if self.max_top_k is None else min(top_k * 4, self.max_top_k)
        while True:
            hits = self._retry(lambda: self._query(vector, limit, native), "search")
            groups = _group_hits(hits)
            cap = self.max_top_k if self.max_top_k is not None else 1_000_000
            if len(groups) >= top_k or len(hits) < limit or limit >= cap:
                return groups[:top_k]
            limit = min(limit * 4, cap)

    def get(self, ids: Any, with_vectors: bool = True) -> list[Hit]:
        """The stored points with these ids (record ids or chunk ids), in the order asked; missing ones
        are left out. ``score`` is None; ``vector`` holds the stored vector when ``with_vectors``."""
        keys = check_ids(ids)
        found: dict[str, Hit] = {}
        for i in range(0, len(keys), self.max_points_per_request):
            part = keys[i:i + self.max_points_per_request]
            for hit in self._retry(lambda: self._fetch(part, with_vectors), "fetch"):
                found[hit.id] = hit
        return [found[k] for k in keys if k in found]

    def delete(self, ids: Any) -> None:
        """Delete records by id; deleting a late-chunked document's id deletes all its chunks. A chunk's
        own id deletes that chunk. Unknown ids are ignored."""
        keys = check_ids(ids)
        for i in range(0, len(keys), self.max_points_per_request):
            part = keys[i:i + self.max_points_per_request]
            self._retry(lambda: self._delete(part), "delete")

    def count(self) -> int:
        """Number of points (a late-chunked record counts once per chunk)."""
        return int(self._retry(self._count, "count"))

    def chunk_id(self, parent_id: str, chunk: int) -> str:
        """The id of chunk ``chunk`` of document ``parent_id``."""
        return point_key(parent_id, chunk)

    # ------------------------------------------------------------------------------ internals
    def _retry(self, fn: Callable[[], Any], what: str) -> Any:
        return call_with_retry(fn, what=f"{self.where}: {what}", retries=self.retries, backoff=self.backoff,
                               max_backoff=self.max_backoff, transient=self._is_transient)

    def _is_transient(self, exc: BaseException) -> bool:
        return is_transient(exc)

    def _write_task(self, task: str | None) -> str:
        if task is None:
            return self.passage_task
        check_task(task, "task")
        if task != self.passage_task:
            raise invalid("task", f"{self.where} holds {self.passage_task!r} vectors (its signature says so); "
                                  f"writing {task!r} vectors would mix kinds. Open the store with passage_task={task!r} "
                                  "on a new collection instead")
        return task

    def _check_chunker(self, chunker: Any, chunk_size: Any, n: int) -> None:
        if isinstance(chunker, str):
            if chunker not in ("sentences", "tokens"):
                raise invalid("chunker", f"must be 'sentences', 'tokens' or a list of (start, end) spans, got {chunker!r}")
            if chunker == "tokens":
                positive_int(chunk_size, "chunk_size")
            elif chunk_size is not None:
                raise invalid("chunk_size", "only applies with chunker='tokens'")
        else:
            if n != 1:
                raise invalid("chunker", f"(start, end) spans describe one record; got {n} records")
            if chunk_size is not None:
                raise invalid("chunk_size", "only applies with chunker='tokens'")

    def _filter(self, filter: Any) -> Any:
        if filter is None:
            return None
        native = self._native_filter(filter)
        if native is not None:
            return native
        return self._translate_filter(check_portable_filter(filter, self.native_filter_hint))

    def _embed_query(self, query: str, task: str) -> np.ndarray:
        vector = np.asarray(self.encoder.encode([query], task=task, dimensions=self.dimensions), dtype=np.float32)
        self._check_vectors(vector, 1)
        return vector[0]

    def _check_vectors(self, vectors: np.ndarray, n: int) -> None:
        if vectors.shape != (n, self.dimensions):
            raise StoreError(f"the encoder returned vectors of shape {vectors.shape}, expected ({n}, {self.dimensions})")
        if not np.isfinite(vectors).all():
            raise StoreError("the encoder returned non-finite vectors")

    def _embed(self, batch: list[Record], task: str, late_chunking: bool, chunker: Any, chunk_size: Any) -> list[Point]:
        texts = [r.text for r in batch]
        if not late_chunking:
            vectors = np.asarray(self.encoder.encode(texts, task=task, dimensions=self.dimensions), dtype=np.float32)
            self._check_vectors(vectors, len(batch))
            return [Point(r.id, r.id, WHOLE, v, r.text, r.metadata) for r, v in zip(batch, vectors)]
        chunked = self.encoder.late_chunk_documents(texts, task=task, chunker=chunker, chunk_size=chunk_size,
                                                    dimensions=self.dimensions)
        points = []
        for r, chunks in zip(batch, chunked):
            if not chunks:
                raise invalid("records", f"record {r.id!r}: late chunking found no chunk in its text")
            vectors = np.stack([np.asarray(c.embedding, dtype=np.float32) for c in chunks])
            self._check_vectors(vectors, len(chunks))
            for c, vector in zip(chunks, vectors):
                points.append(Point(point_key(r.id, c.index), r.id, int(c.index), vector, c.text, r.metadata,
                                    int(c.start), int(c.end)))
        for p in points:  # already checked up front when the encoder can plan its chunks (chunk_spans)
            self._check_chunk_point(p, "records")
        return points

    def _check_planned_chunks(self, recs: list[Record], task: str, chunker: Any, chunk_size: Any) -> None:
        """Check every chunk against the store's limits before anything is embedded or written. Chunk
        texts are known before any vector is: the encoder's ``chunk_spans`` says where they fall (an
        encoder without it has its chunks checked batch by batch instead)."""
        plan = getattr(self.encoder, "chunk_spans", None)
        if plan is None:
            return
        planned = plan([r.text for r in recs], task=task, chunker=chunker, chunk_size=chunk_size)
        for i, (r, spans) in enumerate(zip(recs, planned)):
            if not spans:
                raise invalid(f"records[{i}].text", f"record {r.id!r}: late chunking finds no chunk in it")
            for n, (start, end) in enumerate(spans):
                point = Point(point_key(r.id, n), r.id, n, np.empty(0, np.float32), r.text[start:end], r.metadata,
                              int(start), int(end))
                self._check_chunk_point(point, f"records[{i}]")

    def _check_chunk_point(self, point: Point, where: str) -> None:
        if self.max_id_bytes is not None and len(point.key.encode("utf-8")) > self.max_id_bytes:
            raise invalid(f"{where}.id", f"chunk id {point.key!r} is longer than {self.max_id_bytes} bytes")
        self._check_chunk(point, where)

    def _requests(self, points: list[Point]) -> list[list[Point]]:
        out: list[list[Point]] = []
        current: list[Point] = []
        size = 0
        for p in points:
            extra = self._request_size(p) if self.max_request_bytes else 0
            if current and (len(current) >= self.max_points_per_request
                            or (self.max_request_bytes and size + extra > self.max_request_bytes)):
                out.append(current)
                current, size = [], 0
            current.append(p)
            size += extra
        if current:
            out.append(current)
        return out

    def _write_batch(self, points: list[Point], batch: list[Record], report: "_WriteReport", label: str) -> None:
        """Write one batch's points in requests within the store's limits, then remove the stale points
        of its documents. ``report`` learns which records landed whole, and which of those may still
        have stale points; a failure after retries raises _BatchFailure."""
        keys_of: dict[str, list[str]] = {r.id: [] for r in batch}
        for p in points:
            keys_of[p.doc_id].append(p.key)
        stored: set[str] = set()
        report.attempted = True
        try:
            for request in self._requests(points):
                self._retry(lambda request=request: self._upsert(request), f"upsert of {len(request)} points")
                stored.update(p.key for p in request)
        except Exception as e:
            raise _BatchFailure(f"writing {label}", e) from e
        finally:  # a record counts as written only when every one of its points is
            report.written += [r.id for r in batch if all(k in stored for k in keys_of[r.id])]
        try:
            self._prune_stale(points, batch)
        except Exception as e:
            report.unpruned += [r.id for r in batch]
            raise _BatchFailure(f"removing stale points of {label}", e) from e

    def _prune_stale(self, points: list[Point], batch: list[Record]) -> None:
        """Delete every point of the batch's documents that this write did not make.

        New points are numbered 0..n-1 (or are one whole record), so the stale ones are found by the
        parent id every point carries, whatever is left from earlier writes: chunks numbered n and up
        and the whole record (when chunked), every chunk (when whole). The new points are written
        first, so a crash at any moment leaves at worst stale points that the next add() removes.
        """
        n_chunks: dict[str, int | None] = {r.id: None for r in batch}
        for p in points:
            if p.chunk != WHOLE:
                n_chunks[p.doc_id] = max(n_chunks[p.doc_id] or 0, p.chunk + 1)
        groups: dict[int | None, list[str]] = {}
        for doc, n in n_chunks.items():
            groups.setdefault(n, []).append(doc)
        for n, docs in groups.items():
            for i in range(0, len(docs), self.max_points_per_request):
                part = sorted(docs[i:i + self.max_points_per_request])
                self._retry(lambda part=part, n=n: self._prune(part, n), "removal of stale points")

    def _stop(self, writer: "BatchWriter", report: "_WriteReport", recs: list[Record], cause: BaseException,
              step: str) -> None:
        """Raise for a failed add(): the cause itself when nothing was sent to the store yet, else an
        exact PartialWriteError (after the write still in flight has finished, so its records count)."""
        try:
            writer.wait()
        except _BatchFailure:  # its records are in the report; the first failure is the one reported
            pass
        if isinstance(cause, _BatchFailure):
            step, cause = cause.step, cause.cause
        elif not report.attempted:
            raise cause  # embedding failed before anything was sent: nothing to report
        done, unpruned_set = set(report.written), set(report.unpruned)
        ok = [r.id for r in recs if r.id in done]
        failed = [r.id for r in recs if r.id not in done]
        unpruned = [r.id for r in recs if r.id in unpruned_set]
        stale = (f"; {len(unpruned)} of the written records may still have stale points from an earlier write "
                 f"(first: {unpruned[:3]})" if unpruned else "")
        raise PartialWriteError(
            f"{self.where}: {step} failed ({type(cause).__name__}: {cause}); {len(ok)} of {len(recs)} records were "
            f"written, {len(failed)} were not{' (first: ' + str(failed[:3]) + ')' if failed else ''}{stale}. Run the "
            "same add() again to finish: ids are deterministic, so nothing is duplicated.",
            ok, failed, unpruned) from cause


@dataclass
class _WriteReport:
    """What an add() has written so far, filled in by the writer thread."""

    attempted: bool = False  # some points were sent to the store
    written: list[str] = field(default_factory=list)  # record ids whose every point is stored
    unpruned: list[str] = field(default_factory=list)  # written, but stale points may remain


class _BatchFailure(Exception):
    """A batch's write failed for good: ``step`` says what (for the message), ``cause`` why."""

    def __init__(self, step: str, cause: BaseException):
        super().__init__(f"{step}: {cause}")
        self.step, self.cause = step, cause


class BatchWriter:
    """Runs ``write(points, batch)`` for one batch while the caller embeds the next (a one-worker
    executor); with ``overlap=False`` each write runs at once in the caller's thread. At most one
    write is in flight: :meth:`submit` first waits for the previous one and raises its error."""

    def __init__(self, write: Callable[..., None], overlap: bool):
        self._write = write
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jinav3-write") if overlap else None
        self._pending: Future | None = None

    def submit(self, *args: Any, **kwargs: Any) -> None:
        self.wait()
        if self._executor is None:
            self._write(*args, **kwargs)
        else:
            self._pending = self._executor.submit(self._write, *args, **kwargs)

    def wait(self) -> None:
        """Wait for the write in flight, if any; raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


_group_hits = group_by_document  # search() has a parameter of that name


class _NoProgress:
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, show: bool, desc: str):
    if not show:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="record", desc=desc)


__all__ = [
    "CHUNK_MARK", "Hit", "Point", "Record", "Signature", "VectorStore", "call_with_retry", "check_metadata",
    "check_signature", "group_by_document", "is_transient", "normalize_records", "parse_filter", "point_key",
    "text_id", "uuid_for",
]
