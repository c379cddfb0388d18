"""Token counts and token-id inputs, worked out before a request is queued.

The scheduler batches by tokens, ``truncate=false`` refuses an input over the model's length before
it costs a forward pass, and ``usage`` reports what the model ran. All of it needs each input's
length as the Encoder will tokenise it: the task instruction in front, ``<s>``/``</s>`` around.

The server tokenises with its OWN copy of the Encoder's tokenizer, in ONE thread of its own: a fast
tokenizer must not be called from two threads at once, and the Encoder's worker thread is using
the original. So the event loop never tokenises, and never waits on the model to. Late-chunking
documents (any length: a 1 MB one takes seconds) are planned on a second thread with a second
copy, so that queries are not tokenised behind them.
"""

from __future__ import annotations

import asyncio
import copy
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from jinav3 import late_chunking as lc
from jinav3.errors import InvalidArgumentError
from jinav3.pooling import cut_and_normalize
from jinav3.validation import int_in_range

from .errors import ApiError
from .validation import CHUNKS, IDS, LATE, EmbedPlan

_UNLIMITED = 1 << 40  # the copy counts every token; truncation is decided here, not by the tokenizer


@dataclass(frozen=True)
class Prepared:
    """A plan's items as the worker runs them, and their token counts."""

    items: list         # texts, full id sequences (<s>, instruction, ids, </s>), or for late chunking [LateDocument]
    tokens: list[int]   # per item; for late chunking one count, the whole document's
    truncated: int      # how many inputs were cut to the model's length
    spans: list[tuple[int, int]] | None = None  # CHUNKS: each chunk's (start, end) in the document
    kind: str | None = None  # the kind the scheduler runs, where not the plan's (texts sent as ids: /embed_all)


@dataclass(frozen=True)
class LateDocument:
    """One late-chunking document planned as the Encoder plans it (``jinav3.late_chunking``): its token ids
    and the token spans to pool, the windows the model runs over it (the scheduler runs them a few at a
    time, so other requests interleave), and for a chunker the text and its chunks' character spans."""

    tokens: lc.TokenizedDocument
    windows: list[tuple[int, int, int]]  # (start, end, keep_from), lc.windows
    text: str | None = None               # CHUNKS: the document, for make_chunks
    char_spans: list[tuple[int, int]] | None = None

    def vectors(self, means: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
        """The answer's rows from the pooled span means: one per piece (LATE), or one per chunk that is not
        blank (CHUNKS), as ``Encoder.encode(late_chunking=True)`` / ``late_chunk`` give them."""
        vectors = cut_and_normalize(means, dimensions, normalize)
        if self.text is None or self.char_spans is None:
            return vectors
        chunks = lc.make_chunks(self.text, self.char_spans, vectors)
        return np.stack([c.embedding for c in chunks]) if chunks else np.zeros((0, 0), np.float32)


class Tokens:
    def __init__(self, encoder):
        self._encoder = encoder
        self._tokenizer = copy.deepcopy(encoder.tokenizer)
        self._tokenizer.model_max_length = _UNLIMITED  # no "longer than the maximum" warning: we check
        self.max_length = int(encoder.max_length)
        self.bos = self._tokenizer.cls_token_id
        self.eos = self._tokenizer.sep_token_id
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jinav3-tokenize")
        self._document_tokenizer = copy.deepcopy(self._tokenizer)  # only ever used on _documents' thread
        self._documents = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jinav3-tokenize-documents")
        self._instruction_ids: dict[str | None, list[int]] = {}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._documents.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn, *args):
        """``fn(*args)`` on the tokenizing thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def prepare_plan(self, plan: EmbedPlan) -> Prepared:
        """``prepare(plan)`` on its thread: late-chunking documents on their own, everything else on the other."""
        pool = self._documents if plan.kind in (LATE, CHUNKS) else self._pool
        return await asyncio.get_running_loop().run_in_executor(pool, self.prepare, plan)

    # ----------------------------------------------------------------------------- embeddings
    def prepare(self, plan: EmbedPlan) -> Prepared:
        """Count (and for token ids, assemble) every input; 422 for one over the length without truncate. Runs on
        a tokenizing thread: call it through ``prepare_plan``."""
        if plan.kind in (LATE, CHUNKS):
            try:
                document = self._plan_late(plan)
            except InvalidArgumentError as error:
                raise ApiError.from_library(error) from None
            spans = None
            if document.text is not None and document.char_spans is not None:  # where each chunk is, as chunk_spans
                trimmed = (lc.trim_span(document.text, a, b) for a, b in document.char_spans)
                spans = [span for span in trimmed if span is not None]
            return Prepared([document], [len(document.tokens.ids)], 0, spans)
        limit = self.max_length
        if "max_length" in plan.options:
            try:
                limit = int_in_range(plan.options["max_length"], "max_length", 2, self.max_length,
                                     note="(the model's maximum)")
            except InvalidArgumentError as error:
                raise ApiError.from_library(error, "max_length") from None
        prefix = "" if plan.kind == IDS else self._encoder.instruction(plan.task)
        sequences: list  # texts, or full id sequences
        if plan.kind == IDS:
            sequences = [self._with_specials(ids, plan.task) for ids in plan.items]
            counts = [len(s) for s in sequences]
        else:
            sequences = plan.items
            counts = self._count([prefix + text for text in plan.items])
        over = [i for i, n in enumerate(counts) if n > limit]
        if over and not plan.truncate:
            i, field = over[0], plan.field
            more = f" ({len(over) - 1} more inputs are too long as well)" if len(over) > 1 else ""
            raise ApiError(422, f"{field}[{i}]: {counts[i]} tokens (task instruction and <s>, </s> included) are more "
                                f"than the model's maximum of {self.max_length}{more}; shorten it, or send "
                                "truncate=true to cut it", param=f"{field}[{i}]", code="input_too_long")
        left = plan.truncation_direction == "left"
        if plan.kind != IDS and over and left:
            sequences = [self._tail(prefix, text, limit) if n > limit else text
                         for text, n in zip(sequences, counts, strict=True)]
        if plan.kind != IDS and plan.options.get("all_tokens"):  # every token's state: the ids the Encoder runs
            encoded = self._tokenizer([prefix + text for text in sequences], add_special_tokens=True, truncation=True,
                                      max_length=limit, return_attention_mask=False)["input_ids"]
            return Prepared(encoded, [len(ids) for ids in encoded], len(over), kind=IDS)
        if plan.kind == IDS:
            sequences = [s if len(s) <= limit else self._cut_ids(s, limit, left, plan.task) for s in sequences]
        return Prepared(sequences, [min(n, limit) for n in counts], len(over))

    def _tail(self, prefix: str, text: str, limit: int) -> str:
        """The longest tail of ``text`` that fits ``limit`` tokens behind the instruction, within <s>, </s>:
        text-embeddings-inference's truncation_direction=left, with the task instruction kept."""
        offsets = self._tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        drop = self._count([prefix + text])[0] - limit
        while 0 < drop < len(offsets):
            tail = text[offsets[drop][0]:]
            over = self._count([prefix + tail])[0] - limit  # a cut can merge or split a token at its edge
            if over <= 0:
                return tail
            drop += over
        return text if drop <= 0 else ""

    def _cut_ids(self, ids: list[int], limit: int, left: bool, task: str | None) -> list[int]:
        """An id sequence (<s>, instruction, text, </s>) cut to ``limit``: its text's end (right, as the tokenizer
        truncates), or with ``left`` its text's start, keeping <s>, the instruction and </s>."""
        head = 1 + len(self._instruction(task))
        keep = limit - head - 1
        if not left or keep <= 0:
            return ids[: limit - 1] + [self.eos]
        return ids[:head] + ids[len(ids) - 1 - keep:]

    def _plan_late(self, plan: EmbedPlan) -> LateDocument:
        """The library's planning (lc.plan_pieces / lc.plan_documents, lc.windows) with this thread's tokenizer:
        LATE joins the pieces by a space after the instruction, CHUNKS chunks its one document."""
        window, overlap = lc.check_window(plan.options.get("window"), plan.options.get("overlap"), self.max_length)
        instruction = self._encoder.instruction(plan.task)
        tokenize = functools.partial(lc.tokenize_with_offsets, self._document_tokenizer)
        text, char_spans = None, None
        if plan.kind == LATE:
            tokens = lc.plan_pieces(plan.items, instruction, tokenize)
        else:
            planned = lc.plan_documents(plan.items, instruction, _chunker(plan.options),
                                        plan.options.get("chunk_size"), tokenize)
            assert len(planned) == 1, "validation refuses a blank document"
            tokens, text, char_spans = planned[0].tokens, plan.items[0], planned[0].char_spans
        return LateDocument(tokens, lc.windows(len(tokens.ids), window, overlap), text, char_spans)

    def _count(self, texts: list[str]) -> list[int]:
        encoded = self._tokenizer(texts, add_special_tokens=True, truncation=False, return_attention_mask=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def _with_specials(self, ids: list[int], task: str | None) -> list[int]:
        """``<s>`` + the task instruction's ids + ``ids`` + ``</s>``: the ids of ``instruction + text`` when ``ids``
        are the text's (with or without its own ``<s>``/``</s>``, e.g. from /tokenize)."""
        body = ids[1:] if ids and ids[0] == self.bos else ids
        body = body[:-1] if body and body[-1] == self.eos else body
        return [self.bos, *self._instruction(task), *body, self.eos]

    def _instruction(self, task: str | None) -> list[int]:
        if task not in self._instruction_ids:
            text = self._encoder.instruction(task)
            self._instruction_ids[task] = self._tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        return self._instruction_ids[task]

    # ----------------------------------------------------------------------------- /tokenize
    def tokenize(self, texts: list[str], add_special_tokens: bool) -> list[list[dict]]:
        """text-embeddings-inference's /tokenize answer: per text its tokens {id, text, special, start, stop},
        ``start``/``stop`` character offsets into the text (null for special tokens)."""
        encoded = self._tokenizer(texts, add_special_tokens=add_special_tokens, return_offsets_mapping=True,
                                  return_special_tokens_mask=True, return_attention_mask=False)
        out = []
        for t, text in enumerate(texts):
            pieces = self._tokenizer.convert_ids_to_tokens(encoded["input_ids"][t])
            rows = zip(encoded["input_ids"][t], encoded["offset_mapping"][t], encoded["special_tokens_mask"][t], pieces,
                       strict=True)
            out.append([{"id": i, "text": piece, "special": True, "start": None, "stop": None} if special else
                        {"id": i, "text": text[a:b], "special": False, "start": a, "stop": b}
                        for i, (a, b), special, piece in rows])
        return out


def _chunker(options: dict) -> str | list[tuple[int, int]]:
    chunker = options["chunker"]
    return chunker if isinstance(chunker, str) else [tuple(span) for span in chunker]
