"""The store base class: what the Qdrant, Milvus and Pinecone helpers share.

Each store module is thin: it opens its client, creates or checks the collection, translates the
portable filter and moves points in and out. Everything that must behave the same on every store
lives in this package's shared modules: ``records`` (records, ids, hits), ``signature``, ``filters``,
``retries`` and ``writer`` (batched writes, the next batch embedded while the previous one is written,
:class:`~jinav3.errors.PartialWriteError` saying exactly what landed). This module holds the base
class that puts them together, and is the public home of what users of any store meet::

    from jinav3.integrations.store import VectorStore, Hit, Signature
"""

from __future__ import annotations

import dataclasses
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from jinav3.errors import PartialWriteError, StoreError, invalid
from jinav3.progress import progress_bar
from jinav3.protocol import TextEncoder
from jinav3.sparse import SparseEncoder, SparseVector
from jinav3.tasks import check_task, index_task, search_task
from jinav3.validation import chunker_arguments, int_in_range, positive_int

from .filters import check_portable_filter
from .hybrid import RRF_K, check_hybrid, check_mode, check_rrf_k, lexical_encoder
from .pruning import Holding, Holdings, holding_from, new_extent, probe_keys, stale_keys
from .records import (
    CHUNK_SUFFIX_ROOM,
    WHOLE,
    Hit,
    Point,
    Record,
    check_ids,
    group_by_document,
    normalize_record,
    normalize_records,
    point_key,
)
from .retries import call_with_retry, is_transient
from .signature import Signature, check_signature
from .writer import BatchFailure, BatchWriter, WriteReport


def check_top_k(top_k: Any, maximum: int | None = None) -> int:
    if maximum is None:
        return positive_int(top_k, "top_k")
    return int_in_range(top_k, "top_k", 1, maximum, note="on this store")


_Store = TypeVar("_Store", bound="VectorStore")


# ============================================================================================ shared steps
# The steps of add() that the Ray indexing path (jinav3.integrations.ray) runs elsewhere: records become
# points on an embedding worker (embed_points), points are written by a write task (VectorStore.write_points).
# One implementation each, so both paths give the same ids, chunk ids, payloads, requests and retries.
def check_vectors(vectors: np.ndarray, n: int, dimensions: int) -> None:
    if vectors.shape != (n, dimensions):
        raise StoreError(f"the encoder returned vectors of shape {vectors.shape}, expected ({n}, {dimensions})")
    if not np.isfinite(vectors).all():
        raise StoreError("the encoder returned non-finite vectors")


def embed_points(encoder: TextEncoder, batch: Sequence[Record], *, task: str, dimensions: int, late_chunking: bool,
                 chunker: Any = "sentences", chunk_size: Any = None,
                 check_chunk: Callable[[Point, str], None] | None = None, sparse: SparseEncoder | None = None
                 ) -> list[Point]:
    """THE points of ``batch``: one per record (key = its id, ``chunk`` -1), or with ``late_chunking`` one per
    chunk (key ``point_key(id, n)``, the chunk's text and character offsets), each record's chunks embedded
    in the context of that record alone. ``check_chunk(point, where)`` applies a store's limits to chunks.
    ``sparse``: a hybrid collection's lexical encoder; each point gets the lexical vector of its own text."""
    points = _dense_points(encoder, batch, task=task, dimensions=dimensions, late_chunking=late_chunking,
                           chunker=chunker, chunk_size=chunk_size, check_chunk=check_chunk)
    if sparse is not None:
        for p, lexical in zip(points, sparse.encode_documents([p.text for p in points]), strict=True):
            p.sparse = lexical
    return points


def _dense_points(encoder: TextEncoder, batch: Sequence[Record], *, task: str, dimensions: int, late_chunking: bool,
                  chunker: Any, chunk_size: Any, check_chunk: Callable[[Point, str], None] | None) -> list[Point]:
    texts = [r.text for r in batch]
    if not late_chunking:
        vectors = np.asarray(encoder.encode(texts, task=task, dimensions=dimensions), dtype=np.float32)
        check_vectors(vectors, len(batch), dimensions)
        # check_vectors: one vector per record
        return [Point(r.id, r.id, WHOLE, v, r.text, r.metadata) for r, v in zip(batch, vectors, strict=True)]
    chunked = encoder.late_chunk_documents(texts, task=task, chunker=chunker, chunk_size=chunk_size,
                                           dimensions=dimensions)
    points = []
    for r, chunks in zip(batch, chunked, strict=True):  # one list of chunks per text
        if not chunks:
            raise invalid("records", f"record {r.id!r}: late chunking found no chunk in its text")
        vectors = np.stack([np.asarray(c.embedding, dtype=np.float32) for c in chunks])
        check_vectors(vectors, len(chunks), dimensions)
        for c, vector in zip(chunks, vectors, strict=True):
            points.append(Point(point_key(r.id, c.index), r.id, int(c.index), vector, c.text, r.metadata,
                                int(c.start), int(c.end)))
    if check_chunk is not None:
        for p in points:
            check_chunk(p, "records")
    return points


def chunk_counts(points: Sequence[Point], doc_ids: Sequence[str]) -> dict[str, int | None]:
    """Per document: how many chunks it was written with (None: written whole), from its points."""
    counts: dict[str, int | None] = {doc: None for doc in doc_ids}
    for p in points:
        if p.chunk != WHOLE:
            counts[p.doc_id] = max(counts[p.doc_id] or 0, p.chunk + 1)
    return counts


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
    # Points carry an extent and stale points are found by key (integrations/pruning.py): the store
    # implements _read_extents and _delete_keys. Without, stale points are deleted by condition (_prune).
    tracks_extents = False
    supports_hybrid = False  # lexical vectors beside the dense ones (implements _query_lexical)

    def __init__(self, encoder: TextEncoder, *, dimensions: int | None = None, passage_task: str | None = None,
                 query_task: str | None = None, model_name: str | None = None, batch_size: int | None = None,
                 retries: int = 5, backoff: float = 0.5, max_backoff: float = 30.0, overlap_writes: bool = True,
                 adopt_signature: bool = False, hybrid: bool | None = None, sparse_encoder: Any = None):
        self.encoder = encoder
        self._hybrid_given = check_hybrid(hybrid)
        if hybrid and not self.supports_hybrid:
            raise invalid("hybrid", f"{self.kind} stores hold dense vectors only in jinav3 (hybrid collections: "
                                    "Qdrant, Milvus Lite and Milvus 2.5+); leave hybrid unset")
        self._sparse_given = sparse_encoder
        self.sparse_encoder: SparseEncoder | None = None
        self.dimensions = int(encoder.output_size(dimensions))
        self.passage_task = index_task(passage_task)
        self.query_task = search_task(query_task)
        name = model_name if model_name is not None else getattr(encoder, "name", None)
        if not isinstance(name, str) or not name:
            raise invalid("model_name", "the encoder has no name; pass model_name= to record in the signature")
        label = getattr(encoder, "label", None) if model_name is None else None
        self.signature = Signature(name, self.dimensions, self.passage_task, self.query_task,
                                   model_label=label if isinstance(label, str) else None, hybrid=bool(hybrid))
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
        # A collection this object creates holds only what it writes: no lookups for stale points there.
        self._holdings = Holdings(fresh=not exists and self.tracks_extents)
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
            self.sparse_encoder = lexical_encoder(self.encoder, self._sparse_given)

    @property
    def hybrid(self) -> bool:
        """Whether the collection holds lexical vectors beside the dense ones."""
        return self.signature.hybrid

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

    def _read_extents(self, keys: list[str]) -> dict[str, int | None]:
        """Of the points with these keys, those that exist: key -> the ``extent`` stored with it (None when
        it has none). Only called when ``tracks_extents``."""
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

    def _check_record(self, record: Record, where: str, late_chunking: bool) -> None:
        """Store-specific limits on one record (id length, metadata size, ...); raise before writing."""
        if self.max_id_bytes is not None:
            room = CHUNK_SUFFIX_ROOM if late_chunking else 0
            size = len(record.id.encode("utf-8"))
            if size + room > self.max_id_bytes:
                suffix = f" including the chunk suffix ({room} bytes)" if room else ""
                raise invalid(f"{where}.id", f"is {size} bytes; {self.kind} ids may have at most "
                                             f"{self.max_id_bytes} bytes{suffix}")

    @classmethod
    def record_rules(cls: type[_Store]) -> _Store:
        """An unopened instance of this store class (no client, no encoder) for checking records and chunks
        where no connection is open: ``check_record`` and ``_check_chunk_point`` depend on the class's
        limits alone. Nothing else may be called on it."""
        return cls.__new__(cls)

    def check_record(self, item: Any, where: str, late_chunking: bool = False) -> Record:
        """One record normalised (:func:`~jinav3.integrations.records.normalize_record`) and checked against
        this store's limits, as ``add`` checks each of its records; raises InvalidArgumentError naming ``where``."""
        record = normalize_record(item, where)
        self._check_record(record, where, late_chunking)
        return record

    def _check_chunk(self, point: Point, where: str) -> None:  # noqa: B027 - optional hook: no limits by default
        """Store-specific limits on one chunk (its text, its metadata with the text); ``where`` names the
        record for the message. Called before anything is written (see ``_check_planned_chunks``)."""

    def _request_size(self, point: Point) -> int:
        """Bytes one point adds to a write request (only used when ``max_request_bytes`` is set)."""
        return 0

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

    def __enter__(self: _Store) -> _Store:
        return self

    def __exit__(self, *exc: object) -> None:
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
        :class:`~jinav3.errors.PartialWriteError` naming the records written whole, those not written and
        those whose old points could not be removed; running the same ``add`` again finishes the job.
        """
        task = self._write_task(task)
        batch_size = positive_int(batch_size, "batch_size", allow_none=True) or self.batch_size
        if not isinstance(late_chunking, bool):
            raise invalid("late_chunking", f"must be True or False, got {late_chunking!r}")
        recs = normalize_records(records)
        if late_chunking:
            chunker_arguments(chunker, chunk_size, len(recs))
        elif chunk_size is not None:
            raise invalid("chunk_size", "only applies with late_chunking=True")
        for i, record in enumerate(recs):
            self._check_record(record, f"records[{i}]", late_chunking)
        if late_chunking:
            self._check_planned_chunks(recs, task, chunker, chunk_size)
        if not recs:
            return []
        batches = [recs[i:i + batch_size] for i in range(0, len(recs), batch_size)]
        progress = progress_bar(len(recs), show_progress, unit="record", desc=f"Writing to {self.where}")
        report = WriteReport()
        writer = BatchWriter(functools.partial(self._write_batch, report=report), self.overlap_writes)
        try:
            for b, batch in enumerate(batches):
                label = f"batch {b + 1} of {len(batches)}"
                try:
                    points = self._embed(batch, task, late_chunking, chunker, chunk_size)
                except Exception as e:
                    self._stop(writer, report, recs, e, f"embedding {label}")
                try:  # first waits for the previous batch's write
                    writer.submit(points, [r.id for r in batch], label=label)
                except BatchFailure as e:
                    self._stop(writer, report, recs, e, "")
                progress.update(len(batch))
            try:
                writer.wait()
            except BatchFailure as e:
                self._stop(writer, report, recs, e, "")
        finally:
            writer.close()
            progress.close()
        return [r.id for r in recs]

    def search(self, query: str, top_k: int = 10, filter: Any = None, task: str | None = None,
               group_by_document: bool = False, mode: str | None = None, rrf_k: int = RRF_K) -> list[Hit]:
        """The ``top_k`` best hits for ``query`` (embedded with the query task), best first.

        filter: the portable ``{"key": value, "key2": [v1, v2]}`` (all must hold; a list is any-of; a
        key a record lacks never matches) or the store's native filter. group_by_document: one hit per
        document (late-chunked records grouped by parent, scored by their best chunk). mode: ``"dense"``
        (score: cosine similarity), ``"sparse"`` (lexical BM25 score) or ``"hybrid"`` (both rankings fused by
        reciprocal rank fusion with constant ``rrf_k``; score: the fused score); None is hybrid on a hybrid
        collection, else dense.
        """
        if not isinstance(query, str):
            raise invalid("query", f"must be a str, got {type(query).__name__}")
        if not query.strip():
            raise invalid("query", "is empty; there is nothing to search for")
        top_k = check_top_k(top_k, self.max_top_k)
        task = self.query_task if task is None else search_task(check_task(task, "task"))
        mode = check_mode(mode, self.hybrid, self.where)
        rrf_k = check_rrf_k(rrf_k)
        native = self._filter(filter)
        vector = self._embed_query(query, task) if mode != "sparse" else np.empty(0, np.float32)
        lexical = None
        if mode != "dense":
            assert self.sparse_encoder is not None  # a hybrid collection has one (_open)
            lexical = self.sparse_encoder.encode_queries([query])[0]

        def nearest(limit: int) -> list[Hit]:
            if lexical is None:
                return self._nearest(vector, limit, native)
            return self._retry(functools.partial(self._query_lexical, vector, lexical, limit, native, mode, rrf_k),
                               f"{mode} search")
        if not group_by_document:
            return nearest(top_k)
        limit = top_k * 4 if self.max_top_k is None else min(top_k * 4, self.max_top_k)
        while True:
            hits = nearest(limit)
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
        """Write points made elsewhere (by :func:`embed_points`, e.g. on Ray workers) the way ``add`` writes
        each batch: requests within the store's limits, transient errors retried, then the stale points of
        their documents removed. ``chunks``: per document the number of chunks it has in all (None: whole),
        when this call may hold only some of a document's points; by default counted from ``points``.
        A failure after retries raises :class:`~jinav3.errors.PartialWriteError` naming the documents written
        and not; writing the same points again finishes the job. In a hybrid collection, points made without
        their lexical vectors get them here (from their texts)."""
        points = list(points)
        missing = [p for p in points if p.sparse is None]
        if missing and self.sparse_encoder is not None:
            for p, lexical in zip(missing, self.sparse_encoder.encode_documents([p.text for p in missing]),
                                  strict=True):
                p.sparse = lexical
        doc_ids = list(dict.fromkeys(p.doc_id for p in points))
        report = WriteReport()
        try:
            self._write_batch(points, doc_ids, report, label, chunks)
        except BatchFailure as e:
            done, unpruned_set = set(report.written), set(report.unpruned)
            failed = [d for d in doc_ids if d not in done]
            raise PartialWriteError(
                f"{self.where}: {e.step} failed ({type(e.cause).__name__}: {e.cause}); {len(done)} of "
                f"{len(doc_ids)} documents were written, {len(failed)} were not"
                f"{' (first: ' + str(failed[:3]) + ')' if failed else ''}. Writing the same points again finishes "
                "the job: ids are deterministic, so nothing is duplicated.",
                [d for d in doc_ids if d in done], failed, [d for d in doc_ids if d in unpruned_set]) from e.cause
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
                                  f"writing {task!r} vectors would mix kinds. Open the store with "
                                  f"passage_task={task!r} on a new collection instead")
        return task

    def _filter(self, filter: Any) -> Any:
        if filter is None:
            return None
        native = self._native_filter(filter)
        if native is not None:
            return native
        return self._translate_filter(check_portable_filter(filter, self.native_filter_hint))

    def _embed_query(self, query: str, task: str) -> np.ndarray:
        vector = np.asarray(self.encoder.encode([query], task=task, dimensions=self.dimensions), dtype=np.float32)
        check_vectors(vector, 1, self.dimensions)
        return vector[0]

    def _embed(self, batch: list[Record], task: str, late_chunking: bool, chunker: Any, chunk_size: Any) -> list[Point]:
        # chunks are already checked up front when the encoder can plan them (chunk_spans); checked again here
        return embed_points(self.encoder, batch, task=task, dimensions=self.dimensions, late_chunking=late_chunking,
                            chunker=chunker, chunk_size=chunk_size, check_chunk=self._check_chunk_point,
                            sparse=self.sparse_encoder)

    def _check_planned_chunks(self, recs: list[Record], task: str, chunker: Any, chunk_size: Any) -> None:
        """Check every chunk against the store's limits before anything is embedded or written. Chunk
        texts are known before any vector is: the encoder's ``chunk_spans`` says where they fall (an
        encoder without it has its chunks checked batch by batch instead)."""
        plan = getattr(self.encoder, "chunk_spans", None)
        if plan is None:
            return
        planned = plan([r.text for r in recs], task=task, chunker=chunker, chunk_size=chunk_size)
        for i, (r, spans) in enumerate(zip(recs, planned, strict=True)):  # one list of spans per text
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

    def _write_batch(self, points: list[Point], doc_ids: list[str], report: "WriteReport", label: str,
                     chunks: Mapping[str, int | None] | None = None) -> None:
        """Write one batch's points (those of the documents ``doc_ids``) in requests within the store's
        limits, then remove the stale points of its documents. ``report`` learns which records landed
        whole, and which of those may still have stale points; a failure after retries raises BatchFailure.
        ``chunks`` gives each document's number of chunks when ``points`` may hold only some of them."""
        keys_of: dict[str, list[str]] = {doc: [] for doc in doc_ids}
        for p in points:
            keys_of[p.doc_id].append(p.key)
        counted = chunk_counts(points, doc_ids)
        n_chunks = {doc: (chunks[doc] if chunks is not None and doc in chunks else counted[doc]) for doc in doc_ids}
        stored: set[str] = set()
        report.attempted = True
        held: dict[str, Holding] | None = None
        try:
            held = self._holdings_before_write(doc_ids) if self.tracks_extents else None
            if held is not None:
                for p in points:
                    p.extent = new_extent(n_chunks[p.doc_id], held[p.doc_id])
            for request in self._requests(points):
                self._retry(functools.partial(self._upsert, request), f"upsert of {len(request)} points")
                stored.update(p.key for p in request)
        except Exception as e:
            self._unsure(doc_ids, n_chunks, held)
            raise BatchFailure(f"writing {label}", e) from e
        finally:  # a record counts as written only when every one of its points is
            report.written += [doc for doc in doc_ids if all(k in stored for k in keys_of[doc])]
        try:
            if held is None:
                self._prune_by_condition(n_chunks)
            else:
                self._prune_by_key(points, n_chunks, held, {p.doc_id for p in points if p.chunk == 0})
        except Exception as e:
            self._unsure(doc_ids, n_chunks, held)
            report.unpruned += list(doc_ids)
            raise BatchFailure(f"removing stale points of {label}", e) from e

    def _holdings_before_write(self, doc_ids: list[str]) -> dict[str, Holding]:
        """Per document, what it may hold in the store before this write (integrations/pruning.py): known
        without a request in a collection this object made, else read from two points per document."""
        held: dict[str, Holding] = {}
        unknown = []
        for doc in doc_ids:
            known = self._holdings.get(doc)
            if known is None:
                unknown.append(doc)
            else:
                held[doc] = known
        keys = probe_keys(unknown)
        found: dict[str, int | None] = {}
        for i in range(0, len(keys), self.max_points_per_request):
            part = keys[i:i + self.max_points_per_request]
            found.update(self._retry(functools.partial(self._read_extents, part), "lookup of earlier points"))
        held.update((doc, holding_from(found, doc)) for doc in unknown)
        return held

    def _prune_by_key(self, points: list[Point], n_chunks: Mapping[str, int | None], held: Mapping[str, Holding],
                      first_chunks: set[str]) -> None:
        """Delete exactly the keys the documents' earlier versions may have left (by condition for those
        written without extents). ``first_chunks``: the documents whose chunk 0 this write holds."""
        legacy = {doc: n for doc, n in n_chunks.items() if held[doc].legacy}
        if legacy:
            self._prune_by_condition(legacy)
        keys = [k for doc, n in n_chunks.items() if not held[doc].legacy
                for k in stale_keys(doc, n, held[doc], doc in first_chunks)]
        for i in range(0, len(keys), self.max_points_per_request):
            part = keys[i:i + self.max_points_per_request]
            self._retry(functools.partial(self._delete_keys, part), "removal of stale points")
        # With the stale points gone, the extent can come down to the new shape: written again, so that the
        # next write of an unchanged document has nothing to delete. Only documents that had stale points.
        settled = [p for p in points if p.extent is not None and p.extent != (n_chunks[p.doc_id] or 0)]
        for p in settled:
            p.extent = n_chunks[p.doc_id] or 0
        for request in self._requests(settled):
            self._retry(functools.partial(self._upsert, request), f"upsert of {len(request)} points")
        for doc, n in n_chunks.items():
            self._holdings.wrote(doc, n, whole_left=held[doc].whole and doc not in first_chunks)

    def _unsure(self, doc_ids: list[str], n_chunks: Mapping[str, int | None],
                held: Mapping[str, Holding] | None) -> None:
        for doc in doc_ids:
            self._holdings.unsure(doc, new_extent(n_chunks[doc], held[doc]) if held else n_chunks[doc] or 0)

    def _prune_by_condition(self, n_chunks: Mapping[str, int | None]) -> None:
        """Delete every point of these documents that the new write did not make, by condition on the parent
        id every point carries (a scan in the embedded stores): for documents written without extents.

        New points are numbered 0..n-1 (or are one whole record), so the stale ones are chunks numbered n
        and up and the whole record (when chunked), every chunk (when whole). The new points are written
        first, so a crash at any moment leaves at worst stale points that the next add() removes.
        """
        groups: dict[int | None, list[str]] = {}
        for doc, n in n_chunks.items():
            groups.setdefault(n, []).append(doc)
        for n, docs in groups.items():
            for i in range(0, len(docs), self.max_points_per_request):
                part = sorted(docs[i:i + self.max_points_per_request])
                self._retry(functools.partial(self._prune, part, n), "removal of stale points")

    def _stop(self, writer: "BatchWriter", report: "WriteReport", recs: list[Record], cause: BaseException,
              step: str) -> None:
        """Raise for a failed add(): the cause itself when nothing was sent to the store yet, else an
        exact PartialWriteError (after the write still in flight has finished, so its records count)."""
        try:
            writer.wait()
        except BatchFailure:  # its records are in the report; the first failure is the one reported
            pass
        if isinstance(cause, BatchFailure):
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


_group_hits = group_by_document  # search() has a parameter of that name




__all__ = ["VectorStore", "Hit", "Signature", "Point", "Record", "embed_points", "check_vectors", "chunk_counts"]
