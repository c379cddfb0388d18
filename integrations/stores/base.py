"""Collection: a collection of jina-embeddings-v3 points in some vector database, without a model.

What a collection does needs no encoder: open or create it for a :class:`Signature` (and check that
signature), write points within the store's request limits (retrying transient errors, then removing the
stale points of re-written documents), search by a vector, fetch, delete and count. ``VectorStore``
(``stores/vector_store.py``) is a Collection plus an encoder that turns records and queries into points
and vectors; Ray's write tasks use a Collection directly, the points embedded elsewhere.

A store kind subclasses Collection with its client and the ``_``-prefixed primitives below
(``QdrantCollection``, ...), and its public store class is ``class QdrantStore(VectorStore, QdrantCollection)``.
"""

from __future__ import annotations

import dataclasses
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from jinav3.errors import PartialWriteError, StoreError, invalid
from jinav3.sparse import SparseVector
from jinav3.tasks import index_task, search_task
from jinav3.validation import int_in_range, positive_int

from .filters import check_portable_filter
from .hybrid import RRF_K, check_hybrid, check_mode, check_rrf_k, lexical_encoder
from .limits import RecordLimits
from .pruning import Holding, Holdings, Stamp
from .records import Hit, Point, Record, check_ids, point_key
from .records import group_by_document as group_hits  # search() has a parameter of that name
from .retries import call_with_retry, is_transient
from .signature import Signature, check_signature
from .writer import BatchFailure, WriteReport, chunk_counts, split_requests, write_batch

ADOPTABLE = frozenset({"dimensions", "passage_task", "query_task"})
"""What ``adopt_signature`` may take from a collection's stored signature (the model never: it must match)."""

_Collection = TypeVar("_Collection", bound="Collection")


def check_top_k(top_k: Any, maximum: int | None = None) -> int:
    if maximum is None:
        return positive_int(top_k, "top_k")
    return int_in_range(top_k, "top_k", 1, maximum, note="on this store")


def check_vectors(vectors: np.ndarray, n: int, dimensions: int) -> None:
    if vectors.shape != (n, dimensions):
        raise StoreError(f"the encoder returned vectors of shape {vectors.shape}, expected ({n}, {dimensions})")
    if not np.isfinite(vectors).all():
        raise StoreError("the encoder returned non-finite vectors")


class Collection(ABC):
    """A collection of jina-embeddings-v3 points: its client, its signature, its limits, writes and searches.

    signature: what the collection holds (model, dimensions, tasks, hybrid); a new collection is made with it,
    an existing one must match it. ``None`` opens an existing collection as it is (its stored signature).
    adopt_signature: take the dimensions and tasks from an existing collection's signature instead.
    hybrid: None keeps what an existing collection is (a new one: ``signature.hybrid``); True/False require it.
    sparse_encoder: the lexical encoder of a hybrid collection (points written without a lexical vector get
    one from it). batch_size / retries / backoff / max_backoff / overlap_writes: as for the store classes.
    """

    kind = "store"  # "Qdrant", "Milvus", "Pinecone": used in messages
    max_points_per_request = 256
    max_keys_per_read = 256  # point keys per lookup of earlier points (_read_stamps)
    max_request_bytes: int | None = None
    max_id_bytes: int | None = None
    max_top_k: int | None = None
    default_batch_size = 64
    native_filter_hint = "a native filter"
    # Points carry an extent and stale points are found by key (integrations/stores/pruning.py): the store
    # implements _read_stamps and _delete_keys. Without, stale points are deleted by condition (_prune).
    tracks_extents = False
    supports_hybrid = False  # lexical vectors beside the dense ones (implements _query_lexical)
    # Points carry their lexical vectors to the store (Qdrant); False: the store weighs the text's terms itself
    # (Milvus's BM25 function), so no lexical vector is computed for a write.
    sparse_points = True
    limits_class: type[RecordLimits] = RecordLimits

    def __init__(self, signature: Signature | None, *, batch_size: int | None = None, retries: int = 5,
                 backoff: float = 0.5, max_backoff: float = 30.0, overlap_writes: bool = True,
                 adopt_signature: bool = False, hybrid: bool | None = None, sparse_encoder: Any = None):
        if signature is not None and not isinstance(signature, Signature):
            raise invalid("signature", f"must be a jinav3 Signature or None, got {type(signature).__name__}")
        self._hybrid_given = check_hybrid(hybrid)
        if hybrid and not self.supports_hybrid:
            raise invalid("hybrid", f"{self.kind} stores hold dense vectors only in jinav3 (hybrid collections: "
                                    "Qdrant, Milvus Lite and Milvus 2.5+); leave hybrid unset")
        self._sparse_given = sparse_encoder
        self.sparse_encoder: Any = None  # a SparseEncoder, once a hybrid collection is open
        self.signature: Signature = signature if signature is not None else Signature("", 0, index_task(None),
                                                                                      search_task(None))
        if hybrid is not None:
            self.signature = dataclasses.replace(self.signature, hybrid=hybrid)
        self._as_stored = signature is None  # take everything from the collection's own signature
        if not isinstance(adopt_signature, bool):
            raise invalid("adopt_signature", f"must be True or False, got {adopt_signature!r}")
        self._adoptable = self._adoptable_fields() if adopt_signature else frozenset()
        self.batch_size = positive_int(batch_size, "batch_size", allow_none=True) or self.default_batch_size
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise invalid("retries", f"must be an integer >= 0, got {retries!r}")
        for arg, value in (("backoff", backoff), ("max_backoff", max_backoff)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise invalid(arg, f"must be a number of seconds >= 0, got {value!r}")
        self.retries, self.backoff, self.max_backoff = retries, float(backoff), float(max_backoff)
        self.overlap_writes = bool(overlap_writes)
        self.limits = self.record_limits()

    # ------------------------------------------------------------------------------ what it holds
    @property
    def dimensions(self) -> int:
        return self.signature.dimensions

    @property
    def passage_task(self) -> str:
        return self.signature.passage_task

    @property
    def query_task(self) -> str:
        return self.signature.query_task

    @property
    def hybrid(self) -> bool:
        """Whether the collection holds lexical vectors beside the dense ones."""
        return self.signature.hybrid

    @classmethod
    def record_limits(cls, lexical: Any = None) -> RecordLimits:
        """This kind of store's limits on records and chunks, without a connection (``lexical``: a hybrid
        collection's lexical encoder, for stores that limit lexical terms)."""
        return cls.limits_class(kind=cls.kind, max_id_bytes=cls.max_id_bytes)

    def check_record(self, item: Any, where: str, late_chunking: bool = False) -> Record:
        """One record normalised and checked against this store's limits, as ``add`` checks each record."""
        return self.limits.check_record(item, where, late_chunking)

    def check_chunk(self, point: Point, where: str) -> None:
        """One chunk checked against this store's limits; ``where`` names its record for the message."""
        self.limits.check_chunk(point, where)

    # ------------------------------------------------------------------------------ where it lives
    @classmethod
    def connection(cls, uri: Any) -> dict[str, Any]:
        """The constructor's keyword arguments for a parsed store URI (``stores.uri.StoreURI``: its ``mode``,
        ``target``, ``user_info`` and ``api_key``): path, url, credentials. A registered kind implements it."""
        raise NotImplementedError(f"{cls.__name__} is not opened from store URIs")

    @classmethod
    def names_there(cls, uri: Any) -> list[str]:
        """What a store URI holds, for messages about a missing collection: its collections (or, for a hosted
        kind, its indexes). A registered kind implements it."""
        raise NotImplementedError(f"{cls.__name__} does not list what a store holds")

    missing_note = ""  # said after a missing_container() refusal

    def missing_container(self) -> list[str] | None:
        """None when this collection is there to search; else the names of those that are (a kind whose
        collections exist without being made, such as Pinecone's namespaces, checks it here)."""
        return None

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

    def _adoptable_fields(self) -> frozenset[str]:
        """What ``adopt_signature=True`` takes from the stored signature (VectorStore: what its caller left unset)."""
        return ADOPTABLE

    def _open(self, create: bool = True) -> None:
        exists, size, metric, stored = self._retry(self._describe, "describe")
        # A collection this object creates holds only what it writes: no lookups for stale points there.
        self._holdings = Holdings(fresh=not exists and self.tracks_extents)
        self._read_ahead: dict[str, Holding] = {}  # holdings read for documents an add() writes next
        if self._as_stored:
            if not exists:
                raise StoreError(f"{self.where} does not exist")
            if stored is None:
                raise StoreError(f"{self.where} has no jinav3 signature; open it with the signature it was made with")
            self.signature = stored if self._hybrid_given is None else dataclasses.replace(stored,
                                                                                          hybrid=self._hybrid_given)
        if not exists:
            if not create:
                raise StoreError(f"{self.where} does not exist (create=False)")
            self._retry(self._create, "create")
            exists, size, metric, stored = self._retry(self._describe, "describe")
            if not exists:
                raise StoreError(f"{self.where} was created but cannot be found")
        elif stored is not None and self._adoptable:
            self._adopt(stored)
        if exists and stored is not None and self._hybrid_given is None:  # reopened as it was made
            self.signature = dataclasses.replace(self.signature, hybrid=stored.hybrid)
        check_signature(self.where, self.signature, size=size, metric=metric, stored=stored)
        if self.signature.hybrid:
            self.sparse_encoder = self._lexical_encoder()
            self.limits = self.record_limits(self.sparse_encoder)

    def _adopt(self, stored: Signature) -> None:
        """Take the dimensions and tasks in ``self._adoptable`` from the collection's signature."""
        changes = {name: getattr(stored, name) for name in self._adoptable}
        if "passage_task" in changes:
            changes["passage_task"] = index_task(changes["passage_task"])
        if "query_task" in changes:
            changes["query_task"] = search_task(changes["query_task"])
        self.signature = dataclasses.replace(self.signature, **changes)

    def _lexical_encoder(self) -> Any:
        """The lexical encoder of a hybrid collection: the one given (None without: points must then come with
        their lexical vectors). VectorStore makes one from its encoder's tokenizer instead."""
        return None if self._sparse_given is None else lexical_encoder(None, self._sparse_given)

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

    def _read_stamps(self, keys: list[str]) -> dict[str, Stamp]:
        """Of the points with these keys, those that exist: key -> the ``extent`` and content ``fingerprint``
        stored with it (each None when it has none). Only called when ``tracks_extents``."""
        raise NotImplementedError

    def _delete_keys(self, keys: list[str]) -> None:
        """Delete the points with exactly these keys (missing ones are ignored). Only called when
        ``tracks_extents``."""
        raise NotImplementedError

    @abstractmethod
    def _translate_filter(self, conditions: list[tuple[str, list[Any]]]) -> Any:
        """The native filter for a parsed portable filter."""

    def _native_filter(self, filter: Any) -> Any:
        """A filter of the store's own kind, passed through, or None when ``filter`` is not one."""
        return None

    def _query_lexical(self, vector: np.ndarray, lexical: SparseVector, limit: int, native_filter: Any, mode: str,
                       rrf_k: int) -> list[Hit]:
        """A ``"sparse"`` search (by ``lexical`` alone) or a ``"hybrid"`` one (``vector`` and ``lexical``, fused by
        RRF with constant ``rrf_k``), best first. Only on stores that ``supports_hybrid``."""
        raise NotImplementedError

    def _count_matching(self, native_filter: Any) -> int | None:
        """How many points pass the filter (None: the store's searches are exact, nothing to check)."""
        return None

    def _query_exact(self, vector: np.ndarray, limit: int, native_filter: Any, matching: int) -> list[Hit]:
        """Like ``_query`` but exact (no approximate index); ``matching``: how many points pass the filter."""
        raise NotImplementedError

    def _request_size(self, point: Point) -> int:
        """Bytes one point adds to a write request (only used when ``max_request_bytes`` is set)."""
        return 0

    def _is_transient(self, exc: BaseException) -> bool:
        return is_transient(exc)

    def size_advice(self, points: int) -> str | None:
        """One line of advice when a collection of ``points`` points has outgrown this kind of store (None:
        it has not). ``jinav3 index`` prints it once after a run."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract: most stores have nothing to release
        """Release the client (a no-op unless the store opened it)."""

    def __repr__(self) -> str:
        sig = self.signature
        return (f"{type(self).__name__}({self.where}, model={sig.model!r}, dimensions={sig.dimensions}, "
                f"tasks={sig.passage_task}/{sig.query_task})")

    def __enter__(self: _Collection) -> _Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ public API
    def search_by_vector(self, vector: Any, top_k: int = 10, filter: Any = None, group_by_document: bool = False,
                         lexical: SparseVector | None = None, mode: str | None = None, rrf_k: int = RRF_K
                         ) -> list[Hit]:
        """The ``top_k`` points nearest ``vector`` (a query vector of the collection's size), best first.
        ``lexical``: the query's lexical vector, for ``mode`` ``"sparse"`` / ``"hybrid"`` on a hybrid collection
        (None is hybrid when a lexical vector is given, else dense). filter, group_by_document: as ``search``."""
        query = np.asarray(vector, dtype=np.float32)
        if mode != "sparse":
            check_vectors(query.reshape(1, -1) if query.ndim == 1 else query, 1, self.dimensions)
        mode = check_mode(mode if mode is not None else ("dense" if lexical is None else None), self.hybrid,
                          self.where)
        if mode != "dense" and lexical is None:
            raise invalid("lexical", f"a {mode} search needs the query's lexical vector")
        top_k, rrf_k = check_top_k(top_k, self.max_top_k), check_rrf_k(rrf_k)
        return self._search(query.reshape(-1), lexical, top_k, self._filter(filter), group_by_document, mode, rrf_k)

    def _search(self, vector: np.ndarray, lexical: SparseVector | None, top_k: int, native: Any,
                group_by_document: bool, mode: str, rrf_k: int) -> list[Hit]:
        """The search itself, its arguments checked (``native``: the filter in the store's own form)."""

        def nearest(limit: int) -> list[Hit]:
            if mode == "dense":
                return self._nearest(vector, limit, native)
            assert lexical is not None  # checked by the callers
            return self._retry(functools.partial(self._query_lexical, vector, lexical, limit, native, mode, rrf_k),
                               f"{mode} search")
        if not group_by_document:
            return nearest(top_k)
        cap = self.max_top_k if self.max_top_k is not None else 1_000_000
        limit = min(top_k * 4, cap)
        while True:
            hits = nearest(limit)
            groups = group_hits(hits)
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
            for hit in self._retry(functools.partial(self._fetch, part, with_vectors), "fetch"):
                found[hit.id] = hit
        return [found[k] for k in keys if k in found]

    def delete(self, ids: Any) -> None:
        """Delete records by id; deleting a late-chunked document's id deletes all its chunks. A chunk's
        own id deletes that chunk. Unknown ids are ignored."""
        keys = check_ids(ids)
        for i in range(0, len(keys), self.max_points_per_request):
            part = keys[i:i + self.max_points_per_request]
            self._retry(functools.partial(self._delete, part), "delete")
            self._holdings.deleted(part)

    def count(self) -> int:
        """Number of points (a late-chunked record counts once per chunk)."""
        return int(self._retry(self._count, "count"))

    def chunk_id(self, parent_id: str, chunk: int) -> str:
        """The id of chunk ``chunk`` of document ``parent_id``."""
        return point_key(parent_id, chunk)

    def write_points(self, points: Sequence[Point], chunks: Mapping[str, int | None] | None = None,
                     label: str = "points") -> WriteReport:
        """Write points made elsewhere (by ``embed_points``, e.g. on Ray workers) the way ``add`` writes
        each batch: requests within the store's limits, transient errors retried, then the stale points of
        their documents removed. ``chunks``: per document the number of chunks it has in all (None: whole),
        when this call may hold only some of a document's points; by default counted from ``points``.
        A failure after retries raises :class:`~jinav3.errors.PartialWriteError` naming the documents written
        and not; writing the same points again finishes the job. In a hybrid collection, points made without
        their lexical vectors get them here (from their texts)."""
        points = list(points)
        missing = [p for p in points if p.sparse is None]
        if missing and self.sparse_encoder is not None and self.sparse_points:
            for p, lexical in zip(missing, self.sparse_encoder.encode_documents([p.text for p in missing]),
                                  strict=True):
                p.sparse = lexical
        doc_ids = list(dict.fromkeys(p.doc_id for p in points))
        report = WriteReport()
        try:
            self._write_batch(points, doc_ids, report, label, chunks)
        except BatchFailure as e:
            done = set(report.written)
            failed = [d for d in doc_ids if d not in done]
            raise PartialWriteError(
                f"{self.where}: {e.step} failed ({type(e.cause).__name__}: {e.cause}); {len(done)} of "
                f"{len(doc_ids)} documents were written, {len(failed)} were not"
                f"{' (first: ' + str(failed[:3]) + ')' if failed else ''}. Writing the same points again finishes "
                "the job: ids are deterministic, so nothing is duplicated.",
                [d for d in doc_ids if d in done], failed, [d for d in doc_ids if d in set(report.unpruned)]
            ) from e.cause
        return report

    # ------------------------------------------------------------------------------ internals
    def _nearest(self, vector: np.ndarray, limit: int, native: Any) -> list[Hit]:
        """The ``limit`` nearest points that pass the filter: min(limit, matching points) of them. An
        approximate index can come back short under a selective filter (HNSW's search breadth runs out of
        matching neighbours); then, when more points match than it found, the store searches exactly."""
        hits = self._retry(functools.partial(self._query, vector, limit, native), "search")
        if native is None or len(hits) >= limit:
            return hits
        matching = self._retry(functools.partial(self._count_matching, native), "count of matching points")
        if matching is None or matching <= len(hits):
            return hits
        return self._retry(functools.partial(self._query_exact, vector, limit, native, matching), "exact search")

    def _retry(self, fn: Callable[[], Any], what: str) -> Any:
        return call_with_retry(fn, what=f"{self.where}: {what}", retries=self.retries, backoff=self.backoff,
                               max_backoff=self.max_backoff, transient=self._is_transient)

    def _filter(self, filter: Any) -> Any:
        if filter is None:
            return None
        native = self._native_filter(filter)
        if native is not None:
            return native
        return self._translate_filter(check_portable_filter(filter, self.native_filter_hint))

    def _requests(self, points: list[Point]) -> list[list[Point]]:
        return split_requests(points, self.max_points_per_request, self.max_request_bytes, self._request_size)

    def _write_batch(self, points: list[Point], doc_ids: list[str], report: WriteReport, label: str,
                     chunks: Mapping[str, int | None] | None = None, held: Mapping[str, Holding] | None = None
                     ) -> None:
        write_batch(self, points, doc_ids, report, label, chunks, held)


__all__ = ["Collection", "Hit", "Point", "Record", "Signature", "RecordLimits", "check_top_k", "check_vectors",
           "chunk_counts"]
