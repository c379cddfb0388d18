"""The plan of an indexing job, decided once on the driver, and the read-only pass that checks every row.

A :class:`Plan` is pickled into every actor and task: the model to load, the task, chunking, the target
store's limits (``RecordLimits``, no connection) and the rows to drop. :func:`check_pass` runs THE row check of
single-process indexing over the whole Dataset before anything is created, embedded or written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
import ray
from ray.data.aggregate import Count, Max, Min
from ray.data.expressions import col

from jinav3.errors import invalid
from jinav3.integrations.corpus import TOO_DEEP, check_item, row_record
from jinav3.integrations.stores.limits import RecordLimits
from jinav3.integrations.stores.records import Record
from jinav3.integrations.stores.signature import Signature
from jinav3.tasks import index_task, search_task

if TYPE_CHECKING:
    from ray.data import Dataset

    from jinav3.protocol import TextEncoder

DEFAULT_BATCH_SIZE = 256  # records per embedding batch: enough to keep a GPU busy, small enough to retry cheaply
EXAMPLES = 5  # bad rows shown in a report's summary
SHOWN = 1000  # bad rows named one by one (warn): more are counted
# Columns of the rows the CLI's reader makes (besides id, text and metadata as JSON).
POSITION = "_jinav3_position"  # file number << 32 | line: corpus order, for keeping the first of a repeated id
WHERE = "_jinav3_where"  # "file:line", for messages
PROBLEM = "_jinav3_problem"  # why the row cannot be indexed (found while reading), or null
METADATA_JSON = "_jinav3_metadata"  # the row's metadata as JSON text (no Arrow schema to unify across files)
_LINE_BITS = 32


@dataclass(frozen=True)
class ModelFacts:
    """What the driver needs of the model without loading its weights: its identity (``name``), a
    readable ``label``, its full size and where its tokenizer is (a hybrid collection's lexical encoder
    reads it): enough to make a collection's signature."""

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

    def signature(self, dimensions: int | None, hybrid: bool | None) -> Signature:
        """The signature of the collection the job writes: this model, its passage and query tasks."""
        return Signature(self.name, self.output_size(dimensions), index_task(None), search_task(None),
                         model_label=self.label, hybrid=bool(hybrid))

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


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs, decided once on the driver (pickled into every actor and task)."""

    limits: RecordLimits  # the target store's limits on records and chunks (no connection needed)
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

    def record_of(self, row: dict[str, Any]) -> tuple[Record | None, str | None, str, int]:
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
        record, problem = check_item(item, str(where), self.limits, self.late_chunking)
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
    ids, positions, digests, problems, wheres = [], [], [], [], []
    for row in batch.to_pylist():
        record, problem, where, position = plan.record_of(row)
        ids.append(record.id if record is not None else "")
        positions.append(position)
        digests.append(_digest(record) if record is not None else 0)
        problems.append(problem)
        wheres.append(where)
    return pa.table({"id": pa.array(ids, pa.string()), "position": pa.array(positions, pa.int64()),
                     "digest": pa.array(digests, pa.int64()), "problem": pa.array(problems, pa.string()),
                     "where": pa.array(wheres, pa.string())})


def check_pass(ds: Dataset, plan: Plan) -> tuple[Plan, int, list[str], int]:
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
