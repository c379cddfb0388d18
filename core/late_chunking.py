"""Late chunking: embed a whole document once, then pool each chunk's own tokens.

Every chunk vector sees the entire document. The pieces:

  chunkers      document -> character spans (sentences, fixed token counts, or the caller's spans)
  token_spans   character spans -> token spans via the tokenizer's offset mapping, reference
                convention: the first span also covers <s> and the instruction, the last </s>
  windows       a document longer than `window` tokens is cut into raw slices of `window` tokens
                that overlap by `overlap`; every slice after the first drops its first `overlap`
                outputs, so each token keeps exactly one state (jina-ai/late-chunking's
                `_embed_with_overlap`)
  window_batches  plans each forward pass on the host: its windows, and for every kept token state
                the span(s) it adds to; the device sums them (``packing.span_sums``) and only the
                (spans x hidden) sums come back, so memory and traffic stay (spans x hidden) however
                long the document is

Windows of many documents share forward passes as separate rows of a batch: attention never
crosses a row, so results equal one document at a time.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import invalid
from .validation import chunker_arguments, int_in_range, is_integer

# This module needs no torch (RemoteEncoder imports it): the device work is packing.span_sums.

DEFAULT_OVERLAP = 256
# A sentence ends at . ! ? (and their full-width forms) followed by whitespace, at CJK 。！？ (no
# space needed), or at a line break.
_SENTENCE_END = re.compile(r"[.!?\uff0e\uff01\uff1f](?=\s)|[\u3002\uff01\uff1f]|\n")


@dataclass(frozen=True)
class Chunk:
    """One chunk of a document: ``document[start:end] == text``, embedded in the document's context."""

    index: int
    text: str
    start: int
    end: int
    embedding: np.ndarray = field(repr=False)


@dataclass
class TokenizedDocument:
    """One sequence to late-chunk: its token ids and the token spans to pool (reference convention)."""

    ids: list[int]
    spans: list[tuple[int, int]]


# ------------------------------------------------------------------------------------------- chunkers
def sentence_spans(document: str) -> list[tuple[int, int]]:
    """Character spans of sentences (multilingual), whitespace trimmed, never empty."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(document):
        spans.append((start, match.end()))
        start = match.end()
    spans.append((start, len(document)))
    return [s for s in (trim_span(document, a, b) for a, b in spans) if s is not None]


def trim_span(document: str, start: int, end: int) -> tuple[int, int] | None:
    """``(start, end)`` without surrounding whitespace, or None when nothing is left."""
    while start < end and document[start].isspace():
        start += 1
    while end > start and document[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def check_char_spans(spans: Iterable[Any], length: int) -> list[tuple[int, int]]:
    """The caller's (start, end) character spans: integers, in range, non-empty, ordered, not overlapping
    (``spans`` is whatever the caller passed: every entry is checked here)."""
    checked: list[tuple[int, int]] = []
    for i, span in enumerate(spans):
        try:
            start, end = span
        except (TypeError, ValueError):
            raise invalid(f"chunker[{i}]", f"must be a (start, end) pair of character offsets, got {span!r}") from None
        if not (is_integer(start) and is_integer(end)):
            raise invalid(f"chunker[{i}]", f"offsets must be integers, got {span!r}")
        if not 0 <= start < end <= length:
            raise invalid(f"chunker[{i}]", f"span {tuple(span)} is out of range: need 0 <= start < end <= {length}")
        if checked and start < checked[-1][1]:
            raise invalid(f"chunker[{i}]", f"span {tuple(span)} overlaps or precedes the previous span {checked[-1]}")
        checked.append((int(start), int(end)))
    return checked


# ------------------------------------------------------------------------------------------- spans
def token_spans_for_chars(
    offsets: Sequence[tuple[int, int]], first: int, stop: int, char_spans: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Token spans (reference convention) for character spans, from the offset mapping.

    Tokens ``first..stop-1`` are the text's tokens (after <s> and the instruction, before </s>).
    Chunk i owns the tokens whose last character lies before its end and after the previous chunk's
    end, so spans are contiguous and cover every token (the ``▁`` of a joining space goes to the
    following chunk, as in the golden). The first span starts at 0 (<s> and the instruction), the
    last ends after </s>. A chunk too small to own a token pools the token holding its first character.
    """
    last_chars, running = [], -1
    for t in range(first, stop):  # running max: offsets of a lone "▁" can overlap the next token's
        running = max(running, offsets[t][1] - 1)
        last_chars.append(running)
    spans, begin = [], first
    for i, (char_start, char_end) in enumerate(char_spans):
        end = first + bisect.bisect_left(last_chars, char_end)  # tokens ending before char_end
        if i == len(char_spans) - 1:
            end = stop
        if end > begin:
            spans.append((begin, end))
            begin = end
        else:  # no whole token of its own: pool the token that holds its first character
            holder = first + min(bisect.bisect_left(last_chars, char_start), stop - first - 1)
            spans.append((holder, holder + 1))
    spans[0] = (0, spans[0][1])
    spans[-1] = (spans[-1][0], stop + 1)
    return spans


def fixed_token_spans(
    offsets: Sequence[tuple[int, int]], first: int, stop: int, chunk_size: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """``chunk_size`` text tokens per chunk (the golden's fixed chunking): the token spans to pool
    (reference convention) and each chunk's character span (first to last character of its tokens)."""
    tokens = [(i, min(i + chunk_size, stop)) for i in range(first, stop, chunk_size)]
    chars = [(offsets[a][0], offsets[b - 1][1]) for a, b in tokens]
    spans = list(tokens)
    spans[0] = (0, spans[0][1])
    spans[-1] = (spans[-1][0], stop + 1)
    return spans, chars


def make_chunks(document: str, char_spans: Sequence[tuple[int, int]], vectors: np.ndarray) -> list[Chunk]:
    """Chunks with whitespace-trimmed text (``document[start:end] == text``); a span with nothing
    but whitespace gives no chunk. Numbered in order from 0."""
    chunks: list[Chunk] = []
    for (start, end), vector in zip(char_spans, vectors, strict=True):  # one vector per span
        trimmed = trim_span(document, start, end)
        if trimmed is not None:
            a, b = trimmed
            chunks.append(Chunk(len(chunks), document[a:b], a, b, vector))
    return chunks


# ------------------------------------------------------------------------------------------- planning
# (ids, offsets, first, stop): a whole text's token ids and offset mapping (no truncation: windows
# handle length) and the token range [first, stop) of the text after the instruction (<s> before
# it, </s> at stop).
Offsets = tuple[list[int], list[tuple[int, int]], int, int]
# (text, how many characters of instruction are in front of the text) -> Offsets
TokenizeWithOffsets = Callable[[str, int], Offsets]


def tokenize_with_offsets(tokenizer: Any, text: str, instruction_chars: int) -> Offsets:
    """``TokenizeWithOffsets`` for a transformers fast tokenizer."""
    encoded = tokenizer(text, return_offsets_mapping=True, return_attention_mask=False, verbose=False)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    stop = len(ids) - 1
    first = 1
    while first < stop and offsets[first][1] < instruction_chars:  # instruction tokens end before the text
        first += 1
    return ids, offsets, first, stop


@dataclass
class PlannedDocument:
    """One non-blank document ready to late-chunk: where it was in the caller's list, its tokens with
    the token spans to pool, and each chunk's character span in the document itself."""

    index: int
    tokens: TokenizedDocument
    char_spans: list[tuple[int, int]]


def plan_documents(
    documents: Sequence[str],
    instruction: str,
    chunker: str | Sequence[tuple[int, int]],
    chunk_size: int | None,
    tokenize: TokenizeWithOffsets,
) -> list[PlannedDocument]:
    """Check the chunker arguments, then tokenise every non-blank document behind ``instruction`` and find its
    chunks: character spans in the document and the token spans (reference convention) to pool."""
    chunker_arguments(chunker, chunk_size, len(documents))
    spans = None if isinstance(chunker, str) else check_char_spans(chunker, len(documents[0]))
    planned = []
    for d, document in enumerate(documents):
        if not document.strip():
            continue
        ids, offsets, first, stop = tokenize(instruction + document, len(instruction))
        if chunker == "tokens":
            assert chunk_size is not None  # chunker_arguments refuses chunker="tokens" without a chunk_size
            token_spans, text_spans = fixed_token_spans(offsets, first, stop, chunk_size)
        else:
            chars = sentence_spans(document) if spans is None else spans
            text_spans = [(a + len(instruction), b + len(instruction)) for a, b in chars]
            token_spans = token_spans_for_chars(offsets, first, stop, text_spans)
        # offsets count the instruction in front of the document: back to the document's own
        char_spans = [(max(a - len(instruction), 0), b - len(instruction)) for a, b in text_spans]
        planned.append(PlannedDocument(d, TokenizedDocument(ids, token_spans), char_spans))
    return planned


def plan_pieces(pieces: Sequence[str], instruction: str, tokenize: TokenizeWithOffsets) -> TokenizedDocument:
    """``encode(..., late_chunking=True)``: the pieces are consecutive parts of ONE document, joined by
    one space after the instruction (Jina API semantics); one token span per piece."""
    char_spans: list[tuple[int, int]] = []
    position = len(instruction)
    for piece in pieces:
        char_spans.append((position, position + len(piece)))
        position += len(piece) + 1
    ids, offsets, first, stop = tokenize(instruction + " ".join(pieces), len(instruction))
    return TokenizedDocument(ids, token_spans_for_chars(offsets, first, stop, char_spans))


# ------------------------------------------------------------------------------------------- windows
def windows(length: int, window: int, overlap: int) -> list[tuple[int, int, int]]:
    """(start, end, keep_from) of each macro window: raw slices of ``window`` tokens every
    ``window - overlap`` tokens; outputs before ``keep_from`` (the overlap) are dropped."""
    if length <= window:
        return [(0, length, 0)]
    step = window - overlap
    return [(i, min(i + window, length), 0 if i == 0 else overlap) for i in range(0, length, step)]


def check_window(window: int | None, overlap: int | None, max_length: int) -> tuple[int, int]:
    """Checked ``(window, overlap)``; None means ``max_length`` tokens, and an overlap of
    DEFAULT_OVERLAP (at most half the window)."""
    window = int_in_range(max_length if window is None else window, "window", 2, max_length, note="tokens")
    overlap = min(DEFAULT_OVERLAP, window // 2) if overlap is None else overlap
    return window, int_in_range(overlap, "overlap", 0, window - 1, note="(window - 1)")


@dataclass
class WindowBatch:
    """One forward pass of late chunking: its windows, and which token states add to which span.

    ``rows``: the token ids of each window (one row of the batch). For each (token, span) pair to add,
    P pairs in all: ``row`` (P,) the window, ``position`` (P,) the token's position in that window,
    ``span`` (P,) the span, numbered across all documents (see :func:`span_offsets`). A token belongs
    to one span, except where a chunk too small to own a token shares its neighbour's."""

    rows: list[list[int]]
    row: np.ndarray
    position: np.ndarray
    span: np.ndarray


def span_offsets(documents: Sequence[TokenizedDocument]) -> list[int]:
    """Where each document's spans start in the numbering across documents; the last entry is the total."""
    offsets = [0]
    for doc in documents:
        offsets.append(offsets[-1] + len(doc.spans))
    return offsets


def _pairs(spans: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """For the tokens ``lo .. hi-1`` of a document and its (S, 2) token spans: every (span, token)
    pair where the token lies in the span, as two (P,) arrays (span index, token position)."""
    start, stop = np.maximum(spans[:, 0], lo), np.minimum(spans[:, 1], hi)
    count = np.clip(stop - start, 0, None)
    touched = np.flatnonzero(count)
    start, count = start[touched], count[touched]
    span = np.repeat(touched, count)
    first = np.repeat(np.cumsum(count) - count, count)  # where each span's run of pairs begins
    token = np.arange(int(count.sum()), dtype=np.int64) - first + np.repeat(start, count)
    return span, token


def window_batches(
    documents: list[TokenizedDocument],
    window: int,
    overlap: int,
    max_tokens: int,
    batch: Callable[[list[int], int], Iterable[list[int]]],
) -> Iterator[WindowBatch]:
    """Every window of every document as one row of a token-budget batch (``batch(lengths, budget)``
    gives the rows of each pass), with the (token, span) pairs that pool its kept states."""
    offsets = span_offsets(documents)
    spans = [np.asarray(doc.spans, dtype=np.int64).reshape(-1, 2) for doc in documents]
    rows = [(d, start, keep, doc.ids[start:end])
            for d, doc in enumerate(documents) for start, end, keep in windows(len(doc.ids), window, overlap)]
    for indices in batch([len(r[3]) for r in rows], max_tokens):
        row, position, span = [], [], []
        for r, i in enumerate(indices):
            d, start, keep, ids = rows[i]
            s, token = _pairs(spans[d], start + keep, start + len(ids))  # the states this window keeps
            row.append(np.full(len(s), r, dtype=np.int64))
            position.append(token - start)
            span.append(s + offsets[d])
        yield WindowBatch([rows[i][3] for i in indices], np.concatenate(row), np.concatenate(position),
                          np.concatenate(span))


def span_means(sums: np.ndarray, documents: Sequence[TokenizedDocument]) -> list[np.ndarray]:
    """(all spans, H) sums numbered as :func:`span_offsets` -> per document, (spans, H) float32 means."""
    offsets = span_offsets(documents)
    out = []
    for d, doc in enumerate(documents):
        counts = np.array([b - a for a, b in doc.spans], dtype=np.float32)[:, None]
        out.append(sums[offsets[d] : offsets[d + 1]] / counts)
    return out
