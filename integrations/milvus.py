"""Milvus: passage vectors in, query vectors out (``pip install "jinav3[milvus]"``).

    from jinav3 import Encoder
    from jinav3.integrations.milvus import MilvusStore
    store = MilvusStore(Encoder.from_pretrained(), collection="docs", uri="./milvus.db", dimensions=512)
    store.add([{"id": "a1", "text": "...", "metadata": {"lang": "de"}}])
    store.search("wie pflege ich empfindliche Haut?", top_k=5, filter={"lang": "de"})

Where the points live: ``uri="./milvus.db"`` (the default: a Milvus Lite file, run in-process by the
``milvus-lite`` package), a server uri such as ``"http://127.0.0.1:19530"`` (+ ``token=``), or
``client=`` for a ``pymilvus.MilvusClient`` you made. Tested with Milvus Lite 3.2 and the Milvus 2.3.5
server. The collection has an explicit schema: ``id`` (VARCHAR primary key, the jinav3 point key),
``vector`` (FLOAT_VECTOR, the encoder's output size, COSINE index, HNSW by default), ``text``
(VARCHAR, at most 65,535 bytes), ``metadata`` (JSON, at most 65,536 bytes), ``doc_id`` (VARCHAR),
``chunk`` (INT64, -1 for a whole record), ``start`` / ``end`` (INT64 character offsets of a chunk, -1
otherwise). It is created with consistency level Strong, so a search right after an ``add`` sees it. The
embedding signature is a collection property (``jinav3.signature``). Portable filters become
``metadata["key"] == value`` expressions (any-of as ``or``); a string is passed through as a native
filter expression.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import numpy as np

from jinav3.errors import StoreError, install_hint, invalid
from jinav3.sparse import SparseVector

from .stores.base import Collection
from .stores.hybrid import LEXICAL_FIELD
from .stores.limits import RecordLimits
from .stores.pruning import Stamp
from .stores.records import FINGERPRINT_LENGTH, WHOLE, Hit, Point, Record, json_size, make_hit
from .stores.retries import is_transient
from .stores.signature import Signature, log
from .stores.vector_store import VectorStore

if TYPE_CHECKING:
    from .stores.uri import StoreURI

try:
    from pymilvus import AnnSearchRequest, DataType, Function, FunctionType, MilvusClient, RRFRanker
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("MilvusStore needs pymilvus (and milvus-lite for local files): " + install_hint("milvus")) from e

SIGNATURE_PROPERTY = "jinav3.signature"
MAX_TEXT_BYTES = 65_535
MAX_METADATA_BYTES = 65_536
MAX_KEY_BYTES = 1024
_FIELDS = ["id", "text", "metadata", "doc_id", "chunk", "start", "end"]
WIDE_EF = 4096  # HNSW search breadth when a filter matches more points than one exact pass reads
# A hybrid collection's lexical side: the text's SentencePiece ids written as words ("t123 t7 t123") into a
# VARCHAR field that Milvus's BM25 function reads with its whitespace-splitting standard analyser, so Milvus
# keeps the statistics and weighs the model's own multilingual pieces by BM25 with IDF (its analysers split
# CJK text into characters instead: it has no multilingual tokenizer but jieba's Chinese).
LEXICAL_TERMS = "lexical_terms"
HYBRID_DEPTH = 100  # candidates each side of a hybrid search ranks before fusion (at least 2 x top_k)
HYBRID_SERVER = (2, 5)  # the first Milvus server with the BM25 function and sparse vectors


def _terms_text(ids: Any) -> str:
    return " ".join(f"t{int(i)}" for i in ids)


# Characters a Milvus string literal cannot carry: Milvus Lite refuses every escape of them.
_UNWRITABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _literal(value: Any) -> str:
    """A Milvus expression literal, exact for any value: strings are double-quoted with JSON's escapes
    (backslash, quote, \\n, \\r, \\t), which the Milvus server's Go parser and Milvus Lite both read
    back to the same string. Every id and filter value enters an expression through here."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    bad = _UNWRITABLE.search(text)
    if bad:  # ids are checked before they get here; a filter value with one can match nothing stored
        raise invalid("filter", f"{text!r} holds the control character {bad.group()!r}, which a Milvus expression "
                                "cannot carry")
    return json.dumps(text, ensure_ascii=False)


def _string_list(values: list[str]) -> str:
    return "[" + ", ".join(_literal(v) for v in values) + "]"


def _checked_uri(uri: Any) -> str:
    """``uri`` as a string; a Milvus Lite file must be in a folder that exists (Milvus Lite would fail
    with an unrelated error)."""
    if not isinstance(uri, (str, Path)) or not str(uri):
        raise invalid("uri", f"must be a Milvus Lite file path (ending in .db) or a server URL, got {uri!r}")
    text = str(uri)
    if "://" not in text:
        folder = Path(text).expanduser().parent
        if not folder.is_dir():
            raise invalid("uri", f"the folder {str(folder)!r} of the Milvus Lite file {text!r} does not exist; "
                                 "create it first")
    return text


@dataclass(frozen=True)
class MilvusLimits(RecordLimits):
    """Milvus's limits: VARCHAR text and JSON metadata sizes; in a hybrid collection (``lexical``: its lexical
    encoder) the bytes of a text's lexical terms too."""

    lexical: Any = None

    def check_fields(self, record: Record, where: str, late_chunking: bool) -> None:
        super().check_fields(record, where, late_chunking)
        size = len(record.text.encode("utf-8"))
        if size > MAX_TEXT_BYTES and not late_chunking:
            raise invalid(f"{where}.text", f"is {size} bytes; Milvus VARCHAR fields hold at most {MAX_TEXT_BYTES} "
                                           "bytes (split it, or add it with late_chunking=True)")
        if not late_chunking:
            self._check_lexical(record.text, where, f"record {record.id!r}")
        size = json_size(record.metadata)
        if size > MAX_METADATA_BYTES:
            raise invalid(f"{where}.metadata", f"is {size} bytes of JSON; Milvus JSON fields hold at most "
                                               f"{MAX_METADATA_BYTES}")

    def check_chunk(self, point: Point, where: str) -> None:
        super().check_chunk(point, where)
        self._check_lexical(point.text, where, f"chunk {point.key!r}")
        size = len(point.text.encode("utf-8"))
        if size > MAX_TEXT_BYTES:
            raise invalid(f"{where}.text", f"chunk {point.key!r} has {size} bytes of text; Milvus holds at most "
                                           f"{MAX_TEXT_BYTES} per chunk (use smaller chunks, e.g. chunker='tokens')")

    def _check_lexical(self, text: str, where: str, what: str) -> None:
        """A hybrid collection's term field holds at most MAX_TEXT_BYTES of ``t123`` words."""
        if self.lexical is None:
            return
        size = len(_terms_text(self.lexical.term_ids([text])[0]))
        if size > MAX_TEXT_BYTES:
            raise invalid(f"{where}.text", f"{what} has too many terms for a hybrid Milvus collection ({size} bytes of "
                                           f"terms, at most {MAX_TEXT_BYTES}); add it with late_chunking=True or "
                                           "smaller chunks")


class MilvusCollection(Collection):
    """A Milvus collection of jina-embeddings-v3 points, without a model (see :class:`MilvusStore`, which
    adds the encoder). ``signature=None`` opens an existing collection as it is."""

    kind = "Milvus"
    native_filter_hint = "a Milvus filter expression (str)"
    max_points_per_request = 256
    max_keys_per_read = 2048  # a Strong read waits for the server's time tick (~200 ms): few, large lookups
    max_id_bytes = MAX_KEY_BYTES
    max_top_k = 16_384
    limits_class = MilvusLimits
    supports_hybrid = True
    sparse_points = False  # its BM25 function weighs the terms written into LEXICAL_TERMS
    tracks_extents = True  # False for a collection made before the ``extent`` field (see _describe)

    def __init__(self, signature: Signature | None, collection: str = "jinav3", *, uri: str = "./milvus.db",
                 token: str | None = None, client: MilvusClient | None = None, create: bool = True,
                 index_type: str = "HNSW", index_params: dict[str, Any] | None = None,
                 search_params: dict[str, Any] | None = None, consistency_level: str = "Strong",
                 client_kwargs: dict[str, Any] | None = None, **options: Any) -> None:
        super().__init__(signature, **options)
        if not isinstance(collection, str) or not collection.strip():
            raise invalid("collection", f"must be a non-empty string, got {collection!r}")
        if not isinstance(index_type, str) or not index_type:
            raise invalid("index_type", f"must be a Milvus index type name such as 'HNSW', got {index_type!r}")
        self.collection = collection
        self.index_type = index_type.upper()
        self.index_params = dict(index_params) if index_params is not None else (
            {"M": 16, "efConstruction": 200} if self.index_type == "HNSW" else {})
        self.search_params = dict(search_params) if search_params is not None else None
        self.consistency_level = consistency_level
        if client is not None:
            if token is not None:
                raise invalid("token", "only applies when the store makes its client (uri=), not with client=")
            self.client, self._owns_client = client, False
        else:
            kwargs = dict(client_kwargs or {})
            kwargs["uri"] = _checked_uri(uri)
            if token is not None:
                kwargs["token"] = token
            self.client, self._owns_client = MilvusClient(**kwargs), True
        try:
            if self._hybrid_given:
                self._check_server_for_hybrid(str(uri))
            self._open(create)
            self._ensure_vector_index()
            self.client.load_collection(self.collection)
        except BaseException:
            self.close()
            raise

    @classmethod
    def record_limits(cls, lexical: Any = None) -> MilvusLimits:
        return MilvusLimits(kind=cls.kind, max_id_bytes=cls.max_id_bytes, lexical=lexical)

    @classmethod
    def connection(cls, uri: StoreURI) -> dict[str, Any]:
        """``milvus:PATH.db`` (Milvus Lite), ``milvus+http(s)://HOST:PORT`` with its token: ``--api-key-env``'s, or
        the URI's user info (Milvus takes ``user:password`` or an API key as its token)."""
        if uri.mode == "local":
            return {"uri": str(Path(uri.target).expanduser())}
        token = uri.api_key or (unquote(uri.user_info) if uri.user_info else None)
        return {"uri": uri.target, **({"token": token} if token else {})}

    @classmethod
    def names_there(cls, uri: StoreURI) -> list[str]:
        client = MilvusClient(**cls.connection(uri))
        try:
            return list(client.list_collections())
        finally:
            client.close()

    @property
    def where(self) -> str:
        return f"Milvus collection {self.collection!r}"

    def close(self) -> None:
        if self._owns_client and getattr(self, "client", None) is not None:
            self.client.close()
            self._owns_client = False

    # ------------------------------------------------------------------------------ opening
    def _describe(self) -> tuple[bool, int | None, str | None, Signature | None]:
        if not self.client.has_collection(self.collection):
            return False, None, None, None
        info = self.client.describe_collection(self.collection)
        fields = {f["name"]: f for f in info.get("fields", [])}
        missing = [name for name in _FIELDS + ["vector"] if name not in fields]
        if missing:
            raise StoreError(f"{self.where} was not made by jinav3: it lacks the fields {missing}")
        size = fields["vector"].get("params", {}).get("dim")
        metric = None
        for name in self.client.list_indexes(self.collection, field_name="vector") or []:
            metric = self.client.describe_index(self.collection, name).get("metric_type")
        stored = (info.get("properties") or {}).get(SIGNATURE_PROPERTY)
        # made by a jinav3 that did not record extents: stale points are deleted by condition there
        self._extent_field = self.tracks_extents = "extent" in fields
        self._fingerprint_field = "fingerprint" in fields  # unchanged records are skipped only where stored
        signature = None if stored is None else Signature.from_json(stored)
        if signature is not None and signature.hybrid and LEXICAL_TERMS not in fields:
            raise StoreError(f"{self.where}: its signature says hybrid, but it has no {LEXICAL_TERMS!r} field")
        return True, None if size is None else int(size), None if metric is None else str(metric).lower(), signature

    def _ensure_vector_index(self) -> None:
        """A collection without a vector index cannot be loaded or searched: index it now (with this
        store's index type and the cosine metric), so nothing is written that cannot be found."""
        if self.client.list_indexes(self.collection, field_name="vector"):
            return
        log.warning("%s has no vector index; creating a %s index (COSINE)", self.where, self.index_type)
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type=self.index_type, metric_type="COSINE", params=self.index_params)
        self._retry(lambda: self.client.create_index(self.collection, index), "create the vector index")

    def _create(self) -> None:
        sig = self.signature
        description = f"jinav3: {sig.model} ({sig.dimensions} dimensions, {sig.passage_task} / {sig.query_task})"
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=description[:255])
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_KEY_BYTES)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dimensions)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=MAX_KEY_BYTES)
        schema.add_field("chunk", DataType.INT64)
        schema.add_field("start", DataType.INT64)
        schema.add_field("end", DataType.INT64)
        schema.add_field("extent", DataType.INT64)  # integrations/stores/pruning.py
        schema.add_field("fingerprint", DataType.VARCHAR, max_length=FINGERPRINT_LENGTH)  # "" when not known
        index = self.client.prepare_index_params()
        if self.hybrid:
            schema.add_field(LEXICAL_TERMS, DataType.VARCHAR, max_length=MAX_TEXT_BYTES, enable_analyzer=True,
                             analyzer_params={"tokenizer": "standard"})
            schema.add_field(LEXICAL_FIELD, DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(Function(name="jinav3_bm25", function_type=FunctionType.BM25,
                                         input_field_names=[LEXICAL_TERMS], output_field_names=[LEXICAL_FIELD]))
            index.add_index(field_name=LEXICAL_FIELD, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        index.add_index(field_name="vector", index_type=self.index_type, metric_type="COSINE", params=self.index_params)
        self.client.create_collection(self.collection, schema=schema, index_params=index,
                                      consistency_level=self.consistency_level,
                                      properties={SIGNATURE_PROPERTY: sig.to_json()})

    # ------------------------------------------------------------------------------ points
    def _read_kwargs(self) -> dict[str, Any]:
        return {"consistency_level": self.consistency_level} if self.consistency_level else {}

    @staticmethod
    def _hit(entity: dict[str, Any], score: float | None, with_vector: bool = False) -> Hit:
        return make_hit(entity["id"], score, entity.get("text", ""), entity.get("metadata") or {},
                        entity.get("doc_id"), entity.get("chunk"), entity.get("start"), entity.get("end"),
                        entity.get("vector") if with_vector else None)

    def _upsert(self, points: list[Point]) -> None:
        rows = [{"id": p.key, "vector": p.vector.tolist(), "text": p.text, "metadata": p.metadata, "doc_id": p.doc_id,
                 "chunk": int(p.chunk), "start": -1 if p.start is None else int(p.start),
                 "end": -1 if p.end is None else int(p.end)} for p in points]
        if getattr(self, "_extent_field", True):  # a field of every collection made since (not nullable)
            for row, p in zip(rows, points, strict=True):
                row["extent"] = int(p.extent or 0)
        if getattr(self, "_fingerprint_field", True):
            for row, p in zip(rows, points, strict=True):
                row["fingerprint"] = p.fingerprint or ""
        if self.hybrid:
            assert self.sparse_encoder is not None  # a hybrid collection has one (Collection._open)
            for row, ids in zip(rows, self.sparse_encoder.term_ids([p.text for p in points]), strict=True):
                row[LEXICAL_TERMS] = _terms_text(ids)
        self.client.upsert(self.collection, data=rows)

    def _query(self, vector: np.ndarray, limit: int, native_filter: Any, ef: int | None = None) -> list[Hit]:
        params = self.search_params
        if params is None:
            params = {"ef": max(128, limit, ef or 0)} if self.index_type == "HNSW" else {}
        result = self.client.search(self.collection, data=[vector.tolist()], limit=limit, filter=native_filter or "",
                                    output_fields=_FIELDS, search_params={"metric_type": "COSINE", "params": params},
                                    **self._read_kwargs())
        hits = []
        for hit in result[0]:
            entity = dict(hit.get("entity") or {})
            entity.setdefault("id", hit.get("id"))
            hits.append(self._hit(entity, hit.get("distance")))
        return hits

    def _check_server_for_hybrid(self, uri: str) -> None:
        """A Milvus server before 2.5 has no BM25 function: refuse ``hybrid=True`` there, naming its version."""
        if "://" not in uri:
            return  # Milvus Lite has it
        version = str(self._retry(self.client.get_server_version, "server version"))
        numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
        if len(numbers) == 2 and numbers < HYBRID_SERVER:
            raise invalid("hybrid", f"this Milvus server is {version}; hybrid collections need Milvus 2.5 or later "
                                    "(sparse vectors and the BM25 function), or Milvus Lite")

    def _query_lexical(self, vector: np.ndarray, lexical: SparseVector, limit: int, native_filter: Any, mode: str,
                       rrf_k: int) -> list[Hit]:
        terms = _terms_text(lexical.indices)
        if mode == "sparse":
            if not terms:
                return []
            result = self.client.search(self.collection, data=[terms], anns_field=LEXICAL_FIELD, limit=limit,
                                        filter=native_filter or "", output_fields=_FIELDS,
                                        search_params={"metric_type": "BM25"}, **self._read_kwargs())
            # BM25 scores are >= 0; Milvus Lite reports them negated (as distances)
            return [self._hit({**(h.get("entity") or {}), "id": h.get("id")}, abs(float(h.get("distance"))))
                    for h in result[0]]
        depth = max(2 * limit, HYBRID_DEPTH)
        dense_params = self.search_params if self.search_params is not None else (
            {"ef": max(128, depth)} if self.index_type == "HNSW" else {})
        requests = [AnnSearchRequest(data=[vector.tolist()], anns_field="vector", limit=depth, expr=native_filter,
                                     param={"metric_type": "COSINE", "params": dense_params})]
        if terms:
            requests.append(AnnSearchRequest(data=[terms], anns_field=LEXICAL_FIELD, limit=depth, expr=native_filter,
                                             param={"metric_type": "BM25"}))
        result = self.client.hybrid_search(self.collection, requests, ranker=RRFRanker(rrf_k), limit=limit,
                                           output_fields=_FIELDS, **self._read_kwargs())
        return [self._hit({**(h.get("entity") or {}), "id": h.get("id")}, h.get("distance")) for h in result[0]]

    def _count_matching(self, native_filter: Any) -> int | None:
        rows = self.client.query(self.collection, filter=native_filter, output_fields=["count(*)"],
                                 **self._read_kwargs())
        return int(rows[0]["count(*)"])

    def _query_exact(self, vector: np.ndarray, limit: int, native_filter: Any, matching: int) -> list[Hit]:
        """Every matching point scored here (cosine, as the index scores), when a query can return them all
        (Milvus's limit: 16,384 rows); past that the filter is not selective, and a wider HNSW search finds
        them."""
        if matching > self.max_top_k:
            return self._query(vector, limit, native_filter, ef=WIDE_EF)
        rows = self.client.query(self.collection, filter=native_filter, output_fields=[*_FIELDS, "vector"],
                                 limit=matching, **self._read_kwargs())
        if not rows:
            return []
        stored = np.asarray([row["vector"] for row in rows], dtype=np.float32)  # (matching, d)
        norms = np.linalg.norm(stored, axis=1) * float(np.linalg.norm(vector))
        scores = stored @ vector.astype(np.float32) / np.where(norms > 0, norms, 1.0)
        best = np.argsort(-scores, kind="stable")[:limit]
        return [self._hit(dict(rows[i]), float(scores[i])) for i in best]

    def _fetch(self, keys: list[str], with_vectors: bool) -> list[Hit]:
        # not client.get(ids=...): pymilvus splices the ids into the expression unescaped
        fields = _FIELDS + (["vector"] if with_vectors else [])
        rows = self.client.query(self.collection, filter=f"id in {_string_list(keys)}", output_fields=fields,
                                 **self._read_kwargs())
        return [self._hit(dict(row), None, with_vectors) for row in rows]

    def _delete(self, ids: list[str]) -> None:
        listed = _string_list(ids)
        self.client.delete(self.collection, filter=f"doc_id in {listed} or id in {listed}")

    def _read_stamps(self, keys: list[str]) -> dict[str, Stamp]:
        # by primary key: no scan of the collection
        fields = ["id", "extent"] + (["fingerprint"] if self._fingerprint_field else [])
        rows = self.client.query(self.collection, filter=f"id in {_string_list(keys)}", output_fields=fields,
                                 **self._read_kwargs())
        return {str(row["id"]): Stamp(int(row["extent"]), row.get("fingerprint") or None) for row in rows}

    def _delete_keys(self, keys: list[str]) -> None:
        self.client.delete(self.collection, filter=f"id in {_string_list(keys)}")

    def _prune(self, doc_ids: list[str], keep_chunks: int | None) -> None:
        of_docs = f"doc_id in {_string_list(doc_ids)}"
        if keep_chunks is None:
            expr = f"{of_docs} and chunk >= 0"
        else:
            expr = f"{of_docs} and (chunk >= {int(keep_chunks)} or chunk == {WHOLE})"
        self.client.delete(self.collection, filter=expr)

    def _count(self) -> int:
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"], **self._read_kwargs())
        return int(rows[0]["count(*)"])

    # ------------------------------------------------------------------------------ filters, errors
    def _native_filter(self, filter: Any) -> Any:
        return filter if isinstance(filter, str) and filter.strip() else None

    def _translate_filter(self, conditions: list[tuple[str, list[Any]]]) -> str:
        parts = []
        for key, values in conditions:
            field = f"metadata[{_literal(key)}]"
            alternatives = [f"{field} == {_literal(v)}" for v in values]
            parts.append(alternatives[0] if len(alternatives) == 1 else "(" + " or ".join(alternatives) + ")")
        return " and ".join(parts)

    def _is_transient(self, exc: BaseException) -> bool:
        # pymilvus marks retriable errors; code 8 is ErrorCode.RATE_LIMIT
        return is_transient(exc) or getattr(exc, "retriable", False) is True or getattr(exc, "code", None) == 8


class MilvusStore(VectorStore, MilvusCollection):
    """A Milvus collection of jina-embeddings-v3 vectors.

    Args:
        encoder: a :class:`jinav3.Encoder` (or anything with its ``encode`` / ``late_chunk_documents`` /
            ``output_size`` / ``name``).
        collection: collection name (letters, digits, underscores); created when missing (``create=False``
            refuses instead).
        uri / token / client: where it lives (default the Milvus Lite file ``./milvus.db``).
        dimensions / passage_task / query_task / model_name / batch_size / retries / backoff /
            max_backoff / overlap_writes: as for :class:`jinav3.integrations.qdrant.QdrantStore`.
        index_type / index_params: the vector index made with a new collection (default HNSW, M=16,
            efConstruction=200); search_params: the ``params`` of every search (default for HNSW:
            ``{"ef": max(128, limit)}``).
        consistency_level: of a new collection and of every read (default "Strong").
        client_kwargs: extra ``MilvusClient(...)`` arguments.
    """


__all__ = ["MilvusStore", "MilvusCollection", "MilvusLimits"]
