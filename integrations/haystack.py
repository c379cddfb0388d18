"""Haystack components for jina-embeddings-v3: swap one import, keep your pipelines.

    from jinav3.integrations.haystack import JinaV3DocumentEmbedder, JinaV3TextEmbedder

Shaped like Haystack's ``SentenceTransformersDocumentEmbedder`` / ``SentenceTransformersTextEmbedder``
(``run``, ``run_async``, ``warm_up``, ``to_dict``/``from_dict``, ``meta_fields_to_embed``), with the
one thing they cannot know: documents are embedded with ``retrieval.passage`` and queries with
``retrieval.query``. ``late_chunking=True`` embeds the splits of each source document together, so
every chunk's vector sees its whole document.

``server_url`` (with ``api_key``, a Haystack ``Secret``, default ``$JINAV3_API_KEY``; api.jina.ai reads
``$JINA_API_KEY``) embeds through ``jinav3 serve`` or the hosted Jina API instead of a local model; the key
is serialised as its environment variable, never its value. ``revision``, ``cache_dir`` and
``local_files_only`` pin the local model; ``device`` takes a string or a ``ComponentDevice``.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from jinav3 import env
from jinav3.errors import install_hint, invalid

try:
    from haystack import Document, component, default_from_dict, default_to_dict
    from haystack.dataclasses import SparseEmbedding
    from haystack.utils import ComponentDevice, Secret, deserialize_secrets_inplace
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("jinav3's Haystack components need haystack-ai: " + install_hint("haystack")) from error

from jinav3.tasks import index_task, search_task
from jinav3.validation import boolean, positive_int

from . import _encoder_cache as shared
from .grouping import late_chunk_groups

if TYPE_CHECKING:
    import numpy as np

    from jinav3.encoder import Encoder
    from jinav3.remote import RemoteEncoder

__all__ = ["JinaV3DocumentEmbedder", "JinaV3TextEmbedder", "JinaV3SparseDocumentEmbedder", "JinaV3SparseTextEmbedder"]


_Embedder = TypeVar("_Embedder", bound="_JinaV3Embedder")
API_KEY_ENV = [env.SERVER_API_KEY]  # the server's key; RemoteEncoder reads $JINA_API_KEY itself for api.jina.ai


def _default_api_key() -> Secret:
    return Secret.from_env_var(API_KEY_ENV, strict=False)


class _JinaV3Embedder:
    """Settings, validation, loading and serialisation common to both components."""

    def __init__(
        self,
        *,
        model: str | os.PathLike,
        device: Any,
        dtype: str,
        dimensions: int | None,
        batch_size: int,
        progress_bar: bool,
        normalize: bool,
        task: str | None,
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool = False,
        server_url: str | None = None,
        api_key: Secret | None = None,
    ) -> None:
        self.model = shared.model_key(model)
        self.server_url = shared.check_server_url(server_url)
        if api_key is not None and not isinstance(api_key, Secret):
            raise invalid("api_key", "must be a haystack.utils.Secret (Secret.from_env_var('NAME')), not a plain "
                                     f"value, got {type(api_key).__name__}")
        self.api_key = api_key
        self.revision, self.cache_dir, self.local_files_only = shared.check_source(revision, cache_dir,
                                                                                   local_files_only)
        # a ComponentDevice is kept as given (and serialised as Haystack does); a string as a string
        self.component_device = device if isinstance(device, ComponentDevice) else None
        if self.server_url is None:
            self.device, self.dtype = shared.check_device_dtype(device, dtype)
        else:  # the server chooses where and how its model runs
            self.device, self.dtype = shared.device_key(device), str(dtype)
        self.dimensions = shared.check_dimensions_before_load(dimensions)
        self.batch_size = positive_int(batch_size, "batch_size")
        self.progress_bar = boolean(progress_bar, "progress_bar")
        self.normalize = boolean(normalize, "normalize")
        self.task = shared.check_task_override(task)
        self.encoder: Encoder | RemoteEncoder | None = None

    @property
    def embedding_task(self) -> str:
        """The task this component embeds with: the override, else the index or search default."""
        raise NotImplementedError

    def warm_up(self) -> None:
        """Load the model (once per process for the same settings), or connect to the server."""
        if self.encoder is None:
            encoder = shared.get_encoder(self.model, self.device, self.dtype, revision=self.revision,
                                         cache_dir=self.cache_dir, local_files_only=self.local_files_only,
                                         server_url=self.server_url,
                                         api_key=self.api_key.resolve_value() if self.api_key else None)
            if self.dimensions is not None:
                encoder.check_dimensions(self.dimensions)  # the upper bound needs the model
            self.encoder = encoder

    def _encode(self, texts: list[str], late_chunking: bool = False) -> np.ndarray:
        if self.encoder is None:
            self.warm_up()
        assert self.encoder is not None  # warm_up loaded it
        return self.encoder.encode(texts, **self._encode_options(late_chunking))

    async def _aencode(self, texts: list[str], late_chunking: bool = False) -> np.ndarray:
        """``_encode`` for run_async: a server's requests on the event loop, a local model in a worker thread."""
        if self.encoder is None:
            await asyncio.to_thread(self.warm_up)
        assert self.encoder is not None  # warm_up loaded it
        aencode = getattr(self.encoder, "aencode", None)
        if aencode is None:
            return await asyncio.to_thread(self._encode, texts, late_chunking)
        return await aencode(texts, **self._encode_options(late_chunking))

    def _encode_options(self, late_chunking: bool) -> dict[str, Any]:
        return dict(task=self.embedding_task, dimensions=self.dimensions, normalize=self.normalize,
                    late_chunking=late_chunking, batch_size=None if late_chunking else self.batch_size,
                    show_progress=self.progress_bar and not late_chunking)

    def _init_parameters(self) -> dict[str, Any]:
        return dict(
            model=self.model,
            device=self.component_device.to_dict() if self.component_device is not None else self.device,
            dtype=self.dtype,
            dimensions=self.dimensions,
            batch_size=self.batch_size,
            progress_bar=self.progress_bar,
            normalize=self.normalize,
            task=self.task,
            revision=self.revision,
            cache_dir=self.cache_dir,
            local_files_only=self.local_files_only,
            server_url=self.server_url,
            api_key=self.api_key.to_dict() if self.api_key is not None else None,  # refuses a token Secret
        )

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, **self._init_parameters())

    @classmethod
    def from_dict(cls: type[_Embedder], data: dict[str, Any]) -> _Embedder:
        data = {**data, "init_parameters": dict(data.get("init_parameters", {}))}  # the caller's dict stays as is
        params = data["init_parameters"]
        if isinstance(params.get("device"), dict):  # a ComponentDevice, as Haystack's own embedders store it
            params["device"] = ComponentDevice.from_dict(params["device"])
        deserialize_secrets_inplace(params, keys=["api_key"])
        return default_from_dict(cls, data)


@component
class JinaV3TextEmbedder(_JinaV3Embedder):
    """Embeds a query string with ``retrieval.query`` (or ``task``); connect it to an embedding retriever.

        embedder = JinaV3TextEmbedder(model="jinaai/jina-embeddings-v3", dimensions=256)
        embedder.run(text="what helps sensitive skin?")["embedding"]   # list of 256 floats
    """

    @property
    def embedding_task(self) -> str:
        return search_task(self.task)

    def __init__(
        self,
        model: str = shared.DEFAULT_MODEL,
        device: Any = "auto",
        dtype: str = "auto",
        dimensions: int | None = None,
        batch_size: int = 32,
        progress_bar: bool = False,
        normalize: bool = True,
        task: str | None = None,
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool = False,
        server_url: str | None = None,
        api_key: Secret | None = _default_api_key(),  # noqa: B008 - Haystack's own idiom for a Secret default
    ) -> None:
        """
        :param model: Hugging Face hub id or local folder of either checkpoint layout.
        :param device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:1", "mps" or a ComponentDevice.
        :param dtype: "auto" (bfloat16 on CUDA, float32 elsewhere), "float32", "bfloat16" or "float16".
        :param dimensions: Matryoshka size (None: the full 1024).
        :param batch_size: At most this many texts per forward pass.
        :param progress_bar: Show a progress bar while embedding.
        :param normalize: L2-normalise the embedding.
        :param task: Override the task (default ``retrieval.query``); must match how documents were embedded.
        :param revision: Branch, tag or commit of a hub model.
        :param cache_dir: Hugging Face cache folder to load the model from.
        :param local_files_only: Load from the cache only, never download.
        :param server_url: Embed through this server (``jinav3 serve``, or https://api.jina.ai) instead.
        :param api_key: The server's key as a ``Secret`` (default ``$JINAV3_API_KEY``).
        """
        _JinaV3Embedder.__init__(  # not super(): @component rebuilds the class
            self, model=model, device=device, dtype=dtype, dimensions=dimensions, batch_size=batch_size,
            progress_bar=progress_bar, normalize=normalize, task=task, revision=revision, cache_dir=cache_dir,
            local_files_only=local_files_only, server_url=server_url, api_key=api_key,
        )

    @component.output_types(embedding=list[float])
    def run(self, text: str) -> dict[str, Any]:
        """Embed one string: ``{"embedding": [...]}``."""
        if not isinstance(text, str):
            raise TypeError(
                "JinaV3TextEmbedder expects a string as input. "
                "To embed a list of Documents, use JinaV3DocumentEmbedder."
            )
        return {"embedding": self._encode([text])[0].tolist()}

    @component.output_types(embedding=list[float])
    async def run_async(self, text: str) -> dict[str, Any]:
        """``run`` without blocking the event loop: a server's requests on it, a local model in a worker thread."""
        if not isinstance(text, str):
            return self.run(text)  # the same TypeError
        return {"embedding": (await self._aencode([text]))[0].tolist()}


@component
class JinaV3DocumentEmbedder(_JinaV3Embedder):
    """Sets ``embedding`` on Documents, embedded with ``retrieval.passage`` (or ``task``).

    With ``late_chunking=True``, documents that share ``meta["source_id"]`` (as ``DocumentSplitter``
    sets it) are embedded together in ``split_id`` order, one pass per source document; documents
    without a ``source_id`` (and blank ones, which have no tokens to pool) are embedded alone. Output
    documents keep the input order and are new objects (``dataclasses.replace``); the input documents
    are left untouched.
    """

    @property
    def embedding_task(self) -> str:
        return index_task(self.task)

    def __init__(
        self,
        model: str = shared.DEFAULT_MODEL,
        device: Any = "auto",
        dtype: str = "auto",
        dimensions: int | None = None,
        batch_size: int = 32,
        progress_bar: bool = True,
        normalize: bool = True,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        task: str | None = None,
        late_chunking: bool = False,
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool = False,
        server_url: str | None = None,
        api_key: Secret | None = _default_api_key(),  # noqa: B008 - Haystack's own idiom for a Secret default
    ) -> None:
        """
        :param model: Hugging Face hub id or local folder of either checkpoint layout.
        :param device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:1", "mps" or a ComponentDevice.
        :param dtype: "auto" (bfloat16 on CUDA, float32 elsewhere), "float32", "bfloat16" or "float16".
        :param dimensions: Matryoshka size (None: the full 1024).
        :param batch_size: At most this many documents per forward pass (without late chunking).
        :param progress_bar: Show a progress bar while embedding.
        :param normalize: L2-normalise the embeddings.
        :param meta_fields_to_embed: Meta fields whose values are embedded before the content.
        :param embedding_separator: Joins those meta values and the content.
        :param task: Override the task (default ``retrieval.passage``).
        :param late_chunking: Embed the splits of each source document together (see the class doc).
        :param revision: Branch, tag or commit of a hub model.
        :param cache_dir: Hugging Face cache folder to load the model from.
        :param local_files_only: Load from the cache only, never download.
        :param server_url: Embed through this server (``jinav3 serve``, or https://api.jina.ai) instead.
        :param api_key: The server's key as a ``Secret`` (default ``$JINAV3_API_KEY``).
        """
        _JinaV3Embedder.__init__(  # not super(): @component rebuilds the class
            self, model=model, device=device, dtype=dtype, dimensions=dimensions, batch_size=batch_size,
            progress_bar=progress_bar, normalize=normalize, task=task, revision=revision, cache_dir=cache_dir,
            local_files_only=local_files_only, server_url=server_url, api_key=api_key,
        )
        if meta_fields_to_embed is not None and (
            not isinstance(meta_fields_to_embed, (list, tuple))
            or not all(isinstance(f, str) for f in meta_fields_to_embed)
        ):
            raise invalid("meta_fields_to_embed", f"must be a list of field names, got {meta_fields_to_embed!r}")
        if not isinstance(embedding_separator, str):
            raise invalid("embedding_separator", f"must be a str, got {embedding_separator!r}")
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator = embedding_separator
        self.late_chunking = boolean(late_chunking, "late_chunking")

    def _init_parameters(self) -> dict[str, Any]:
        return {
            **_JinaV3Embedder._init_parameters(self),
            "meta_fields_to_embed": self.meta_fields_to_embed,
            "embedding_separator": self.embedding_separator,
            "late_chunking": self.late_chunking,
        }

    def _text_to_embed(self, doc: Document) -> str:
        meta_values = [str(doc.meta[key]) for key in self.meta_fields_to_embed if doc.meta.get(key) is not None]
        return self.embedding_separator.join([*meta_values, doc.content or ""])

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        """Embed ``documents``: ``{"documents": [...]}`` with ``embedding`` set, in input order."""
        if not isinstance(documents, list) or not all(isinstance(d, Document) for d in documents):
            raise TypeError(
                "JinaV3DocumentEmbedder expects a list of Documents as input. "
                "To embed a string, use JinaV3TextEmbedder."
            )
        texts = [self._text_to_embed(doc) for doc in documents]
        vectors: list[list[float] | None] = [None] * len(documents)
        alone = list(range(len(documents)))
        if self.late_chunking:
            groups, alone = _groups_by_source(documents, texts)
            if self.progress_bar and groups:
                from tqdm.auto import tqdm

                groups = tqdm(groups, desc="Late chunking", unit="source document")
            for rows in groups:
                chunk_vectors = self._encode([texts[r] for r in rows], late_chunking=True)
                for row, vector in zip(rows, chunk_vectors, strict=True):  # one vector per piece
                    vectors[row] = vector.tolist()
        if alone:
            for row, vector in zip(alone, self._encode([texts[r] for r in alone]), strict=True):
                vectors[row] = vector.tolist()
        return {"documents": [replace(doc, embedding=vector) for doc, vector in zip(documents, vectors, strict=True)]}

    @component.output_types(documents=list[Document])
    async def run_async(self, documents: list[Document]) -> dict[str, list[Document]]:
        """``run`` in a worker thread, so the event loop keeps serving while the model works."""
        return await asyncio.to_thread(self.run, documents=documents)


def _groups_by_source(documents: list[Document], texts: list[str]) -> tuple[list[list[int]], list[int]]:
    """Row numbers grouped by ``meta["source_id"]`` (``grouping.late_chunk_groups``). Order within a group:
    ``split_id`` when every split has one, else ``split_idx_start``, else the order the documents came in."""
    def position(key: str) -> list[int | None]:
        return [d.meta.get(key) if isinstance(d.meta.get(key), int) else None for d in documents]

    return late_chunk_groups(texts, [d.meta.get("source_id") for d in documents],
                             [position("split_id"), position("split_idx_start")])


# ============================================================================================ lexical (hybrid)
class _JinaV3SparseEmbedder:
    """The model's tokenizer as a BM25 lexical encoder (jinav3.SparseEncoder): no weights, no torch."""

    def __init__(self, model: str, revision: str | None, cache_dir: str | None, local_files_only: bool) -> None:
        if not isinstance(model, str) or not model:
            raise invalid("model", f"must be a hub id or a folder, got {model!r}")
        self.model, self.revision, self.cache_dir = model, revision, cache_dir
        self.local_files_only = boolean(local_files_only, "local_files_only")
        self._sparse: Any = None

    def warm_up(self) -> None:
        if self._sparse is None:
            from jinav3.sparse import SparseEncoder

            self._sparse = SparseEncoder.from_pretrained(self.model, revision=self.revision, cache_dir=self.cache_dir,
                                                         local_files_only=self.local_files_only)

    def _encoder(self) -> Any:
        self.warm_up()
        return self._sparse

    def _init_parameters(self) -> dict[str, Any]:
        return {"model": self.model, "revision": self.revision, "cache_dir": self.cache_dir,
                "local_files_only": self.local_files_only}

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, **self._init_parameters())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        return default_from_dict(cls, data)


def _sparse_embedding(vector: Any) -> SparseEmbedding:
    return SparseEmbedding(indices=vector.indices.tolist(), values=vector.values.tolist())


@component
class JinaV3SparseTextEmbedder(_JinaV3SparseEmbedder):
    """A query's lexical vector (BM25 over the model's own pieces), for qdrant-haystack's ``QdrantHybridRetriever``
    next to ``JinaV3TextEmbedder``; the document store must weigh terms by IDF
    (``QdrantDocumentStore(use_sparse_embeddings=True, sparse_idf=True)``).

        JinaV3SparseTextEmbedder(model="jinaai/jina-embeddings-v3").run(text="ZX-4410 Akku")["sparse_embedding"]
    """

    def __init__(self, model: str = shared.DEFAULT_MODEL, revision: str | None = None, cache_dir: str | None = None,
                 local_files_only: bool = False) -> None:
        """
        :param model: Hugging Face hub id or local folder: only its ``tokenizer.json`` is read.
        :param revision: Branch, tag or commit of a hub model.
        :param cache_dir: Hugging Face cache folder.
        :param local_files_only: Read from the cache only, never download.
        """
        _JinaV3SparseEmbedder.__init__(self, model, revision, cache_dir, local_files_only)

    @component.output_types(sparse_embedding=SparseEmbedding)
    def run(self, text: str) -> dict[str, Any]:
        """``{"sparse_embedding": SparseEmbedding}`` of one string (each distinct term weighs 1)."""
        if not isinstance(text, str):
            raise TypeError("JinaV3SparseTextEmbedder expects a string as input. "
                            "To embed a list of Documents, use JinaV3SparseDocumentEmbedder.")
        return {"sparse_embedding": _sparse_embedding(self._encoder().encode_queries([text])[0])}


@component
class JinaV3SparseDocumentEmbedder(_JinaV3SparseEmbedder):
    """Sets each document's ``sparse_embedding`` (BM25 term weights over the model's own pieces); use it beside
    ``JinaV3DocumentEmbedder`` to fill a ``QdrantDocumentStore(use_sparse_embeddings=True, sparse_idf=True)``."""

    def __init__(self, model: str = shared.DEFAULT_MODEL, revision: str | None = None, cache_dir: str | None = None,
                 local_files_only: bool = False, meta_fields_to_embed: list[str] | None = None,
                 embedding_separator: str = "\n") -> None:
        """
        :param model: Hugging Face hub id or local folder: only its ``tokenizer.json`` is read.
        :param revision: Branch, tag or commit of a hub model.
        :param cache_dir: Hugging Face cache folder.
        :param local_files_only: Read from the cache only, never download.
        :param meta_fields_to_embed: Metadata fields whose values are matched along with the content.
        :param embedding_separator: Joins those values and the content.
        """
        _JinaV3SparseEmbedder.__init__(self, model, revision, cache_dir, local_files_only)
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator = embedding_separator

    def _init_parameters(self) -> dict[str, Any]:
        return {**_JinaV3SparseEmbedder._init_parameters(self), "meta_fields_to_embed": self.meta_fields_to_embed,
                "embedding_separator": self.embedding_separator}

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        """``{"documents": [...]}``, each with ``sparse_embedding`` set, in input order."""
        if not isinstance(documents, list) or not all(isinstance(d, Document) for d in documents):
            raise TypeError("JinaV3SparseDocumentEmbedder expects a list of Documents as input. "
                            "To embed a string, use JinaV3SparseTextEmbedder.")
        if not documents:
            return {"documents": []}
        texts = [self.embedding_separator.join([*(str(d.meta[k]) for k in self.meta_fields_to_embed
                                                  if d.meta.get(k) is not None), d.content or ""])
                 for d in documents]
        vectors = self._encoder().encode_documents(texts)
        return {"documents": [replace(d, sparse_embedding=_sparse_embedding(v))
                              for d, v in zip(documents, vectors, strict=True)]}
