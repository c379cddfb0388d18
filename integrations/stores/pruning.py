"""Stale points, found at the cost of the batch instead of the collection.

A record written again may leave points of its earlier version behind: the chunks numbered past its new
chunk count, its whole-record point when it is now late-chunked, its chunks when it is now whole. Every
point carries an ``extent``: an upper bound on the chunk numbers its document may still have in the store
(0..extent-1). Before a batch is written, each document's current holding is read from two points whose
keys are known without any scan, its whole-record point and its chunk 0; the new points are written with
``extent = max(new chunk count, old extent)``, and then exactly the stale keys are deleted by id.

Why this survives a crash at any moment: the new points are written before anything is deleted, and each
carries an extent that covers every chunk an earlier version may have left, so a re-run reads an extent at
least as large from whichever point it finds, and deletes the rest. Once the stale points are gone, the
points of a document that had any are written again with the extent of their own shape, so an unchanged
document written again has nothing to delete (a crash before that rewrite only leaves the bound high).

A collection made by this store object is known to hold only what this object wrote, so nothing is looked
up there at all: :class:`Holdings` remembers what it wrote. Deleting chunk 0 of a document by its own id
(``VectorStore.delete``) takes away where its other chunks are found; delete the document id instead.
Points written by a jinav3 that did not record extents (no ``extent`` on the point found) fall back to the
store's delete-by-condition (``_prune``).

The same two points tell whether a record written again is unchanged (:func:`unchanged`): each point also
carries its record's content fingerprint (``records.content_fingerprint``). A record whose every point is
stored with the fingerprint of its new version, and nothing else of it, is left as it is: not embedded, not
written (an unchanged corpus indexed again costs only its lookups).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .records import WHOLE, point_key


@dataclass(frozen=True)
class Stamp:
    """What a lookup reads from a stored point: its ``extent`` and its record's content ``fingerprint`` (None
    when the point was written without)."""

    extent: int | None
    fingerprint: str | None = None


@dataclass(frozen=True)
class Holding:
    """What a document may have in the store: chunks numbered below ``extent``, and (``whole``) its
    whole-record point. ``legacy``: found, but written without an extent (its chunks are unknown).
    ``fingerprint``: the content fingerprint its probed points share (None: none found, or they differ);
    ``first_chunk``: its chunk 0 is stored."""

    extent: int = 0
    whole: bool = False
    legacy: bool = False
    fingerprint: str | None = None
    first_chunk: bool = False
    complete: bool = False  # every point of its version ``fingerprint`` is stored


NOTHING = Holding()
TRACKED_DOCUMENTS = 2_000_000
"""How many documents a fresh collection's :class:`Holdings` remembers (about 150 MB of ids at most);
past that, holdings are read from the store like those of any collection."""


def holding_from(found: Mapping[str, Stamp], doc_id: str) -> Holding:
    """A document's holding from the stamps of its whole-record point and its chunk 0, and of its later
    chunks when they were read (``found``: key -> stamp; a key absent when the point does not exist)."""
    whole_key, first_chunk = point_key(doc_id), point_key(doc_id, 0)
    present = [found[k] for k in (whole_key, first_chunk) if k in found]
    if any(stamp.extent is None for stamp in present):
        return Holding(whole=whole_key in found, legacy=True)
    extent = max([int(stamp.extent or 0) for stamp in present], default=0)
    fingerprints = {stamp.fingerprint for stamp in present}
    fingerprint = fingerprints.pop() if len(fingerprints) == 1 else None
    held = Holding(extent=extent, whole=whole_key in found, first_chunk=first_chunk in found, fingerprint=fingerprint)
    if fingerprint is None:
        return held
    # every point of the version is stored: the whole point alone, or chunk 0 and each later chunk
    complete = (not held.first_chunk) if held.whole else all(
        k in found and found[k].fingerprint == fingerprint for k in later_chunk_keys(doc_id, held))
    return dataclasses.replace(held, complete=complete)


def unchanged(held: Holding, fingerprint: str | None, late_chunking: bool) -> bool:
    """Whether a document's new version (content ``fingerprint``, late-chunked or not) is already stored
    exactly: every one of its points (``held.complete``: its whole point, or chunk 0 and each later chunk
    below the extent, carry this fingerprint; a write cut short leaves some chunk without it) and nothing else
    (no chunk beside a whole point, no whole point beside chunks)."""
    if fingerprint is None or held.legacy or not held.complete or held.fingerprint != fingerprint:
        return False
    if late_chunking:
        return held.first_chunk and not held.whole
    return held.whole and not held.first_chunk and held.extent == 0


def needs_later_chunks(held: Holding, fingerprint: str | None) -> bool:
    """Whether a document's later chunks must be read to tell if its version ``fingerprint`` is stored whole:
    its chunk 0 is stored with that fingerprint, and it may have more chunks."""
    return fingerprint is not None and held.fingerprint == fingerprint and held.first_chunk and not held.whole \
        and not held.legacy and held.extent > 1


def later_chunk_keys(doc_id: str, held: Holding) -> list[str]:
    """The keys of chunks 1.. below a document's extent: read to tell an unchanged late-chunked document."""
    return [point_key(doc_id, n) for n in range(1, held.extent)]


def probe_keys(doc_ids: Iterable[str]) -> list[str]:
    """The keys to read to learn the holdings of ``doc_ids``: the whole-record point and chunk 0 of each."""
    return [k for doc in doc_ids for k in (point_key(doc), point_key(doc, 0))]


def new_extent(chunks: int | None, old: Holding) -> int:
    """The extent written on a document's new points (``chunks``: None when it is written whole)."""
    return max(chunks or 0, old.extent)


def stale_keys(doc_id: str, chunks: int | None, old: Holding, wrote_first_chunk: bool = True) -> list[str]:
    """The keys of ``doc_id``'s points that its new version (``chunks`` chunks, None: whole) does not have.

    The whole-record point is where a re-run finds the old extent until the new chunk 0 is stored, so it
    goes only once chunk 0 is written (``wrote_first_chunk``: a write of some of a document's chunks,
    as Ray's write tasks make, may not hold it)."""
    keep = 0 if chunks is None else chunks
    keys = [point_key(doc_id, n) for n in range(keep, old.extent)]
    if chunks is not None and old.whole and wrote_first_chunk:
        keys.append(point_key(doc_id, WHOLE))
    return keys


class Holdings:
    """What a store object wrote into the collection it created: per document, its holding after the last
    write. ``None`` from :meth:`get` means "read it from the store" (not a fresh collection, or past
    :data:`TRACKED_DOCUMENTS`)."""

    def __init__(self, fresh: bool) -> None:
        self._fresh = fresh
        self._held: dict[str, Holding] = {}

    @property
    def fresh(self) -> bool:
        return self._fresh

    def get(self, doc_id: str) -> Holding | None:
        if not self._fresh:
            return None
        return self._held.get(doc_id, NOTHING)

    def wrote(self, doc_id: str, chunks: int | None, whole_left: bool = False, fingerprint: str | None = None) -> None:
        """``doc_id`` now holds its new version (written, its stale points deleted; ``whole_left``: its old
        whole-record point is kept until chunk 0 is written; ``fingerprint``: the version's, when every one
        of its points was in the write)."""
        if not self._fresh:
            return
        if len(self._held) >= TRACKED_DOCUMENTS and doc_id not in self._held:
            self._fresh, self._held = False, {}
            return
        self._held[doc_id] = Holding(extent=chunks or 0, whole=chunks is None or whole_left, fingerprint=fingerprint,
                                     first_chunk=chunks is not None, complete=fingerprint is not None)

    def unsure(self, doc_id: str, extent: int) -> None:
        """A write of ``doc_id`` (with ``extent`` on its new points) may have been cut short, or its stale
        points not deleted: it may hold anything up to that extent, and its whole-record point."""
        if self._fresh:
            old = self._held.get(doc_id, NOTHING)
            self._held[doc_id] = Holding(max(old.extent, extent), whole=True)

    def deleted(self, keys: Iterable[str]) -> None:
        """Record ids deleted by the caller hold nothing now (a chunk's own key leaves its holding an upper bound)."""
        for key in keys:
            self._held.pop(key, None)
