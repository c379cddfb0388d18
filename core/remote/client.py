"""``RemoteEncoder``'s client half: what it asks of the server (encode, late chunking, chunk spans), with the
same arguments, checks and errors as the local ``Encoder``. The package docstring (``jinav3.remote``) says more."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from jinav3 import env, validation
from jinav3.errors import RemoteError, invalid
from jinav3.late_chunking import Chunk, check_char_spans, check_window, sentence_spans, trim_span
from jinav3.secrets import Secret, redact, scrub, uri_secrets
from jinav3.tasks import DEFAULT_TASK, RETRIEVAL_PASSAGE, RETRIEVAL_QUERY, tasks_for
from jinav3.validation import boolean, choice, chunker_arguments, int_in_range, is_integer, positive_int

from .server_info import HOSTED_MAX_TOKENS, JINA_API_MODEL, JINA_API_URL, ServerInfo, hosted_info, served_info
from .transport import Transport, _base_url, _Request, _vectors

log = logging.getLogger("jinav3.remote")

DEFAULT_REQUEST_INPUTS = 128   # texts per request unless batch_size or the server says otherwise
LONG_DOCUMENTS = ("error", "windows")
_LENGTH_REFUSAL = re.compile(r"token|too long|length|context|exceed", re.IGNORECASE)


class RemoteEncoder(Transport):
    """A ``TextEncoder`` backed by an embeddings server that speaks the Jina Embeddings API.

    url: the server's base URL (``http://127.0.0.1:8080``; a full ``.../v1/embeddings`` works too).
    api_key: the Bearer key; None reads ``$JINAV3_API_KEY`` (``api_key_env`` names another variable;
    for api.jina.ai ``$JINA_API_KEY`` then ``$JINAAI_API_KEY``). model: the model name to send (None:
    the server's; the hosted API: jina-embeddings-v3); model_identity: the identity to record in store
    signatures when the server cannot say (a server that is not jinav3 serve; default the hub id).
    timeout: seconds to wait for an answer (a long document on a busy server takes a while);
    connect_timeout: seconds to connect. retries: attempts after the first for a transient failure;
    backoff: first delay in seconds (doubling, with jitter, at most max_backoff). max_concurrency:
    requests in flight at once. batch_size: texts per request (default 128, within the server's limit).
    long_documents: what late chunking does with a document past the hosted API's context: "error"
    (refuse it, naming it) or "windows" (embed consecutive windows of its chunks, each its own context).
    """

    def __init__(self, url: str, api_key: str | None = None, *, api_key_env: str | None = None,
                 model: str | None = None, model_identity: str | None = None, timeout: float = 120.0,
                 connect_timeout: float = 10.0, retries: int = 5, backoff: float = 0.5, max_backoff: float = 30.0,
                 max_concurrency: int = 4, batch_size: int | None = None, long_documents: str = "error",
                 headers: dict[str, str] | None = None) -> None:
        if not isinstance(url, str) or not url.strip():
            raise invalid("url", f"must be the server's URL, such as http://127.0.0.1:8080, got {url!r}")
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise invalid("url", f"must be an http:// or https:// URL, got {redact(url)!r}")
        self.base_url = _base_url(url.strip())
        self.url = self.base_url  # what repr and messages show (redacted)
        self.hosted = parts.hostname == "api.jina.ai"
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            raise invalid("api_key", "must be a non-empty str or None (None: read it from the environment)")
        if api_key_env is not None and (not isinstance(api_key_env, str) or not re.fullmatch(r"[A-Za-z_]\w*",
                                                                                            api_key_env)):
            raise invalid("api_key_env", f"must be the NAME of an environment variable, got {api_key_env!r}")
        if model is not None and (not isinstance(model, str) or not model):
            raise invalid("model", f"must be a model name or None, got {model!r}")
        if model_identity is not None and (not isinstance(model_identity, str) or not model_identity):
            raise invalid("model_identity", f"must be a model identity or None, got {model_identity!r}")
        self.timeout = _positive_number(timeout, "timeout")
        self.connect_timeout = _positive_number(connect_timeout, "connect_timeout")
        self.retries = int_in_range(retries, "retries", 0, 100)
        self.backoff = _positive_number(backoff, "backoff", allow_zero=True)
        self.max_backoff = _positive_number(max_backoff, "max_backoff", allow_zero=True)
        self.max_concurrency = int_in_range(max_concurrency, "max_concurrency", 1, 256)
        self.batch_size = positive_int(batch_size, "batch_size", allow_none=True)
        self.long_documents = choice(long_documents, "long_documents", LONG_DOCUMENTS)
        if headers is not None and (not isinstance(headers, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items())):
            raise invalid("headers", "must be a dict of str to str, or None")
        if headers and any(k.lower() == "authorization" for k in headers):
            raise invalid("headers", "must not carry Authorization: pass the key as api_key (it is kept secret)")
        self.headers = dict(headers or {})
        self.model = model if model is not None else (JINA_API_MODEL if self.hosted else None)
        self._identity = model_identity
        self._key_given = api_key is not None
        self._api_key_env = api_key_env
        # a Secret: repr, vars, copies and pickles never show it; an unpickled copy reads it from _key_names()
        self._api_key = Secret(api_key, self._key_names()) if api_key is not None else self._key_from_environment()
        self._setup()

    @classmethod
    def jina_api(cls, api_key: str | None = None, **kwargs: Any) -> "RemoteEncoder":
        """The hosted Jina Embeddings API (api.jina.ai), the key from ``api_key``, else ``$JINA_API_KEY`` or
        ``$JINAAI_API_KEY``. Its vectors are the real model's; stores record ``jinaai/jina-embeddings-v3``,
        so a collection filled through it is searched with ``Encoder.from_pretrained`` of that id and back."""
        encoder = cls(JINA_API_URL, api_key, **kwargs)
        if not encoder.has_api_key:
            raise invalid("api_key", "the Jina API needs a key: pass api_key=, or set $JINA_API_KEY (get one at "
                                     "https://jina.ai/embeddings)")
        return encoder

    def _key_names(self) -> tuple[str, ...]:
        """The environment variables the key is read from (when none is given, and by an unpickled copy)."""
        if self._api_key_env:
            return (self._api_key_env,)
        return (env.SERVER_API_KEY,) + (env.JINA_API_KEYS if self.hosted else ())

    def _key_from_environment(self) -> Secret:
        key = Secret.from_env(self._key_names())
        if self._api_key_env and not key:
            raise invalid("api_key_env", f"${self._api_key_env} is not set or empty")
        return key

    def _setup(self) -> None:
        self._lock = threading.RLock()  # info, the connection pool, the token count
        self._client = None  # the connection pool (Transport._http)
        self._client_pid = None
        self._info: ServerInfo | None = None
        self.tokens_used = 0  # tokens the server reports having embedded for this encoder (usage)

    # ----------------------------------------------------------------------------- secrets
    @property
    def has_api_key(self) -> bool:
        return bool(self._api_key)

    @property
    def key_fingerprint(self) -> str | None:
        """sha256 of the key, 16 hex digits: tells keys apart (cache keys) without revealing one."""
        return self._api_key.fingerprint

    def _secrets(self) -> list[str]:
        key = self._api_key.reveal()
        return ([key] if key else []) + uri_secrets(self.base_url)

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets())

    def __repr__(self) -> str:
        model = f", model={self._info.identity!r}" if self._info is not None else ""
        return f"RemoteEncoder({redact(self.base_url)!r}{model}, api_key={'***' if self._api_key else None})"

    def __getstate__(self) -> dict[str, Any]:
        """Copy or pickle the settings, never the connections or the lock. The key is a Secret: a copy shares
        it, a pickle holds only where to read it again (``api_key_env``, else the default variables)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_client", "_client_pid")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup()
        self.tokens_used = state.get("tokens_used", 0)

    # ----------------------------------------------------------------------------- the server
    @property
    def info(self) -> ServerInfo:
        """What the server says of itself (``GET /info``, once), or the hosted API's documented limits."""
        if self._info is None:
            with self._lock:
                if self._info is None:
                    self._info = self._read_info()
        return self._info

    @property
    def name(self) -> str:
        """The model's identity as stores record it: the server's model (so a collection filled through the
        server is searched with the local Encoder of the same model, and back)."""
        return self.info.identity

    @property
    def label(self) -> str:
        return self.info.label

    @property
    def hidden_size(self) -> int:
        return self.info.hidden_size

    @property
    def max_length(self) -> int:
        return self.info.max_length

    def instruction(self, task: str | None) -> str:
        return "" if task is None else self.info.instructions.get(task, "")

    def output_size(self, dimensions: int | None = None) -> int:
        checked = self.check_dimensions(dimensions)
        return self.hidden_size if checked is None else checked

    def check_dimensions(self, dimensions: int | None) -> int | None:
        """The Matryoshka size as an int from 1 to the model's size; None (all of it) passes through."""
        return int_in_range(dimensions, "dimensions", 1, self.hidden_size, allow_none=True)

    def _read_info(self) -> ServerInfo:
        if not self.hosted:
            response = self._send("GET", "/info", None, "GET /info", ok=(200, 404, 405))
            if response.status_code == 200:
                data = response.json()
                if isinstance(data, dict) and data.get("model_identity"):
                    return served_info(data, self._identity, self.model, redact(self.base_url))
            log.info("%s has no jinav3 /info; using the Jina API's limits", redact(self.base_url))
        return hosted_info(self._identity, self.model, redact(self.base_url))

    # ----------------------------------------------------------------------------- encode
    def encode(self, texts: str | Sequence[str], task: str | None | Sequence[str | None] = DEFAULT_TASK,
               dimensions: int | None = None, normalize: bool = True, max_length: int | None = None,
               late_chunking: bool = False, batch_size: int | None = None, show_progress: bool = False, *,
               window: int | None = None, overlap: int | None = None) -> np.ndarray:
        """Embed ``texts`` as ``Encoder.encode`` does: a str gives shape (d,), a list (n, d), float32.

        task: one of the five task names (default ``text-matching``), None for no adapter, or one per text.
        dimensions: Matryoshka size. max_length: truncation in tokens (default: the model's maximum).
        batch_size: at most this many texts per request. late_chunking: the texts are consecutive pieces
        of ONE document, embedded in one request (``window``/``overlap``: jinav3 serve only)."""
        single, requests, n, d = self._plan_encode(texts, task, dimensions, normalize, max_length, late_chunking,
                                                   batch_size, window, overlap)
        vectors = self._run(requests, n, d, show_progress)
        return vectors[0] if single else vectors

    async def aencode(self, texts: str | Sequence[str], task: str | None | Sequence[str | None] = DEFAULT_TASK,
                      dimensions: int | None = None, normalize: bool = True, max_length: int | None = None,
                      late_chunking: bool = False, batch_size: int | None = None, show_progress: bool = False, *,
                      window: int | None = None, overlap: int | None = None) -> np.ndarray:
        """``encode`` for async code: the requests run on the event loop (httpx.AsyncClient), at most
        ``max_concurrency`` at once, with the same retries."""
        single, requests, n, d = self._plan_encode(texts, task, dimensions, normalize, max_length, late_chunking,
                                                   batch_size, window, overlap)
        vectors = await self._arun(requests, n, d, show_progress)
        return vectors[0] if single else vectors

    def encode_queries(self, texts: str | Sequence[str], **kwargs: Any) -> np.ndarray:
        """``encode`` with ``task="retrieval.query"``."""
        return self.encode(texts, task=RETRIEVAL_QUERY, **kwargs)

    def encode_passages(self, texts: str | Sequence[str], **kwargs: Any) -> np.ndarray:
        """``encode`` with ``task="retrieval.passage"``."""
        return self.encode(texts, task=RETRIEVAL_PASSAGE, **kwargs)

    def _plan_encode(self, texts: Any, task: Any, dimensions: Any, normalize: Any, max_length: Any,
                     late_chunking: Any, batch_size: Any, window: Any, overlap: Any
                     ) -> tuple[bool, list[_Request], int, int]:
        """Every check before any request (as Encoder.encode), then the requests: (single, requests, n, d)."""
        info = self.info
        args = validation.encode_arguments(texts, task, dimensions, normalize, max_length, late_chunking, batch_size,
                                           window, overlap, hidden_size=info.hidden_size,
                                           model_max_length=info.max_length)
        items, tasks, max_length = args.texts, args.tasks, args.max_length
        single, d = args.single, self.output_size(args.dimensions)
        base: dict[str, Any] = {"dimensions": args.dimensions, "normalized": args.normalize}
        if args.late_chunking:
            window = max_length if window is None else window
            base.update(self._window_fields(window, overlap))
            if not items:
                return single, [], 0, d
            if len(items) > info.max_inputs:
                raise invalid("texts", f"late chunking sends one document in one request: {len(items)} pieces are "
                                       f"more than the server takes ({info.max_inputs} inputs per request)")
            body = self._body(items, tasks[0], base, late_chunking=True)
            return single, [_Request(body, list(range(len(items))), "the document's pieces")], len(items), d
        if max_length is not None and max_length < info.max_length:
            if not info.jinav3:
                raise invalid("max_length", f"{redact(self.base_url)} truncates only at the model's maximum "
                                            f"({info.max_length} tokens); leave max_length=None")
            base["max_length"] = max_length
        requests = []
        for task_value in dict.fromkeys(tasks):  # one task per request, first-seen order (as the Encoder)
            rows = [i for i, t in enumerate(tasks) if t == task_value]
            for part in self._split(rows, items, args.batch_size):
                body = self._body([items[i] for i in part], task_value, base, late_chunking=False)
                requests.append(_Request(body, part, f"texts[{part[0]}..{part[-1]}]"))
        return single, requests, len(items), d

    def _split(self, rows: list[int], items: list[str], batch_size: int | None) -> Iterator[list[int]]:
        """Rows in requests of at most batch_size texts (within the server's limit) and its request bytes."""
        info = self.info
        most = min(batch_size or self.batch_size or DEFAULT_REQUEST_INPUTS, info.max_inputs)
        budget = int(info.max_request_bytes * 0.9) - 512
        part: list[int] = []
        size = 0
        for i in rows:
            extra = len(items[i].encode("utf-8")) * 2 + 8  # JSON escaping at most doubles most text
            if part and (len(part) >= most or size + extra > budget):
                yield part
                part, size = [], 0
            part.append(i)
            size += extra
        if part:
            yield part

    def _window_fields(self, window: Any, overlap: Any) -> dict[str, Any]:
        """``window``/``overlap`` checked as the Encoder checks them; sent only to jinav3 serve."""
        info = self.info
        if window is None and overlap is None:
            return {}
        if not info.jinav3:
            raise invalid("window", f"{redact(self.base_url)} chooses its own late-chunking windows: window and "
                                    "overlap apply with jinav3 serve only")
        checked_window, checked_overlap = check_window(window, overlap, info.max_length)
        return {"window": checked_window, "overlap": checked_overlap}

    def _body(self, inputs: list[str], task: str | None, base: dict[str, Any], late_chunking: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"input": inputs, "task": task, "late_chunking": late_chunking,
                                "embedding_type": "base64" if self.info.jinav3 else "float",
                                "truncate": not late_chunking}
        if self.info.request_model is not None:
            body["model"] = self.info.request_model
        body.update({k: v for k, v in base.items() if v is not None})
        return body

    # ----------------------------------------------------------------------------- late chunking
    def late_chunk(self, document: str, task: str | None = RETRIEVAL_PASSAGE,
                   chunker: str | Sequence[tuple[int, int]] = "sentences", chunk_size: int | None = None,
                   window: int | None = None, overlap: int | None = None, dimensions: int | None = None,
                   normalize: bool = True) -> list[Chunk]:
        """Chunk ``document`` and embed every chunk in the context of the whole document (``Encoder.late_chunk``)."""
        validation.text(document, "document")
        return self.late_chunk_documents([document], task, chunker, chunk_size, window, overlap, dimensions,
                                         normalize)[0]

    def late_chunk_documents(self, documents: Sequence[str], task: str | None = RETRIEVAL_PASSAGE,
                             chunker: str | Sequence[tuple[int, int]] = "sentences", chunk_size: int | None = None,
                             window: int | None = None, overlap: int | None = None, dimensions: int | None = None,
                             normalize: bool = True) -> list[list[Chunk]]:
        """One list of chunks per document (blank documents: []), as ``Encoder.late_chunk_documents``. One
        request per document, ``max_concurrency`` at once."""
        docs = validation.texts(documents, "documents")
        task = tasks_for(task, 1)[0]
        dimensions = self.check_dimensions(dimensions)
        normalize = boolean(normalize, "normalize")
        spans = _check_chunker(chunker, chunk_size, docs)
        base: dict[str, Any] = {"dimensions": dimensions, "normalized": normalize,
                                **self._window_fields(window, overlap)}
        info = self.info
        if chunker == "tokens" and not info.chunk_spans:
            raise invalid("chunker", f"'tokens' needs the server's tokenizer, and {redact(self.base_url)} has no "
                                     "/tokenize: use chunker='sentences' or (start, end) spans")
        d = self.output_size(dimensions)
        if info.chunk_spans:
            planned = self._exact_plan(docs, task, chunker, chunk_size, spans)
        else:
            planned = [(i, s) for i, s in enumerate(self.chunk_spans(docs, task, chunker, chunk_size)) if s]
        jobs = [(i, s, base) for i, s in planned]
        out: list[list[Chunk]] = [[] for _ in docs]
        for i, chunks in zip([i for i, _ in planned], self._map(lambda job: self._late_document(docs, task, d, *job),
                                                                jobs), strict=True):
            out[i] = chunks
        return out

    def _exact_plan(self, docs: list[str], task: str | None, chunker: Any, chunk_size: int | None,
                    spans: list[tuple[int, int]] | None) -> list[tuple[int, Any]]:
        """(document index, what to send as ``chunker``) for every non-blank document: the client's own
        chunks as spans, or "tokens" (the server counts them with the tokenizer /tokenize uses)."""
        out: list[tuple[int, Any]] = []
        for i, doc in enumerate(docs):
            if not doc.strip():
                continue
            if chunker == "tokens":
                out.append((i, ("tokens", chunk_size)))
            else:
                chars = sentence_spans(doc) if spans is None else spans
                out.append((i, [list(s) for s in chars]))
        return out

    def _late_document(self, docs: list[str], task: str | None, d: int, i: int, plan: Any,
                       base: dict[str, Any]) -> list[Chunk]:
        document = docs[i]
        if self.info.chunk_spans:
            body = self._body([document], task, base, late_chunking=True)
            if isinstance(plan, tuple):
                body.update(chunker="tokens", chunk_size=plan[1])
            else:
                body["chunker"] = plan
            data = self._post(body, f"documents[{i}]")
            vectors = _vectors(data, None, d, f"documents[{i}]")
            bounds = [(e.get("start"), e.get("end")) for e in sorted(data["data"], key=lambda e: e["index"])]
            if not all(is_integer(a) and is_integer(b) for a, b in bounds):
                raise RemoteError(f"{redact(self.base_url)} answered late chunking without chunk spans",
                                  status=None, server_message=None)
            if not isinstance(plan, tuple):
                expected = [t for t in (trim_span(document, a, b) for a, b in plan) if t is not None]
                if [tuple(b) for b in bounds] != expected:
                    raise RemoteError(f"{redact(self.base_url)} chunked documents[{i}] otherwise than asked "
                                      f"({bounds[:3]}... for {expected[:3]}...)", status=None, server_message=None)
            return [Chunk(n, document[a:b], a, b, v) for n, ((a, b), v) in enumerate(zip(bounds, vectors, strict=True))]
        return self._late_pieces(document, plan, task, base, d, f"documents[{i}]")

    def _late_pieces(self, document: str, spans: list[tuple[int, int]], task: str | None, base: dict[str, Any],
                     d: int, what: str) -> list[Chunk]:
        """Late chunking where the server takes pieces only (the hosted API): the chunks' texts as the pieces
        of one request; past the context, refused or (long_documents="windows") halved until each fits."""
        texts = [document[a:b] for a, b in spans]
        try:
            data = self._post(self._body(texts, task, base, late_chunking=True), what)
            vectors = _vectors(data, len(texts), d, what)
        except RemoteError as error:
            if not (error.status in (400, 413, 422) and _LENGTH_REFUSAL.search(error.server_message or "")):
                raise
            if self.long_documents == "error" or len(spans) == 1:
                hint = ("" if len(spans) == 1 else "; pass long_documents='windows' to RemoteEncoder to embed it "
                        "in windows of consecutive chunks (each window its own context), or split it")
                raise invalid(what, f"is too long for late chunking on {redact(self.base_url)} (one request holds "
                                    f"at most {HOSTED_MAX_TOKENS} tokens){hint}. The server said: "
                                    f"{error.server_message}") from None
            half = len(spans) // 2
            first = self._late_pieces(document, spans[:half], task, base, d, what)
            second = self._late_pieces(document, spans[half:], task, base, d, what)
            vectors = np.stack([c.embedding for c in first + second])
        return [Chunk(n, document[a:b], a, b, v) for n, ((a, b), v) in enumerate(zip(spans, vectors, strict=True))]

    def chunk_spans(self, documents: Sequence[str], task: str | None = RETRIEVAL_PASSAGE,
                    chunker: str | Sequence[tuple[int, int]] = "sentences",
                    chunk_size: int | None = None) -> list[list[tuple[int, int]]]:
        """Where ``late_chunk_documents`` puts each document's chunks, without embedding: per document the
        (start, end) character spans, in order. ``chunker="tokens"`` asks the server's ``/tokenize``."""
        docs = validation.texts(documents, "documents")
        task = tasks_for(task, 1)[0]
        spans = _check_chunker(chunker, chunk_size, docs)
        out: list[list[tuple[int, int]]] = [[] for _ in docs]
        if chunker == "tokens":
            assert chunk_size is not None  # _check_chunker refuses "tokens" without one
            if not self.info.tokenize:
                raise invalid("chunker", f"'tokens' needs the server's /tokenize, which {redact(self.base_url)} "
                                         "does not have: use chunker='sentences' or (start, end) spans")
            live = [i for i, doc in enumerate(docs) if doc.strip()]
            for i, token_chunks in zip(live, self._map(lambda i: self._token_chunks(docs[i], task, chunk_size), live),
                                       strict=True):
                out[i] = token_chunks
            return out
        for i, doc in enumerate(docs):
            if doc.strip():
                chars = sentence_spans(doc) if spans is None else spans
                out[i] = [t for t in (trim_span(doc, a, b) for a, b in chars) if t is not None]
        return out

    def _token_chunks(self, document: str, task: str | None, chunk_size: int) -> list[tuple[int, int]]:
        """The tokens chunker's character spans, from the server's tokenizer (as ``late_chunking.plan_documents``: the
        instruction in front, ``chunk_size`` text tokens per chunk, whitespace trimmed)."""
        instruction = self.instruction(task)
        response = self._send("POST", "/tokenize", {"inputs": instruction + document, "add_special_tokens": True},
                              "POST /tokenize", ok=(200, 404, 405))
        if response.status_code != 200:
            raise invalid("chunker", f"'tokens' needs the server's /tokenize, which {redact(self.base_url)} does "
                                     "not have: use chunker='sentences' or (start, end) spans")
        tokens = response.json()[0]
        offsets = [(0, 0) if t.get("special") else (int(t["start"]), int(t["stop"])) for t in tokens]
        stop = len(offsets) - 1
        first = 1
        while first < stop and offsets[first][1] < len(instruction):
            first += 1
        spans = []
        for a in range(first, stop, chunk_size):
            b = min(a + chunk_size, stop)
            start, end = max(offsets[a][0] - len(instruction), 0), offsets[b - 1][1] - len(instruction)
            trimmed = trim_span(document, start, end)
            if trimmed is not None:
                spans.append(trimmed)
        return spans



# ----------------------------------------------------------------------------- checks
def _positive_number(value: Any, argument: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
            value >= 0 if allow_zero else value > 0) or value != value or value == float("inf"):
        raise invalid(argument, f"must be a {'non-negative' if allow_zero else 'positive'} number of seconds, "
                                f"got {value!r}")
    return float(value)


def _check_chunker(chunker: Any, chunk_size: Any, docs: list[str]) -> list[tuple[int, int]] | None:
    """The library's own chunker check (torch-free); (start, end) spans are checked against the document."""
    chunker_arguments(chunker, chunk_size, len(docs))
    return None if isinstance(chunker, str) else check_char_spans(chunker, len(docs[0]))
