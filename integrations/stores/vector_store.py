"""VectorStore: a Collection plus an encoder. Records in (embedded with the passage task), text queries out.

The steps of ``add`` that the Ray indexing path (jinav3.integrations.ray) runs elsewhere have one
implementation each, so both paths give the same ids, chunk ids, payloads, requests and retries: records
become points on an embedding worker (:func:`embed_points`), points are written by a write task
(``Collection.write_points``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np

from jinav3.errors import PartialWriteError, invalid
from jinav3.progress import progress_bar
from jinav3.protocol import TextEncoder
from jinav3.sparse import SparseEncoder
from jinav3.tasks import check_task, index_task, search_task
from jinav3.validation import boolean, chunker_arguments, positive_int

from .base import ADOPTABLE, Collection, check_top_k, check_vectors
from .hybrid import RRF_K, check_mode, check_rrf_k, lexical_encoder
from .pruning import Holding, unchanged
from .records import WHOLE, Hit, Point, Record, content_fingerprint, normalize_records, point_key
from .signature import Signature
from .writer import BatchFailure, BatchWriter, WriteReport, read_holdings


def embed_points(encoder: TextEncoder, batch: Sequence[Record], *, task: str, dimensions: int, late_chunking: bool,
                 chunker: Any = "sentences", chunk_size: Any = None,
                 check_chunk: Callable[[Point, str], None] | None = None, sparse: SparseEncoder | None = None
                 ) -> list[Point]:
    """THE points of ``batch``: one per record (key = its id, ``chunk`` -1), or with ``late_chunking`` one per
    chunk (key ``point_key(id, n)``, the chunk's text and character offsets), each record's chunks embedded
    in the context of that record alone. ``check_chunk(point, where)`` applies a store's limits to chunks.
    ``sparse``: a hybrid collection's lexical encoder; each point gets the lexical vector of its own text.
    Each point carries its record's content fingerprint (an unchanged record written again is skipped)."""
    points = _dense_points(encoder, batch, task=task, dimensions=dimensions, late_chunking=late_chunking,
                           chunker=chunker, chunk_size=chunk_size, check_chunk=check_chunk)
    fingerprints = {r.id: content_fingerprint(r, late_chunking, chunker, chunk_size) for r in batch}
    for p in points:
        p.fingerprint = fingerprints[p.doc_id]
    if sparse is not None:
        for p, lexical in zip(points, sparse.encode_documents([p.text for p in points]), strict=True):
            p.sparse = lexical
    return points


def _dense_points(encoder: TextEncoder, batch: Sequence[Record], *, task: str, dimensions: int, late_chunking: bool,
                  chunker: Any, chunk_size: Any, check_chunk: Callable[[Point, str], None] | None) -> list[Point]:
    texts = [r.text for r in batch]
    if not late_chunking:
        vectors = np.asarray(encoder.encode(texts, task=task, dimensions=dimensions), dtype=np.float32)
        check_vectors(vectors, len(batch), dimensions)  # one vector per record
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


class VectorStore(Collection):
    """A collection of jina-embeddings-v3 vectors and the encoder that makes them.

    Writing embeds with the passage task and searching with the query task (``retrieval.passage`` /
    ``retrieval.query`` unless ``passage_task`` / ``query_task`` say otherwise). A store kind's class is
    ``class QdrantStore(VectorStore, QdrantCollection)``: this constructor takes the encoder and what the
    signature needs, and passes the rest (where the collection lives) on to the kind's Collection.
    """

    def __init__(self, encoder: TextEncoder, *args: Any, dimensions: int | None = None,
                 passage_task: str | None = None, query_task: str | None = None, model_name: str | None = None,
                 hybrid: bool | None = None, **options: Any) -> None:
        self.encoder = encoder
        name = model_name if model_name is not None else getattr(encoder, "name", None)
        if not isinstance(name, str) or not name:
            raise invalid("model_name", "the encoder has no name; pass model_name= to record in the signature")
        label = getattr(encoder, "label", None) if model_name is None else None
        signature = Signature(name, int(encoder.output_size(dimensions)), index_task(passage_task),
                              search_task(query_task), model_label=label if isinstance(label, str) else None,
                              hybrid=bool(hybrid))
        # With adopt_signature, what the caller left unset is read from an existing collection's signature.
        self.unchanged_in_last_add = 0  # records the last add() found stored as they are (not embedded again)
        self._left_unset = frozenset(arg for arg, value in (("dimensions", dimensions), ("passage_task", passage_task),
                                                            ("query_task", query_task)) if value is None)
        super().__init__(signature, *args, hybrid=hybrid, **options)

    def _adoptable_fields(self) -> frozenset[str]:
        return ADOPTABLE & self._left_unset

    def _adopt(self, stored: Signature) -> None:
        if "dimensions" in self._adoptable:
            self.encoder.output_size(stored.dimensions)  # the stored size must be one this encoder makes
        super()._adopt(stored)

    def _lexical_encoder(self) -> SparseEncoder:
        return lexical_encoder(self.encoder, self._sparse_given)

    # ------------------------------------------------------------------------------ public API
    def add(self, records: Any, late_chunking: bool = False, chunker: str | Sequence[tuple[int, int]] = "sentences",
            chunk_size: int | None = None, batch_size: int | None = None, task: str | None = None,
            show_progress: bool = False, skip_unchanged: bool = True) -> list[str]:
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
        skip_unchanged: a record whose points are all stored already from the same text, metadata and
        chunking (each point carries a fingerprint of them) is neither embedded nor written again; False
        embeds and writes every record (after a change of weights the signature does not record). How
        many were skipped: ``unchanged_in_last_add``.
        """
        task = self._write_task(task)
        batch_size = positive_int(batch_size, "batch_size", allow_none=True) or self.batch_size
        skip_unchanged = boolean(skip_unchanged, "skip_unchanged")
        if not isinstance(late_chunking, bool):
            raise invalid("late_chunking", f"must be True or False, got {late_chunking!r}")
        recs = normalize_records(records)
        if late_chunking:
            chunker_arguments(chunker, chunk_size, len(recs))
        elif chunk_size is not None:
            raise invalid("chunk_size", "only applies with late_chunking=True")
        for i, record in enumerate(recs):
            self.limits.check_fields(record, f"records[{i}]", late_chunking)
        if late_chunking:
            self._check_planned_chunks(recs, task, chunker, chunk_size)
        if not recs:
            return []
        batches = [recs[i:i + batch_size] for i in range(0, len(recs), batch_size)]
        progress = progress_bar(len(recs), show_progress, unit="record", desc=f"Writing to {self.where}")
        report = WriteReport()
        # what each record's points are made from: one that is stored so already is not written again
        fingerprints = {r.id: content_fingerprint(r, late_chunking, chunker, chunk_size) for r in recs} \
            if skip_unchanged and self.tracks_extents else {}
        writer = BatchWriter(functools.partial(self._write_batch, report=report), self.overlap_writes)
        try:
            for b, batch in enumerate(batches):
                label = f"batch {b + 1} of {len(batches)}"
                ids = [r.id for r in batch]
                held = self._holdings_of(writer, report, recs, ids, (b + 1) * batch_size, label, fingerprints)
                if held is not None and fingerprints:
                    batch = self._changed(batch, held, fingerprints, late_chunking, report)
                if batch:
                    try:
                        points = self._embed(batch, task, late_chunking, chunker, chunk_size)
                    except Exception as e:
                        self._stop(writer, report, recs, e, f"embedding {label}")
                    try:  # first waits for the previous batch's write
                        writer.submit(points, [r.id for r in batch], label=label, held=held)
                    except BatchFailure as e:
                        self._stop(writer, report, recs, e, "")
                progress.update(len(ids))
            try:
                writer.wait()
            except BatchFailure as e:
                self._stop(writer, report, recs, e, "")
        finally:
            writer.close()
            progress.close()
            self.unchanged_in_last_add = report.skipped
            self._read_ahead.clear()  # read for this add() only: another writer may change them afterwards
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
        native = self._filter(filter)  # every argument is checked before the query is embedded
        vector = self._embed_query(query, task) if mode != "sparse" else np.empty(0, np.float32)
        lexical = None
        if mode != "dense":
            assert self.sparse_encoder is not None  # a hybrid collection has one (_open)
            lexical = self.sparse_encoder.encode_queries([query])[0]
        return self._search(vector, lexical, top_k, native, group_by_document, mode, rrf_k)

    # ------------------------------------------------------------------------------ internals
    def _holdings_of(self, writer: BatchWriter, report: WriteReport, recs: list[Record], ids: list[str], after: int,
                     label: str, fingerprints: dict[str, str]) -> dict[str, Holding] | None:
        """What the documents ``ids`` hold before they are written (None: a store without extents). Where they
        must be read, the documents of the next batches (from ``recs[after:]``) are read along (none are read
        in a collection this object made); the write in flight finishes first (one thread uses the client)."""
        if not self.tracks_extents:
            return None
        upcoming = [] if self._holdings.fresh else [r.id for r in recs[after:after + self.max_keys_per_read // 2]]
        try:
            return read_holdings(self, ids, upcoming, before_read=writer.wait, wanted=fingerprints)
        except BatchFailure as e:  # the write in flight failed
            self._stop(writer, report, recs, e, "")
        except Exception as e:
            self._stop(writer, report, recs, e, f"looking up the earlier points of {label}")

    @staticmethod
    def _changed(batch: list[Record], held: dict[str, Holding], fingerprints: dict[str, str], late_chunking: bool,
                 report: WriteReport) -> list[Record]:
        """The records of ``batch`` not already stored exactly as they would be written now; the others count as
        written."""
        changed = [r for r in batch if not unchanged(held[r.id], fingerprints[r.id], late_chunking)]
        if len(changed) < len(batch):
            kept = {r.id for r in changed}
            report.written.extend(r.id for r in batch if r.id not in kept)
            report.skipped += len(batch) - len(changed)
        return changed

    def _write_task(self, task: str | None) -> str:
        if task is None:
            return self.passage_task
        check_task(task, "task")
        if task != self.passage_task:
            raise invalid("task", f"{self.where} holds {self.passage_task!r} vectors (its signature says so); "
                                  f"writing {task!r} vectors would mix kinds. Open the store with "
                                  f"passage_task={task!r} on a new collection instead")
        return task

    def _embed_query(self, query: str, task: str) -> np.ndarray:
        vector = np.asarray(self.encoder.encode([query], task=task, dimensions=self.dimensions), dtype=np.float32)
        check_vectors(vector, 1, self.dimensions)
        return vector[0]

    def _embed(self, batch: list[Record], task: str, late_chunking: bool, chunker: Any, chunk_size: Any) -> list[Point]:
        # chunks are already checked up front when the encoder can plan them (chunk_spans); checked again here
        return embed_points(self.encoder, batch, task=task, dimensions=self.dimensions, late_chunking=late_chunking,
                            chunker=chunker, chunk_size=chunk_size, check_chunk=self.check_chunk,
                            sparse=self.sparse_encoder if self.sparse_points else None)

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
                self.check_chunk(point, f"records[{i}]")

    def _stop(self, writer: BatchWriter, report: WriteReport, recs: list[Record], cause: BaseException,
              step: str) -> NoReturn:
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


__all__ = ["VectorStore", "embed_points"]
