"""The small encoder protocol the store adapters depend on.

``jinav3.Encoder`` speaks it; so can any other backend (a client of a remote embedding server, a
cache in front of the model) and the Qdrant, Milvus and Pinecone helpers take it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from .tasks import DEFAULT_TASK, RETRIEVAL_PASSAGE

if TYPE_CHECKING:
    from .late_chunking import Chunk


@runtime_checkable
class TextEncoder(Protocol):
    @property
    def name(self) -> str:
        """The model's identity (jinav3.identity), recorded in a collection's signature (read, never set)."""

    def output_size(self, dimensions: int | None = None) -> int:
        """The vector size ``encode`` returns for ``dimensions`` (None: the full size)."""

    def encode(self, texts: str | Sequence[str], task: str | None | Sequence[str | None] = DEFAULT_TASK,
               dimensions: int | None = None, normalize: bool = True, max_length: int | None = None,
               late_chunking: bool = False, batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        """float32 vectors, (n, d) for a list; the Jina API's ``task`` / ``dimensions`` / ``late_chunking``."""

    def late_chunk_documents(self, documents: Sequence[str], task: str | None = RETRIEVAL_PASSAGE,
                             chunker: str | Sequence[tuple[int, int]] = "sentences", chunk_size: int | None = None,
                             window: int | None = None, overlap: int | None = None, dimensions: int | None = None,
                             normalize: bool = True) -> "list[list[Chunk]]":
        """One list of ``jinav3.Chunk`` (index, text, start, end, embedding) per document.

        An encoder may also offer ``chunk_spans(documents, task=, chunker=, chunk_size=)`` (where the
        chunks fall, without embedding); stores then check every chunk before writing anything."""
