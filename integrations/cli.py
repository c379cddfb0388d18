"""The ``jinav3`` command line: index a corpus into a vector store, search it, convert a checkpoint.

    jinav3 index examples/data/passages.jsonl                 # into qdrant:./jinav3-data/qdrant
    jinav3 search "how do I test a new cream?" --top-k 5
    jinav3 search "tea" --filter lang=zh --json
    jinav3 convert ./jina-embeddings-v3 ./jina-embeddings-v3-native
    jinav3 info

Store URIs: ``qdrant:PATH`` (local mode, the default ``qdrant:./jinav3-data/qdrant``),
``qdrant+http://HOST:PORT``, ``milvus:PATH.db`` (Milvus Lite), ``milvus+http://HOST:PORT``,
``pinecone:INDEX`` (``$PINECONE_API_KEY``). A server's credentials come from ``--api-key-env NAME``
(the variable holding the key or token) or the URI's ``user:password@``; whatever holds a secret is
printed redacted (``root:***@``) and scrubbed from every message. The model is ``--model``, else
``$JINAV3_MODEL``, else ``jinaai/jina-embeddings-v3``.

Errors are one line on stderr (``jinav3: error: ...``): exit status 2 for a usage error (a bad option
value, found before any work), 1 for a failure of the work; ``JINAV3_DEBUG=1`` prints the traceback
before it. It lives in ``jinav3.integrations`` because it talks to stores, which ``jinav3`` (core)
never imports.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, cast
from urllib.parse import unquote

from jinav3 import env
from jinav3.errors import (
    CorpusError,
    InvalidArgumentError,
    JinaV3Error,
    SignatureMismatchError,
    StoreError,
    install_hint,
)
from jinav3.secrets import USER_INFO as _USER_INFO
from jinav3.secrets import redact, scrub, uri_secrets

from .hybrid import MODES, RRF_K, check_mode

if TYPE_CHECKING:  # the model and the stores are imported when a command needs them, not for --help
    from jinav3 import Encoder, TextEncoder

    from .pinecone import PineconeStore
    from .store import Hit, VectorStore

DEFAULT_DATA_DIR = "./jinav3-data"
DEFAULT_STORE = "qdrant:./jinav3-data/qdrant"
DEFAULT_COLLECTION = "jinav3"
MODEL_ENV = env.MODEL
DEBUG_ENV = env.DEBUG
PINECONE_KEY_ENV = env.PINECONE_API_KEY
# --server's key when no --server-api-key-env names one: jinav3 serve's, then the Jina API's (for api.jina.ai only)
SERVER_KEY_ENV = (env.SERVER_API_KEY, *env.JINA_API_KEYS)
WORK_RETRIES = 5  # retries of a transient store error once the store is open
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Loggers of the Milvus clients, which log each failed call with its traceback before raising it.
MILVUS_LOGGERS = ("pymilvus", "milvus_lite")

STORE_FORMS = "qdrant:PATH, qdrant+http://HOST:PORT, milvus:PATH.db, milvus+http://HOST:PORT or pinecone:INDEX"

# Packages `info` reports when installed (distribution name, what it is for).
CORE_PACKAGES = ("torch", "transformers", "peft", "tokenizers", "safetensors", "huggingface_hub", "numpy")
OPTIONAL_PACKAGES = ("qdrant-client", "pymilvus", "milvus-lite", "pinecone", "haystack-ai", "llama-index-core",
                     "langchain-core", "ray", "pyarrow", "httpx", "fastapi", "uvicorn", "openai")


class CLIError(Exception):
    """A failure of the work, reported as one line without a traceback (exit status 1)."""


class UsageError(CLIError):
    """A bad command line: an option value found wrong before any work started (exit status 2)."""


def exit_status(error: BaseException) -> int:
    """THE exit status of a failed run: 2 for a usage error, 1 for a failure of the work."""
    return 2 if isinstance(error, UsageError) else 1


# ============================================================================================ secrets
# What in a URI is secret, redact() and scrub(): jinav3.secrets (imported above), shared with RemoteEncoder.


def api_key_values(args: argparse.Namespace) -> list[str]:
    """The values of the API key variables this run may use, to scrub from what it prints."""
    names = (getattr(args, "api_key_env", None), PINECONE_KEY_ENV, getattr(args, "server_api_key_env", None),
             *SERVER_KEY_ENV)
    return [os.environ[name] for name in names if name and os.environ.get(name)]


# ============================================================================================ stores
@dataclass(frozen=True)
class StoreURI:
    """A parsed ``--store`` value: ``scheme`` (qdrant, milvus, pinecone), ``mode`` (local, server, index),
    ``target`` (a path, a server URL without its user info, or an index name), ``user_info`` (the URL's
    ``user:password`` or token, or None) and ``api_key`` (from the environment, set by :func:`with_credentials`).
    Print it as :attr:`shown`: ``raw`` holds the credentials as typed."""

    raw: str
    scheme: str
    mode: str
    target: str
    user_info: str | None = None
    api_key: str | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return f"StoreURI({self.shown!r})"

    @property
    def shown(self) -> str:
        """The URI with its secrets redacted: the only form that is ever printed."""
        return redact(self.raw)

    @property
    def secrets(self) -> list[str]:
        return uri_secrets(self.raw) + ([self.api_key] if self.api_key else [])


def place(store: StoreURI, collection: str) -> str:
    """``qdrant:./data collection 'docs'`` / ``pinecone:idx namespace 'docs'``: for messages."""
    return f"{store.shown} {'namespace' if store.scheme == 'pinecone' else 'collection'} {collection!r}"


def parse_store(uri: str) -> StoreURI:
    """Parse a store URI; raise UsageError naming the accepted forms for anything else."""
    shown = redact(uri)
    user = _USER_INFO.match(uri)
    bare = user["head"] + uri[user.end():] if user else uri  # the URI without its user info
    scheme, sep, rest = bare.partition(":")
    if not sep or not rest:
        raise UsageError(f"store: {shown!r} is not a store URI; use {STORE_FORMS}")
    base, plus, transport = scheme.partition("+")
    if base not in ("qdrant", "milvus", "pinecone"):
        raise UsageError(f"store: unknown scheme {scheme!r} in {shown!r}; use {STORE_FORMS}")
    if plus:
        if base == "pinecone" or transport not in ("http", "https") or not rest.startswith("//") or len(rest) <= 2:
            raise UsageError(f"store: unknown scheme {scheme!r} in {shown!r}; use {STORE_FORMS}")
        return StoreURI(uri, base, "server", f"{transport}:{rest}", user["info"] if user else None)
    if rest.startswith("//"):
        raise UsageError(f"store: {shown!r}: for a server write {base}+http:{shown.partition(':')[2]}; "
                         f"for a local path write {base}:PATH")
    if base == "pinecone":
        return StoreURI(uri, base, "index", rest)
    if base == "milvus" and not rest.endswith(".db"):
        raise UsageError(f"store: {shown!r}: Milvus Lite needs a file name ending in .db, "
                         "e.g. milvus:./jinav3-data/milvus.db")
    return StoreURI(uri, base, "local", rest)


def check_key_variable(variable: str, option: str) -> None:
    """``option`` (--api-key-env, --server-api-key-env) must name an environment variable: a value that is no
    such name is most likely the key itself, so say so without echoing it."""
    if not _ENV_NAME.fullmatch(variable):
        raise UsageError(f"{option}: give the NAME of an environment variable (letters, digits, _) "
                         "that holds the API key, not the key itself")


def key_from_variable(variable: str, option: str) -> str:
    """The API key in ``$variable`` (named by ``option``); refused when it is not set or empty."""
    if not os.environ.get(variable):
        raise UsageError(f"{option}: ${variable} is {'empty' if variable in os.environ else 'not set'}; "
                         "set it to the API key")
    return os.environ[variable]


def with_credentials(store: StoreURI, variable: str | None) -> StoreURI:
    """``store`` with its API key from ``$variable`` (``--api-key-env``), else ``$PINECONE_API_KEY`` for Pinecone.
    Fails before the model loads when a credential is missing; the value itself is never printed."""
    if variable:
        check_key_variable(variable, "--api-key-env")
        if store.mode == "local":
            raise UsageError(f"--api-key-env: {store.shown} is a local store; an API key only applies to a server "
                             "(qdrant+http..., milvus+http...) or Pinecone")
        if store.user_info is not None:
            raise UsageError(f"--api-key-env: {store.shown} carries credentials already (user info); "
                             "give them in one place")
        return replace(store, api_key=key_from_variable(variable, "--api-key-env"))
    if store.scheme == "pinecone":
        if not os.environ.get(PINECONE_KEY_ENV):
            raise UsageError(f"store {store.shown}: set {PINECONE_KEY_ENV} to your Pinecone API key "
                             "(or name the variable that holds it with --api-key-env)")
        return replace(store, api_key=os.environ[PINECONE_KEY_ENV])
    return store


def store_of(args: argparse.Namespace) -> StoreURI:
    store = parse_store(args.store)
    if getattr(args, "server", None) and store.mode == "local" and not getattr(args, "server_api_key_env", None):
        return with_credentials(store, None)  # --api-key-env is then the server's key (server_key_variable)
    return with_credentials(store, args.api_key_env)


def connection(store: StoreURI) -> dict[str, Any]:
    """The keyword arguments that point a store class (and its client) at ``store``, credentials included:
    user info goes to the client as its credential, never inside the URL it may echo."""
    if store.scheme == "pinecone":
        return {"index": store.target, "api_key": store.api_key}
    if store.mode == "local":
        return {("path" if store.scheme == "qdrant" else "uri"): str(Path(store.target).expanduser())}
    user = unquote(store.user_info) if store.user_info else None
    if store.scheme == "qdrant":  # Qdrant has API keys, no users: the password of user:KEY@, or all of KEY@
        name, colon, password = (user or "").partition(":")
        key = store.api_key or (password if colon else name) or None
        return {"url": store.target, **({"api_key": key} if key else {})}
    token = store.api_key or user  # Milvus takes "user:password" or an API key as its token
    return {"uri": store.target, **({"token": token} if token else {})}


def index_hint(store: StoreURI, collection: str) -> str:
    return shlex.join(["jinav3", "index", "CORPUS", "--store", store.shown, "--collection", collection])


def store_class(store: StoreURI) -> type[VectorStore]:
    """The store helper class for ``store``; its client is imported only now."""
    try:
        if store.scheme == "qdrant":
            from .qdrant import QdrantStore

            return QdrantStore
        if store.scheme == "milvus":
            from .milvus import MilvusStore

            return MilvusStore
        from .pinecone import PineconeStore

        return PineconeStore
    except ImportError as error:
        cause = error.__cause__ or error
        raise CLIError(f"store {store.shown} needs the {store.scheme} client: {install_hint(store.scheme)} "
                       f"({cause})") from error


def open_store(store: StoreURI, encoder: TextEncoder, collection: str, dimensions: int | None, create: bool = True,
               adopt_signature: bool = False, hybrid: bool | None = None) -> VectorStore:
    """The store helper for ``store``. ``create=False`` (search) creates nothing, not even the folder or file of a
    local store, and refuses a missing collection naming the ones there are; ``adopt_signature`` takes the
    dimensions and tasks left unset from the collection's signature."""
    Store = store_class(store)
    # Open without retries, so a wrong or unreachable address fails at once; the work retries transient errors.
    kwargs: dict[str, Any] = {"create": create, "retries": 0, "adopt_signature": adopt_signature,
                              "namespace" if store.scheme == "pinecone" else "collection": collection,
                              **connection(store)}
    if dimensions is not None:
        kwargs["dimensions"] = dimensions
    if hybrid is not None:  # else as the collection is (a new one: dense)
        kwargs["hybrid"] = hybrid
    made = local_folders(store, collection, create)
    try:
        opened = Store(encoder, **kwargs)
    except BaseException as error:
        for folder in made:  # nothing is left behind by a store that did not open
            with suppress(OSError):
                folder.rmdir()
        if isinstance(error, InvalidArgumentError) or not isinstance(error, Exception):
            raise  # an option's value (--dimensions, --collection): setting_up() makes it a usage error
        raise open_failure(store, collection, create, error) from error
    if not create and store.scheme == "pinecone":
        _require_namespace(cast("PineconeStore", opened), store, collection)
    opened.retries = WORK_RETRIES
    return opened


def local_folders(store: StoreURI, collection: str, create: bool) -> list[Path]:
    """Refuse to search a local store that is not there (its client would make it); make the folders a new
    Milvus Lite file needs (Qdrant makes its own) and return them, innermost first."""
    if store.mode != "local":
        return []
    path = Path(store.target).expanduser()
    if not create and not path.exists():
        raise CLIError(f"store {store.shown} does not exist; index a corpus into it first: "
                       f"{index_hint(store, collection)}")
    if store.scheme != "milvus":
        return []
    made = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    return made


def open_failure(store: StoreURI, collection: str, create: bool, error: Exception) -> CLIError:
    """Why the store did not open, in one line: for a search, a missing collection names the ones there are."""
    if create or not isinstance(error, StoreError) or isinstance(error, SignatureMismatchError) \
            or "does not exist" not in str(error):
        return store_failure(store, error)
    if store.scheme == "pinecone":
        return missing(store, collection, "index", store.target, pinecone_indexes(store))
    return missing(store, collection, "collection", collection, collections(store))


def missing(store: StoreURI, collection: str, kind: str, name: str, there: list[str] | None) -> CLIError:
    """The refusal of a search on a missing collection, naming the ones there are (``there``, when known)."""
    kinds = {"index": "indexes"}.get(kind, kind + "s")
    listed = "" if there is None else f" ({kinds} there: {', '.join(map(repr, there))})" if there \
        else f" (there are no {kinds})"
    return CLIError(f"store {store.shown}: {kind} {name!r} does not exist{listed}; index a corpus into it first: "
                    f"{index_hint(store, collection)}")


def collections(store: StoreURI) -> list[str] | None:
    """The collections of a Qdrant or Milvus store, for a "does not exist" message (None if they cannot be read)."""
    try:
        if store.scheme == "qdrant":
            from qdrant_client import QdrantClient

            client = QdrantClient(**connection(store))
            try:
                return sorted(c.name for c in client.get_collections().collections)
            finally:
                client.close()
        from pymilvus import MilvusClient

        client = MilvusClient(**connection(store))
        try:
            return sorted(client.list_collections())
        finally:
            client.close()
    except Exception:  # the list only helps the message: failing to read it must not replace the message
        return None


def pinecone_indexes(store: StoreURI) -> list[str] | None:
    try:
        from pinecone import Pinecone

        return sorted(Pinecone(api_key=store.api_key).list_indexes().names())
    except Exception:  # as for collections()
        return None


def _require_namespace(opened: PineconeStore, store: StoreURI, collection: str) -> None:
    """Pinecone has no empty namespaces: searching one that is not there is a mistake, not "No results"."""
    try:
        assert opened.index is not None  # an opened Pinecone store holds its index
        namespaces = sorted(opened.index.describe_index_stats().namespaces or {})
    except Exception:  # the search itself reports a store that fails
        return
    if collection in namespaces or (collection == "" and "__default__" in namespaces):
        return
    _close(opened)
    error = missing(store, collection, "namespace", collection, namespaces)
    raise CLIError(f"{error} (a namespace written seconds ago may not be listed yet)")


def store_failure(store: StoreURI, error: Exception) -> CLIError:
    """The one-line report of a store's failure; clients' messages may hold the URL with its credentials."""
    message = str(error) if isinstance(error, JinaV3Error) else f"store {store.shown}: {type(error).__name__}: {error}"
    return CLIError(scrub(message, store.secrets))


@contextmanager
def setting_up():
    """While the model loads and the store opens, nothing has been done yet: a library InvalidArgumentError then
    names an option's value (--dimensions, --dtype, --device, --collection), which makes it a usage error."""
    try:
        yield
    except CorpusError:  # bad rows (--strict): a failure of the work, exit 1, even though it subclasses ValueError
        raise
    except InvalidArgumentError as error:
        raise UsageError(str(error)) from error


def check_model_options(args: argparse.Namespace) -> None:
    """--device and --dtype checked before a corpus is read or a model loaded (with --server: that none is given,
    the server has chosen them)."""
    if getattr(args, "server", None):
        given = [flag for flag, value in (("--model", args.model), ("--device", args.device != "auto"),
                                          ("--dtype", args.dtype != "auto")) if value]
        if given:
            raise UsageError(f"--server: the server chooses the model, device and dtype; drop {', '.join(given)}")
        with setting_up():
            server_key_variable(args)
        return
    from jinav3.devices import pick_device, pick_dtype

    with setting_up():
        pick_dtype(args.dtype, pick_device(args.device))


def server_key_variable(args: argparse.Namespace) -> str | None:
    """The variable holding --server's API key: NAME of --server-api-key-env; else, with a local store (which
    takes no key), NAME of --api-key-env; else $JINAV3_API_KEY (and for api.jina.ai $JINA_API_KEY,
    $JINAAI_API_KEY), the first one set; else none. A named variable that is not set or empty is refused."""
    variable = args.server_api_key_env
    if variable is None and args.api_key_env and parse_store(args.store).mode == "local":
        variable = args.api_key_env
    if variable is not None:
        option = "--server-api-key-env" if args.server_api_key_env else "--api-key-env"
        check_key_variable(variable, option)
        key_from_variable(variable, option)
        return variable
    hosted = "api.jina.ai" in args.server
    return next((name for name in (SERVER_KEY_ENV if hosted else SERVER_KEY_ENV[:1]) if os.environ.get(name)), None)


# ============================================================================================ helpers
def model_choice(model: str | None) -> tuple[str, str]:
    """(model, where the choice came from)."""
    from jinav3.identity import DEFAULT_MODEL

    if model:
        return model, "--model"
    if os.environ.get(MODEL_ENV):
        return os.environ[MODEL_ENV], f"${MODEL_ENV}"
    return DEFAULT_MODEL, "default"


def load_encoder(args):
    if getattr(args, "server", None):  # the model is the server's: no torch model in this process
        from jinav3 import RemoteEncoder

        # The key by its variable, so that a refused key is reported by the variable's name (never its value).
        variable = server_key_variable(args)
        return RemoteEncoder(args.server, api_key_env=variable) if variable else RemoteEncoder(args.server)
    from jinav3 import Encoder

    model, _ = model_choice(args.model)
    return Encoder.from_pretrained(model, device=args.device, dtype=args.dtype)


def one_line(text: str, limit: int = 600) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def token_counts(encoder: Encoder, texts: list[str]) -> list[int]:
    """Each text's tokens (no ``<s>``/``</s>``, no instruction): what the summaries count."""
    encoded = encoder.tokenizer(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)
    return [len(ids) for ids in encoded["input_ids"]]


def text_room(encoder: Any, task: str | None, max_length: int | None = None) -> int | None:
    """How many of a text's tokens the model embeds when it embeds the text whole (not late-chunked): its
    maximum length less ``<s>``, ``</s>`` and the task's instruction; the rest is cut off. None when the
    encoder does not say (a server's model)."""
    limit = max_length or getattr(encoder, "max_length", None)
    instruction = getattr(encoder, "instruction", None)
    if not isinstance(limit, int) or not callable(instruction) or getattr(encoder, "tokenizer", None) is None:
        return None
    prefix = instruction(task) if task else ""
    return max(limit - 2 - (sum(token_counts(encoder, [prefix])) if prefix else 0), 0)


def embedded_tokens(encoder: Any, texts: list[str], task: str | None, max_length: int | None = None,
                    whole: bool = True) -> tuple[list[int], list[int]]:
    """THE token count of the summaries (``jinav3 index``, with and without ``--ray``): each text's tokens the
    model actually embeds, and the positions of the texts it truncated. Embedded whole, a text past the model's
    length is cut there (late chunking embeds all of it, in windows)."""
    counts = token_counts(encoder, texts)
    room = text_room(encoder, task, max_length) if whole else None
    if room is None:
        return counts, []
    return [min(n, room) for n in counts], [i for i, n in enumerate(counts) if n > room]


def _rate(amount: float, seconds: float) -> str:
    return f"{amount / seconds:,.1f}" if seconds > 0 else "-"


class IndexProgress:
    """Wraps the Encoder for a store's ``add``: counts documents, chunks and tokens as each batch is
    embedded, and moves the progress bar (documents/s, tokens/s). Everything else is the encoder's."""

    def __init__(self, encoder: TextEncoder, total: int, quiet: bool) -> None:
        from tqdm.auto import tqdm

        self._encoder = encoder
        self.documents = self.chunks = self.tokens = 0
        self.truncated = 0  # documents cut at the model's length (embedded whole)
        self.first_truncated: str | None = None  # the first one's text, to find its file:line
        self.room: int | None = None  # tokens of a text embedded whole, when known
        self._used = int(getattr(encoder, "tokens_used", 0) or 0)
        self.started = time.perf_counter()
        # disable=None: draw only on a terminal, so logs and pipes stay clean
        self.bar = tqdm(total=total, unit="doc", desc="Indexing", disable=True if quiet else None,
                        file=sys.stderr, dynamic_ncols=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def encode(self, texts, *args, **kwargs):
        vectors = self._encoder.encode(texts, *args, **kwargs)
        self._step([texts] if isinstance(texts, str) else list(texts), 1 if isinstance(texts, str) else len(vectors),
                   kwargs.get("task"), kwargs.get("max_length"), whole=not kwargs.get("late_chunking"))
        return vectors

    def late_chunk_documents(self, documents, *args, **kwargs):
        chunked = self._encoder.late_chunk_documents(documents, *args, **kwargs)
        self._step(list(documents), sum(len(chunks) for chunks in chunked), kwargs.get("task"), None, whole=False)
        return chunked

    def _step(self, texts: list[str], chunks: int, task: str | None, max_length: int | None, whole: bool) -> None:
        self.documents += len(texts)
        self.chunks += chunks
        used = getattr(self._encoder, "tokens_used", None)  # a RemoteEncoder: the tokens the server reports
        if used is None:
            counts, truncated = embedded_tokens(self._encoder, texts, task, max_length, whole)
            self.tokens += sum(counts)
            if truncated:
                self.truncated += len(truncated)
                self.first_truncated = self.first_truncated or texts[truncated[0]]
                self.room = text_room(self._encoder, task, max_length)
        else:
            self.tokens, self._used = self.tokens + used - self._used, used
        self.bar.update(len(texts))
        self.bar.set_postfix_str(f"{_rate(self.tokens, time.perf_counter() - self.started)} tokens/s", refresh=False)

    def close(self) -> float:
        self.bar.close()
        return time.perf_counter() - self.started

    def truncation_warning(self, located: list[tuple[str, dict[str, Any]]]) -> str | None:
        """One warning for every document cut at the model's length, naming the first by file:line."""
        if not self.truncated or self.room is None:
            return None
        where = next((w for w, record in located if record["text"] == self.first_truncated), "?")
        return truncation_warning(self.truncated, self.room, where)


def truncation_warning(count: int, room: int, first: str) -> str:
    """THE warning of ``jinav3 index`` (both paths) about ``count`` documents the model cut at its length,
    embedding ``room`` tokens of each; ``first`` names the first by file:line."""
    many = count > 1
    return (f"{count} document{'s' if many else ''} past the model's length {'were' if many else 'was'} truncated: "
            f"only the first {room:,} tokens of {'each' if many else 'it'} were embedded (first: {first}); "
            "--late-chunking embeds all of a long document")


# ============================================================================================ commands
def cmd_index(args: argparse.Namespace) -> int:
    from .corpus import read_located

    if getattr(args, "ray", False):  # jinav3 index ... --ray: Ray Data workers (integrations/ray_command.py)
        from .ray_command import cmd_index_ray

        return cmd_index_ray(args)
    store = store_of(args)
    if args.chunk_size is not None and (args.chunker != "tokens" or not args.late_chunking):
        raise UsageError("--chunk-size: only applies with --late-chunking --chunker tokens")
    if args.chunker == "tokens" and args.late_chunking and args.chunk_size is None:
        raise UsageError("--chunker tokens: give --chunk-size N (tokens per chunk)")
    check_model_options(args)
    # Every row is checked (the store's limits included) before the store is opened: a bad row is skipped by
    # file:line, and with --strict nothing is created at all.
    located = read_located(args.corpus, id_field=args.id_field, text_field=args.text_field, strict=args.strict,
                           rules=store_class(store).record_rules(), late_chunking=args.late_chunking)
    records = [record for _, record in located]
    if not records:
        raise CLIError(f"corpus: {args.corpus!r} holds no document with text in field {args.text_field!r}")
    if not args.quiet and sys.stderr.isatty():  # loading the real model takes a while: say what is going on
        source = f"connecting to {redact(args.server)}" if args.server else f"loading {model_choice(args.model)[0]}"
        print(f"jinav3: {len(records)} documents read; {source} ...", file=sys.stderr)
    with setting_up():
        encoder = load_encoder(args)
        progress = IndexProgress(encoder, len(records), args.quiet)
        target = open_store(store, progress, args.collection, args.dimensions, hybrid=True if args.hybrid else None)

    options: dict[str, Any] = {}
    if args.late_chunking:
        options.update(late_chunking=True, chunker=args.chunker)
        if args.chunk_size is not None:
            options["chunk_size"] = args.chunk_size
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    try:
        target.add(records, **options)
        seconds = progress.close()
        try:
            total = target.count()
        except Exception:  # the summary must not fail the run
            total = None
        advice = target.size_advice(total) if total is not None else None
    except KeyboardInterrupt:
        progress.close()
        print(f"jinav3: interrupted after embedding {progress.documents} of {len(records)} documents; run the same "
              "command again to resume (what was written is overwritten, not duplicated)", file=sys.stderr)
        return 130
    except Exception as error:
        progress.close()
        raise store_failure(store, error) from error
    finally:
        _close(target)
    truncation = progress.truncation_warning(located)
    if truncation:
        print(f"jinav3: warning: {truncation}", file=sys.stderr)
    if advice:
        print(f"jinav3: note: {advice}", file=sys.stderr)
    held = f"; it now holds {total} entries" if total is not None else ""
    print(f"Indexed {progress.documents} documents ({progress.chunks} chunks, {progress.tokens:,} tokens) in "
          f"{seconds:.1f} s ({_rate(progress.documents, seconds)} documents/s, {_rate(progress.tokens, seconds)} "
          f"tokens/s) into {place(store, args.collection)}{held}", flush=True)  # said before the process exits
    return 0


def _close(target: Any) -> None:
    try:
        target.close()
    except Exception:  # closing must not turn a success into a failure
        pass


def parse_filters(items: list[str]) -> dict[str, Any]:
    """``key=value`` (a string) or ``key:=JSON`` (a number, bool or list); a key given twice matches any."""
    filters: dict[str, Any] = {}
    for item in items:
        typed = ":=" in item and item.index(":=") < item.index("=") + 1
        key, _, value = item.partition(":=" if typed else "=")
        if not key or (not typed and "=" not in item):
            raise UsageError(f"--filter: {item!r} is not key=value (or key:=JSON for numbers and booleans)")
        if typed:
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise UsageError(f"--filter: {item!r}: the value after := must be JSON ({error.msg})") from error
        values = value if isinstance(value, list) else [value]
        if key in filters:
            previous = filters[key] if isinstance(filters[key], list) else [filters[key]]
            filters[key] = previous + values
        else:
            filters[key] = value
    return filters


def hit_dict(hit: Hit) -> dict[str, Any]:
    return {
        "id": str(hit.id),
        "score": None if hit.score is None else float(hit.score),
        "text": hit.text,
        "metadata": dict(hit.metadata or {}),
    }


def print_table(hits: list[dict[str, Any]], out: TextIO) -> None:
    if not hits:
        print("No results.", file=out)
        return
    width = shutil.get_terminal_size((120, 24)).columns
    id_width = min(max(len(h["id"]) for h in hits), 40)
    indent = 4 + 2 + 7 + 2 + id_width + 2
    text_width = max(width - indent, 30)
    print(f"{'#':>4}  {'score':>7}  {'id':<{id_width}}  text", file=out)
    for rank, hit in enumerate(hits, 1):
        shown_id = hit["id"] if len(hit["id"]) <= id_width else hit["id"][: id_width - 1] + "…"
        text = one_line(hit["text"] or "", text_width)
        print(f"{rank:>4}  {hit['score']:>7.4f}  {shown_id:<{id_width}}  {text}", file=out)
        if hit["metadata"]:
            meta = " ".join(f"{k}={json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v}"
                            for k, v in hit["metadata"].items())
            print(" " * indent + one_line(meta, text_width), file=out)


def cmd_search(args: argparse.Namespace) -> int:
    store = store_of(args)
    filters = parse_filters(args.filter or [])
    check_model_options(args)
    with setting_up():
        encoder = load_encoder(args)
        # the collection knows the --dimensions and tasks it was made with: use them unless given
        target = open_store(store, encoder, args.collection, args.dimensions, create=False, adopt_signature=True)
    options: dict[str, Any] = {"top_k": args.top_k}
    if filters:
        options["filter"] = filters
    if args.group_by_document:
        options["group_by_document"] = True
    if args.mode is not None:
        options["mode"] = args.mode
        try:  # --mode sparse on a dense collection: a usage error, before any work
            with setting_up():
                check_mode(args.mode, target.hybrid, place(store, args.collection))
        except UsageError:
            _close(target)
            raise
    if args.rrf_k is not None:
        options["rrf_k"] = args.rrf_k
    try:
        hits = [hit_dict(h) for h in target.search(args.query, **options)]
    except Exception as error:
        raise store_failure(store, error) from error
    finally:
        _close(target)
    if args.json:
        json.dump(hits, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(hits, sys.stdout)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from jinav3 import Encoder

    destination = Path(args.dst).expanduser()
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise CLIError(f"convert: {args.dst!r} already exists and is not an empty folder; choose a new folder")
    check_model_options(args)
    encoder = Encoder.from_pretrained(args.src, device=args.device, dtype=args.dtype)
    destination.parent.mkdir(parents=True, exist_ok=True)
    # write next to the destination, then rename: an interrupted convert leaves no half-written model
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    umask = os.umask(0)
    os.umask(umask)
    try:
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the model folder should not be
        encoder.save_pretrained(staging)
        if destination.exists():
            destination.rmdir()
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"Converted {args.src} ({encoder.checkpoint.layout} layout, {str(encoder.dtype).removeprefix('torch.')}) "
          f"to {args.dst} (transformers-native: base weights + one peft adapter folder per task)")
    return 0


def _version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def cmd_info(args: argparse.Namespace) -> int:
    import platform

    import torch
    from huggingface_hub import constants

    from jinav3 import __version__, onednn
    from jinav3.devices import describe_cpu_bf16, pick_device, pick_dtype

    check_model_options(args)
    rows: list[tuple[str, str]] = []

    def section(title: str) -> None:
        rows.append((title, ""))

    def row(key: str, value: str) -> None:
        rows.append(("  " + key, value))

    section("versions")
    row("jinav3", __version__)
    row("python", platform.python_version())
    for name in CORE_PACKAGES:
        row(name, _version(name) or "not installed")
    section("optional clients")
    for name in OPTIONAL_PACKAGES:
        row(name, _version(name) or "not installed")

    section("device")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    row("cuda", f"yes: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)} (torch CUDA {torch.version.cuda})"
        if cuda else f"no (torch built {'with CUDA ' + torch.version.cuda if torch.version.cuda else 'for CPU'})")
    row("mps", "yes" if mps else "no")
    device = pick_device(args.device)
    row(f"device ({args.device})", str(device))
    row(f"dtype ({args.dtype})", str(pick_dtype(args.dtype, device)).removeprefix("torch."))
    row("dtype (auto) on cpu", str(pick_dtype("auto", torch.device("cpu"))).removeprefix("torch.")
        + " (exact vectors; --dtype bfloat16 to trade them for speed)")
    row("cpu bfloat16 matmul", describe_cpu_bf16())
    row("cpu float32 linear layers", onednn.describe())
    row("cpu threads", str(torch.get_num_threads()))

    section("model")
    model, source = model_choice(args.model)
    row("model", f"{model}  (from {source})")
    row(f"${MODEL_ENV}", os.environ.get(MODEL_ENV) or "(unset)")
    path = Path(model).expanduser()
    if path.is_dir():
        layout = _layout_of(path)
        row("resolves to", f"local folder {path.resolve()}{layout}")
    else:
        row("resolves to", "a Hugging Face hub id (not a local folder)")
        row("hub cache", str(constants.HF_HUB_CACHE))
        row("in cache", _in_cache(model))
        row("HF_HUB_OFFLINE", "on (downloads disabled)" if constants.HF_HUB_OFFLINE else "off (downloads allowed)")
        row("HF_ENDPOINT", constants.ENDPOINT)

    section("server (--server)")  # whether a key is there, never the key
    for name in SERVER_KEY_ENV:
        row(f"${name}", "set (value hidden)" if os.environ.get(name) else "(unset)")

    section("data")
    row("data dir", f"{DEFAULT_DATA_DIR}  ({Path(DEFAULT_DATA_DIR).resolve()})")
    row("default store", DEFAULT_STORE)
    row("default collection", DEFAULT_COLLECTION)

    width = max(len(k) for k, v in rows if v) + 2
    for key, value in rows:
        print(f"{key:<{width}}{value}" if value else key)
    return 0


def _layout_of(path: Path) -> str:
    try:
        from jinav3.checkpoint import layout_of, read_config

        return f" ({layout_of(read_config(path))} layout)"
    except Exception as error:  # info reports, it does not fail
        return f" (not loadable: {one_line(str(error), 200)})"


def _in_cache(model: str) -> str:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json")
    except Exception:
        return "unknown"
    return f"yes ({Path(found).parent})" if isinstance(found, str) else "no"


# ============================================================================================ parser
class Parser(argparse.ArgumentParser):
    """argparse whose errors are UsageErrors: one ``jinav3: error:`` line and exit 2, like every usage error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No prefix matching: --mode must never be read as --model, nor any new flag swallowed by an old one.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="jinav3",
        description="Index and search text with jina-embeddings-v3 vectors in Qdrant, Milvus or Pinecone.",
        epilog=f"Store URIs: {STORE_FORMS}. Model: --model, else ${MODEL_ENV}, else jinaai/jina-embeddings-v3. "
               f"Set {DEBUG_ENV}=1 to see tracebacks.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", metavar="ID|DIR",
                       help=f"hub id or local folder (default: ${MODEL_ENV}, else jinaai/jina-embeddings-v3)")
        p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
        p.add_argument("--dtype", default="auto",
                       help="auto (bfloat16 on CUDA, else float32), float32, bfloat16, float16")

    def server_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--server", metavar="URL",
                       help="embed through this server instead of a local model: jinav3 serve "
                            "(http://127.0.0.1:8080) or the Jina API (https://api.jina.ai); not with --model, "
                            "--device or --dtype")
        p.add_argument("--server-api-key-env", metavar="NAME",
                       help="environment variable holding --server's API key (default: $JINAV3_API_KEY; for "
                            "api.jina.ai also $JINA_API_KEY, $JINAAI_API_KEY; with a local store --api-key-env "
                            "names it too)")

    def store_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", default=DEFAULT_STORE, metavar="URI", help=f"{STORE_FORMS} (default: %(default)s)")
        p.add_argument("--collection", default=DEFAULT_COLLECTION, metavar="NAME",
                       help="collection (Qdrant, Milvus) or namespace (Pinecone) (default: %(default)s)")
        p.add_argument("--dimensions", type=_positive, metavar="N",
                       help="Matryoshka size 1..1024 (index default: all; search default: the collection's)")
        p.add_argument("--api-key-env", metavar="NAME",
                       help="environment variable holding the API key or token of a server or Pinecone (Qdrant "
                            f"api key, Milvus token; default for Pinecone: {PINECONE_KEY_ENV}), so no secret is "
                            "typed on the command line; user:password@ in a server URI works too")

    p = commands.add_parser("index", help="embed a corpus with passage vectors and write it to a store",
                            description="Embed CORPUS (.jsonl, .json, .csv, .parquet, .txt, .md or a folder of them) "
                                        "with retrieval.passage vectors and upsert it. Re-running overwrites, "
                                        "so an interrupted run resumes by running it again.")
    p.add_argument("corpus", metavar="CORPUS")
    store_options(p)
    model_options(p)
    server_options(p)
    p.add_argument("--late-chunking", action="store_true",
                   help="split each document into chunks embedded in the context of the whole document")
    p.add_argument("--hybrid", action="store_true",
                   help="a new collection also holds lexical (BM25) vectors from the model's tokenizer, for "
                        "jinav3 search --mode sparse/hybrid (Qdrant); an existing collection keeps its kind")
    p.add_argument("--chunker", choices=("sentences", "tokens"), default="sentences",
                   help="how --late-chunking splits documents (default: %(default)s)")
    p.add_argument("--chunk-size", type=_positive, metavar="N", help="tokens per chunk with --chunker tokens")
    p.add_argument("--id-field", default="id", metavar="NAME",
                   help="field holding the document id (default: %(default)s)")
    p.add_argument("--text-field", default="text", metavar="NAME", help="field holding the text (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive, metavar="N",
                   help="documents embedded per step, written while the next step is embedded "
                        "(default: the store's, 64)")
    p.add_argument("--strict", action="store_true",
                   help="stop at a bad row (no text, a repeated id, NaN) instead of skipping it")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    from .ray_command import add_ray_arguments  # imports without the ray extra

    add_ray_arguments(p)
    p.set_defaults(handler=cmd_index)

    p = commands.add_parser("search", help="search a store with a query vector",
                            description="Embed QUERY with retrieval.query and print the nearest entries.")
    p.add_argument("query", metavar="QUERY")
    store_options(p)
    model_options(p)
    server_options(p)
    p.add_argument("--top-k", type=_positive, default=10, metavar="N", help="how many hits (default: %(default)s)")
    p.add_argument("--filter", action="append", metavar="KEY=VALUE",
                   help="metadata filter, repeatable: key=value (string) or key:=JSON (number, bool, list); "
                        "one key given twice matches either value")
    p.add_argument("--group-by-document", action="store_true", help="one hit per document (late-chunked corpora)")
    p.add_argument("--mode", choices=MODES, help="dense, sparse (lexical BM25) or hybrid (both fused by RRF); "
                                                 "default: hybrid on a hybrid collection, else dense")
    p.add_argument("--rrf-k", type=_positive, metavar="K",
                   help=f"reciprocal rank fusion's constant for --mode hybrid (default: {RRF_K})")
    p.add_argument("--json", action="store_true", help="print a JSON list of {id, score, text, metadata}")
    p.set_defaults(handler=cmd_search)

    p = commands.add_parser("convert", help="write a checkpoint in the transformers-native layout",
                            description="Load SRC (original jinaai/jina-embeddings-v3 layout, a hub id or folder) and "
                                        "write DST: transformers-native base weights plus one peft adapter per task.")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")
    p.add_argument("--device", default="cpu", help="where to load it (default: %(default)s)")
    p.add_argument("--dtype", default="float32",
                   help="weights to write: float32, bfloat16, float16 (default: %(default)s)")
    p.set_defaults(handler=cmd_convert)

    from .eval_command import add_eval_command

    add_eval_command(commands, model_options, server_options)

    from .server.command import add_serve_command  # imports without the server extra

    add_serve_command(commands)

    p = commands.add_parser("info", help="versions, device, model resolution and data locations")
    model_options(p)
    p.set_defaults(handler=cmd_info)
    return parser


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return number


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (0 on success, 1 for a failed run, 2 for a usage error)."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    # Known before parsing, so that even a usage error is scrubbed; the API key joins once the options are read.
    secrets = [secret for item in argv for secret in uri_secrets(item)]
    log = logging.getLogger("jinav3")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("jinav3: %(levelname)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    handler.addFilter(scrubbing(secrets))  # retry warnings quote the clients' errors
    log.addHandler(handler)
    try:
        args = build_parser().parse_args(argv)
        secrets += api_key_values(args)
        with warnings.catch_warnings(), client_logs(getattr(args, "store", None), debug, secrets):
            show = warnings.showwarning
            warnings.showwarning = lambda message, *rest: show(scrub(str(message), secrets), *rest)
            if not debug:
                warnings.filterwarnings("ignore", message="Failed to obtain server version")
                warnings.filterwarnings("ignore", message="Api key is used with an insecure connection")
            return args.handler(args)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 2
    except KeyboardInterrupt:
        print("jinav3: interrupted; run the same command again to resume (what was written is kept, not duplicated)",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # `jinav3 search ... | head`: the reader left, nothing more to say
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a real file (captured in tests)
            pass
        return 141
    except Exception as error:
        report(error, debug, secrets)
        return exit_status(error)
    finally:
        log.removeHandler(handler)


def report(error: Exception, debug: bool, secrets: list[str]) -> None:
    """The error as one line on stderr, after its traceback with JINAV3_DEBUG; scrubbed of secrets either way
    (clients put URLs and credentials in their messages)."""
    if isinstance(error, (CLIError, JinaV3Error)):
        message = str(error)
    else:
        message = f"{type(error).__name__}: {error}" + ("" if debug else f" (set {DEBUG_ENV}=1 for the traceback)")
    text = "".join(traceback.format_exception(error)) if debug else ""
    sys.stderr.write(scrub(text, secrets) + f"jinav3: error: {one_line(scrub(message, secrets), 2000)}\n")


def scrubbing(secrets: list[str]) -> Callable[[logging.LogRecord], bool]:
    """A logging filter that scrubs each record (message and traceback) of ``secrets``, read at each record."""
    def scrub_record(record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage(), secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, secrets)
        return True

    return scrub_record


@contextmanager
def client_logs(store: str | None, debug: bool, secrets: list[str]) -> Iterator[None]:
    """pymilvus logs every failed call with its traceback (~24 lines) on its own stderr handlers, and Milvus Lite
    its start-up failures, before raising the error the CLI reports in one line: silence them for the run, or
    with JINAV3_DEBUG keep them, scrubbed of secrets. Either way put the loggers back as they were."""
    if not (store or "").startswith("milvus"):
        yield
        return
    try:
        import pymilvus  # noqa: F401  (its import configures its loggers: change them after it, not before)
    except ImportError:  # open_store says how to install it
        yield
        return
    family = [logging.getLogger(name) for name in MILVUS_LOGGERS]
    family += [logger for name, logger in logging.Logger.manager.loggerDict.items()
               if isinstance(logger, logging.Logger) and name.split(".")[0] in MILVUS_LOGGERS
               and logger not in family]
    levels = [logger.level for logger in family]
    scrubber = scrubbing(secrets)
    for logger in family:
        if debug:
            logger.addFilter(scrubber)
        elif logger.level != logging.NOTSET or logger.name in MILVUS_LOGGERS:  # the rest inherit the silence
            logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(family, levels, strict=True):
            logger.removeFilter(scrubber)
            logger.setLevel(level)


if __name__ == "__main__":
    # The package's module, not this __main__ copy: ray_command and the server raise the package's CLIError and
    # UsageError, which this copy's exit_status and report would not recognise (python -m jinav3.integrations.cli).
    from jinav3.integrations.cli import main as package_main

    sys.exit(package_main())
