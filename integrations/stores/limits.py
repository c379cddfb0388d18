"""A store kind's limits on records and chunks, checked before anything is embedded or written.

Limits need no connection: ``jinav3 index`` checks every row of a corpus against them before it opens the
store, and Ray checks rows on its workers. Each store class names its limits (``Collection.record_limits()``);
a store with limits beyond the id length subclasses :class:`RecordLimits` in its own module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinav3.errors import invalid

from .records import CHUNK_SUFFIX_ROOM, Point, Record, normalize_record


@dataclass(frozen=True)
class RecordLimits:
    """The limits every store has: the length of an id (``max_id_bytes``, None: none) in bytes, chunk ids
    included. ``kind`` ("Qdrant", "Milvus", ...) names the store in messages."""

    kind: str = "store"
    max_id_bytes: int | None = None

    def check_record(self, item: Any, where: str, late_chunking: bool = False) -> Record:
        """One record normalised (:func:`~jinav3.integrations.stores.records.normalize_record`) and checked
        against these limits, as ``add`` checks each of its records; raises InvalidArgumentError naming ``where``."""
        record = normalize_record(item, where)
        self.check_fields(record, where, late_chunking)
        return record

    def check_fields(self, record: Record, where: str, late_chunking: bool) -> None:
        """The limits on a normalised record (its id, text, metadata). With ``late_chunking`` its chunks are
        checked once they are known (:meth:`check_chunk`), so the text itself is not limited here."""
        if self.max_id_bytes is None:
            return
        room = CHUNK_SUFFIX_ROOM if late_chunking else 0
        size = len(record.id.encode("utf-8"))
        if size + room > self.max_id_bytes:
            suffix = f" including the chunk suffix ({room} bytes)" if room else ""
            raise invalid(f"{where}.id", f"is {size} bytes; {self.kind} ids may have at most "
                                         f"{self.max_id_bytes} bytes{suffix}")

    def check_chunk(self, point: Point, where: str) -> None:
        """The limits on one chunk of a late-chunked record (its id, its text); ``where`` names the record."""
        if self.max_id_bytes is not None and len(point.key.encode("utf-8")) > self.max_id_bytes:
            raise invalid(f"{where}.id", f"chunk id {point.key!r} is longer than {self.max_id_bytes} bytes")


__all__ = ["RecordLimits"]
