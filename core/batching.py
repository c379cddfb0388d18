"""Token-budget batches over length-sorted inputs.

Sorting by length means each padded batch wastes almost nothing; a budget in tokens (rows x longest
row) instead of a fixed row count keeps memory flat: many short texts or few long ones per pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def token_budget_batches(lengths: Sequence[int], max_tokens: int, max_rows: int | None = None) -> Iterator[list[int]]:
    """Yield lists of indices into ``lengths``, longest first; each batch's rows x longest <= max_tokens
    (a single row longer than the budget still gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for i in order:
        longest = lengths[batch[0]] if batch else lengths[i]
        full = batch and ((len(batch) + 1) * longest > max_tokens or (max_rows is not None and len(batch) >= max_rows))
        if full:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch
