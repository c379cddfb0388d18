"""The FastAPI app: routes, the model's lifecycle, admission.

    from jinav3 import Encoder
    from jinav3.integrations.server import create_app
    uvicorn.run(create_app(Encoder.from_pretrained("jinaai/jina-embeddings-v3")), host="127.0.0.1", port=8080)

Routes (text-embeddings-inference's names): ``POST /v1/embeddings`` (also ``/embeddings``; the Jina
and the OpenAI dialect), TEI's ``POST /embed``, ``POST /`` and ``POST /embed_all`` (tei.py),
``POST /tokenize``, ``GET /health``, ``GET /info``, ``GET /metrics``, ``GET /v1/models``. The event
loop never runs the model or the tokenizer: tokenising happens on the tokenizer's thread (tokens.py),
the model on the worker's (batcher.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

import jinav3
from jinav3.errors import invalid
from jinav3.tasks import DEFAULT_TASK, TASKS
from jinav3.validation import positive_int

from .admission import admitted, run_plan, serialise
from .batcher import Batcher
from .errors import TEI_PATHS, ApiError, body_for
from .formats import embeddings_body
from .guard import Guard
from .logs import redact_access_log
from .metrics import Metrics
from .tei import add_tei_routes, tei_info
from .tokens import Tokens
from .validation import ServedModel, plan_embeddings, plan_tokenize

log = logging.getLogger("jinav3.server")

JINA_MODEL_NAME = "jina-embeddings-v3"
ROUTES = {"/v1/embeddings", "/embeddings", "/tokenize", "/health", "/info", "/metrics", "/v1/models", *TEI_PATHS}
# Tokens per pass on the CPU: enough for 64 queries in one pass (a pass of one query costs 7 ms on the
# medium benchmark model, 64 of them together 3.5 ms each) and for bulk throughput (9.7k tok/s at 256 tokens
# per pass, 11.4-11.8k from 512 on, with oneDNN linears). Accelerators take the Encoder's own budget.
CPU_BATCH_TOKENS = 2048
# A long request's share of a pass while short ones arrive (batcher.py): a query waits behind at most this
# much bulk work. On the CPU 256 tokens are ~25 ms of the medium model; on a GPU 8192 are a few ms.
CPU_LATENCY_BATCH_TOKENS = 256
GPU_LATENCY_BATCH_TOKENS = 8192


@dataclass(frozen=True)
class Limits:
    """The serving limits (the ``jinav3 serve`` flags of the same names)."""

    max_batch_tokens: int | None = None      # tokens per batch; None: default_batch_tokens(encoder)
    latency_batch_tokens: int | None = None  # a long request's share of a pass while short ones arrive
    max_client_batch_size: int = 2048        # inputs per request (413 beyond): the Jina and OpenAI APIs' 2048
    max_concurrent_requests: int = 512       # embedding requests admitted at once (429 beyond)
    max_request_bytes: int = 8 * 2**20       # request body (413 beyond)
    body_timeout_s: float = 30.0             # the whole body within this many seconds of the request (408 beyond)

    def checked(self) -> "Limits":
        for name in ("max_client_batch_size", "max_concurrent_requests", "max_request_bytes"):
            positive_int(getattr(self, name), name)
        positive_int(self.max_batch_tokens, "max_batch_tokens", allow_none=True)
        positive_int(self.latency_batch_tokens, "latency_batch_tokens", allow_none=True)
        seconds = self.body_timeout_s
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < math.inf:
            raise invalid("body_timeout_s", f"must be a positive number of seconds, got {seconds!r}")
        return self


def create_app(encoder: Any, *, api_key: str | None = None, served_model_names: Sequence[str] = (),
               limits: Limits | None = None, revision: str | None = None, aliases: Sequence[str] = (),
               on_load_failure: Callable[[BaseException], None] | None = None, **limit_kwargs: Any) -> FastAPI:
    """A FastAPI app serving ``encoder``.

    encoder: a loaded ``jinav3.Encoder`` (or an object with its interface), or a zero-argument callable
    that loads one: it then runs in a thread at start-up, /health answers 503 until it returns, and
    ``on_load_failure(error)`` is called if it raises. api_key: Bearer key every route but /health needs.
    served_model_names: names ``model`` may carry besides jina-embeddings-v3 and the model's own names
    (the first is answered with). Limits: ``limits=Limits(...)`` or the same names as keywords
    (``max_batch_tokens=4096``). aliases: more accepted names (the --model string as typed).
    """
    limits = (limits or Limits(**limit_kwargs)).checked()
    metrics = Metrics()
    host = ModelHost(encoder, limits, metrics, tuple(served_model_names) + tuple(aliases), revision, on_load_failure)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        host.start()
        try:
            yield
        finally:
            await host.stop()

    app = FastAPI(title="jinav3 embeddings server", version=jinav3.__version__, lifespan=lifespan)
    app.state.host = host
    app.state.metrics = metrics
    _routes(app, host, limits, metrics)
    add_tei_routes(app, host, limits.max_client_batch_size)
    _error_handlers(app)
    app.add_middleware(Guard, metrics=metrics, routes=ROUTES, max_request_bytes=limits.max_request_bytes,
                       body_timeout_s=limits.body_timeout_s, api_key=api_key)
    redact_access_log(api_key)
    return app


# ============================================================================================ the model
@dataclass(frozen=True)
class Serving:
    """What serves a loaded model: the Encoder, its tokenizer copy, the scheduler, the names it answers to."""

    encoder: Any
    tokens: Tokens
    batcher: Batcher
    served: ServedModel


class ModelHost:
    """The model's lifecycle: loading (503), ready (``require_ready()`` gives the ``Serving``), or failed."""

    def __init__(self, encoder: Any, limits: Limits, metrics: Metrics, names: tuple[str, ...], revision: str | None,
                 on_load_failure: Callable[[BaseException], None] | None):
        is_loader = callable(encoder) and not hasattr(encoder, "encode")
        self._loader: Callable[[], Any] | None = encoder if is_loader else None
        self._encoder = None if is_loader else encoder
        self.limits, self.metrics = limits, metrics
        self._names, self._revision, self._on_failure = names, revision, on_load_failure
        self.serving: Serving | None = None
        self.error: str | None = None
        self.in_flight = 0
        self._stopping = False

    def start(self) -> None:
        if self._loader is None:
            self._ready(self._encoder)
        else:
            threading.Thread(target=self._load, args=(self._loader,), name="jinav3-load", daemon=True).start()

    def _load(self, loader: Callable[[], Any]) -> None:
        started = time.perf_counter()
        try:
            encoder = loader()
            encoder.encode(["warm-up"])  # the first call pays one-off costs: not a client's
        except BaseException as error:  # noqa: BLE001 (reported, then the server stops)
            self.error = f"{type(error).__name__}: {error}"
            log.error("the model failed to load: %s", self.error)
            if self._on_failure:
                self._on_failure(error)
            return
        if not self._stopping:
            self._ready(encoder)
            log.info("model %s loaded in %.1fs", encoder.label, time.perf_counter() - started)

    def _ready(self, encoder: Any) -> None:
        budget = self.limits.max_batch_tokens or default_batch_tokens(encoder)
        latency = self.limits.latency_batch_tokens or default_latency_batch_tokens(encoder)
        served = ServedModel(model_names(encoder, self._names), int(encoder.hidden_size), vocab_size(encoder))
        batcher = Batcher(encoder, budget, self.metrics, latency_batch_tokens=latency)
        self.serving = Serving(encoder, Tokens(encoder), batcher, served)
        self.metrics.model_ready.set(1)

    async def stop(self) -> None:
        """After uvicorn answered what was in flight: drain the queue, then stop the worker."""
        self._stopping = True
        if self.serving is not None:
            await asyncio.to_thread(self.serving.batcher.close)
            self.serving.tokens.close()

    def require_ready(self) -> Serving:
        if self.serving is not None:
            return self.serving
        if self.error is not None:
            raise ApiError(503, f"the model failed to load ({self.error})", code="model_failed")
        raise ApiError(503, "the model is still loading; retry shortly", code="model_loading",
                       headers={"Retry-After": "5"})

    def revision(self, encoder: Any) -> str | None:
        if self._revision:
            return self._revision
        source = str(getattr(getattr(encoder, "checkpoint", None), "source", "") or "")
        found = re.search(r"snapshots[/\\]([0-9a-f]{40})", source)  # a hub download lives in snapshots/<commit>
        return found.group(1) if found else None


def model_names(encoder: Any, extra: Sequence[str]) -> tuple[str, ...]:
    """Every name ``model`` may carry: the served names given, jina-embeddings-v3, the Encoder's identity and
    label, and the label's last part (the folder name, or the name of a hub id)."""
    label = str(getattr(encoder, "label", "") or "")
    candidates = [*extra, JINA_MODEL_NAME, str(getattr(encoder, "name", "") or ""), label,
                  Path(label).name if label else ""]
    return tuple(dict.fromkeys(n for n in candidates if n))


def default_batch_tokens(encoder: Any) -> int:
    """The Encoder's budget per forward pass; on the CPU at most CPU_BATCH_TOKENS."""
    forward = int(getattr(encoder, "max_tokens_per_batch", None) or 16384)
    device = getattr(getattr(encoder, "device", None), "type", "cpu")
    return min(forward, CPU_BATCH_TOKENS) if device == "cpu" else forward


def default_latency_batch_tokens(encoder: Any) -> int:
    """A long request's share of a pass while short requests arrive: small on the CPU, where passes are slow."""
    device = getattr(getattr(encoder, "device", None), "type", "cpu")
    return CPU_LATENCY_BATCH_TOKENS if device == "cpu" else GPU_LATENCY_BATCH_TOKENS


def vocab_size(encoder: Any) -> int:
    config = getattr(getattr(encoder, "model", None), "config", None)
    return int(getattr(config, "vocab_size", 0) or len(encoder.tokenizer))


# ============================================================================================ routes
def _routes(app: FastAPI, host: ModelHost, limits: Limits, metrics: Metrics) -> None:
    @app.post("/v1/embeddings")
    @app.post("/embeddings", include_in_schema=False)
    async def embeddings(request: Request) -> Response:
        """Embed text in the Jina Embeddings API's or OpenAI's dialect (see schemas.py)."""
        serving = host.require_ready()
        raw = await request.body()  # under the body's deadline (guard.py), and before admission: a stalled
        with admitted(host):        # upload holds no slot, so it cannot lock others out with 429s
            plan = plan_embeddings(raw, serving.served, limits.max_client_batch_size)
            ran = await run_plan(request, serving, plan)
            if ran is None:
                return Response(status_code=499)  # the client left; nobody reads this
        body = embeddings_body(ran.result.vectors, plan.formats, plan.keyed, plan.model, ran.tokens)
        if ran.prepared.spans is not None:  # chunker (jinav3's extension): where each chunk is in the document
            for entry, (start, end) in zip(body["data"], ran.prepared.spans, strict=True):  # one vector per chunk
                entry["start"], entry["end"] = start, end
        content = await serialise(body, ran.result.vectors.size)
        return Response(content, media_type="application/json", headers=ran.headers())

    @app.post("/tokenize")
    async def tokenize(request: Request) -> list[list[dict]]:
        """text-embeddings-inference's /tokenize: {"inputs": str | [str], "add_special_tokens": bool}."""
        tokens = host.require_ready().tokens
        texts, add_special_tokens, _ = plan_tokenize(await request.body(), limits.max_client_batch_size)
        return await tokens.run(tokens.tokenize, texts, add_special_tokens)

    @app.get("/health")
    async def health() -> dict:
        host.require_ready()
        return {"status": "ok"}

    @app.get("/info")
    async def info() -> dict:
        return _info(host, host.require_ready(), limits)

    @app.get("/v1/models")
    async def models() -> dict:
        name = host.require_ready().served.names[0]
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0,
                                            "owned_by": "jinav3"}]}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)


def _info(host: ModelHost, serving: Serving, limits: Limits) -> dict:
    encoder, served = serving.encoder, serving.served
    return {
        "model_id": served.names[0], "model_names": list(served.names),
        "model_label": str(getattr(encoder, "label", "")), "model_identity": str(getattr(encoder, "name", "")),
        "model_sha": host.revision(encoder), "model_dtype": str(getattr(encoder, "dtype", "")).removeprefix("torch."),
        "model_device": str(getattr(encoder, "device", "")),
        "tasks": list(TASKS), "default_task": DEFAULT_TASK,
        "dimensions": {"min": 1, "max": served.hidden_size},
        "max_input_length": int(encoder.max_length),
        "late_chunking": {"max_document_length": None,
                          "note": f"no length cap: past {int(encoder.max_length)} tokens overlapping windows apply",
                          # jinav3's extensions (schemas.JinaV3Fields): one document chunked here, the windows
                          "chunker": ["sentences", "tokens", "spans"], "window": True},
        "task_instructions": {task: encoder.instruction(task) for task in TASKS},
        "tokenize": True, "max_length": True,
        "embedding_types": ["float", "base64", "binary", "ubinary"],
        "max_batch_tokens": serving.batcher.max_batch_tokens,
        "latency_batch_tokens": serving.batcher.latency_batch_tokens,
        "max_client_batch_size": limits.max_client_batch_size,
        "max_concurrent_requests": limits.max_concurrent_requests, "max_request_bytes": limits.max_request_bytes,
        "body_timeout_s": limits.body_timeout_s,
        "auto_truncate": False, "version": jinav3.__version__,
        **tei_info(served),  # text-embeddings-inference's names, for its clients and dashboards
    }


# ============================================================================================ errors
def _error_handlers(app: FastAPI) -> None:
    def answer(request: Request, status: int, message: str, param: str | None = None, code: str | None = None,
               headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(body_for(request.url.path, status, message, param, code), status_code=status,
                            headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return answer(request, error.status, error.message, error.param, error.code, error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {error.detail}"
        if error.status_code == 404:
            message += f"; routes: {', '.join(sorted(ROUTES))}"
        return answer(request, error.status_code, message, code="not_found" if error.status_code == 404 else None,
                      headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return answer(request, 500, f"internal error: {type(error).__name__}", code="internal_error")
