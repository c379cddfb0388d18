"""The store registry: one entry per kind of vector store jinav3 writes to.

An entry says what can be known without importing the store's client: the URI forms it answers to, whether
it has an embedded form (one process owns it), what ``--collection`` names in it, the extra that installs
it, the packages ``jinav3 info`` reports, and where its classes live. The rest is the store's own module
(``jinav3.integrations.qdrant``, ...): its ``Collection`` subclass (limits, primitives) with the classmethods
``connection(uri)`` (the constructor's keyword arguments for a parsed URI, credentials included) and
``names_there(uri)`` (the collections or indexes a URI holds, for messages).

The command line, Ray, ``jinav3 info`` and every message about store URIs read this registry: a new store is
its module, its contract tests, one entry in :data:`STORES` and an extra in pyproject.toml.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jinav3 import env
from jinav3.errors import install_hint

if TYPE_CHECKING:
    from .base import Collection
    from .vector_store import VectorStore


@dataclass(frozen=True)
class StoreKind:
    """One kind of store. ``scheme`` is its URI scheme: ``SCHEME:PATH`` (embedded, with ``embedded``),
    ``SCHEME+http(s)://HOST:PORT`` (a server, with ``servers``), ``SCHEME:NAME`` (a hosted index, with
    ``hosted``)."""

    scheme: str  # "qdrant"
    title: str  # "Qdrant", in messages
    module: str  # the public module: "jinav3.integrations.qdrant"
    store_class: str  # its VectorStore (a Collection with an encoder): "QdrantStore"
    collection_class: str  # its Collection (no encoder): "QdrantCollection"
    extra: str  # pip install "jinav3[EXTRA]"
    packages: tuple[str, ...]  # distributions `jinav3 info` reports
    container: str = "collection"  # what --collection names in it ("namespace" in Pinecone)
    embedded: str | None = None  # the embedded form's name ("Milvus Lite"): SCHEME:PATH, one process owns it
    embedded_suffix: str | None = None  # a file name ending the embedded form's path must have (".db")
    embedded_example: str | None = None  # a whole embedded URI, for messages
    servers: bool = False  # SCHEME+http(s)://HOST:PORT
    server_example: str | None = None
    hosted: str | None = None  # SCHEME:NAME names this (Pinecone: "index"); the names_there of messages
    key_variable: str | None = None  # the environment variable of its API key when none is named
    # Loggers of its client that print each failed call with a traceback: silenced by the command line, whose
    # one-line error says it (the first is the client's module: importing it configures them).
    client_loggers: tuple[str, ...] = ()

    @property
    def forms(self) -> tuple[str, ...]:
        """The URI forms, as ``--help`` and error messages show them."""
        forms = []
        if self.embedded:
            forms.append(f"{self.scheme}:PATH{self.embedded_suffix or ''}")
        if self.servers:
            forms.append(f"{self.scheme}+http://HOST:PORT")
        if self.hosted:
            forms.append(f"{self.scheme}:{self.hosted.upper()}")
        return tuple(forms)

    @property
    def parent(self) -> str:
        """What a missing collection's message lists: the store's indexes (hosted) or its collections."""
        return self.hosted or self.container

    def load(self) -> type[VectorStore]:
        """The store class (its client imported only now; ImportError without it)."""
        return getattr(importlib.import_module(self.module), self.store_class)

    def load_collection(self) -> type[Collection]:
        """The Collection class (no encoder), as :meth:`load`."""
        return getattr(importlib.import_module(self.module), self.collection_class)

    def install_hint(self) -> str:
        return install_hint(self.extra)


STORES: dict[str, StoreKind] = {kind.scheme: kind for kind in (
    StoreKind("qdrant", "Qdrant", "jinav3.integrations.qdrant", "QdrantStore", "QdrantCollection", "qdrant",
              ("qdrant-client",), embedded="Qdrant local mode", embedded_example="qdrant:./jinav3-data/qdrant",
              servers=True, server_example="qdrant+http://HOST:6333"),
    StoreKind("milvus", "Milvus", "jinav3.integrations.milvus", "MilvusStore", "MilvusCollection", "milvus",
              ("pymilvus", "milvus-lite"), embedded="Milvus Lite", embedded_suffix=".db",
              embedded_example="milvus:./jinav3-data/milvus.db", servers=True,
              server_example="milvus+http://HOST:19530", client_loggers=("pymilvus", "milvus_lite")),
    StoreKind("pinecone", "Pinecone", "jinav3.integrations.pinecone", "PineconeStore", "PineconeCollection",
              "pinecone", ("pinecone",), container="namespace", hosted="index", key_variable=env.PINECONE_API_KEY),
)}
"""Every store kind, by URI scheme."""


def store_forms() -> str:
    """Every URI form of every store: ``qdrant:PATH, qdrant+http://HOST:PORT, ... or pinecone:INDEX``."""
    forms = [form for kind in STORES.values() for form in kind.forms]
    return ", ".join(forms[:-1]) + " or " + forms[-1]


def kind_of(scheme: str) -> StoreKind:
    """The registered kind of ``scheme`` (KeyError for an unknown one: parse URIs with ``stores.uri``)."""
    return STORES[scheme]


__all__ = ["StoreKind", "STORES", "store_forms", "kind_of"]
