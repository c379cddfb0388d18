"""LlamaIndex embedding class and late-chunking transformation for jina-embeddings-v3.

    from jinav3.integrations.llama_index import JinaV3Embedding, JinaV3LateChunkingTransform

    Settings.embed_model = JinaV3Embedding(model_name="jinaai/jina-embeddings-v3", dimensions=256)

LlamaIndex calls the query methods for what the user searches with and the text methods for what it
stores, so those map to ``retrieval.query`` and ``retrieval.passage``. Late chunking needs whole
documents rather than one node at a time, so it is a separate ``TransformComponent`` for an
``IngestionPipeline``; the nodes it embeds keep their vectors when an index is built from them.

``server_url`` (with ``api_key``, else ``$JINAV3_API_KEY``; api.jina.ai reads ``$JINA_API_KEY``) embeds
through ``jinav3 serve`` or the hosted Jina API instead of a local model; the key is a ``SecretStr``
left out of ``to_dict``/``to_json`` and pickles (an unpickled copy reads it from the environment).
``revision``, ``cache_dir`` and ``local_files_only`` pin the local model.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from typing import Any, Optional

from jinav3.errors import install_hint
from jinav3.tasks import index_task, search_task
from jinav3.validation import boolean

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
    from llama_index.core.bridge.pydantic import Field, PrivateAttr, SecretStr, ValidationInfo, field_validator
    from llama_index.core.schema import BaseNode, MetadataMode, TransformComponent
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("jinav3's LlamaIndex components need llama-index-core: " + install_hint("llamaindex")) from error

from . import _encoder_cache as shared
from .grouping import late_chunk_groups

__all__ = ["JinaV3Embedding", "JinaV3LateChunkingTransform", "sparse_functions"]


class JinaV3Embedding(BaseEmbedding):
    """jina-embeddings-v3 as a LlamaIndex embedding model: queries and passages each with their task.

    The model loads at construction (once per process for the same model, device and dtype: every
    instance and the Haystack components share it). Async methods run the model in a worker thread.
    """

    model_name: str = Field(default=shared.DEFAULT_MODEL, description="Hub id or local folder of the model.")
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'.")
    dtype: str = Field(default="auto", description="'auto', 'float32', 'bfloat16' or 'float16'.")
    dimensions: Optional[int] = Field(default=None, description="Matryoshka size (None: the model's full size).")
    normalize: bool = Field(default=True, description="L2-normalise the embeddings.")
    query_task: Optional[str] = Field(default=None, description="Task for queries (default retrieval.query).")
    passage_task: Optional[str] = Field(default=None, description="Task for texts (default retrieval.passage).")
    revision: Optional[str] = Field(default=None, description="Branch, tag or commit of a hub model.")
    cache_dir: Optional[str] = Field(default=None, description="Hugging Face cache folder to load the model from.")
    local_files_only: bool = Field(default=False, description="Load from the cache only, never download.")
    server_url: Optional[str] = Field(default=None, description="Embed through this server (jinav3 serve, or "
                                                                "https://api.jina.ai) instead of a local model.")
    # Never serialised (to_dict, to_json, pickle): None reads $JINAV3_API_KEY ($JINA_API_KEY for api.jina.ai).
    api_key: Optional[SecretStr] = Field(default=None, exclude=True, repr=False,
                                         description="The server's API key (never serialised).")

    _encoder: Any = PrivateAttr(default=None)

    def __init__(self, model_name: str = shared.DEFAULT_MODEL, **kwargs: Any) -> None:
        super().__init__(model_name=shared.model_key(model_name), **kwargs)
        shared.check_server_url(self.server_url)
        shared.check_source(self.revision, self.cache_dir, self.local_files_only)
        encoder = self._load()
        if self.dimensions is not None:
            encoder.check_dimensions(self.dimensions)  # the upper bound needs the model
        self._encoder = encoder

    def _load(self) -> Any:
        return shared.get_encoder(self.model_name, self.device, self.dtype, revision=self.revision,
                                  cache_dir=self.cache_dir, local_files_only=self.local_files_only,
                                  server_url=self.server_url,
                                  api_key=self.api_key.get_secret_value() if self.api_key is not None else None)

    @field_validator("dimensions", mode="before")
    @classmethod
    def _check_dimensions(cls, value: Optional[int]) -> Optional[int]:
        return shared.check_dimensions_before_load(value)

    @field_validator("query_task", "passage_task", mode="before")
    @classmethod
    def _check_task(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        return shared.check_task_override(value, info.field_name or "task")  # always set: a field's validator

    @classmethod
    def class_name(cls) -> str:
        return "JinaV3Embedding"

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the settings, not the model (worker processes load it again, once each)."""
        settings = copy.copy(self)
        settings._encoder = None
        settings.__dict__["api_key"] = None  # never pickle the key
        return super(JinaV3Embedding, settings).__getstate__()

    @property
    def encoder(self):
        """The shared ``jinav3.Encoder`` (or ``RemoteEncoder`` with ``server_url``), loaded again after unpickling."""
        if self._encoder is None:
            self._encoder = self._load()
        return self._encoder

    def embed(self, texts: list[str], task: str, late_chunking: bool = False) -> list[Embedding]:
        """Embed ``texts`` with ``task`` and this model's dimensions and normalisation."""
        return self.encoder.encode(list(texts), **self._options(task, late_chunking)).tolist()

    async def aembed(self, texts: list[str], task: str, late_chunking: bool = False) -> list[Embedding]:
        """``embed`` without blocking the event loop: a server's requests on it, a local model in a thread."""
        encoder = await asyncio.to_thread(lambda: self.encoder)
        aencode = getattr(encoder, "aencode", None)
        if aencode is None:
            return await asyncio.to_thread(self.embed, texts, task, late_chunking)
        return (await aencode(list(texts), **self._options(task, late_chunking))).tolist()

    def _options(self, task: str, late_chunking: bool) -> dict[str, Any]:
        return dict(task=task, dimensions=self.dimensions, normalize=self.normalize, late_chunking=late_chunking,
                    batch_size=None if late_chunking else self.embed_batch_size)

    # Queries: what the user searches with.
    def _get_query_embedding(self, query: str) -> Embedding:
        return self.embed([query], search_task(self.query_task))[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self.aembed([query], search_task(self.query_task)))[0]

    # Texts: what gets stored.
    def _get_text_embedding(self, text: str) -> Embedding:
        return self.embed([text], index_task(self.passage_task))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self.embed(texts, index_task(self.passage_task))

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self.aembed([text], index_task(self.passage_task)))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self.aembed(texts, index_task(self.passage_task))


class JinaV3LateChunkingTransform(TransformComponent):
    """Sets ``node.embedding`` by late chunking: the nodes of one source document in one pass.

    Nodes are grouped by ``ref_doc_id`` and ordered by ``start_char_idx`` (else by the order they came
    in); each group is embedded as one document with the passage task, so every chunk's vector sees its
    neighbours. Nodes without a source document (and blank ones) are embedded alone. Use it last in an
    ``IngestionPipeline``; ``VectorStoreIndex(nodes, embed_model=...)`` keeps the vectors it set.

    ``metadata_mode`` defaults to NONE: repeating metadata before every chunk would put it into the
    middle of the document text the model reads.
    """

    embed_model: JinaV3Embedding = Field(description="The model, its dimensions and its tasks.")
    metadata_mode: MetadataMode = Field(default=MetadataMode.NONE, description="How node text is read.")

    @classmethod
    def class_name(cls) -> str:
        return "JinaV3LateChunkingTransform"

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        task = index_task(self.embed_model.passage_task)
        texts = [node.get_content(metadata_mode=self.metadata_mode) for node in nodes]
        groups, alone = _groups_by_document(nodes, texts)
        for rows in groups:
            vectors = self.embed_model.embed([texts[r] for r in rows], task, late_chunking=True)
            for row, vector in zip(rows, vectors, strict=True):  # one vector per piece
                nodes[row].embedding = vector
        if alone:
            for row, vector in zip(alone, self.embed_model.embed([texts[r] for r in alone], task), strict=True):
                nodes[row].embedding = vector
        return nodes

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        return await asyncio.to_thread(self.__call__, nodes, **kwargs)


def _groups_by_document(nodes: Sequence[BaseNode], texts: list[str]) -> tuple[list[list[int]], list[int]]:
    """Row numbers grouped by ``ref_doc_id`` (``grouping.late_chunk_groups``), each document in
    ``start_char_idx`` order when every node has one (a TextNode field, not every BaseNode's)."""
    return late_chunk_groups(texts, [node.ref_doc_id for node in nodes],
                             [[getattr(node, "start_char_idx", None) for node in nodes]])


# ============================================================================================ lexical (hybrid)
def sparse_functions(model: str = shared.DEFAULT_MODEL, revision: str | None = None, cache_dir: str | None = None,
                     local_files_only: bool = False) -> tuple[Callable[[list[str]], Any], Callable[[list[str]], Any]]:
    """``(sparse_doc_fn, sparse_query_fn)`` for LlamaIndex's ``QdrantVectorStore(enable_hybrid=True, ...)``: BM25
    over the model's own pieces (jinav3.SparseEncoder: the tokenizer only, no weights). Documents get BM25's
    saturated, length-normalised term weights, queries weight each distinct term 1, so give the collection IDF::

        doc_fn, query_fn = sparse_functions(model="jinaai/jina-embeddings-v3")
        store = QdrantVectorStore("docs", client=client, enable_hybrid=True, sparse_doc_fn=doc_fn,
                                  sparse_query_fn=query_fn, sparse_config=models.SparseVectorParams(
                                      modifier=models.Modifier.IDF))
    """
    from jinav3.sparse import SparseEncoder

    encoder = SparseEncoder.from_pretrained(model, revision=revision, cache_dir=cache_dir,
                                            local_files_only=boolean(local_files_only, "local_files_only"))

    def batch(vectors: list[Any]) -> tuple[list[list[int]], list[list[float]]]:
        return [v.indices.tolist() for v in vectors], [v.values.tolist() for v in vectors]

    def sparse_doc_fn(texts: list[str]) -> tuple[list[list[int]], list[list[float]]]:
        return batch(encoder.encode_documents(list(texts)))

    def sparse_query_fn(texts: list[str]) -> tuple[list[list[int]], list[list[float]]]:
        return batch(encoder.encode_queries(list(texts)))

    return sparse_doc_fn, sparse_query_fn
