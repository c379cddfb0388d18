"""``jinav3 index``'s progress: documents, chunks and tokens counted as each batch is embedded."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from jinav3.integrations.embedded_tokens import embedded_tokens, text_room, truncation_warning

if TYPE_CHECKING:
    from jinav3.protocol import TextEncoder


def rate(amount: float, seconds: float) -> str:
    return f"{amount / seconds:,.1f}" if seconds > 0 else "-"


class IndexProgress:
    """Wraps the Encoder for a store's ``add``: counts documents, chunks and tokens as each batch is
    embedded, and moves the progress bar (documents/s, tokens/s). Everything else is the encoder's."""

    def __init__(self, encoder: TextEncoder, total: int, quiet: bool) -> None:
        from tqdm.auto import tqdm

        self._encoder = encoder
        self.documents = self.chunks = self.tokens = 0
        self.truncated = 0  # documents cut at the model's length (embedded whole)
        self.first_truncated: str | None = None  # the first one's text, to find its file:line
        self.room: int | None = None  # tokens of a text embedded whole, when known
        self._used = int(getattr(encoder, "tokens_used", 0) or 0)
        self.started = time.perf_counter()
        # disable=None: draw only on a terminal, so logs and pipes stay clean
        self.bar = tqdm(total=total, unit="doc", desc="Indexing", disable=True if quiet else None,
                        file=sys.stderr, dynamic_ncols=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def encode(self, texts, *args, **kwargs):
        vectors = self._encoder.encode(texts, *args, **kwargs)
        self._step([texts] if isinstance(texts, str) else list(texts), 1 if isinstance(texts, str) else len(vectors),
                   kwargs.get("task"), kwargs.get("max_length"), whole=not kwargs.get("late_chunking"))
        return vectors

    def late_chunk_documents(self, documents, *args, **kwargs):
        chunked = self._encoder.late_chunk_documents(documents, *args, **kwargs)
        self._step(list(documents), sum(len(chunks) for chunks in chunked), kwargs.get("task"), None, whole=False)
        return chunked

    def _step(self, texts: list[str], chunks: int, task: str | None, max_length: int | None, whole: bool) -> None:
        self.documents += len(texts)
        self.chunks += chunks
        used = getattr(self._encoder, "tokens_used", None)  # a RemoteEncoder: the tokens the server reports
        if used is None:
            counts, truncated = embedded_tokens(self._encoder, texts, task, max_length, whole)
            self.tokens += sum(counts)
            if truncated:
                self.truncated += len(truncated)
                self.first_truncated = self.first_truncated or texts[truncated[0]]
                self.room = text_room(self._encoder, task, max_length)
        else:
            self.tokens, self._used = self.tokens + used - self._used, used
        self.bar.update(len(texts))
        self.bar.set_postfix_str(f"{rate(self.tokens, time.perf_counter() - self.started)} tokens/s", refresh=False)

    def close(self) -> float:
        self.bar.close()
        return time.perf_counter() - self.started

    def truncation_warning(self, located: list[tuple[str, dict[str, Any]]]) -> str | None:
        """One warning for every document cut at the model's length, naming the first by file:line."""
        if not self.truncated or self.room is None:
            return None
        where = next((w for w, record in located if record["text"] == self.first_truncated), "?")
        return truncation_warning(self.truncated, self.room, where)
