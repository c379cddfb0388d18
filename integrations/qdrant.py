"""Qdrant: passage vectors in, query vectors out (``pip install "jinav3[qdrant]"``).

    from jinav3 import Encoder
    from jinav3.integrations.qdrant import QdrantStore
    store = QdrantStore(Encoder.from_pretrained(), collection="docs", path="./qdrant-data", dimensions=512)
    store.add([{"id": "a1", "text": "...", "metadata": {"lang": "de"}}])
    store.search("wie pflege ich empfindliche Haut?", top_k=5, filter={"lang": "de"})

Where the points live: ``path=`` (local mode, a folder; the default is ``./qdrant-data``),
``location=":memory:"`` (local mode, in memory), ``url=`` (+ ``api_key=``) for a Qdrant server, or
``client=`` for a ``QdrantClient`` you made. The collection gets one unnamed cosine vector of the
encoder's output size; the embedding signature is kept in the collection's ``metadata`` (Qdrant >= 1.16
and qdrant-client >= 1.16, local mode included). Point ids are UUIDv5s of the jinav3 point keys; the
payload holds ``id`` (the key), ``doc_id``, ``chunk`` (-1 for a whole record), ``text``, ``metadata``,
``extent`` and ``fingerprint`` (integrations/stores/pruning.py) and, for chunks, ``start`` / ``end``.
Portable filters become ``metadata.<key>`` conditions; a ``qdrant_client.models.Filter`` is passed
through as it is (keys then name payload paths such as ``metadata.lang``).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import numpy as np

from jinav3.errors import StoreError, install_hint, invalid
from jinav3.sparse import SparseVector

from .stores.base import Collection
from .stores.hybrid import LEXICAL_FIELD
from .stores.pruning import Stamp
from .stores.records import WHOLE, Hit, Point, make_hit, uuid_for
from .stores.retries import is_transient
from .stores.signature import Signature
from .stores.vector_store import VectorStore

if TYPE_CHECKING:
    from .stores.uri import StoreURI

try:
    from qdrant_client import QdrantClient, models
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("QdrantStore needs qdrant-client: " + install_hint("qdrant")) from e

SIGNATURE_KEY = "jinav3"  # key of the signature in the collection's metadata
LOCAL_MODE_COMFORT = 20_000
"""Points past which Qdrant's local mode (every point in memory, every search a full scan) gets slow:
qdrant-client's own threshold. QdrantStore says so once (``size_advice``) instead of the client's warning
at every open."""
warnings.filterwarnings("ignore", message="Local mode is not recommended", category=UserWarning)
HYBRID_DEPTH = 100  # candidates each side of a hybrid search ranks before fusion (at least 2 x top_k)


def _sparse(vector: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=vector.indices.tolist(), values=vector.values.tolist())


INDEX_TYPES = {"keyword": models.PayloadSchemaType.KEYWORD, "integer": models.PayloadSchemaType.INTEGER,
               "float": models.PayloadSchemaType.FLOAT, "bool": models.PayloadSchemaType.BOOL}


def _checked_index_fields(fields: Any) -> dict[str, str]:
    """``index_fields``: metadata key -> payload index type, checked before anything is opened."""
    if fields is None:
        return {}
    if not isinstance(fields, Mapping):
        raise invalid("index_fields", f"must map metadata keys to one of {sorted(INDEX_TYPES)}, got {fields!r}")
    for key, kind in fields.items():
        if not isinstance(key, str) or not key or "." in key:
            raise invalid("index_fields", f"keys must be top-level metadata keys (non-empty, no '.'), got {key!r}")
        if kind not in INDEX_TYPES:
            raise invalid("index_fields", f"{key!r}: the index type must be one of {sorted(INDEX_TYPES)}, got {kind!r}")
    return dict(fields)


class QdrantCollection(Collection):
    """A Qdrant collection of jina-embeddings-v3 points, without a model (see :class:`QdrantStore`, which
    adds the encoder): ``QdrantCollection(signature, "docs", url=...)`` writes points made elsewhere and
    searches by vector. ``signature=None`` opens an existing collection as it is."""

    kind = "Qdrant"
    native_filter_hint = "a qdrant_client.models.Filter"
    max_points_per_request = 256
    max_keys_per_read = 1024  # lookups by point id (retrieve): one request for the next batches' documents
    tracks_extents = True
    supports_hybrid = True

    def __init__(self, signature: Signature | None, collection: str = "jinav3", *, path: str | None = None,
                 location: str | None = None, url: str | None = None, api_key: str | None = None,
                 client: QdrantClient | None = None, create: bool = True,
                 client_kwargs: dict[str, Any] | None = None, index_fields: Mapping[str, str] | None = None,
                 **options: Any) -> None:
        super().__init__(signature, **options)
        self.index_fields = _checked_index_fields(index_fields)
        if not isinstance(collection, str) or not collection.strip():
            raise invalid("collection", f"must be a non-empty string, got {collection!r}")
        self.collection = collection
        given = [name for name, value in (("path", path), ("location", location), ("url", url), ("client", client))
                 if value is not None]
        if len(given) > 1:
            raise invalid("client", f"give one of path, location, url or client, got {', '.join(given)}")
        if api_key is not None and url is None:
            raise invalid("api_key", "only applies with url=")
        if client is not None:
            self.client, self._owns_client = client, False
        else:
            kwargs = dict(client_kwargs or {})
            if url is not None:
                kwargs.update(url=url, api_key=api_key)
            elif location is not None:
                kwargs.update(location=location)
            else:
                kwargs.update(path=path if path is not None else "./qdrant-data")
            self.client, self._owns_client = QdrantClient(**kwargs), True
        try:
            self._open(create)
            self._index_metadata_fields()
        except BaseException:
            self.close()
            raise

    @classmethod
    def connection(cls, uri: StoreURI) -> dict[str, Any]:
        """``qdrant:PATH`` (local mode), ``qdrant+http(s)://HOST:PORT`` with its API key: ``--api-key-env``'s, or
        the URI's user info (Qdrant has keys, no users: the password of ``user:KEY@``, or all of ``KEY@``)."""
        if uri.mode == "local":
            return {"path": str(Path(uri.target).expanduser())}
        user = unquote(uri.user_info) if uri.user_info else ""
        name, colon, password = user.partition(":")
        key = uri.api_key or (password if colon else name) or None
        return {"url": uri.target, **({"api_key": key} if key else {})}

    @classmethod
    def names_there(cls, uri: StoreURI) -> list[str]:
        client = QdrantClient(**cls.connection(uri))
        try:
            return [c.name for c in client.get_collections().collections]
        finally:
            client.close()

    @property
    def where(self) -> str:
        return f"Qdrant collection {self.collection!r}"

    @property
    def _local(self) -> bool:
        """Local mode (a folder or ``:memory:``): qdrant-client runs the collection in this process."""
        return type(getattr(self.client, "_client", None)).__name__ in ("QdrantLocal", "AsyncQdrantLocal")

    def size_advice(self, points: int) -> str | None:
        """One line for a local-mode collection of ``points`` points past its comfortable size (None otherwise)."""
        if not self._local or points <= LOCAL_MODE_COMFORT:
            return None
        return (f"{self.where} holds {points:,} points in Qdrant local mode, which keeps every point in memory and "
                f"compares each search with all of them (comfortable up to {LOCAL_MODE_COMFORT:,}); for collections "
                "this size use a Qdrant server (url=..., or --store qdrant+http://HOST:6333) or Milvus")

    def close(self) -> None:
        if self._owns_client and getattr(self, "client", None) is not None:
            self.client.close()
            self._owns_client = False

    # ------------------------------------------------------------------------------ opening
    def _describe(self) -> tuple[bool, int | None, str | None, Signature | None]:
        if not self.client.collection_exists(self.collection):
            return False, None, None, None
        config = self.client.get_collection(self.collection).config
        vectors = config.params.vectors
        if not isinstance(vectors, models.VectorParams):
            raise StoreError(
                f"{self.where} has named vectors ({sorted(vectors or {})}); QdrantStore uses one unnamed vector"
            )
        metric = {models.Distance.COSINE: "cosine", models.Distance.DOT: "dot", models.Distance.EUCLID: "euclidean",
                  models.Distance.MANHATTAN: "manhattan"}.get(vectors.distance, str(vectors.distance))
        stored = (getattr(config, "metadata", None) or {}).get(SIGNATURE_KEY)
        signature = None if stored is None else Signature.from_dict(stored)
        lexical = LEXICAL_FIELD in (config.params.sparse_vectors or {})
        if signature is not None and signature.hybrid and not lexical:
            raise StoreError(f"{self.where}: its signature says hybrid, but it has no {LEXICAL_FIELD!r} sparse vector")
        return True, vectors.size, metric, signature

    def _create(self) -> None:
        # hybrid: a named sparse vector beside the unnamed dense one; Qdrant computes its IDF (Modifier.IDF)
        lexical = {LEXICAL_FIELD: models.SparseVectorParams(modifier=models.Modifier.IDF)} if self.hybrid else None
        self.client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=self.dimensions, distance=models.Distance.COSINE),
            sparse_vectors_config=lexical,
            metadata={SIGNATURE_KEY: self.signature.to_dict()},
        )
        with warnings.catch_warnings():  # local mode warns that payload indexes have no effect there
            warnings.simplefilter("ignore")
            for field, schema in (("doc_id", models.PayloadSchemaType.KEYWORD),
                                  ("chunk", models.PayloadSchemaType.INTEGER)):
                self.client.create_payload_index(self.collection, field, field_schema=schema)

    def _index_metadata_fields(self) -> None:
        """Payload indexes on the metadata fields filters use (``index_fields``): a Qdrant server then plans a
        filtered search from the index (exact for selective filters) instead of checking points one by one.
        Local mode has no payload indexes (it scans): asking there is harmless and silent."""
        with warnings.catch_warnings():  # local mode warns that payload indexes have no effect there
            warnings.simplefilter("ignore")
            for key, kind in self.index_fields.items():
                self._retry(functools.partial(self.client.create_payload_index, self.collection, f"metadata.{key}",
                                              field_schema=INDEX_TYPES[kind]), f"payload index on metadata.{key}")

    # ------------------------------------------------------------------------------ points
    @staticmethod
    def _payload(p: Point) -> dict[str, Any]:
        payload = {"id": p.key, "doc_id": p.doc_id, "chunk": p.chunk, "text": p.text, "metadata": p.metadata}
        if p.extent is not None:
            payload["extent"] = p.extent
        if p.fingerprint is not None:
            payload["fingerprint"] = p.fingerprint
        if p.chunk != WHOLE:
            payload.update(start=p.start, end=p.end)
        return payload

    @staticmethod
    def _hit(point: models.ScoredPoint | models.Record, score: float | None, vector: Any = None) -> Hit:
        payload = point.payload or {}
        return make_hit(payload.get("id", str(point.id)), score, payload.get("text", ""),
                        payload.get("metadata") or {}, payload.get("doc_id"), payload.get("chunk"),
                        payload.get("start"), payload.get("end"), vector)

    def _upsert(self, points: list[Point]) -> None:
        self.client.upsert(self.collection, wait=True, points=[
            models.PointStruct(id=uuid_for(p.key), vector=self._vectors(p), payload=self._payload(p)) for p in points])

    def _vectors(self, p: Point) -> Any:
        if not self.hybrid:
            return p.vector.tolist()
        if p.sparse is None:
            raise StoreError(f"{self.where} is hybrid: point {p.key!r} came without its lexical vector")
        return {"": p.vector.tolist(), LEXICAL_FIELD: _sparse(p.sparse)}

    def _query(self, vector: np.ndarray, limit: int, native_filter: Any) -> list[Hit]:
        result = self.client.query_points(self.collection, query=vector.tolist(), limit=limit,
                                          query_filter=native_filter, with_payload=True)
        return [self._hit(p, p.score) for p in result.points]

    def _query_lexical(self, vector: np.ndarray, lexical: SparseVector, limit: int, native_filter: Any, mode: str,
                       rrf_k: int) -> list[Hit]:
        sparse = _sparse(lexical)
        if mode == "sparse":
            result = self.client.query_points(self.collection, query=sparse, using=LEXICAL_FIELD, limit=limit,
                                              query_filter=native_filter, with_payload=True)
        else:  # each side ranks its own candidates (filtered alike), fused by reciprocal rank
            depth = max(2 * limit, HYBRID_DEPTH)
            result = self.client.query_points(
                self.collection, limit=limit, with_payload=True, query_filter=native_filter,
                prefetch=[models.Prefetch(query=vector.tolist(), limit=depth, filter=native_filter),
                          models.Prefetch(query=sparse, using=LEXICAL_FIELD, limit=depth, filter=native_filter)],
                query=models.RrfQuery(rrf=models.Rrf(k=rrf_k)))
        return [self._hit(p, p.score) for p in result.points]

    def _count_matching(self, native_filter: Any) -> int | None:
        if self._local:  # local mode compares the query with every point: its searches are exact
            return None
        return self.client.count(self.collection, count_filter=native_filter, exact=True).count

    def _query_exact(self, vector: np.ndarray, limit: int, native_filter: Any, matching: int) -> list[Hit]:
        result = self.client.query_points(self.collection, query=vector.tolist(), limit=limit,
                                          query_filter=native_filter, with_payload=True,
                                          search_params=models.SearchParams(exact=True))
        return [self._hit(p, p.score) for p in result.points]

    def _fetch(self, keys: list[str], with_vectors: bool) -> list[Hit]:
        # a hybrid collection's points hold {"": dense, "lexical": sparse}: the dense vector is the one returned
        records = self.client.retrieve(self.collection, ids=[uuid_for(k) for k in keys], with_payload=True,
                                       with_vectors=[""] if with_vectors and self.hybrid else with_vectors)
        return [self._hit(r, None, (r.vector.get("") if isinstance(r.vector, dict) else r.vector)
                          if with_vectors else None) for r in records]

    def _delete(self, ids: list[str]) -> None:
        selector = models.FilterSelector(filter=models.Filter(should=[
            models.FieldCondition(key="doc_id", match=models.MatchAny(any=ids)),
            models.HasIdCondition(has_id=[uuid_for(k) for k in ids]),
        ]))
        self.client.delete(self.collection, points_selector=selector, wait=True)

    def _read_stamps(self, keys: list[str]) -> dict[str, Stamp]:
        # by point id: a lookup in local mode and on servers alike, never a scan
        records = self.client.retrieve(self.collection, ids=[uuid_for(k) for k in keys],
                                       with_payload=["id", "extent", "fingerprint"], with_vectors=False)
        found = {}
        for r in records:
            payload = r.payload or {}
            extent = payload.get("extent")
            found[str(payload.get("id"))] = Stamp(None if extent is None else int(extent), payload.get("fingerprint"))
        return found

    def _delete_keys(self, keys: list[str]) -> None:
        self.client.delete(self.collection, points_selector=models.PointIdsList(points=[uuid_for(k) for k in keys]),
                           wait=True)

    def _prune(self, doc_ids: list[str], keep_chunks: int | None) -> None:
        of_docs = models.FieldCondition(key="doc_id", match=models.MatchAny(any=doc_ids))
        if keep_chunks is None:
            flt = models.Filter(must=[of_docs, models.FieldCondition(key="chunk", range=models.Range(gte=0))])
        else:
            flt = models.Filter(must=[of_docs], should=[
                models.FieldCondition(key="chunk", range=models.Range(gte=keep_chunks)),
                models.FieldCondition(key="chunk", match=models.MatchValue(value=WHOLE)),
            ])
        self.client.delete(self.collection, points_selector=models.FilterSelector(filter=flt), wait=True)

    def _count(self) -> int:
        return self.client.count(self.collection, exact=True).count

    # ------------------------------------------------------------------------------ filters, errors
    def _native_filter(self, filter: Any) -> Any:
        return filter if isinstance(filter, models.Filter) else None

    def _translate_filter(self, conditions: list[tuple[str, list[Any]]]) -> models.Filter:
        must: list[models.Condition] = []
        for key, values in conditions:
            path = f"metadata.{key}"
            if len(values) > 1 and (all(isinstance(v, str) for v in values)
                                    or all(isinstance(v, int) and not isinstance(v, bool) for v in values)):
                must.append(models.FieldCondition(key=path, match=models.MatchAny(any=list(values))))
                continue
            alternatives: list[models.Condition] = [self._equals(path, v) for v in values]
            must.append(alternatives[0] if len(alternatives) == 1 else models.Filter(should=alternatives))
        return models.Filter(must=must)

    @staticmethod
    def _equals(path: str, value: Any) -> models.FieldCondition:
        if isinstance(value, float):  # Qdrant matches floats by range only
            return models.FieldCondition(key=path, range=models.Range(gte=value, lte=value))
        return models.FieldCondition(key=path, match=models.MatchValue(value=value))

    def _is_transient(self, exc: BaseException) -> bool:
        return is_transient(exc) or type(exc).__name__ == "ResponseHandlingException"


class QdrantStore(VectorStore, QdrantCollection):
    """A Qdrant collection of jina-embeddings-v3 vectors.

    Args:
        encoder: a :class:`jinav3.Encoder` (or anything with its ``encode`` / ``late_chunk_documents`` /
            ``output_size`` / ``name``).
        collection: collection name; created when missing (``create=False`` refuses instead).
        path / location / url / api_key / client: where it lives (one of them; default ``path="./qdrant-data"``).
        dimensions: Matryoshka size (default: the model's full size).
        passage_task / query_task: tasks for writing / searching (default retrieval.passage / retrieval.query).
        model_name: the model name recorded in the signature (default ``encoder.name``).
        batch_size: records embedded per step (default 64); points go out in upserts of at most 256.
        retries / backoff / max_backoff: retries of transient errors, first wait and cap in seconds.
        overlap_writes: write a batch in one worker thread while the next one is embedded (default True).
        client_kwargs: extra ``QdrantClient(...)`` arguments (timeout, prefer_grpc, ...).
        index_fields: payload indexes on metadata keys that filters use, ``{"lang": "keyword", "year":
            "integer"}`` (types: keyword, integer, float, bool); made on open, on a Qdrant server (local mode
            has none and scans).
    """


__all__ = ["QdrantStore", "QdrantCollection"]
