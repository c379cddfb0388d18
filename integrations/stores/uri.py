"""Store URIs: parsing ``qdrant:./data``, ``milvus+http://HOST:19530``, ``pinecone:INDEX`` and opening them.

The forms come from the registry (``stores/registry.py``). Everything here raises library errors only
(InvalidArgumentError naming the argument for a bad URI or credential, StoreError for a store that fails,
CollectionNotFoundError naming what is there); the command line maps them to exit codes at its edge.
Whatever holds a secret is shown redacted (``root:***@``) and scrubbed from every message.
"""

from __future__ import annotations

import os
import re
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from jinav3.errors import (
    CollectionNotFoundError,
    InvalidArgumentError,
    JinaV3Error,
    SignatureMismatchError,
    StoreError,
    invalid,
)
from jinav3.secrets import USER_INFO, redact, scrub, uri_secrets

from .registry import STORES, StoreKind, store_forms

if TYPE_CHECKING:
    from jinav3.protocol import TextEncoder

    from .base import Collection
    from .signature import Signature
    from .vector_store import VectorStore

WORK_RETRIES = 5  # retries of a transient store error once the store is open (opening itself: none)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class StoreURI:
    """A parsed store URI: ``scheme`` (a registered kind), ``mode`` (local, server, index), ``target`` (a
    path, a server URL without its user info, or an index name), ``user_info`` (the URL's ``user:password``
    or token, or None) and ``api_key`` (from the environment, set by :func:`with_credentials`). Print it as
    :attr:`shown`: ``raw`` holds the credentials as typed."""

    raw: str
    scheme: str
    mode: str
    target: str
    user_info: str | None = None
    api_key: str | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return f"StoreURI({self.shown!r})"

    @property
    def kind(self) -> StoreKind:
        return STORES[self.scheme]

    @property
    def shown(self) -> str:
        """The URI with its secrets redacted: the only form that is ever printed."""
        return redact(self.raw)

    @property
    def secrets(self) -> list[str]:
        return uri_secrets(self.raw) + ([self.api_key] if self.api_key else [])

    def place(self, collection: str) -> str:
        """``qdrant:./data collection 'docs'`` / ``pinecone:idx namespace 'docs'``: for messages."""
        return f"{self.shown} {self.kind.container} {collection!r}"

    def connection(self) -> dict[str, Any]:
        """The keyword arguments that point the store's classes (and client) at this URI, credentials
        included (the store module's ``connection``); imports the store's client."""
        return self.kind.load_collection().connection(self)


def parse_store(uri: str) -> StoreURI:
    """Parse a store URI; raise InvalidArgumentError (argument ``store``) naming the accepted forms otherwise."""
    if not isinstance(uri, str):
        raise invalid("store", f"must be a store URI string ({store_forms()}), got {type(uri).__name__}")
    shown = redact(uri)
    user = USER_INFO.match(uri)
    bare = user["head"] + uri[user.end():] if user else uri  # the URI without its user info
    scheme, sep, rest = bare.partition(":")
    if not sep or not rest:
        raise invalid("store", f"{shown!r} is not a store URI; use {store_forms()}")
    base, plus, transport = scheme.partition("+")
    kind = STORES.get(base)
    if kind is None:
        raise invalid("store", f"unknown scheme {scheme!r} in {shown!r}; use {store_forms()}")
    if plus:
        if not kind.servers or transport not in ("http", "https") or not rest.startswith("//") or len(rest) <= 2:
            raise invalid("store", f"unknown scheme {scheme!r} in {shown!r}; use {store_forms()}")
        return StoreURI(uri, base, "server", f"{transport}:{rest}", user["info"] if user else None)
    if rest.startswith("//"):
        raise invalid("store", f"{shown!r}: for a server write {base}+http:{shown.partition(':')[2]}; "
                               f"for a local path write {base}:PATH")
    if kind.hosted:
        return StoreURI(uri, base, "index", rest)
    if kind.embedded_suffix and not rest.endswith(kind.embedded_suffix):
        raise invalid("store", f"{shown!r}: {kind.embedded} needs a file name ending in {kind.embedded_suffix}, "
                               f"e.g. {kind.embedded_example}")
    return StoreURI(uri, base, "local", rest)


def check_key_variable(variable: str, option: str) -> None:
    """``option`` must name an environment variable: a value that is no such name is most likely the key itself,
    so say so without echoing it."""
    if not isinstance(variable, str) or not _ENV_NAME.fullmatch(variable):
        raise invalid(option, "give the NAME of an environment variable (letters, digits, _) that holds the API "
                              "key, not the key itself")


def key_from_variable(variable: str, option: str) -> str:
    """The API key in ``$variable`` (named by ``option``); refused when it is not set or empty."""
    if not os.environ.get(variable):
        raise invalid(option, f"${variable} is {'empty' if variable in os.environ else 'not set'}; "
                              "set it to the API key")
    return os.environ[variable]


def with_credentials(store: StoreURI, variable: str | None, option: str = "api_key_env") -> StoreURI:
    """``store`` with its API key from ``$variable`` (named by ``option``), else from the kind's own variable
    (``$PINECONE_API_KEY``) when it needs one. Fails before any model loads when a credential is missing; the
    value itself is never shown."""
    if variable:
        check_key_variable(variable, option)
        if store.mode == "local":
            raise invalid(option, f"{store.shown} is a local store; an API key only applies to a server "
                                  "(qdrant+http..., milvus+http...) or Pinecone")
        if store.user_info is not None:
            raise invalid(option, f"{store.shown} carries credentials already (user info); give them in one place")
        return replace(store, api_key=key_from_variable(variable, option))
    needed = store.kind.key_variable
    if needed:
        if not os.environ.get(needed):
            raise InvalidArgumentError(f"store {store.shown}: set {needed} to your {store.kind.title} API key (or name "
                                       f"the variable that holds it with {option})")
        return replace(store, api_key=os.environ[needed])
    return store


def open_store(store: StoreURI, collection: str, encoder: TextEncoder, *, create: bool = True,
               retries: int = WORK_RETRIES, **options: Any) -> VectorStore:
    """The store's ``VectorStore`` for ``encoder`` at ``store``. ``create=False`` (a search) creates nothing, not
    even the folder or file of a local store, and raises CollectionNotFoundError naming the collections there
    are. Opening is not retried, so a wrong or unreachable address fails at once; the work then retries
    transient errors (``retries``). ``options``: the store's own (``dimensions``, ``adopt_signature``, ...)."""
    opened = _open(store, collection, encoder, True, create, not create, retries, options)
    return cast("VectorStore", opened)


def open_collection(store: StoreURI, collection: str, signature: Signature | None = None, *, create: bool = True,
                    refuse_missing: bool | None = None, retries: int = WORK_RETRIES, **options: Any) -> Collection:
    """The store's ``Collection`` (no model) for ``signature`` (None: as the collection is) at ``store``, as
    :func:`open_store` opens it. ``refuse_missing``: raise CollectionNotFoundError when the collection holds
    nothing to search (default: with ``create=False``; a writer into a collection made elsewhere says False)."""
    refuse = (not create) if refuse_missing is None else refuse_missing
    return _open(store, collection, signature, False, create, refuse, retries, options)


def _open(store: StoreURI, collection: str, first: Any, with_encoder: bool, create: bool, refuse_missing: bool,
          retries: int, options: dict[str, Any]) -> Collection:
    kind = store.kind
    cls: Any = store_class(store, with_encoder)
    kwargs: dict[str, Any] = {**options, "create": create, "retries": 0, kind.container: collection,
                              **cls.connection(store)}
    made = _local_folders(store, collection, create)
    try:
        opened: Collection = cls(first, **kwargs)
    except BaseException as error:
        for folder in made:  # nothing is left behind by a store that did not open
            with suppress(OSError):
                folder.rmdir()
        if isinstance(error, InvalidArgumentError) or not isinstance(error, Exception):
            raise
        raise _open_failure(store, collection, create, error) from error
    if refuse_missing:
        there = opened.missing_container()
        if there is not None:
            with suppress(Exception):
                opened.close()
            raise _missing(store, collection, kind.container, collection, there, opened.missing_note)
    opened.retries = retries
    return opened


def store_class(store: StoreURI, with_encoder: bool = True) -> type[Collection]:
    """The class of ``store``'s kind: its VectorStore, or (``with_encoder=False``) its Collection. Its client is
    imported only now; without it, a StoreError says which extra installs it."""
    try:
        return store.kind.load() if with_encoder else store.kind.load_collection()
    except ImportError as error:
        cause = error.__cause__ or error
        raise StoreError(f"store {store.shown} needs the {store.scheme} client: {store.kind.install_hint()} "
                         f"({cause})") from error


def _local_folders(store: StoreURI, collection: str, create: bool) -> list[Path]:
    """Refuse to search a local store that is not there (its client would make it); make the folders a new
    embedded file needs (a folder-based store makes its own) and return them, innermost first."""
    if store.mode != "local":
        return []
    path = Path(store.target).expanduser()
    if not create and not path.exists():
        raise CollectionNotFoundError(f"store {store.shown} does not exist", store=store.shown, collection=collection)
    if not store.kind.embedded_suffix:
        return []
    made = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    return made


def _open_failure(store: StoreURI, collection: str, create: bool, error: Exception) -> StoreError:
    """Why the store did not open, in one line: for a search, a missing collection names the ones there are."""
    if isinstance(error, CollectionNotFoundError):
        return error
    if create or not isinstance(error, StoreError) or isinstance(error, SignatureMismatchError) \
            or "does not exist" not in str(error):
        return store_failure(store, error)
    kind = store.kind
    name = store.target if kind.hosted else collection
    return _missing(store, collection, kind.parent, name, names_there(store))


def _missing(store: StoreURI, collection: str, noun: str, name: str, there: list[str] | None,
             note: str = "") -> CollectionNotFoundError:
    """The refusal of a search on a missing collection, naming the ones there are (``there``, when known)."""
    nouns = {"index": "indexes"}.get(noun, noun + "s")
    listed = "" if there is None else f" ({nouns} there: {', '.join(map(repr, there))})" if there \
        else f" (there are no {nouns})"
    return CollectionNotFoundError(f"store {store.shown}: {noun} {name!r} does not exist{listed}{note}",
                                   store=store.shown, collection=collection)


def names_there(store: StoreURI) -> list[str] | None:
    """The collections (or, for a hosted kind, the indexes) at ``store``, for messages; None if unreadable."""
    try:
        return sorted(store.kind.load_collection().names_there(store))
    except Exception:  # the list only helps a message: failing to read it must not replace the message
        return None


def store_failure(store: StoreURI, error: Exception) -> StoreError:
    """The one-line report of a store's failure; clients' messages may hold the URL with its credentials."""
    message = str(error) if isinstance(error, JinaV3Error) else f"store {store.shown}: {type(error).__name__}: {error}"
    kind = SignatureMismatchError if isinstance(error, SignatureMismatchError) else StoreError
    return kind(scrub(message, store.secrets))


__all__ = ["StoreURI", "parse_store", "with_credentials", "check_key_variable", "key_from_variable",
           "open_store", "open_collection", "store_class", "names_there", "store_failure", "WORK_RETRIES"]
