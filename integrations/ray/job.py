"""The indexing job: :func:`index_dataset` and what it reports."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import ray
from ray.data import ActorPoolStrategy

from jinav3.errors import CorpusError, invalid
from jinav3.integrations.corpus import skipped as skipped_warning
from jinav3.integrations.corpus import stopped_by_strict
from jinav3.integrations.embedded_tokens import truncation_warning
from jinav3.integrations.stores.hybrid import lexical_encoder
from jinav3.integrations.stores.uri import StoreURI, open_collection, parse_store, store_class, with_credentials
from jinav3.tasks import index_task
from jinav3.validation import boolean, chunker_arguments, positive_int

from .plan import DEFAULT_BATCH_SIZE, EXAMPLES, ModelFacts, Plan, check_pass
from .workers import EmbedBatches, JobActors, StoreDatasink, WorkerStats

if TYPE_CHECKING:
    from ray.data import Dataset

    from jinav3.protocol import TextEncoder

log = logging.getLogger("jinav3.integrations")


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
        lines = [f"Indexed {self.documents} documents ({self.chunks} chunks, {self.tokens:,} tokens embedded) in "
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
    kind = store.kind
    server = f"a {kind.title} server: {kind.server_example}" if kind.server_example else "a server"
    raise invalid("store", f"{store.shown} is {kind.embedded}, which one process owns; Ray workers write in "
                           f"parallel, so index into {server}")


def _store_uri(store: str | StoreURI, api_key_env: str | None) -> StoreURI:
    parsed = store if isinstance(store, StoreURI) else with_credentials(parse_store(store), api_key_env)
    refuse_embedded(parsed)
    return parsed


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
    signature = facts.signature(dimensions, hybrid)  # a bad dimensions fails before the first pass
    plan = Plan(store_class(uri, with_encoder=False).record_limits(), model if callable(model) else str(model), device,
                dtype, dimensions, index_task(None), late_chunking, chunker, chunk_size, id_field, text_field)

    # Read once, into Ray's object store (spilled to disk past its memory): the check pass and the
    # embedding both read the blocks from there, and no reading task waits for a CPU slot that the
    # embedding actors hold (on a cluster the actors fill, streaming reads behind them would deadlock).
    # Blocks of one batch each, so that every embedding actor gets work.
    ds = ds.repartition(target_num_rows_per_block=batch_size).materialize()
    plan, skipped, problems, documents = check_pass(ds, plan)
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
    with open_collection(uri, collection, signature, hybrid=hybrid) as opened:
        signature = opened.signature
    plan = dataclasses.replace(plan, dimensions=signature.dimensions)
    # a hybrid collection: the write tasks give each point its lexical vector (Collection.write_points)
    lexical = lexical_encoder(facts) if signature.hybrid else None
    sink = StoreDatasink(uri, collection, signature, lexical)

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
                       problems=problems[:EXAMPLES], where=uri.place(collection), truncated=total.truncated,
                       truncation=truncation)
