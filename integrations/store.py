"""The public home of what users of any store meet (the machinery lives in ``jinav3.integrations.stores``)::

    from jinav3.integrations.store import VectorStore, Collection, Hit, Signature

``Collection``: a collection of jina-embeddings-v3 points without a model (write points, search by vector,
fetch, delete, count); ``VectorStore``: a Collection plus an encoder (``add`` records, ``search`` text).
Each store kind (``jinav3.integrations.qdrant`` / ``.milvus`` / ``.pinecone``) provides both.
"""

from jinav3.integrations.stores.base import Collection, check_vectors, chunk_counts
from jinav3.integrations.stores.limits import RecordLimits
from jinav3.integrations.stores.records import Hit, Point, Record
from jinav3.integrations.stores.signature import Signature
from jinav3.integrations.stores.vector_store import VectorStore, embed_points

__all__ = ["VectorStore", "Collection", "Hit", "Signature", "Point", "Record", "RecordLimits", "embed_points",
           "check_vectors", "chunk_counts"]
