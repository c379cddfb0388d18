"""Token-budget batches over length-sorted inputs.

Sorting by length means each padded batch wastes almost nothing; a budget in tokens instead of a
fixed row count keeps memory flat: many short texts or few long ones per pass. A padded batch costs
rows x longest row; a packed (padding-free) one costs the sum of its rows' lengths.

``windowed_batches`` does the same over a stream of tokenised chunks (the encode pipeline), so the
first batch can run before the last text is tokenised.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

Row = tuple[int, list[int]]  # (index of the text in the caller's input, its token ids)

# How many batches' worth of tokens a window gathers before it is sorted and cut. Padded rows need
# neighbours of a similar length, so a wide window; packed rows cost the same in any company.
PADDED_WINDOW_BATCHES = 16
PACKED_WINDOW_BATCHES = 2


def token_budget_batches(lengths: Sequence[int], max_tokens: int, max_rows: int | None = None,
                         packed: bool = False) -> Iterator[list[int]]:
    """Yield lists of indices into ``lengths``, longest first. Each batch costs at most ``max_tokens``:
    rows x longest when padded, the sum of lengths when ``packed`` (a single row longer than the
    budget still gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    tokens = 0  # the batch's sum of lengths so far (the packed cost; padded batches use rows x first row)
    for i in order:
        cost = tokens + lengths[i] if packed else (len(batch) + 1) * (lengths[batch[0]] if batch else lengths[i])
        full = batch and (cost > max_tokens or (max_rows is not None and len(batch) >= max_rows))
        if full:
            yield batch
            batch, tokens = [], 0
        batch.append(i)
        tokens += lengths[i]
    if batch:
        yield batch


def windowed_batches(chunks: Iterable[list[Row]], max_tokens: int, max_rows: int | None = None,
                     packed: bool = False) -> Iterator[list[Row]]:
    """``token_budget_batches`` over a stream of chunks of rows: rows gather until a window of
    (PACKED|PADDED)_WINDOW_BATCHES budgets (or the stream's end), are sorted and cut into batches.
    The window's last batch, usually not full, waits for the next window's rows."""
    window = max_tokens * (PACKED_WINDOW_BATCHES if packed else PADDED_WINDOW_BATCHES)
    pool: list[Row] = []
    pooled = 0
    for chunk in chunks:
        pool.extend(chunk)
        pooled += sum(len(ids) for _, ids in chunk)
        if pooled < window:
            continue
        batches = list(token_budget_batches([len(ids) for _, ids in pool], max_tokens, max_rows, packed))
        for batch in batches[:-1]:
            yield [pool[i] for i in batch]
        pool = [pool[i] for i in batches[-1]]
        pooled = sum(len(ids) for _, ids in pool)
    for batch in token_budget_batches([len(ids) for _, ids in pool], max_tokens, max_rows, packed):
        yield [pool[i] for i in batch]


def padded(ids: Sequence[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """One padded batch: (B, S) int64 ids and attention mask, and whether every row has the same length.
    Then the model gets no mask at all: a mask becomes a (B, 1, S, S) tensor (470 MB for 7 windows of
    8,194 tokens) that keeps SDPA off its flash kernel, and transformers checks it on the host (a device
    wait) once per forward."""
    longest = max(len(row) for row in ids)
    input_ids = np.full((len(ids), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), longest), dtype=np.int64)
    for r, row in enumerate(ids):
        input_ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
    return input_ids, mask, all(len(row) == longest for row in ids)
