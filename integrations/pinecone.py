"""Pinecone: passage vectors in, query vectors out (``pip install "jinav3[pinecone]"``, pinecone SDK 9.x).

    from jinav3 import Encoder
    from jinav3.integrations.pinecone import PineconeStore
    store = PineconeStore(Encoder.from_pretrained(), index="docs", namespace="en", dimensions=512)  # PINECONE_API_KEY
    store.add([{"id": "a1", "text": "...", "metadata": {"lang": "de"}}])
    store.search("wie pflege ich empfindliche Haut?", top_k=5, filter={"lang": "de"})

The index: ``index=`` a name (a serverless index in ``cloud`` / ``region`` is created when missing,
cosine metric, the encoder's output size), or ``host=`` the data-plane host of an existing index; all
reads and writes go to ``namespace`` (default ``""``). The embedding signature is kept in the index's
tags (``jinav3_model``, ``jinav3_dimensions``, ``jinav3_passage_task``, ``jinav3_query_task``; values
outside Pinecone's tag alphabet are written as ``+XX`` escapes). An index opened by ``host=`` alone has
no control-plane description, so only its dimension and metric are checked.

What is stored: the vector id is the jinav3 point key (at most 512 bytes); the metadata is the
record's own metadata, flat, plus ``_text``, ``_doc_id``, ``_chunk`` (-1 for a whole record) and, for
chunks, ``_start`` / ``_end``. Pinecone's limits are enforced before writing: metadata values must be
strings, numbers, booleans or lists of strings (a ``None`` value is LEFT OUT: Pinecone has no null),
a record's metadata including its text must fit 40,960 bytes (chunks of a late-chunked record are
checked once chunked), the keys above are reserved. Upserts carry at most 1,000 vectors and 2 MB.
Portable filters become ``{"key": {"$eq": v}}`` / ``{"$in": [...]}``; any other dict is passed through
as a native Pinecone filter.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from jinav3 import env
from jinav3.errors import StoreError, install_hint, invalid

from .stores.base import Collection
from .stores.limits import RecordLimits
from .stores.pruning import Stamp
from .stores.records import FINGERPRINT_LENGTH, WHOLE, Hit, Point, Record, json_size, make_hit
from .stores.signature import Signature
from .stores.vector_store import VectorStore

try:
    from pinecone import Pinecone, ServerlessSpec
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("PineconeStore needs the pinecone SDK (9.x): " + install_hint("pinecone")) from e

if TYPE_CHECKING:
    from pinecone.grpc import GrpcIndex
    from pinecone.index import Index

    from .stores.uri import StoreURI

MAX_METADATA_BYTES = 40_960
MAX_REQUEST_BYTES = 2_000_000
MAX_VECTORS_PER_REQUEST = 1000
MAX_ID_BYTES = 512
FINGERPRINT_ROOM = "0" * FINGERPRINT_LENGTH  # a stored fingerprint's size, for the metadata size checks
RESERVED_KEYS = ("_text", "_doc_id", "_chunk", "_start", "_end", "_extent", "_fingerprint")
TAG_PREFIX = "jinav3_"
_TAG_SAFE = re.compile(r"[A-Za-z0-9_.@ -]")
_TAG_MAX = 120


def encode_tag(value: str) -> str:
    """``value`` in Pinecone's tag-value alphabet: other characters become ``+XX`` (UTF-8 bytes); past 120
    characters the tail is replaced by a hash."""
    out = "".join(ch if _TAG_SAFE.fullmatch(ch) else "".join(f"+{b:02X}" for b in ch.encode("utf-8")) for ch in value)
    if len(out) > _TAG_MAX:
        out = out[:96] + "@sha256-" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
    return out


def decode_tag(value: str) -> str:
    """Inverse of :func:`encode_tag` (a hashed tail stays as it is)."""
    data = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "+" and re.fullmatch(r"[0-9A-F]{2}", value[i + 1:i + 3] or ""):
            data.append(int(value[i + 1:i + 3], 16))
            i += 3
        else:
            data += value[i].encode("utf-8")
            i += 1
    return data.decode("utf-8", errors="replace")


def _status(exc: BaseException) -> int | None:
    """The HTTP status of a pinecone SDK error (``status_code`` in 9.x, ``status`` in older SDKs)."""
    for attr in ("status_code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    return None


def _metadata_value_ok(value: Any) -> bool:
    if isinstance(value, (str, bool)):
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def point_metadata(p: Point) -> dict[str, Any]:
    """What Pinecone stores with a point: the record's metadata (nulls left out) and jinav3's reserved keys."""
    md = {k: v for k, v in p.metadata.items() if v is not None}
    md.update(_text=p.text, _doc_id=p.doc_id, _chunk=p.chunk)
    if p.extent is not None:
        md["_extent"] = p.extent
    if p.fingerprint is not None:
        md["_fingerprint"] = p.fingerprint
    if p.chunk != WHOLE:
        md.update(_start=p.start, _end=p.end)
    return md


class PineconeLimits(RecordLimits):
    """Pinecone's limits: ASCII ids, metadata values of its types, reserved keys, 40 KB of metadata with the text."""

    def check_fields(self, record: Record, where: str, late_chunking: bool) -> None:
        super().check_fields(record, where, late_chunking)
        if not record.id.isascii():  # the Pinecone SDK refuses any other vector id
            raise invalid(f"{where}.id", f"{record.id!r} is not ASCII; Pinecone vector ids must be ASCII "
                                         "(give the record an ASCII id and keep the name in its metadata)")
        for key, value in record.metadata.items():
            if key in RESERVED_KEYS:
                raise invalid(f"{where}.metadata",
                              f"key {key!r} is reserved by jinav3 on Pinecone ({', '.join(RESERVED_KEYS)})")
            if value is not None and not _metadata_value_ok(value):
                raise invalid(f"{where}.metadata", f"{key!r}: Pinecone metadata values must be a string, number, "
                                                   f"boolean or list of strings, got {json.dumps(value)[:60]}")
        probe = {k: v for k, v in record.metadata.items() if v is not None}
        probe.update(_doc_id=record.id, _chunk=WHOLE, _extent=999_999, _fingerprint=FINGERPRINT_ROOM)
        if late_chunking:  # the chunks' texts are checked once chunked; here the rest must leave room
            probe.update(_chunk=999_999, _start=10**9, _end=10**9, _text="")
        else:
            probe["_text"] = record.text
        size = json_size(probe)
        if size > MAX_METADATA_BYTES:
            raise invalid(f"{where}.metadata", f"with the text is {size} bytes; Pinecone allows {MAX_METADATA_BYTES} "
                                               "bytes of metadata per vector (the text is kept in metadata): "
                                               "shorten it, or add long texts with late_chunking=True")

    def check_chunk(self, point: Point, where: str) -> None:
        super().check_chunk(point, where)
        size = json_size({**point_metadata(point), "_extent": 999_999, "_fingerprint": FINGERPRINT_ROOM})
        if size > MAX_METADATA_BYTES:
            raise invalid(f"{where}.text", f"chunk {point.key!r}: its metadata with its text is {size} bytes; "
                                           f"Pinecone allows {MAX_METADATA_BYTES} (use smaller chunks)")


class PineconeCollection(Collection):
    """A Pinecone index namespace of jina-embeddings-v3 points, without a model (see :class:`PineconeStore`,
    which adds the encoder). ``signature=None`` opens an existing index as it is."""

    kind = "Pinecone"
    native_filter_hint = "a Pinecone metadata filter dict ($eq, $in, $and, ...)"
    max_points_per_request = MAX_VECTORS_PER_REQUEST
    max_keys_per_read = MAX_VECTORS_PER_REQUEST  # fetch takes up to 1,000 ids
    tracks_extents = True
    max_request_bytes = MAX_REQUEST_BYTES
    max_id_bytes = MAX_ID_BYTES
    max_top_k = 10_000
    limits_class = PineconeLimits
    missing_note = " (a namespace written seconds ago may not be listed yet)"

    def __init__(self, signature: Signature | None, index: str | None = "jinav3", *, namespace: str = "",
                 api_key: str | None = None, host: str | None = None, client: Pinecone | None = None,
                 cloud: str = "aws", region: str = "us-east-1", create: bool = True,
                 client_kwargs: dict[str, Any] | None = None, **options: Any) -> None:
        super().__init__(signature, **options)
        if index is not None and (not isinstance(index, str) or not index):
            raise invalid("index", f"must be an index name or None (with host=), got {index!r}")
        if index is None and host is None:
            raise invalid("index", "give an index name, or host= of an existing index")
        if not isinstance(namespace, str):
            raise invalid("namespace", f"must be a str, got {type(namespace).__name__}")
        self.index_name, self.namespace, self.cloud, self.region = index, namespace, cloud, region
        if client is not None:
            if api_key is not None:
                raise invalid("api_key", "give api_key or client, not both")
            self.client = client
        else:
            api_key = api_key if api_key is not None else os.environ.get(env.PINECONE_API_KEY)
            if not api_key:
                raise invalid("api_key", f"no Pinecone API key: pass api_key= or set {env.PINECONE_API_KEY}")
            self.client = Pinecone(api_key=api_key, **(client_kwargs or {}))
        self.host = host
        self.index: Index | GrpcIndex | None = self.client.Index(host=host) if host is not None else None
        self._open(create)
        if self.index is None:
            assert self.index_name is not None  # no host=, so an index name (checked above)
            data_host = self.client.describe_index(self.index_name).host
            if data_host is None:  # the SDK's Index() would refuse it too, less clearly
                raise StoreError(f"{self.where} has no host yet (Pinecone is still initialising it); try again")
            self.host = data_host
            self.index = self.client.Index(host=data_host)

    @classmethod
    def connection(cls, uri: StoreURI) -> dict[str, Any]:
        """``pinecone:INDEX`` with the API key of ``--api-key-env`` or ``$PINECONE_API_KEY``."""
        return {"index": uri.target, "api_key": uri.api_key}

    @classmethod
    def names_there(cls, uri: StoreURI) -> list[str]:
        return list(Pinecone(api_key=uri.api_key).list_indexes().names())

    def missing_container(self) -> list[str] | None:
        """Pinecone has no empty namespaces: one that is not listed is not there (None when it is, or when the
        list cannot be read: the search itself then reports a store that fails)."""
        try:
            namespaces = sorted(self._data_plane().describe_index_stats().namespaces or {})
        except Exception:
            return None
        there = self.namespace in namespaces or (self.namespace == "" and "__default__" in namespaces)
        return None if there else namespaces

    @property
    def where(self) -> str:
        name = f"index {self.index_name!r}" if self.index_name else f"index at {self.host}"
        return f"Pinecone {name} (namespace {self.namespace!r})"

    def close(self) -> None:
        index = getattr(self, "index", None)
        if index is not None and hasattr(index, "close"):
            index.close()

    def _data_plane(self) -> Index | GrpcIndex:
        """The index's data-plane client: from host=, else set once the named index is open."""
        if self.index is None:
            raise StoreError(f"{self.where} has no data-plane host yet (the index is not open)")
        return self.index

    # ------------------------------------------------------------------------------ opening
    def _describe(self) -> tuple[bool, int | None, str | None, Signature | None]:
        if self.index_name is None:  # host only: the data plane knows the size and metric, not the tags
            stats = self._data_plane().describe_index_stats()
            return True, stats.dimension, stats.metric, None
        if not self.client.has_index(self.index_name):
            return False, None, None, None
        desc = self.client.describe_index(self.index_name)
        return True, desc.dimension, desc.metric, self._signature_from_tags(getattr(desc, "tags", None) or {})

    def _signature_from_tags(self, tags: dict[str, str]) -> Signature | None:
        keys = ("model", "dimensions", "passage_task", "query_task")
        if not any(TAG_PREFIX + k in tags for k in keys):
            return None
        values = {k: tags.get(TAG_PREFIX + k, "") for k in keys}
        model = values["model"]
        model = self.signature.model if model == encode_tag(self.signature.model) else decode_tag(model)
        try:
            dims = int(values["dimensions"])
        except ValueError:
            raise StoreError(f"{self.where}: unreadable tag {TAG_PREFIX}dimensions={values['dimensions']!r}") from None
        return Signature(model, dims, decode_tag(values["passage_task"]), decode_tag(values["query_task"]))

    def _tags(self) -> dict[str, str]:
        sig = self.signature
        return {TAG_PREFIX + "model": encode_tag(sig.model), TAG_PREFIX + "dimensions": str(sig.dimensions),
                TAG_PREFIX + "passage_task": encode_tag(sig.passage_task),
                TAG_PREFIX + "query_task": encode_tag(sig.query_task)}

    def _create(self) -> None:
        if self.index_name is None:
            raise StoreError(f"{self.where}: cannot create an index from a host")
        try:
            self.client.create_index(name=self.index_name, dimension=self.dimensions, metric="cosine",
                                     spec=ServerlessSpec(cloud=self.cloud, region=self.region), tags=self._tags())
        except Exception as e:  # 409: made meanwhile by someone else, then checked like any existing index
            if _status(e) != 409:
                raise

    # ------------------------------------------------------------------------------ records, limits
    def _vector(self, p: Point) -> dict[str, Any]:
        return {"id": p.key, "values": p.vector.tolist(), "metadata": point_metadata(p)}

    def _request_size(self, point: Point) -> int:
        return json_size(self._vector(point)) + 1

    # ------------------------------------------------------------------------------ points
    def _hit(self, vid: str, score: float | None, metadata: dict | None, values: Any = None) -> Hit:
        md = dict(metadata or {})
        text = md.pop("_text", "")
        doc_id, chunk = md.pop("_doc_id", None), md.pop("_chunk", None)
        md.pop("_extent", None)
        md.pop("_fingerprint", None)
        start, end = md.pop("_start", None), md.pop("_end", None)
        return make_hit(vid, score, text, md, doc_id, None if chunk is None else int(chunk),
                        None if start is None else int(start), None if end is None else int(end), values)

    def _upsert(self, points: list[Point]) -> None:
        self._data_plane().upsert(vectors=[self._vector(p) for p in points], namespace=self.namespace)

    def _query(self, vector: np.ndarray, limit: int, native_filter: Any) -> list[Hit]:
        kwargs = {"filter": native_filter} if native_filter is not None else {}
        result = self._data_plane().query(vector=vector.tolist(), top_k=limit, include_metadata=True,
                                  namespace=self.namespace, **kwargs)
        return [self._hit(m.id, m.score, m.metadata) for m in result.matches]

    def _fetch(self, keys: list[str], with_vectors: bool) -> list[Hit]:
        found = self._data_plane().fetch(ids=keys, namespace=self.namespace).vectors
        return [self._hit(vid, None, v.metadata, v.values if with_vectors else None) for vid, v in found.items()]

    def _delete_quietly(self, **kwargs: Any) -> None:
        try:
            self._data_plane().delete(namespace=self.namespace, **kwargs)
        except Exception as e:  # serverless answers 404 for a namespace that holds nothing
            if _status(e) != 404:
                raise

    def _delete(self, ids: list[str]) -> None:
        self._delete_quietly(ids=ids)
        self._delete_quietly(filter={"_doc_id": {"$in": ids}})

    def _read_stamps(self, keys: list[str]) -> dict[str, Stamp]:
        found = self._data_plane().fetch(ids=keys, namespace=self.namespace).vectors
        stamps: dict[str, Stamp] = {}
        for vid, v in found.items():
            metadata = v.metadata or {}
            extent = metadata.get("_extent")
            stamps[vid] = Stamp(None if extent is None else int(extent), metadata.get("_fingerprint"))
        return stamps

    def _delete_keys(self, keys: list[str]) -> None:
        self._delete_quietly(ids=keys)

    def _prune(self, doc_ids: list[str], keep_chunks: int | None) -> None:
        of_docs = {"_doc_id": {"$in": doc_ids}}
        if keep_chunks is None:
            flt = {"$and": [of_docs, {"_chunk": {"$gte": 0}}]}
        else:
            flt = {"$and": [of_docs, {"$or": [{"_chunk": {"$gte": int(keep_chunks)}}, {"_chunk": {"$eq": WHOLE}}]}]}
        self._delete_quietly(filter=flt)

    def _count(self) -> int:
        namespaces = self._data_plane().describe_index_stats().namespaces or {}
        names = [self.namespace] + (["__default__"] if self.namespace == "" else [])
        for name in names:
            if name in namespaces:
                summary = namespaces[name]
                return int(getattr(summary, "vector_count", None) or summary.get("vector_count", 0))
        return 0

    # ------------------------------------------------------------------------------ filters
    def _native_filter(self, filter: Any) -> Any:
        """A dict with an operator (a ``$`` key, or an operator object as a value) is a native filter."""
        if isinstance(filter, dict) and any(
                (isinstance(k, str) and k.startswith("$")) or isinstance(v, dict) for k, v in filter.items()):
            return filter
        return None

    def _translate_filter(self, conditions: list[tuple[str, list[Any]]]) -> Any:
        parts = [{key: {"$eq": values[0]}} if len(values) == 1 else {key: {"$in": list(values)}}
                 for key, values in conditions]
        return parts[0] if len(parts) == 1 else {"$and": parts}


class PineconeStore(VectorStore, PineconeCollection):
    """A Pinecone index (one namespace of it) of jina-embeddings-v3 vectors.

    Args:
        encoder: a :class:`jinav3.Encoder` (or anything with its ``encode`` / ``late_chunk_documents`` /
            ``output_size`` / ``name``).
        index: index name (lowercase letters, digits, '-'); created when missing unless ``create=False``.
            May be None when ``host`` is given.
        namespace: the namespace every call uses (default ``""``).
        api_key: default ``$PINECONE_API_KEY``. client: a ``pinecone.Pinecone`` you made (then no
            api_key). host: the index's data-plane host (skips the lookup by name).
        cloud / region: of a new serverless index (default aws / us-east-1).
        dimensions / passage_task / query_task / model_name / batch_size / retries / backoff /
            max_backoff / overlap_writes: as for :class:`jinav3.integrations.qdrant.QdrantStore`.
        client_kwargs: extra ``Pinecone(...)`` arguments (e.g. ``host=`` of the control plane).
    """


__all__ = ["PineconeStore", "PineconeCollection", "PineconeLimits", "encode_tag", "decode_tag"]
