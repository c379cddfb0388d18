"""Records, ids and hits: what goes into a store and what comes back, the same on every store.

* records: ``{"id": ..., "text": ..., "metadata": {...}}`` dicts or plain strings, all checked before
  anything is encoded or written (:func:`normalize_records`): valid Unicode, JSON metadata that every
  store can hold, ids any store can carry;
* ids: :func:`point_key` is THE id function. A record's key is the caller's id (or ``"txt-"`` + a hash
  of the text); chunk *n* of a late-chunked document is ``"<parent id>::chunk:<n>"``. Each store maps
  the key to what it accepts (Qdrant: a UUIDv5 of the key; Milvus: the key as its VARCHAR primary key;
  Pinecone: the key, ASCII, at most 512 bytes), so writing the same records twice overwrites;
* hits: :class:`Hit`, what searches and fetches return.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jinav3.errors import invalid
from jinav3.validation import valid_unicode

CHUNK_MARK = "::chunk:"
"""Separator between a parent id and a chunk number in a chunk's key; not allowed in caller ids."""

ID_NAMESPACE = uuid.UUID("6f2d1c0e-5a4b-5c3d-9e8f-0a1b2c3d4e5f")
"""Namespace of the UUIDv5 point ids (Qdrant). Changing it would orphan every stored point."""

WHOLE = -1
"""The ``chunk`` number stored with a record that was embedded whole (not late-chunked)."""
# Room kept for the chunk suffix when checking id lengths before chunking: "::chunk:" + 6 digits.
CHUNK_SUFFIX_ROOM = len(CHUNK_MARK) + 6


def text_id(text: str) -> str:
    """The id of a record given without one: ``"txt-"`` + the first 32 hex digits of SHA-256(text)."""
    return "txt-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


FINGERPRINT_LENGTH = 32  # hex digits
FINGERPRINT_VERSION = 1
"""Part of every content fingerprint: raise it when what a point holds for the same input changes."""


def content_fingerprint(record: Record, late_chunking: bool, chunker: Any = "sentences",
                        chunk_size: int | None = None) -> str:
    """What a record's points were made from: its text and metadata, and how it was cut (``late_chunking``,
    ``chunker``, ``chunk_size``), as 32 hex digits of SHA-256. Stored on every point, so that an unchanged
    record written again is found unchanged and not embedded again (the collection's signature already
    fixes the model, dimensions and task)."""
    how: Any = [late_chunking, chunker if isinstance(chunker, str) else [list(s) for s in chunker], chunk_size] \
        if late_chunking else [False]
    content = json.dumps([FINGERPRINT_VERSION, record.text, record.metadata, how], sort_keys=True,
                         ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:FINGERPRINT_LENGTH]


def point_key(doc_id: str, chunk: int | None = None) -> str:
    """THE id function: a record's key is its id; chunk ``n`` of document ``doc_id`` is
    ``"<doc_id>::chunk:<n>"``. Stores map the key to their own id type (:func:`uuid_for`)."""
    if chunk is None or chunk == WHOLE:
        return doc_id
    return f"{doc_id}{CHUNK_MARK}{int(chunk)}"


def uuid_for(key: str) -> str:
    """The UUIDv5 of a point key (Qdrant's point id)."""
    return str(uuid.uuid5(ID_NAMESPACE, key))


# ============================================================================================ records
@dataclass(frozen=True)
class Record:
    """One normalised input record."""

    id: str
    text: str
    metadata: dict[str, Any]


@dataclass
class Point:
    """One vector to write: a whole record (``chunk == -1``) or one chunk of a late-chunked record."""

    key: str
    doc_id: str
    chunk: int
    vector: np.ndarray
    text: str
    metadata: dict[str, Any]
    start: int | None = None
    end: int | None = None
    extent: int | None = None  # chunks its document may still hold (integrations/pruning.py); set when written
    fingerprint: str | None = None  # content_fingerprint of its record (None: not known, never skipped)
    sparse: Any = None  # its lexical vector (a jinav3.sparse.SparseVector) in a hybrid collection


# Characters no id may hold: C0 controls other than tab, newline and carriage return, and DEL. NUL
# cannot be written in a Milvus Lite expression nor sent to Pinecone; the others are never meant.
_ID_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_INT_METADATA = 2**63 - 1  # Milvus JSON and Pinecone numbers hold no integer beyond int64


def _check_id(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise invalid(where, f"must be a non-empty str (or an int), got {type(value).__name__}")
    value = valid_unicode(str(value), where)
    if not value.strip():
        raise invalid(where, "must be a non-empty string")
    if CHUNK_MARK in value:
        raise invalid(where, f"{value!r} contains {CHUNK_MARK!r}, which is reserved for chunk ids")
    bad = _ID_FORBIDDEN.search(value)
    if bad:
        raise invalid(where, f"{value!r} contains the control character {bad.group()!r} at position {bad.start()}; "
                             "ids may hold any other character (tabs and line breaks included)")
    return value


def _check_json_value(value: Any, where: str) -> None:
    """Walk a JSON value for what json.dumps lets through but stores refuse."""
    if isinstance(value, str):
        valid_unicode(value, where)
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -MAX_INT_METADATA - 1 <= value <= MAX_INT_METADATA:
            raise invalid(where, f"the integer {value} does not fit in 64 bits (-2**63 .. 2**63-1), which is what "
                                 "Milvus and Pinecone store; write it as a string")
    elif isinstance(value, dict):
        for key, item in value.items():
            valid_unicode(key, where)
            _check_json_value(item, where)
    elif isinstance(value, list):
        for item in value:
            _check_json_value(item, where)


def check_metadata(metadata: Any, where: str) -> dict[str, Any]:
    """A JSON object with string keys whose values JSON can hold (no NaN/inf, valid Unicode, integers
    within 64 bits), copied."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise invalid(where, f"must be a dict of JSON values, got {type(metadata).__name__}")
    for key in metadata:
        if not isinstance(key, str) or not key:
            raise invalid(where, f"keys must be non-empty strings, got {key!r}")
    try:
        copied = json.loads(json.dumps(dict(metadata), allow_nan=False))
    except (TypeError, ValueError) as e:
        raise invalid(where, f"must be JSON-serialisable (str, int, float, bool, None, list, dict): {e}") from None
    _check_json_value(copied, where)
    return copied


def normalize_record(item: Any, where: str) -> Record:
    """One record checked and normalised (a dict with text / id / metadata, or a plain string); ``where``
    names it in errors (``records[3]``, ``corpus.jsonl:12``). THE record check: ``add`` and the Ray
    indexing path (``jinav3.integrations.ray``) both call it, so the same rows are refused the same way."""
    metadata: Any  # whatever the record holds; check_metadata below judges it
    if isinstance(item, str):
        text, rid, metadata = item, None, {}
    elif isinstance(item, Mapping):
        unknown = sorted(set(item) - {"id", "text", "metadata"})
        if unknown:
            raise invalid(where, f"unknown keys {unknown}; a record has 'text', optional 'id' and optional "
                                 "'metadata' (put your own fields inside 'metadata')")
        if "text" not in item:
            raise invalid(f"{where}.text", "is missing; every record needs a text to embed")
        text, rid, metadata = item["text"], item.get("id"), item.get("metadata")
    else:
        raise invalid(where, f"must be a dict or a str, got {type(item).__name__}")
    if not isinstance(text, str):
        raise invalid(f"{where}.text", f"must be a str, got {type(text).__name__}")
    valid_unicode(text, f"{where}.text")
    if not text.strip():
        raise invalid(f"{where}.text", "is empty; there is nothing to embed")
    rid = text_id(text) if rid is None else _check_id(rid, f"{where}.id")
    return Record(rid, text, check_metadata(metadata, f"{where}.metadata"))


def normalize_records(records: Any) -> list[Record]:
    """Check and normalise ``records`` (dicts with text / id / metadata, or plain strings).

    Identical duplicates (same id, text and metadata, e.g. the same string twice) are written once;
    the same id with a different text or metadata is an error.
    """
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
        raise invalid("records", f"must be a list of dicts or strings, got {type(records).__name__}")
    out: list[Record] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(records):
        where = f"records[{i}]"
        record = normalize_record(item, where)
        rid = record.id
        if rid in seen:
            if out[seen[rid]] == record:
                continue
            raise invalid(f"{where}.id", f"{rid!r} is also the id of records[{seen[rid]}] with another text or "
                                         "metadata; ids must be unique within one add()")
        seen[rid] = len(out)
        out.append(record)
    return out


def check_ids(ids: Any, argument: str = "ids") -> list[str]:
    if isinstance(ids, (str, int)) and not isinstance(ids, bool):
        ids = [ids]
    if isinstance(ids, (bytes, Mapping)) or not isinstance(ids, Iterable):
        raise invalid(argument, f"must be a list of ids, got {type(ids).__name__}")
    out = []
    for i, value in enumerate(ids):
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            raise invalid(f"{argument}[{i}]", f"must be a non-empty str, got {value!r}")
        out.append(valid_unicode(str(value), f"{argument}[{i}]"))
    return list(dict.fromkeys(out))


def json_size(obj: Any) -> int:
    """Bytes of compact UTF-8 JSON (how Pinecone measures metadata)."""
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


@dataclass
class Hit:
    """One search result. ``score`` is the cosine similarity (None for points read by ``get``).

    For a late-chunked document's chunk: ``id`` is the chunk's id, ``parent_id`` the document's id,
    ``chunk`` its number, ``start``/``end`` its character offsets in the document. A hit from
    ``group_by_document=True`` stands for one document: ``id`` is the document's id, ``score`` its
    best chunk's, ``text`` and offsets that chunk's, and ``chunks`` its chunks among the results.
    """

    id: str
    score: float | None
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None
    chunk: int | None = None
    start: int | None = None
    end: int | None = None
    chunks: list["Hit"] | None = None
    vector: np.ndarray | None = field(default=None, repr=False)

    @property
    def document_id(self) -> str:
        """The id of the document this hit belongs to (its parent for a chunk)."""
        return self.parent_id if self.parent_id is not None else self.id


def make_hit(key: str, score: float | None, text: str, metadata: dict, doc_id: str | None, chunk: int | None,
             start: int | None, end: int | None, vector: Any = None) -> Hit:
    number = None if chunk is None else int(chunk)
    is_chunk = number is not None and number != WHOLE
    return Hit(
        id=key, score=None if score is None else float(score), text=text, metadata=dict(metadata or {}),
        parent_id=(doc_id if is_chunk else None), chunk=(number if is_chunk else None),
        start=(int(start) if is_chunk and start is not None else None),
        end=(int(end) if is_chunk and end is not None else None),
        vector=None if vector is None else np.asarray(vector, dtype=np.float32),
    )


def group_by_document(hits: Sequence[Hit], top_k: int | None = None) -> list[Hit]:
    """Group chunk hits by their document, best score first (hits must be sorted by score)."""
    groups: dict[str, Hit] = {}
    members: dict[str, list[Hit]] = {}  # each group's list of chunks (the Hit's ``chunks``)
    for hit in hits:
        doc = hit.document_id
        if doc not in groups:
            members[doc] = []
            groups[doc] = Hit(id=doc, score=hit.score, text=hit.text, metadata=hit.metadata, chunk=hit.chunk,
                              start=hit.start, end=hit.end, chunks=members[doc])
        members[doc].append(hit)
    out = list(groups.values())
    return out if top_k is None else out[:top_k]
