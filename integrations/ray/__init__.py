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
4. ``write_datasink`` with :class:`StoreDatasink`: each write task opens the store's ``Collection`` (no model,
   ``create=False``) and writes through ``Collection.write_points``, the requests, retries and stale-point
   pruning of ``add``.

Fault tolerance is Ray's: an embedding actor that dies is restarted and its batch retried
(``max_restarts`` / ``max_task_retries``, -1 by default on Ray Data's actor pools), a write task whose
worker dies is retried (``max_retries``). Ids are deterministic and every write is an upsert followed
by the removal of stale points, so a retried batch or a whole job run again leaves one copy of every point.

Embedded stores (Qdrant local mode, Milvus Lite) belong to one process and are refused: use a server.

The package: ``plan`` (the plan and the check pass), ``workers`` (embedding actors, the write sink), ``job``
(:func:`index_dataset`), ``files`` (the command line's corpus as a Dataset).
"""

from jinav3.errors import install_hint

try:
    import pyarrow  # noqa: F401 - the parts import it; say how to install it here, once
    import ray.data  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("jinav3.integrations.ray needs Ray Data: " + install_hint("ray")) from e

from .files import files_dataset, list_files, read_files
from .job import IndexReport, index_dataset, refuse_embedded
from .plan import ModelFacts, Plan
from .workers import EmbedBatches, StoreDatasink, WorkerStats

__all__ = ["index_dataset", "IndexReport", "WorkerStats", "StoreDatasink", "EmbedBatches", "Plan", "ModelFacts",
           "read_files", "list_files", "files_dataset", "refuse_embedded"]
