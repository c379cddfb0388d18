"""Bulk indexing on a Ray cluster with Ray Data (``pip install "jinav3[ray,milvus]"``).

    import ray
    from jinav3.integrations.ray import index_dataset
    ds = ray.data.read_parquet("corpus/")                  # any Dataset with text (+ id, metadata) columns
    report = index_dataset(ds, model="jinaai/jina-embeddings-v3", store="milvus+http://milvus:19530",
                           collection="docs", dimensions=512, workers=8, gpus_per_worker=1)
    report.documents, report.chunks, report.tokens, report.seconds, report.workers

and from the command line ``jinav3 index CORPUS --ray [--ray-address auto] [--workers N]
[--gpus-per-worker G] [--cpus-per-worker C] --store milvus+http://HOST:19530 ...``.

How a job runs (Ray Data all the way; no scheduler of ours):

1. A read-only pass over the rows (Ray tasks) checks every one with THE row check of single-process
   indexing (``corpus.check_row``: the corpus's rules, ``records.normalize_record``, the store class's
   limits) and finds repeated ids (a ``groupby``). Bad rows are counted and named (``warn``, in corpus
   order, the first :data:`SHOWN`); ``strict=True`` stops here, before anything is created, embedded or
   written, with the error ``jinav3 index --strict`` gives.
2. The driver opens the store (its client only, no model weights): the collection is created with its
   signature once, or an existing one's signature is checked; a mismatch stops the job here.
3. ``map_batches`` with :class:`EmbedBatches`, a callable class on an ``ActorPoolStrategy`` pool of
   ``workers`` actors (``num_gpus`` / ``num_cpus`` each) that loads the encoder once per actor and turns
   each batch of records into points with :func:`jinav3.integrations.store.embed_points`, the code
   ``VectorStore.add`` embeds with: the same ids, chunk ids and payloads; late chunking per document.
4. ``write_datasink`` with :class:`StoreDatasink`: each write task opens the store (``create=False``) and
   writes through ``VectorStore.write_points``, the requests, retries and stale-point pruning of ``add``.

Fault tolerance is Ray's: an embedding actor that dies is restarted and its batch retried
(``max_restarts`` / ``max_task_retries``, -1 by default on Ray Data's actor pools), a write task whose
worker dies is retried (``max_retries``). Ids are deterministic and every write is an upsert followed
by the removal of stale points, so a retried batch or a whole job run again leaves one copy of every point.

Embedded stores (Qdrant local mode, Milvus Lite) belong to one process and are refused: use a server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from jinav3.errors import CorpusError, StoreError, install_hint, invalid
from jinav3.tasks import index_task
from jinav3.validation import boolean, chunker_arguments, positive_int

from .corpus import SUFFIXES, TOO_DEEP, check_item, corpus_files, row_record, stopped_by_strict
from .corpus import skipped as skipped_warning
from .records import WHOLE, Point, Record
from .store import Signature as Signature
from .store import VectorStore, chunk_counts, embed_points

try:
    import pyarrow as pa
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy, Datasink
    from ray.data.aggregate import Count, Max, Min
    from ray.data.block import BlockAccessor
    from ray.data.expressions import col
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("jinav3.integrations.ray needs Ray Data: " + install_hint("ray")) from e

if TYPE_CHECKING:
    from ray.data import Dataset
    from ray.data.datasource.datasink import WriteResult

    from jinav3.protocol import TextEncoder

    from .cli import StoreURI

log = logging.getLogger("jinav3.integrations")

DEFAULT_BATCH_SIZE = 256  # records per embedding batch: enough to keep a GPU busy, small enough to retry cheaply
EXAMPLES = 5  # bad rows shown in a report's summary
SHOWN = 1000  # bad rows named one by one (warn): more are counted
# Columns of the rows the CLI's reader makes (besides id, text and metadata as JSON).
POSITION = "_jinav3_position"  # file number << 32 | line: corpus order, for keeping the first of a repeated id
WHERE = "_jinav3_where"  # "file:line", for messages
PROBLEM = "_jinav3_problem"  # why the row cannot be indexed (found while reading), or null
METADATA_JSON = "_jinav3_metadata"  # the row's metadata as JSON text (no Arrow schema to unify across files)
_LINE_BITS = 32

# ============================================================================================ plan


@dataclass(frozen=True)
class ModelFacts:
    """What the driver needs of the model without loading its weights: its identity (``name``), a
    readable ``label`` and its full size. Speaks enough of the TextEncoder protocol to open a store."""

    name: str
    hidden_size: int
    label: str | None = None
    tokenizer_source: str | None = None  # the model's folder: a hybrid collection's lexical encoder reads it

    def output_size(self, dimensions: int | None = None) -> int:
        if dimensions is None:
            return self.hidden_size
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= self.hidden_size:
            raise invalid("dimensions", f"must be an integer from 1 to {self.hidden_size}, got {dimensions!r}")
        return dimensions

    def encode(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise StoreError("this store only writes points embedded by Ray workers; it has no model")

    def late_chunk_documents(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreError("this store only writes points embedded by Ray workers; it has no model")

    @classmethod
    def of(cls, model: str | os.PathLike | Callable[[], TextEncoder]) -> ModelFacts:
        if callable(model):  # an encoder factory: build it once here for its facts
            encoder = model()
            label = getattr(encoder, "label", None)
            return cls(str(encoder.name), int(encoder.output_size(None)), label if isinstance(label, str) else None)
        from jinav3 import checkpoint, identity

        folder = checkpoint.resolve(model)
        size = checkpoint.read_config(folder).get("hidden_size")
        if not isinstance(size, int):
            raise invalid("model", f"{str(model)!r}: its config.json has no hidden_size")
        return cls(identity.model_identity(model, folder), size, identity.model_label(model), str(folder))

    @classmethod
    def of_signature(cls, signature: Signature) -> ModelFacts:
        return cls(signature.model, signature.dimensions, signature.model_label)


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs, decided once on the driver (pickled into every actor and task)."""

    store_class: type[VectorStore]
    model: Any  # a hub id or folder (str), or a picklable callable returning a TextEncoder
    device: str
    dtype: str
    dimensions: int | None
    task: str
    late_chunking: bool
    chunker: str
    chunk_size: int | None
    id_field: str
    text_field: str
    drop_ids: frozenset[str] = frozenset()  # ids whose every row is skipped (conflicting repeats)
    drop_positions: frozenset[int] = frozenset()  # rows skipped (later repeats of an id, in corpus order)

    def record_of(self, row: dict[str, Any], rules: VectorStore) -> tuple[Record | None, str | None, str, int]:
        """(record, None) or (None, problem) for one row, with the row's ``where`` and position (-1: unknown).
        The same checks, in the same order, as ``jinav3 index``: the corpus row check, then the store's."""
        position = row.get(POSITION)
        position = -1 if position is None else int(position)
        where = row.get(WHERE)
        if row.get(PROBLEM):
            return None, str(row[PROBLEM]), str(where or "row"), position
        if METADATA_JSON in row:  # a row of the CLI's reader: already through row_record
            item: dict[str, Any] | None = {"id": row.get("id"), "text": row.get("text"),
                                           "metadata": json.loads(row[METADATA_JSON] or "{}")}
            problem = None
        else:
            raw_id = row.get(self.id_field)
            where = where or (f"row {raw_id!r}" if raw_id is not None else "row")
            fields = dict(row)
            metadata = fields.pop("metadata", None) if "metadata" in fields else None
            if metadata is not None or "metadata" in row:  # a metadata column: other columns are not metadata
                fields = {k: fields[k] for k in (self.id_field, self.text_field) if k in fields}
            item, problem = row_record(fields, str(where), None, self.id_field, self.text_field)
            if item is not None and "metadata" in row:
                if isinstance(metadata, str):
                    try:
                        metadata = json.loads(metadata)
                    except json.JSONDecodeError as e:
                        return None, f"{where}: the metadata column is not JSON ({e.msg})", str(where), position
                    except RecursionError:
                        return None, f"{where}: {TOO_DEEP}", str(where), position
                item["metadata"] = {k: v for k, v in (metadata or {}).items() if v is not None} \
                    if isinstance(metadata, Mapping) else metadata
        if item is None:
            return None, problem, str(where), position
        # THE row check's second half (corpus.check_row = row_record + check_item): every store's rules, this one's
        record, problem = check_item(item, str(where), rules, self.late_chunking)
        return record, problem, str(where), position

    def dropped(self, record: Record, position: int) -> bool:
        return record.id in self.drop_ids or (position >= 0 and position in self.drop_positions)

    def make_encoder(self) -> TextEncoder:
        if callable(self.model):
            return self.model()
        from jinav3 import Encoder

        return Encoder.from_pretrained(self.model, device=self.device, dtype=self.dtype)


def _digest(record: Record) -> int:
    """A 63-bit digest of a record's text and metadata: repeated ids with equal digests are identical rows."""
    data = json.dumps([record.text, record.metadata], sort_keys=True, ensure_ascii=False).encode("utf-8")
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big") >> 1


def check_rows(batch: pa.Table, plan: Plan) -> pa.Table:
    """The read-only first pass: per row its id, position, digest and problem (null when it can be indexed)."""
    rules = plan.store_class.record_rules()
    ids, positions, digests, problems, wheres = [], [], [], [], []
    for row in batch.to_pylist():
        record, problem, where, position = plan.record_of(row, rules)
        ids.append(record.id if record is not None else "")
        positions.append(position)
        digests.append(_digest(record) if record is not None else 0)
        problems.append(problem)
        wheres.append(where)
    return pa.table({"id": pa.array(ids, pa.string()), "position": pa.array(positions, pa.int64()),
                     "digest": pa.array(digests, pa.int64()), "problem": pa.array(problems, pa.string()),
                     "where": pa.array(wheres, pa.string())})


# ============================================================================================ embedding
_POINT_SCHEMA_FIELDS = [("key", pa.string()), ("doc_id", pa.string()), ("chunk", pa.int64()), ("text", pa.string()),
                        ("metadata", pa.string()), ("start", pa.int64()), ("end", pa.int64()),
                        ("n_chunks", pa.int64()), ("tokens", pa.int64()), ("worker", pa.string()),
                        ("seconds", pa.float64()), ("truncated", pa.string()), ("position", pa.int64())]


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
                            None if end < 0 else int(end)))
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
        self.rules = plan.store_class.record_rules()
        self.dimensions = int(self.encoder.output_size(plan.dimensions))
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: pa.Table) -> pa.Table:
        records: list[Record] = []
        located: dict[str, tuple[int, str]] = {}  # id -> (position, where), for the truncation warning
        for row in batch.to_pylist():
            record, _, where, position = self.plan.record_of(row, self.rules)
            # an identical repeat in one batch is written once, as add() writes it
            if record is not None and not self.plan.dropped(record, position) and record.id not in located:
                located[record.id] = (position, where)
                records.append(record)
        if not records:
            return points_table([], self.dimensions, {}, self.worker, 0.0)
        started = time.perf_counter()
        points = embed_points(self.encoder, records, task=self.plan.task, dimensions=self.dimensions,
                              late_chunking=self.plan.late_chunking, chunker=self.plan.chunker,
                              chunk_size=self.plan.chunk_size, check_chunk=self.rules._check_chunk_point)
        seconds = time.perf_counter() - started
        tokens, cut = self._tokens(records)
        return points_table(points, self.dimensions, tokens, self.worker, seconds,
                            {records[i].id: located[records[i].id] for i in cut})

    def _tokens(self, records: list[Record]) -> tuple[dict[str, int], list[int]]:
        """Each record's tokens the model embeds (counted as ``jinav3 index`` counts them), and the positions
        in ``records`` of those it cut at its length."""
        from .cli import embedded_tokens

        if getattr(self.encoder, "tokenizer", None) is None:
            return {}, []
        counts, cut = embedded_tokens(self.encoder, [r.text for r in records], self.plan.task,
                                      whole=not self.plan.late_chunking)
        return {r.id: n for r, n in zip(records, counts, strict=True)}, cut


# ============================================================================================ writing
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
    """A Ray Data sink into a jinav3 collection. Each write task opens the store (``create=False``: the
    driver made the collection and checked its signature) and writes its points with
    ``VectorStore.write_points``: the requests, retries and stale-point pruning of ``add``."""

    def __init__(self, store_class: type[VectorStore], options: dict[str, Any], signature: Signature,
                 label: str, retries: int = 5):
        self.store_class, self._options, self.signature, self.label = store_class, options, signature, label
        self.retries = retries
        self.result: dict[str, WorkerStats] = {}

    def __repr__(self) -> str:  # never the options: they hold the credentials
        return f"StoreDatasink({self.label})"

    def get_name(self) -> str:
        return "WriteJinav3"

    def open(self) -> VectorStore:
        sig = self.signature
        kwargs: dict[str, Any] = {"dimensions": sig.dimensions, "passage_task": sig.passage_task,
                                  "query_task": sig.query_task, "create": False, "retries": self.retries,
                                  "overlap_writes": False, **self._options}
        return self.store_class(ModelFacts.of_signature(sig), **kwargs)

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


# ============================================================================================ the job
@dataclass
class IndexReport:
    """What ``index_dataset`` did: documents, chunks (points) and tokens written, wall seconds, per-worker
    embedding throughput, and the rows skipped (their count and the first problems)."""

    documents: int
    chunks: int
    tokens: int
    seconds: float
    workers: dict[str, WorkerStats]
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    where: str = ""
    truncated: int = 0  # documents cut at the model's length (see ``truncation``)
    truncation: str | None = None  # the warning about them, naming the first by file:line

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        rate = f"{self.tokens_per_second:,.1f}" if self.seconds > 0 else "-"
        lines = [f"Indexed {self.documents} documents ({self.chunks} chunks, {self.tokens:,} tokens) in "
                 f"{self.seconds:.1f} s ({rate} tokens/s) into {self.where} with {len(self.workers)} Ray workers"]
        for worker, s in sorted(self.workers.items()):
            lines.append(f"  worker {worker}: {s.documents} documents, {s.tokens:,} tokens, "
                         f"{s.tokens_per_second:,.1f} tokens/s while embedding ({s.seconds:.1f} s)")
        if self.skipped:
            lines.append(f"  skipped {self.skipped} rows; first: " + " | ".join(self.problems))
        return "\n".join(lines)


def refuse_embedded(store: StoreURI) -> None:
    """Qdrant local mode and Milvus Lite live in one process: many Ray workers cannot write into them."""
    if store.mode != "local":
        return
    if store.scheme == "qdrant":
        raise invalid("store", f"{store.shown} is Qdrant local mode, which one process owns; Ray workers write in "
                               "parallel, so index into a Qdrant server: qdrant+http://HOST:6333")
    raise invalid("store", f"{store.shown} is Milvus Lite, which one process owns; Ray workers write in parallel, "
                           "so index into a Milvus server: milvus+http://HOST:19530")


def _store_uri(store: str | StoreURI, api_key_env: str | None) -> StoreURI:
    from .cli import StoreURI, UsageError, parse_store, with_credentials

    try:
        parsed = store if isinstance(store, StoreURI) else parse_store(store)
        parsed = with_credentials(parsed, api_key_env) if not isinstance(store, StoreURI) else parsed
    except UsageError as e:
        raise invalid("store", str(e).removeprefix("store: ")) from None
    refuse_embedded(parsed)
    return parsed


def _check_pass(ds: Dataset, plan: Plan) -> tuple[Plan, int, list[str], int]:
    """Run the read-only pass: (the plan with the rows to drop, rows skipped, the first :data:`SHOWN` problems in
    corpus order (as ``jinav3 index`` without ``--ray`` names them), documents)."""
    checked = ds.map_batches(cast(Any, check_rows), fn_kwargs={"plan": plan}, batch_format="pyarrow").materialize()
    # Vectorised filters (expressions, not Python per row), and counts from the materialised blocks' metadata
    bad = checked.filter(expr=col("problem").is_not_null()).materialize()
    n_bad = bad.count()
    found = [(row["position"], row["where"], row["problem"]) for row in bad.sort("position").take(SHOWN)] \
        if n_bad else []
    good = checked.filter(expr=col("problem").is_null())
    n_good = checked.count() - n_bad
    # Hash-shuffle partitions by the cluster's CPUs (Ray's default, 200, costs seconds on a small cluster)
    partitions = max(1, min(200, int(ray.cluster_resources().get("CPU", 1))))
    repeated = good.groupby("id", num_partitions=partitions).aggregate(Count(), Min("digest"), Max("digest"))
    repeated_rows = repeated.filter(expr=col("count()") > 1).take_all()
    drop_ids: set[str] = set()
    drop_positions: set[int] = set()
    repeats = 0
    if repeated_rows:
        ids = {row["id"] for row in repeated_rows}
        copies = sorted(good.filter(expr=col("id").is_in(sorted(ids))).take_all(),
                        key=lambda r: (r["position"], r["where"]))
        conflicting = {row["id"] for row in repeated_rows if row["min(digest)"] != row["max(digest)"]}
        first: dict[str, dict] = {}
        for row in copies:
            if row["position"] >= 0:  # corpus order known (the CLI's reader): the first row of an id wins
                if row["id"] in first:
                    drop_positions.add(row["position"])
                    found.append((row["position"], row["where"], f"{row['where']}: id {row['id']!r} already used "
                                                                 f"at {first[row['id']]['where']}"))
                    repeats += 1
                else:
                    first[row["id"]] = row
            elif row["id"] in conflicting:  # no order: identical repeats are written once, conflicting ones never
                drop_ids.add(row["id"])
                found.append((row["position"], row["where"], f"{row['where']}: id {row['id']!r} is used by several "
                                                             "rows with different texts or metadata"))
                repeats += 1
    skipped = n_bad + repeats
    problems = [problem for _, _, problem in sorted(found)[:SHOWN]]
    documents = n_good - len(drop_positions)
    if repeated_rows:  # unordered repeats: conflicting ones are all skipped, identical ones count once
        unordered = [row for row in copies if row["position"] < 0]
        documents -= len(unordered) - len({row["id"] for row in unordered if row["id"] not in drop_ids})
    plan = dataclasses.replace(plan, drop_ids=frozenset(drop_ids), drop_positions=frozenset(drop_positions))
    return plan, skipped, problems, documents


def index_dataset(ds: Dataset, *, store: str | StoreURI,
                  model: str | os.PathLike | Callable[[], TextEncoder] | None = None, collection: str = "jinav3",
                  dimensions: int | None = None, workers: int = 1,
                  gpus_per_worker: float = 0, cpus_per_worker: float = 1, late_chunking: bool = False,
                  chunker: str = "sentences", chunk_size: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                  strict: bool = False, id_field: str = "id", text_field: str = "text", device: str = "auto",
                  dtype: str = "auto", api_key_env: str | None = None, write_concurrency: int | None = None,
                  write_retries: int = 3, warn: Callable[[str], None] | None = None,
                  hybrid: bool | None = None) -> IndexReport:
    """Embed every row of ``ds`` with passage vectors on a pool of Ray actors and write them into ``store``.

    ds: a Ray Dataset with a ``text`` column (``text_field``), optionally ``id`` (``id_field``; else an id
    from the text's hash, as ``add`` gives) and ``metadata`` (a dict or JSON text; without that column every
    other column is metadata, nulls left out). store: a server URI (``qdrant+http://...``,
    ``milvus+http://...``, ``pinecone:INDEX``), as the CLI takes. model: a hub id or folder, loaded once per
    actor with ``device``/``dtype``, or a picklable callable returning a TextEncoder. workers: actors;
    each takes ``gpus_per_worker`` GPUs (0: CPU workers) and ``cpus_per_worker`` CPUs. Bad rows are skipped
    and reported in the result, and each (the first :data:`SHOWN`, in corpus order) through ``warn`` as
    ``where: problem; skipped`` before anything is embedded (default: one logged warning); ``strict=True``
    raises CorpusError naming the first before anything is created or written. The result
    equals ``VectorStore.add`` of the same records; running the same job again overwrites, never duplicates.
    hybrid: make a new collection hybrid (None: as the collection is); lexical vectors are made by the write
    tasks from the points' texts (the model's tokenizer only).
    """
    from jinav3.identity import DEFAULT_MODEL

    from .cli import connection, open_store, place, truncation_warning

    started = time.perf_counter()
    workers = positive_int(workers, "workers")
    batch_size = positive_int(batch_size, "batch_size")
    for name, value in (("gpus_per_worker", gpus_per_worker), ("cpus_per_worker", cpus_per_worker)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise invalid(name, f"must be a number >= 0, got {value!r}")
    late_chunking = boolean(late_chunking, "late_chunking")
    if late_chunking:
        if not isinstance(chunker, str):  # (start, end) spans describe one document, not a dataset
            raise invalid("chunker", f"must be 'sentences' or 'tokens' for a dataset, got {chunker!r}")
        chunker_arguments(chunker, chunk_size, 1)
    elif chunk_size is not None:
        raise invalid("chunk_size", "only applies with late_chunking=True and chunker='tokens'")
    uri = _store_uri(store, api_key_env)
    model = DEFAULT_MODEL if model is None else model
    facts = ModelFacts.of(model)
    Store = _store_class(uri)
    plan = Plan(Store, model if callable(model) else str(model), device, dtype, dimensions,
                index_task(None), late_chunking, chunker, chunk_size, id_field, text_field)
    if dimensions is not None:
        facts.output_size(dimensions)  # a bad --dimensions fails before the first pass

    # Read once, into Ray's object store (spilled to disk past its memory): the check pass and the
    # embedding both read the blocks from there, and no reading task waits for a CPU slot that the
    # embedding actors hold (on a cluster the actors fill, streaming reads behind them would deadlock).
    # Blocks of one batch each, so that every embedding actor gets work.
    ds = ds.repartition(target_num_rows_per_block=batch_size).materialize()
    plan, skipped, problems, documents = _check_pass(ds, plan)
    if skipped and strict:
        raise stopped_by_strict(problems[0], skipped)
    if skipped and warn is not None:
        for problem in problems:
            warn(skipped_warning(problem))
        if skipped > len(problems):
            warn(f"{skipped - len(problems)} more rows that cannot be indexed; skipped")
    elif skipped:
        log.warning("skipping %d rows that cannot be indexed; first: %s", skipped, " | ".join(problems[:EXAMPLES]))
    if documents == 0:
        raise CorpusError("the dataset holds no row that can be indexed" +
                          (f" (first problems: {' | '.join(problems)})" if problems else ""))

    # The collection: created with its signature once, here, or its signature checked, before any embedding.
    opened = open_store(uri, facts, collection, dimensions, hybrid=hybrid)
    try:
        signature, lexical = opened.signature, opened.sparse_encoder
    finally:
        opened.close()
    plan = dataclasses.replace(plan, dimensions=signature.dimensions)
    options = {**connection(uri), ("namespace" if uri.scheme == "pinecone" else "collection"): collection}
    if lexical is not None:  # the write tasks give each point its lexical vector (VectorStore.write_points)
        options["sparse_encoder"] = lexical
    sink = StoreDatasink(Store, options, signature, place(uri, collection))

    job_actors = JobActors.remote()  # type: ignore[attr-defined]  # a @ray.remote class
    points = ds.map_batches(EmbedBatches, fn_constructor_kwargs={"plan": plan, "job_actors": job_actors},
                            batch_size=batch_size, batch_format="pyarrow", compute=ActorPoolStrategy(size=workers),
                            num_gpus=gpus_per_worker or None, num_cpus=cpus_per_worker)
    # Writes wait on the store, not the CPU: they take no CPU slot, so they run while the embedding actors
    # hold every core (with one CPU each they would wait for a free core that never comes: a deadlock).
    try:
        points.write_datasink(sink, ray_remote_args={"max_retries": write_retries, "num_cpus": 0},
                              concurrency=write_concurrency or workers)
    except BaseException:
        ended = ray.get(job_actors.end_all.remote())
        log.debug("the failed job's %d embedding actors were ended", ended)
        raise
    finally:
        ray.kill(job_actors)  # after success Ray Data has let the embedding actors go; this drops their handles
    stats = sink.result
    total = WorkerStats()
    for worker_stats in stats.values():
        total.add(worker_stats)
    truncation = None
    if total.truncated and total.first_truncated is not None:
        truncation = truncation_warning(total.truncated, total.room, total.first_truncated[1])
        (warn or log.warning)(truncation)
    return IndexReport(documents=total.documents, chunks=total.chunks, tokens=total.tokens,
                       seconds=time.perf_counter() - started, workers=stats, skipped=skipped,
                       problems=problems[:EXAMPLES], where=place(uri, collection), truncated=total.truncated,
                       truncation=truncation)


def _store_class(uri: StoreURI) -> type[VectorStore]:
    from .cli import CLIError, store_class

    try:
        return store_class(uri)
    except CLIError as e:
        raise StoreError(str(e)) from e


# ============================================================================================ the CLI's reader
def read_files(corpus: str, *, id_field: str = "id", text_field: str = "text") -> Dataset:
    """A Ray Dataset of the corpus ``jinav3 index`` reads (a file, a folder of them, or a glob): one read task
    per file, each through the CLI's own readers and row check, so ids (``path:line`` for rows without one),
    texts and metadata are exactly those of single-process indexing. The files must be visible from every
    node (a shared file system) on a multi-node cluster."""
    return files_dataset(list_files(corpus), id_field=id_field, text_field=text_field)


def list_files(corpus: str) -> list[dict[str, Any]]:
    """The files :func:`read_files` reads (without Ray: a missing corpus is found before a cluster starts)."""
    import glob

    if "://" in corpus:  # s3://, gs://, hdfs://...: Ray's own readers list and read those
        raise CorpusError(f"corpus: {corpus!r} is a remote URI; the command line reads local files (a shared file "
                          "system on a cluster). For object stores, read them with Ray and index the Dataset: "
                          "index_dataset(ray.data.read_parquet('s3://...'), ...) (jinav3.integrations.ray)")
    matches = sorted(glob.glob(os.path.expanduser(corpus), recursive=True)) if glob.has_magic(corpus) else []
    if glob.has_magic(corpus):
        files = [Path(m) for m in matches if Path(m).is_file() and Path(m).suffix.lower() in SUFFIXES]
        if not files:
            raise CorpusError(f"corpus: {corpus!r} matches no {', '.join(SUFFIXES)} files")
        root = Path(os.path.commonpath([str(f.parent) for f in files]))
    else:
        root, files, unread = corpus_files(corpus)
        if unread:
            print(f"jinav3: warning: skipped {len(unread)} file{'s' if len(unread) > 1 else ''} no reader handles: "
                  f"{', '.join(unread)}", file=sys.stderr)
    return [{"number": n, "file": str(f.resolve()), "relative": f.relative_to(root).as_posix(), "shown": _shown(f)}
            for n, f in enumerate(files)]


def files_dataset(items: list[dict[str, Any]], *, id_field: str = "id", text_field: str = "text") -> Dataset:
    """The Dataset of the rows of :func:`list_files`' files: one read task per file."""
    return ray.data.from_items(items, override_num_blocks=max(1, len(items))).flat_map(
        cast(Any, _file_rows), fn_kwargs={"id_field": id_field, "text_field": text_field})


def _shown(file: Path) -> str:
    try:
        return os.path.relpath(file)
    except ValueError:
        return str(file)


def _file_rows(item: dict[str, Any], id_field: str, text_field: str) -> Iterator[dict[str, Any]]:
    from .corpus import _rows

    for line, row in _rows(Path(item["file"]), item["relative"], id_field, text_field):
        where = f"{item['shown']}:{line}"
        record, problem = row_record(row, where, f"{item['relative']}:{line}", id_field, text_field)
        try:
            metadata = json.dumps(record["metadata"], ensure_ascii=False) if record else "{}"
        except RecursionError:
            record, problem, metadata = None, f"{where}: {TOO_DEEP}", "{}"
        yield {"id": record["id"] if record else "", "text": record["text"] if record else "", METADATA_JSON: metadata,
               POSITION: (int(item["number"]) << _LINE_BITS) | int(line), WHERE: where, PROBLEM: problem}


__all__ = ["index_dataset", "IndexReport", "WorkerStats", "StoreDatasink", "EmbedBatches", "Plan", "ModelFacts",
           "read_files", "refuse_embedded"]
