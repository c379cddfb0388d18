"""Writing points: one batch in requests within a store's limits, then the stale points of its documents
removed (by key where points carry extents, stores/pruning.py; else by condition); the batch writer of
``VectorStore.add`` (one batch written while the next is embedded); an exact account of what landed when a
write fails."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .pruning import (
    Holding,
    Stamp,
    holding_from,
    later_chunk_keys,
    needs_later_chunks,
    new_extent,
    probe_keys,
    stale_keys,
)
from .records import WHOLE, Point

if TYPE_CHECKING:
    from .base import Collection


@dataclass
class WriteReport:
    """What an add() has written so far, filled in by the writer thread."""

    attempted: bool = False  # some points were sent to the store
    written: list[str] = field(default_factory=list)  # record ids whose every point is stored
    unpruned: list[str] = field(default_factory=list)  # written, but stale points may remain
    skipped: int = 0  # records already stored as they are (not embedded, not written)


class BatchFailure(Exception):
    """A batch's write failed for good: ``step`` says what (for the message), ``cause`` why."""

    def __init__(self, step: str, cause: BaseException):
        super().__init__(f"{step}: {cause}")
        self.step, self.cause = step, cause


class BatchWriter:
    """Runs ``write(points, batch)`` for one batch while the caller embeds the next (a one-worker
    executor); with ``overlap=False`` each write runs at once in the caller's thread. At most one
    write is in flight: :meth:`submit` first waits for the previous one and raises its error."""

    def __init__(self, write: Callable[..., None], overlap: bool):
        self._write = write
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jinav3-write") if overlap else None
        self._pending: Future | None = None

    def submit(self, *args: Any, **kwargs: Any) -> None:
        self.wait()
        if self._executor is None:
            self._write(*args, **kwargs)
        else:
            self._pending = self._executor.submit(self._write, *args, **kwargs)

    def wait(self) -> None:
        """Wait for the write in flight, if any; raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


# ============================================================================================ one batch
def chunk_counts(points: Sequence[Point], doc_ids: Sequence[str]) -> dict[str, int | None]:
    """Per document: how many chunks it was written with (None: written whole), from its points."""
    counts: dict[str, int | None] = {doc: None for doc in doc_ids}
    for p in points:
        if p.chunk != WHOLE:
            counts[p.doc_id] = max(counts[p.doc_id] or 0, p.chunk + 1)
    return counts


def split_requests(points: list[Point], max_points: int, max_bytes: int | None,
                   size_of: Callable[[Point], int]) -> list[list[Point]]:
    """``points`` in write requests of at most ``max_points`` points and (when set) ``max_bytes`` bytes."""
    out: list[list[Point]] = []
    current: list[Point] = []
    size = 0
    for p in points:
        extra = size_of(p) if max_bytes else 0
        if current and (len(current) >= max_points or (max_bytes and size + extra > max_bytes)):
            out.append(current)
            current, size = [], 0
        current.append(p)
        size += extra
    if current:
        out.append(current)
    return out


def write_batch(c: Collection, points: list[Point], doc_ids: list[str], report: WriteReport, label: str,
                chunks: Mapping[str, int | None] | None = None, held: Mapping[str, Holding] | None = None) -> None:
    """Write one batch's points (those of the documents ``doc_ids``) in requests within the store's
    limits, then remove the stale points of its documents. ``report`` learns which records landed
    whole, and which of those may still have stale points; a failure after retries raises BatchFailure.
    ``chunks`` gives each document's number of chunks when ``points`` may hold only some of them.
    ``held``: the documents' holdings when the caller has read them already (``add`` does, with the next
    batches' documents: :func:`read_holdings`); else they are read here."""
    keys_of: dict[str, list[str]] = {doc: [] for doc in doc_ids}
    for p in points:
        keys_of[p.doc_id].append(p.key)
    counted = chunk_counts(points, doc_ids)
    n_chunks = {doc: (chunks[doc] if chunks is not None and doc in chunks else counted[doc]) for doc in doc_ids}
    stored: set[str] = set()
    report.attempted = True
    try:
        if held is None and c.tracks_extents:
            held = read_holdings(c, doc_ids)
        if held is not None:
            for p in points:
                p.extent = new_extent(n_chunks[p.doc_id], held[p.doc_id])
        for request in c._requests(points):
            c._retry(functools.partial(c._upsert, request), f"upsert of {len(request)} points")
            stored.update(p.key for p in request)
    except Exception as e:
        _unsure(c, doc_ids, n_chunks, held)
        raise BatchFailure(f"writing {label}", e) from e
    finally:  # a record counts as written only when every one of its points is
        report.written += [doc for doc in doc_ids if all(k in stored for k in keys_of[doc])]
    try:
        if held is None:
            _prune_by_condition(c, n_chunks)
        else:
            _prune_by_key(c, points, n_chunks, held, {p.doc_id for p in points if p.chunk == 0},
                          every_point=chunks is None)
    except Exception as e:
        _unsure(c, doc_ids, n_chunks, held)
        report.unpruned += list(doc_ids)
        raise BatchFailure(f"removing stale points of {label}", e) from e


def read_holdings(c: Collection, doc_ids: Sequence[str], lookahead: Sequence[str] = (),
                  before_read: Callable[[], None] | None = None, wanted: Mapping[str, str] | None = None
                  ) -> dict[str, Holding]:
    """Per document, what it holds in the store before it is written again (stores/pruning.py): known without
    a request in a collection this object made, else read from two points per document, and the later chunks
    of a late-chunked document whose chunk 0 carries the fingerprint its new version has (``wanted``): is that
    version stored whole? Reads go out ``max_keys_per_read`` keys at a time: when these documents must be read,
    those of ``lookahead`` (the next batches of the same ``add``) are read along and kept until written (each
    read of a server can cost a consistency wait: Milvus's Strong reads wait ~200 ms). ``before_read`` runs
    first when a read is needed (``add`` waits there for the write in flight: one thread uses the client)."""
    held: dict[str, Holding] = {}
    unknown = []
    for doc in doc_ids:
        known = c._holdings.get(doc)
        if known is None:
            known = c._read_ahead.pop(doc, None)
        if known is None:
            unknown.append(doc)
        else:
            held[doc] = known
    if not unknown:
        return held
    if before_read is not None:
        before_read()
    room = max(c.max_keys_per_read // 2 - len(unknown), 0)  # two keys per document
    ahead = [doc for doc in dict.fromkeys(lookahead) if doc not in c._read_ahead and doc not in held
             and doc not in unknown and c._holdings.get(doc) is None][:room]
    found = _read_stamps(c, probe_keys([*unknown, *ahead]))
    first = {doc: holding_from(found, doc) for doc in [*unknown, *ahead]}
    wanted = wanted or {}
    found.update(_read_stamps(c, [k for doc, h in first.items() if needs_later_chunks(h, wanted.get(doc))
                                  for k in later_chunk_keys(doc, h)]))
    held.update((doc, holding_from(found, doc)) for doc in unknown)
    c._read_ahead.update((doc, holding_from(found, doc)) for doc in ahead)
    return held


def _read_stamps(c: Collection, keys: list[str]) -> dict[str, Stamp]:
    found: dict[str, Stamp] = {}
    for i in range(0, len(keys), c.max_keys_per_read):
        part = keys[i:i + c.max_keys_per_read]
        found.update(c._retry(functools.partial(c._read_stamps, part), "lookup of earlier points"))
    return found


def _prune_by_key(c: Collection, points: list[Point], n_chunks: Mapping[str, int | None], held: Mapping[str, Holding],
                  first_chunks: set[str], every_point: bool) -> None:
    """Delete exactly the keys the documents' earlier versions may have left (by condition for those
    written without extents). ``first_chunks``: the documents whose chunk 0 this write holds;
    ``every_point``: the write holds every point of its documents (``add``'s do; Ray's may not)."""
    legacy = {doc: n for doc, n in n_chunks.items() if held[doc].legacy}
    if legacy:
        _prune_by_condition(c, legacy)
    keys = [k for doc, n in n_chunks.items() if not held[doc].legacy
            for k in stale_keys(doc, n, held[doc], doc in first_chunks)]
    for i in range(0, len(keys), c.max_points_per_request):
        part = keys[i:i + c.max_points_per_request]
        c._retry(functools.partial(c._delete_keys, part), "removal of stale points")
    # With the stale points gone, the extent can come down to the new shape: written again, so that the
    # next write of an unchanged document has nothing to delete. Only documents that had stale points.
    settled = [p for p in points if p.extent is not None and p.extent != (n_chunks[p.doc_id] or 0)]
    for p in settled:
        p.extent = n_chunks[p.doc_id] or 0
    for request in c._requests(settled):
        c._retry(functools.partial(c._upsert, request), f"upsert of {len(request)} points")
    fingerprints = {p.doc_id: p.fingerprint for p in points} if every_point else {}
    for doc, n in n_chunks.items():
        c._holdings.wrote(doc, n, whole_left=held[doc].whole and doc not in first_chunks,
                          fingerprint=fingerprints.get(doc))


def _unsure(c: Collection, doc_ids: list[str], n_chunks: Mapping[str, int | None],
            held: Mapping[str, Holding] | None) -> None:
    for doc in doc_ids:
        c._holdings.unsure(doc, new_extent(n_chunks[doc], held[doc]) if held else n_chunks[doc] or 0)


def _prune_by_condition(c: Collection, n_chunks: Mapping[str, int | None]) -> None:
    """Delete every point of these documents that the new write did not make, by condition on the parent
    id every point carries (a scan in the embedded stores): for documents written without extents.

    New points are numbered 0..n-1 (or are one whole record), so the stale ones are chunks numbered n
    and up and the whole record (when chunked), every chunk (when whole). The new points are written
    first, so a crash at any moment leaves at worst stale points that the next write removes.
    """
    groups: dict[int | None, list[str]] = {}
    for doc, n in n_chunks.items():
        groups.setdefault(n, []).append(doc)
    for n, docs in groups.items():
        for i in range(0, len(docs), c.max_points_per_request):
            part = sorted(docs[i:i + c.max_points_per_request])
            c._retry(functools.partial(c._prune, part, n), "removal of stale points")
