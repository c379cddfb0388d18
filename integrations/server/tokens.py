"""Token counts and token-id inputs, worked out before a request is queued.

The scheduler batches by tokens, ``truncate=false`` refuses an input over the model's length before
it costs a forward pass, and ``usage`` reports what the model ran. All of it needs each input's
length as the Encoder will tokenise it: the task instruction in front, ``<s>``/``</s>`` around.

The server tokenises with its OWN copy of the Encoder's tokenizer, in ONE thread of its own: a fast
tokenizer must not be called from two threads at once, and the Encoder's worker thread is using
the original. So the event loop never tokenises, and never waits on the model to.
"""

from __future__ import annotations

import asyncio
import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from jinav3.errors import InvalidArgumentError
from jinav3.late_chunking import check_window
from jinav3.validation import int_in_range

from .errors import ApiError
from .validation import CHUNKS, IDS, LATE, EmbedPlan

_UNLIMITED = 1 << 40  # the copy counts every token; truncation is decided here, not by the tokenizer


@dataclass(frozen=True)
class Prepared:
    """A plan's items as the worker runs them, and their token counts."""

    items: list         # texts, or full id sequences (<s>, instruction, ids, </s>)
    tokens: list[int]   # per item; for late chunking one count, the whole document's
    truncated: int      # how many inputs were cut to the model's length
    spans: list[tuple[int, int]] | None = None  # CHUNKS: each chunk's (start, end) in the document


class Tokens:
    def __init__(self, encoder):
        self._encoder = encoder
        self._tokenizer = copy.deepcopy(encoder.tokenizer)
        self._tokenizer.model_max_length = _UNLIMITED  # no "longer than the maximum" warning: we check
        self.max_length = int(encoder.max_length)
        self.bos = self._tokenizer.cls_token_id
        self.eos = self._tokenizer.sep_token_id
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jinav3-tokenize")
        self._instruction_ids: dict[str | None, list[int]] = {}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn, *args):
        """``fn(*args)`` on the tokenizing thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # ----------------------------------------------------------------------------- embeddings
    def prepare(self, plan: EmbedPlan) -> Prepared:
        """Count (and for token ids, assemble) every input; 422 for one over the length without truncate."""
        if plan.kind in (LATE, CHUNKS):  # one document: the pieces joined by a space after the instruction, as the
            document = self._encoder.instruction(plan.task) + " ".join(plan.items)  # library does
            spans = None
            try:
                check_window(plan.options.get("window"), plan.options.get("overlap"), self.max_length)
                if plan.kind == CHUNKS:  # the Encoder's own planning (its tokenizer, under its lock)
                    spans = self._encoder.chunk_spans(plan.items, task=plan.task, chunker=_chunker(plan.options),
                                                      chunk_size=plan.options.get("chunk_size"))[0]
            except InvalidArgumentError as error:
                raise ApiError.from_library(error) from None
            return Prepared(plan.items, [self._count([document])[0]], 0, spans)
        limit = self.max_length
        if "max_length" in plan.options:
            try:
                limit = int_in_range(plan.options["max_length"], "max_length", 2, self.max_length,
                                     note="(the model's maximum)")
            except InvalidArgumentError as error:
                raise ApiError.from_library(error, "max_length") from None
        if plan.kind == IDS:
            sequences = [self._with_specials(ids, plan.task) for ids in plan.items]
            counts = [len(s) for s in sequences]
        else:
            prefix = self._encoder.instruction(plan.task)
            sequences = plan.items
            counts = self._count([prefix + text for text in plan.items])
        over = [i for i, n in enumerate(counts) if n > limit]
        if over and not plan.truncate:
            i = over[0]
            more = f" ({len(over) - 1} more inputs are too long as well)" if len(over) > 1 else ""
            raise ApiError(422, f"input[{i}]: {counts[i]} tokens (task instruction and <s>, </s> included) are more "
                                f"than the model's maximum of {self.max_length}{more}; shorten it, or send "
                                "truncate=true to cut it", param=f"input[{i}]", code="input_too_long")
        if plan.kind == IDS:  # cut as the tokenizer truncates text: keep </s>
            sequences = [s if len(s) <= limit else s[: limit - 1] + [self.eos] for s in sequences]
        return Prepared(sequences, [min(n, limit) for n in counts], len(over))

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
