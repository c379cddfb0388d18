"""The workers of an indexing job: embedding actors that turn rows into points, write tasks that store them.

Points travel between them as Arrow tables (:func:`points_table` / :func:`points_of`) through Ray's object
store: exact float32 vectors, metadata as JSON text, and what the summary counts (tokens, truncations).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import ray
from ray.data import Datasink
from ray.data.block import BlockAccessor

from jinav3.integrations.embedded_tokens import embedded_tokens
from jinav3.integrations.stores.base import Collection, chunk_counts
from jinav3.integrations.stores.records import WHOLE, Point, Record
from jinav3.integrations.stores.signature import Signature
from jinav3.integrations.stores.uri import open_collection
from jinav3.integrations.stores.vector_store import embed_points

from .plan import Plan

if TYPE_CHECKING:
    from ray.data.datasource.datasink import WriteResult

    from jinav3.integrations.stores.uri import StoreURI

log = logging.getLogger("jinav3.integrations")

_POINT_SCHEMA_FIELDS = [("key", pa.string()), ("doc_id", pa.string()), ("chunk", pa.int64()), ("text", pa.string()),
                        ("metadata", pa.string()), ("start", pa.int64()), ("end", pa.int64()),
                        ("n_chunks", pa.int64()), ("fingerprint", pa.string()), ("tokens", pa.int64()),
                        ("worker", pa.string()), ("seconds", pa.float64()), ("truncated", pa.string()),
                        ("position", pa.int64())]


def points_table(points: Sequence[Point], dimensions: int, tokens: Mapping[str, int], worker: str,
                 seconds: float, truncated: Mapping[str, tuple[int, str]] | None = None) -> pa.Table:
    """Points as an Arrow table for Ray's object store: the vector as a fixed-size float32 list (exact),
    the metadata as JSON text, each point's document's chunk count (``n_chunks``, -1 when whole) so a write
    holding only some of a document's points prunes right, and per document its tokens and, when the model cut
    it at its length, its (position, ``file:line``) in ``truncated`` (on its first point)."""
    truncated = truncated or {}
    counts = chunk_counts(points, list(dict.fromkeys(p.doc_id for p in points)))
    firsts = [p.chunk in (WHOLE, 0) for p in points]
    vectors = np.stack([p.vector for p in points]).astype(np.float32, copy=False) if points \
        else np.zeros((0, dimensions), np.float32)
    columns: dict[str, Any] = {
        "key": [p.key for p in points], "doc_id": [p.doc_id for p in points], "chunk": [p.chunk for p in points],
        "text": [p.text for p in points],
        "metadata": [json.dumps(p.metadata, ensure_ascii=False, separators=(",", ":")) for p in points],
        "start": [-1 if p.start is None else p.start for p in points],
        "end": [-1 if p.end is None else p.end for p in points],
        "n_chunks": [-1 if counts[p.doc_id] is None else counts[p.doc_id] for p in points],
        "fingerprint": [p.fingerprint or "" for p in points],
        "tokens": [tokens.get(p.doc_id, 0) if first else 0 for p, first in zip(points, firsts, strict=True)],
        "worker": [worker] * len(points),
        "seconds": [seconds if i == 0 else 0.0 for i in range(len(points))],
        "truncated": [truncated[p.doc_id][1] if first and p.doc_id in truncated else "" for p, first in
                      zip(points, firsts, strict=True)],
        "position": [truncated[p.doc_id][0] if p.doc_id in truncated else -1 for p in points],
    }
    arrays = [pa.array(columns[name], kind) for name, kind in _POINT_SCHEMA_FIELDS]
    vector = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), vectors.shape[1])
    return pa.Table.from_arrays([*arrays, vector], names=[name for name, _ in _POINT_SCHEMA_FIELDS] + ["vector"])


def points_of(table: pa.Table) -> tuple[list[Point], dict[str, int | None]]:
    """The points of a :func:`points_table` and each document's chunk count (None: written whole)."""
    if table.num_rows == 0:
        return [], {}
    column = table.column("vector").combine_chunks()
    width = column.type.list_size
    vectors = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, width)
    rows = table.select([name for name, _ in _POINT_SCHEMA_FIELDS]).to_pylist()
    points, chunks = [], {}
    for row, vector in zip(rows, vectors, strict=True):
        start, end = row["start"], row["end"]
        points.append(Point(row["key"], row["doc_id"], int(row["chunk"]), vector, row["text"],
                            json.loads(row["metadata"]), None if start < 0 else int(start),
                            None if end < 0 else int(end), fingerprint=row["fingerprint"] or None))
        chunks[row["doc_id"]] = None if row["n_chunks"] < 0 else int(row["n_chunks"])
    return points, chunks


@ray.remote(num_cpus=0)
class JobActors:
    """The embedding actors of one ``index_dataset`` job: each registers its handle when it starts. When the
    job fails, Ray Data drops its own references to them, but a map task still running on one (its output no
    longer consumed) keeps it, and its CPUs or GPU, alive after the job: ``end_all`` kills them instead, so a
    job run again from the same process does not wait for them."""

    def __init__(self):
        self.handles: list = []

    def add(self, handle: Any) -> None:
        self.handles.append(handle)

    def end_all(self) -> int:
        for handle in self.handles:
            ray.kill(handle, no_restart=True)
        ended, self.handles = len(self.handles), []
        return ended


class EmbedBatches:
    """The embedding actor of ``map_batches``: loads the encoder once, then turns each batch of rows into
    points with ``embed_points`` (what ``VectorStore.add`` embeds with). Rows the first pass refused or
    dropped are skipped here by the same, deterministic, checks."""

    def __init__(self, plan: Plan, job_actors: Any):
        job_actors.add.remote(ray.get_runtime_context().current_actor)  # so that a failed job can end this actor
        self.plan = plan
        self.encoder = plan.make_encoder()
        self.dimensions = int(self.encoder.output_size(plan.dimensions))
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: pa.Table) -> pa.Table:
        records: list[Record] = []
        located: dict[str, tuple[int, str]] = {}  # id -> (position, where), for the truncation warning
        for row in batch.to_pylist():
            record, _, where, position = self.plan.record_of(row)
            # an identical repeat in one batch is written once, as add() writes it
            if record is not None and not self.plan.dropped(record, position) and record.id not in located:
                located[record.id] = (position, where)
                records.append(record)
        if not records:
            return points_table([], self.dimensions, {}, self.worker, 0.0)
        started = time.perf_counter()
        points = embed_points(self.encoder, records, task=self.plan.task, dimensions=self.dimensions,
                              late_chunking=self.plan.late_chunking, chunker=self.plan.chunker,
                              chunk_size=self.plan.chunk_size, check_chunk=self.plan.limits.check_chunk)
        seconds = time.perf_counter() - started
        tokens, cut = self._tokens(records)
        return points_table(points, self.dimensions, tokens, self.worker, seconds,
                            {records[i].id: located[records[i].id] for i in cut})

    def _tokens(self, records: list[Record]) -> tuple[dict[str, int], list[int]]:
        """Each record's tokens the model embeds (counted as ``jinav3 index`` counts them), and the positions
        in ``records`` of those it cut at its length."""
        if getattr(self.encoder, "tokenizer", None) is None:
            return {}, []
        counts, cut = embedded_tokens(self.encoder, [r.text for r in records], self.plan.task,
                                      whole=not self.plan.late_chunking)
        return {r.id: n for r, n in zip(records, counts, strict=True)}, cut


@dataclass
class WorkerStats:
    documents: int = 0
    chunks: int = 0
    tokens: int = 0
    seconds: float = 0.0  # time spent embedding
    truncated: int = 0  # documents cut at the model's length (embedded whole)
    room: int = 0  # the tokens of each of them that were embedded
    first_truncated: tuple[int, str] | None = None  # (position, file:line) of the first one

    def add(self, other: WorkerStats) -> None:
        for name in ("documents", "chunks", "tokens", "seconds", "truncated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.room = max(self.room, other.room)
        firsts = [f for f in (self.first_truncated, other.first_truncated) if f is not None]
        self.first_truncated = min(firsts) if firsts else None

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def _write_stats(table: pa.Table, into: dict[str, WorkerStats]) -> None:
    columns = table.select(["chunk", "tokens", "worker", "seconds", "truncated", "position"]).to_pydict()
    for chunk, tokens, worker, seconds, truncated, position in zip(
            columns["chunk"], columns["tokens"], columns["worker"], columns["seconds"], columns["truncated"],
            columns["position"], strict=True):
        stats = into.setdefault(worker, WorkerStats())
        cut = bool(truncated)  # on a document's first point only, its tokens then all the model embedded
        stats.add(WorkerStats(documents=chunk in (WHOLE, 0), chunks=1, tokens=tokens, seconds=seconds,
                              truncated=cut, room=tokens if cut else 0,
                              first_truncated=(position, truncated) if cut else None))


class StoreDatasink(Datasink[dict]):
    """A Ray Data sink into a jinav3 collection. Each write task opens the store's ``Collection`` (no model;
    ``create=False``: the driver made the collection and checked its signature) and writes its points with
    ``Collection.write_points``: the requests, retries and stale-point pruning of ``add``."""

    def __init__(self, store: StoreURI, collection: str, signature: Signature, sparse_encoder: Any = None,
                 retries: int = 5):
        self.store, self.collection, self.signature = store, collection, signature
        self.sparse_encoder, self.retries = sparse_encoder, retries
        self.label = store.place(collection)
        self.result: dict[str, WorkerStats] = {}

    def __repr__(self) -> str:  # the store as shown: its credentials redacted
        return f"StoreDatasink({self.label})"

    def get_name(self) -> str:
        return "WriteJinav3"

    def open(self) -> Collection:
        """The collection, as the driver made it (``create=False``): a Collection, no model."""
        return open_collection(self.store, self.collection, self.signature, create=False, refuse_missing=False,
                               retries=self.retries, overlap_writes=False, sparse_encoder=self.sparse_encoder)

    def write(self, blocks: Any, ctx: Any) -> dict:
        stats: dict[str, WorkerStats] = {}
        store = self.open()
        try:
            for block in blocks:
                table = BlockAccessor.for_block(block).to_arrow()
                points, chunks = points_of(table)
                if points:
                    store.write_points(points, chunks, label=f"{len(points)} points")
                    _write_stats(table, stats)
        finally:
            store.close()
        return {worker: dataclasses.asdict(s) for worker, s in stats.items()}

    def on_write_complete(self, write_result: WriteResult[dict]) -> None:
        total: dict[str, WorkerStats] = {}
        for returned in write_result.write_returns:
            for worker, values in (returned or {}).items():
                first = values.get("first_truncated")
                values = {**values, "first_truncated": tuple(first) if first else None}
                total.setdefault(worker, WorkerStats()).add(WorkerStats(**values))
        self.result = total

    def on_write_failed(self, error: Exception) -> None:
        log.error("writing to %s failed (%s); run the same job again to finish it: ids are deterministic, so "
                  "nothing is duplicated", self.label, type(error).__name__)
