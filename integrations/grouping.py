"""Late chunking in the frameworks: which pieces (Haystack Documents, LangChain Documents, LlamaIndex nodes)
are chunks of one source, and in what order. One helper, so the three adapters group alike; each says only
where its framework keeps a piece's source and position."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from jinav3.errors import invalid


def late_chunk_groups(texts: Sequence[str], sources: Sequence[Hashable | None],
                      positions: Sequence[Sequence[Any]] = (),
                      source_argument: Callable[[int], str] | None = None) -> tuple[list[list[int]], list[int]]:
    """Row numbers grouped by source (groups in first-seen order), and the rows to embed alone: those without
    a source (None) and blank ones (a blank piece has no tokens to pool).

    positions: candidate orders, each one position per row (None where unknown); a group is sorted by the first
    that knows every one of its rows (stable: ties keep input order), else kept in input order.
    source_argument: names a row's source for the error when it cannot name one (an unhashable list or dict);
    None lets the TypeError through."""
    groups: dict[Hashable, list[int]] = {}
    alone: list[int] = []
    for row, source in enumerate(sources):
        if source is None or not texts[row].strip():
            alone.append(row)
            continue
        try:
            groups.setdefault(source, []).append(row)
        except TypeError:
            if source_argument is None:
                raise
            raise invalid(source_argument(row), f"must name a source (a str or number), got "
                                                f"{type(source).__name__}") from None
    ordered = []
    for rows in groups.values():
        for position in positions:
            if all(position[r] is not None for r in rows):
                rows = sorted(rows, key=position.__getitem__)
                break
        ordered.append(rows)
    return ordered, alone
