"""LangChain embeddings for jina-embeddings-v3: documents and queries each embedded with their own task.

    from jinav3.integrations.langchain import JinaV3Embeddings

    emb = JinaV3Embeddings(model="jinaai/jina-embeddings-v3", dimensions=512)
    store = QdrantVectorStore.from_texts(texts, emb, location=":memory:", collection_name="docs")
    store.similarity_search("what helps sensitive skin?", k=5)

LangChain's ``Embeddings`` interface already separates the two sides: vector stores call
``embed_documents`` for what they store and ``embed_query`` for what they search with, so those map to
``retrieval.passage`` and ``retrieval.query``. Late chunking needs every chunk of a source at once,
which a store's ``embed_documents(texts)`` never sees, so it is a method of its own:
``embed_late_chunks(documents)`` takes the ``Document``s a text splitter made and returns their vectors
for ``add_embeddings``-style store methods; ``with_late_chunks(documents)`` wraps them for stores that
embed documents themselves (``from_documents``, ``add_documents``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jinav3.errors import install_hint, invalid
from jinav3.progress import progress_bar
from jinav3.tasks import index_task, search_task
from jinav3.validation import boolean, is_integer, positive_int

from . import _encoder_cache as shared
from .grouping import late_chunk_groups

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr
except ImportError as e:  # the extra is not installed
    raise ImportError("JinaV3Embeddings needs langchain-core: " + install_hint("langchain")) from e

if TYPE_CHECKING:
    import numpy as np
    from typing_extensions import Self  # typing.Self is Python 3.11+; annotations are not evaluated

    from jinav3.encoder import Encoder
    from jinav3.remote import RemoteEncoder

__all__ = ["JinaV3Embeddings", "LateChunkedEmbeddings", "JinaV3SparseEmbeddings"]

# Where LangChain keeps a chunk's source and position: document loaders set metadata["source"] (a path
# or URL) and text splitters copy it to every chunk; add_start_index=True adds metadata["start_index"].
SOURCE_KEY = "source"
START_INDEX_KEY = "start_index"


class JinaV3Embeddings(BaseModel, Embeddings):
    """jina-embeddings-v3 as a LangChain ``Embeddings``: documents with ``retrieval.passage``, queries
    with ``retrieval.query`` (``passage_task`` / ``query_task`` override them, e.g. ``text-matching``
    for both sides of a symmetric search).

    The model loads at construction, once per process for the same model, device and dtype: every
    instance, the Haystack components and the LlamaIndex embedding share it. Async methods run the model
    in a worker thread, so the event loop keeps serving. Settings are checked at construction and fail
    with ``jinav3.errors.InvalidArgumentError`` naming the argument.
    """

    model: str = Field(default=shared.DEFAULT_MODEL, description="Hub id or local folder of the model.")
    dimensions: int | None = Field(default=None, description="Matryoshka size (None: the model's full size).")
    normalize: bool = Field(default=True, description="L2-normalise the embeddings.")
    batch_size: int | None = Field(
        default=None, description="At most this many texts per forward pass (None: the token budget decides)."
    )
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'.")
    dtype: str = Field(default="auto", description="'auto', 'float32', 'bfloat16' or 'float16'.")
    show_progress: bool = Field(default=False, description="Show a progress bar while embedding.")
    query_task: str | None = Field(default=None, description="Task for queries (default retrieval.query).")
    passage_task: str | None = Field(default=None, description="Task for documents (default retrieval.passage).")
    revision: str | None = Field(default=None, description="Branch, tag or commit of a hub model.")
    cache_dir: str | None = Field(default=None, description="Hugging Face cache folder to load the model from.")
    local_files_only: bool = Field(default=False, description="Load from the cache only, never download.")
    server_url: str | None = Field(default=None, description="Embed through this server (jinav3 serve, or "
                                                             "https://api.jina.ai) instead of a local model.")
    # Never serialised (model_dump, pickle): None reads $JINAV3_API_KEY ($JINA_API_KEY for api.jina.ai).
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False,
                                      description="The server's API key (never serialised).")

    # extra="forbid" as in LangChain's own embeddings; unknown names are refused in __init__ first, with
    # the library's error. protected_namespaces=(): pydantic would warn about the field named "model".
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    _encoder: Encoder | RemoteEncoder | None = PrivateAttr(default=None)

    def __init__(self, model: str | os.PathLike = shared.DEFAULT_MODEL, **settings: Any) -> None:
        super().__init__(**_checked_settings({"model": model, **settings}, type(self)))
        encoder = self._load_encoder()
        if self.dimensions is not None:
            encoder.check_dimensions(self.dimensions)  # the upper bound needs the model
        self._encoder = encoder

    def _load_encoder(self) -> Encoder | RemoteEncoder:
        # The one place that decides where vectors come from: the local model, or a server
        # (server_url / api_key); every method below works with either unchanged.
        return shared.get_encoder(self.model, self.device, self.dtype, revision=self.revision,
                                  cache_dir=self.cache_dir, local_files_only=self.local_files_only,
                                  server_url=self.server_url,
                                  api_key=self.api_key.get_secret_value() if self.api_key is not None else None)

    @property
    def encoder(self) -> Encoder | RemoteEncoder:
        """The shared ``jinav3.Encoder`` (or ``RemoteEncoder`` with ``server_url``), loaded again after
        unpickling or ``model_validate``."""
        if self._encoder is None:
            self._encoder = self._load_encoder()
        return self._encoder

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        """A deep copy shares the model: copying the weights would load it twice."""
        memo = {} if memo is None else memo
        if self._encoder is not None:
            memo[id(self._encoder)] = self._encoder  # deepcopy hands back what the memo holds
        return super().__deepcopy__(memo)

    def __getstate__(self) -> dict[Any, Any]:
        """Pickle the settings, not the model (worker processes load it again, once each) nor the API key
        (an unpickled copy reads it from the environment again)."""
        state = super().__getstate__()
        return {**state, "__dict__": {**state["__dict__"], "api_key": None},
                "__pydantic_private__": {**(state.get("__pydantic_private__") or {}), "_encoder": None}}

    # ----------------------------------------------------------------------------- the Embeddings interface
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts to store, with ``retrieval.passage`` (or ``passage_task``)."""
        if isinstance(texts, str):  # list("abc") would embed three letters
            raise invalid("texts", "must be a list of str, got one str; embed a search text with embed_query")
        return self._embed(list(texts), index_task(self.passage_task)).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed a search text, with ``retrieval.query`` (or ``query_task``)."""
        if not isinstance(text, str):
            raise invalid("text", f"must be a str, got {type(text).__name__}; embed stored texts with embed_documents")
        return self._embed([text], search_task(self.query_task))[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """``embed_documents`` in a worker thread."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """``embed_query`` in a worker thread."""
        return await asyncio.to_thread(self.embed_query, text)

    # ----------------------------------------------------------------------------- late chunking
    def embed_late_chunks(self, documents: Sequence[Document], *, source_key: str = SOURCE_KEY) -> list[list[float]]:
        """One vector per document, in input order, each chunk embedded in the context of its whole source.

        ``documents`` are what a text splitter made: documents sharing ``metadata[source_key]`` are the
        chunks of one source, put in order by ``metadata["start_index"]`` when every one of them has it
        (``add_start_index=True``), else kept in the order given; each source is embedded as ONE sequence
        (its chunks joined by a space, like the Jina API's late chunking) and every chunk's vector is the
        mean of its own tokens. Documents without that key (and blank ones) are embedded alone. Sources
        past the model's context use overlapping windows. Chunk overlap repeats text inside the joined
        source: with late chunking the context comes from the source itself, so split with
        ``chunk_overlap=0``.

        The vectors go to stores that take precomputed embeddings, e.g. langchain-milvus'
        ``Milvus.add_embeddings(texts, vectors, metadatas)``; for stores that only embed documents
        themselves, see :meth:`with_late_chunks`.
        """
        texts = _page_contents(documents)
        if not isinstance(source_key, str):
            raise invalid("source_key", f"must be a metadata key (str), got {source_key!r}")
        groups, alone = _groups_by_source(documents, texts, source_key)
        task = index_task(self.passage_task)
        vectors: list[list[float]] = [[] for _ in documents]
        bar = progress_bar(len(groups), self.show_progress, unit="source", desc="Late chunking")
        try:
            for rows in groups:
                group_vectors = self._embed([texts[r] for r in rows], task, late_chunking=True)
                for row, vector in zip(rows, group_vectors, strict=True):  # one vector per chunk
                    vectors[row] = vector.tolist()
                bar.update(1)
        finally:
            bar.close()
        if alone:
            for row, vector in zip(alone, self._embed([texts[r] for r in alone], task), strict=True):
                vectors[row] = vector.tolist()
        return vectors

    async def aembed_late_chunks(
        self, documents: Sequence[Document], *, source_key: str = SOURCE_KEY
    ) -> list[list[float]]:
        """``embed_late_chunks`` in a worker thread."""
        return await asyncio.to_thread(self.embed_late_chunks, documents, source_key=source_key)

    def with_late_chunks(
        self, documents: Sequence[Document], *, source_key: str = SOURCE_KEY
    ) -> LateChunkedEmbeddings:
        """These embeddings, holding the late-chunked vectors of ``documents`` (see :meth:`embed_late_chunks`)
        for a store that embeds documents itself::

            chunks = splitter.split_documents(docs)
            store = QdrantVectorStore.from_documents(chunks, emb.with_late_chunks(chunks), location=":memory:",
                                                     collection_name="docs")
        """
        return LateChunkedEmbeddings(self, documents, source_key=source_key)

    # ----------------------------------------------------------------------------- shared by every method
    def _embed(self, texts: list[str], task: str, late_chunking: bool = False) -> np.ndarray:
        return self.encoder.encode(
            texts,
            task=task,
            dimensions=self.dimensions,
            normalize=self.normalize,
            late_chunking=late_chunking,
            batch_size=None if late_chunking else self.batch_size,  # one sequence: nothing to batch
            show_progress=self.show_progress and not late_chunking,  # embed_late_chunks counts sources
        )


class LateChunkedEmbeddings(Embeddings):
    """``Embeddings`` that hand a store the late-chunked vectors computed for some documents.

    Made by :meth:`JinaV3Embeddings.with_late_chunks`, for stores that embed documents themselves
    (``InMemoryVectorStore``, ``QdrantVectorStore``: ``from_documents`` / ``add_documents``). When the
    store asks for a text, its waiting vector is handed out, once, in the order the documents came
    (two chunks with the same text get their own vectors, in turn); any other text is embedded as a
    plain passage, so a store that keeps these embeddings keeps working for later documents. Queries go
    to the model with the query task, like the ``JinaV3Embeddings`` it wraps.
    """

    def __init__(self, embeddings: JinaV3Embeddings, documents: Sequence[Document], *,
                 source_key: str = SOURCE_KEY) -> None:
        if not isinstance(embeddings, JinaV3Embeddings):
            raise invalid("embeddings", f"must be a JinaV3Embeddings, got {type(embeddings).__name__}")
        self.embeddings = embeddings
        vectors = embeddings.embed_late_chunks(documents, source_key=source_key)
        self._waiting: dict[str, deque[list[float]]] = {}
        for document, vector in zip(documents, vectors, strict=True):
            self._waiting.setdefault(document.page_content, deque()).append(vector)
        self._lock = threading.Lock()  # stores may embed batches from several threads

    @property
    def waiting(self) -> int:
        """How many late-chunked vectors no store has asked for yet."""
        with self._lock:
            return sum(len(queue) for queue in self._waiting.values())

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """The waiting late-chunked vector of each text; texts without one are embedded as passages."""
        if isinstance(texts, str):
            raise invalid("texts", "must be a list of str, got one str; embed a search text with embed_query")
        texts = list(texts)
        vectors: list[list[float]] = [[] for _ in texts]
        unknown: list[int] = []
        with self._lock:
            for row, text in enumerate(texts):
                queue = self._waiting.get(text) if isinstance(text, str) else None
                if queue:
                    vectors[row] = queue.popleft()
                else:
                    unknown.append(row)
        if unknown:
            fresh = self.embeddings.embed_documents([texts[r] for r in unknown])
            for row, vector in zip(unknown, fresh, strict=True):
                vectors[row] = vector
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self.embeddings.embed_query(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await self.embeddings.aembed_query(text)


def _checked_settings(settings: dict[str, Any], cls: type[JinaV3Embeddings]) -> dict[str, Any]:
    """``settings`` with every value checked by the checks the Haystack and LlamaIndex components use,
    so the same mistake gets the same message; pydantic then only sees values of the right type."""
    for name in settings:
        if name not in cls.model_fields:
            raise invalid(name, f"is not a JinaV3Embeddings setting; use one of {', '.join(cls.model_fields)}")

    def given(name: str) -> Any:
        return settings.get(name, cls.model_fields[name].default)

    device, dtype = shared.check_device_dtype(given("device"), given("dtype"))
    checked = {
        "model": shared.model_key(given("model")),
        "dimensions": shared.check_dimensions_before_load(given("dimensions")),
        "normalize": boolean(given("normalize"), "normalize"),
        "batch_size": positive_int(given("batch_size"), "batch_size", allow_none=True),
        "device": device,
        "dtype": dtype,
        "show_progress": boolean(given("show_progress"), "show_progress"),
        "query_task": shared.check_task_override(given("query_task"), "query_task"),
        "passage_task": shared.check_task_override(given("passage_task"), "passage_task"),
        "server_url": shared.check_server_url(given("server_url")),
    }
    revision, cache_dir, local_files_only = shared.check_source(given("revision"), given("cache_dir"),
                                                                 given("local_files_only"))
    checked.update(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    # Only what was given, so pydantic's fields_set (model_dump(exclude_unset=True)) stays the caller's.
    return {**settings, **{name: value for name, value in checked.items() if name in settings}}


def _page_contents(documents: Sequence[Document]) -> list[str]:
    """The text of every document, refused before any work when ``documents`` are not Documents."""
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise invalid("documents", f"must be a list of langchain Documents, got {type(documents).__name__}")
    for row, document in enumerate(documents):
        if not isinstance(document, Document):
            raise invalid(f"documents[{row}]", f"must be a langchain Document, got {type(document).__name__}")
    return [document.page_content for document in documents]


def _groups_by_source(
    documents: Sequence[Document], texts: list[str], source_key: str
) -> tuple[list[list[int]], list[int]]:
    """Row numbers grouped by ``metadata[source_key]`` (``grouping.late_chunk_groups``), each source in
    ``metadata["start_index"]`` order when every chunk has one."""
    starts = [d.metadata.get(START_INDEX_KEY) for d in documents]
    return late_chunk_groups(texts, [d.metadata.get(source_key) for d in documents],
                             [[s if is_integer(s) else None for s in starts]],
                             source_argument=lambda row: f"documents[{row}].metadata[{source_key!r}]")


# ============================================================================================ lexical (hybrid)
try:  # langchain-qdrant's interface for the sparse side of RetrievalMode.HYBRID
    from langchain_qdrant import SparseEmbeddings as _SparseEmbeddings
    from langchain_qdrant import SparseVector as _QdrantSparseVector
except ImportError:  # pragma: no cover - depends on the environment; JinaV3SparseEmbeddings says what to install
    _SparseEmbeddings, _QdrantSparseVector = object, None  # type: ignore[assignment,misc]  # no base to inherit


class JinaV3SparseEmbeddings(_SparseEmbeddings):  # the object base when langchain-qdrant is missing
    """Lexical vectors (BM25 over the model's own pieces; jinav3.SparseEncoder: the tokenizer only, no weights)
    for langchain-qdrant's hybrid retrieval, beside :class:`JinaV3Embeddings`::

        store = QdrantVectorStore.from_texts(texts, JinaV3Embeddings(model=m), location=":memory:",
                                             collection_name="docs", retrieval_mode=RetrievalMode.HYBRID,
                                             sparse_embedding=JinaV3SparseEmbeddings(model=m))

    Documents get BM25's saturated, length-normalised term weights, queries weight each distinct term 1; the
    collection should weigh terms by IDF (``sparse_vector_params``' ``modifier=Modifier.IDF``)."""

    def __init__(self, model: str = shared.DEFAULT_MODEL, revision: str | None = None, cache_dir: str | None = None,
                 local_files_only: bool = False) -> None:
        if _QdrantSparseVector is None:
            raise ImportError("JinaV3SparseEmbeddings needs langchain-qdrant: " + install_hint("langchain"))
        if not isinstance(model, str) or not model:
            raise invalid("model", f"must be a hub id or a folder, got {model!r}")
        self.model, self.revision, self.cache_dir = model, revision, cache_dir
        self.local_files_only = boolean(local_files_only, "local_files_only")
        self._sparse: Any = None

    def _encoder(self) -> Any:
        if self._sparse is None:
            from jinav3.sparse import SparseEncoder

            self._sparse = SparseEncoder.from_pretrained(self.model, revision=self.revision, cache_dir=self.cache_dir,
                                                         local_files_only=self.local_files_only)
        return self._sparse

    def embed_documents(self, texts: list[str]) -> list[Any]:
        return [_QdrantSparseVector(indices=v.indices.tolist(), values=v.values.tolist())
                for v in self._encoder().encode_documents(list(texts))]

    def embed_query(self, text: str) -> Any:
        v = self._encoder().encode_queries([text])[0]
        return _QdrantSparseVector(indices=v.indices.tolist(), values=v.values.tolist())

    def __repr__(self) -> str:
        return f"JinaV3SparseEmbeddings(model={self.model!r})"
