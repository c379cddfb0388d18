"""How a RemoteEncoder's requests travel: the connection pool, concurrency, retries (the library's one policy,
core/retries.py), and turning answers into vectors or into a ``RemoteError`` that names the server's message
(never the key)."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from jinav3 import env
from jinav3.errors import RemoteError, install_hint
from jinav3.progress import progress_bar
from jinav3.retries import RETRY_STATUSES, RetryPolicy, retry_after_seconds
from jinav3.secrets import Secret, redact

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("jinav3.remote")


@dataclass
class _Request:
    """One HTTP request of a call: its body, and where its embeddings go."""

    body: dict[str, Any]
    rows: list[int]     # output rows, one per returned embedding
    what: str           # for messages: "texts[0:128]", "documents[3]"


class Transport:
    """The HTTP half of ``RemoteEncoder`` (its base class): requests, retries, answers. The settings it reads
    are the encoder's own (set in ``RemoteEncoder.__init__``)."""

    base_url: str
    headers: dict[str, str]
    hosted: bool
    timeout: float
    connect_timeout: float
    retries: int
    backoff: float
    max_backoff: float
    max_concurrency: int
    tokens_used: int
    _api_key: Secret
    _api_key_env: str | None
    _key_given: bool
    _lock: threading.RLock
    _client: httpx.Client | None
    _client_pid: int | None

    def _scrub(self, text: str) -> str:
        raise NotImplementedError  # RemoteEncoder's: the key and the URL's secrets

    def _run(self, requests: list[_Request], n: int, d: int, show_progress: bool) -> np.ndarray:
        out = np.empty((n, d), dtype=np.float32)
        progress = progress_bar(n, show_progress, unit="text", desc="Encoding")
        try:
            def one(request: _Request) -> None:
                out[request.rows] = _vectors(self._post(request.body, request.what), len(request.rows), d,
                                             request.what)
                progress.update(len(request.rows))

            self._map(one, requests)
        finally:
            progress.close()
        return out

    def _map(self, fn: Callable[[Any], Any], jobs: list[Any]) -> list[Any]:
        """``fn`` over ``jobs`` with at most max_concurrency in flight; results in order. The first failure
        is raised once the jobs already in flight are done (none is started after it)."""
        if len(jobs) <= 1 or self.max_concurrency == 1:
            return [fn(job) for job in jobs]
        failed = threading.Event()

        def guarded(job: Any) -> Any:
            if failed.is_set():
                return None
            try:
                return fn(job)
            except BaseException:
                failed.set()
                raise

        with ThreadPoolExecutor(min(self.max_concurrency, len(jobs)), thread_name_prefix="jinav3-remote") as pool:
            futures = [pool.submit(guarded, job) for job in jobs]
            errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        return [f.result() for f in futures]

    async def _arun(self, requests: list[_Request], n: int, d: int, show_progress: bool) -> np.ndarray:
        httpx = _httpx()
        out = np.empty((n, d), dtype=np.float32)
        if not requests:
            return out
        progress = progress_bar(n, show_progress, unit="text", desc="Encoding")
        gate = asyncio.Semaphore(self.max_concurrency)
        async with httpx.AsyncClient(**self._client_options()) as client:
            async def one(request: _Request) -> None:
                async with gate:
                    data = await self._apost(client, request.body, request.what)
                out[request.rows] = _vectors(data, len(request.rows), d, request.what)
                progress.update(len(request.rows))

            try:
                await asyncio.gather(*(one(r) for r in requests))
            finally:
                progress.close()
        return out

    def _client_options(self) -> dict[str, Any]:
        httpx = _httpx()
        headers = {"Accept": "application/json", "User-Agent": f"jinav3-remote/{_version()}", **self.headers}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        return {"base_url": self.base_url, "headers": headers,
                "timeout": httpx.Timeout(self.timeout, connect=self.connect_timeout),
                "limits": httpx.Limits(max_connections=max(self.max_concurrency, 4))}

    def _http(self) -> httpx.Client:
        """The process's connection pool (made again in a forked child: sockets are not shared)."""
        if self._client is None or self._client_pid != os.getpid():
            with self._lock:
                if self._client is None or self._client_pid != os.getpid():
                    self._client = _httpx().Client(**self._client_options())
                    self._client_pid = os.getpid()
        return self._client

    def close(self) -> None:
        """Close the connection pool (a later request opens a new one)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> Any:  # the RemoteEncoder
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, body: dict[str, Any], what: str) -> dict[str, Any]:
        response = self._send("POST", "/v1/embeddings", body, what)
        return self._answer(response, what)

    @property
    def _retry(self) -> RetryPolicy:
        return RetryPolicy(self.retries, self.backoff, self.max_backoff, log)

    def _send(self, method: str, path: str, body: dict[str, Any] | None, what: str,
              ok: tuple[int, ...] = (200,)) -> httpx.Response:
        """One request with retries; a final non-``ok`` status raises RemoteError."""
        httpx = _httpx()
        url = self._endpoint(path)
        for attempt in range(self.retries + 1):
            try:
                response = self._http().request(method, url, json=body)
            except httpx.TransportError as error:  # connect, read, write, pool timeouts; a dropped connection
                if attempt == self.retries:
                    raise self._unreachable(error, what, attempt) from None
                self._retry.wait(attempt, what, self._why(type(error).__name__))
                continue
            if response.status_code in ok:
                return response
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                self._retry.wait(attempt, what, self._why(f"HTTP {response.status_code}"), _retry_after(response))
                continue
            raise self._refused(response, what, attempt)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _apost(self, client: httpx.AsyncClient, body: dict[str, Any], what: str) -> dict[str, Any]:
        httpx = _httpx()
        url = self._endpoint("/v1/embeddings")
        for attempt in range(self.retries + 1):
            try:
                response = await client.post(url, json=body)
            except httpx.TransportError as error:
                if attempt == self.retries:
                    raise self._unreachable(error, what, attempt) from None
                await self._retry.await_wait(attempt, what, self._why(type(error).__name__))
                continue
            if response.status_code == 200:
                return self._answer(response, what)
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                await self._retry.await_wait(attempt, what, self._why(f"HTTP {response.status_code}"),
                                             _retry_after(response))
                continue
            raise self._refused(response, what, attempt)
        raise AssertionError("unreachable")

    def _why(self, failure: str) -> str:
        return f"{failure} from {redact(self.base_url)}"

    def _endpoint(self, path: str) -> str:
        return self.base_url + path

    def _answer(self, response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise RemoteError(f"{redact(self.base_url)} answered {what} with something that is not JSON",
                              status=response.status_code, server_message=None) from None
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise RemoteError(f"{redact(self.base_url)} answered {what} without a data list",
                              status=response.status_code, server_message=None)
        usage = data.get("usage") or {}
        tokens = usage.get("total_tokens") if isinstance(usage, dict) else None
        if isinstance(tokens, int) and not isinstance(tokens, bool):
            with self._lock:
                self.tokens_used += tokens
        return data

    def _refused(self, response: httpx.Response, what: str, attempt: int) -> RemoteError:
        message = self._scrub(_server_message(response))
        status = response.status_code
        hint = ""
        if status in (401, 403):
            variable = self._api_key_env or (env.JINA_API_KEYS[0] if self.hosted else env.SERVER_API_KEY)
            where = "it was given as api_key" if self._key_given else f"set ${variable}"
            hint = f" (check the API key: {where})"
        tried = f" after {attempt + 1} attempts" if attempt else ""
        return RemoteError(f"{redact(self.base_url)} refused {what}: HTTP {status}: {message}{hint}{tried}",
                           status=status, server_message=message)

    def _unreachable(self, error: Exception, what: str, attempt: int) -> RemoteError:
        detail = self._scrub(f"{type(error).__name__}: {error}")
        return RemoteError(f"{redact(self.base_url)} could not be reached for {what} after {attempt + 1} attempts "
                           f"({detail}); is the server running? (timeout={self.timeout}s)", status=None,
                           server_message=None)



# ============================================================================================ helpers
def _httpx() -> Any:
    try:
        import httpx
    except ImportError as error:
        raise ImportError(f"RemoteEncoder needs httpx: {install_hint('remote')}") from error
    return httpx


def _version() -> str:
    from jinav3 import __version__

    return __version__


def _base_url(url: str) -> str:
    """The server's base URL without a trailing slash, ``/v1/embeddings``, ``/embeddings`` or ``/v1``."""
    url = url.rstrip("/")
    for suffix in ("/v1/embeddings", "/embeddings", "/v1"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


def _retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds, or None."""
    return retry_after_seconds(response.headers.get("retry-after"))


def _server_message(response: httpx.Response) -> str:
    """The server's own words: ``detail`` (Jina), ``error.message`` (OpenAI), else the body's start."""
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:500] or response.reason_phrase
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            return body["detail"]
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(body.get("detail"), list):  # FastAPI's own validation errors
            return "; ".join(str(e.get("msg", e)) if isinstance(e, dict) else str(e) for e in body["detail"])
    return " ".join(str(body).split())[:500]


def _vectors(data: dict[str, Any], n: int | None, d: int, what: str) -> np.ndarray:
    """(n, d) float32 from an embeddings answer (sorted by ``index``; base64 or float lists)."""
    entries = sorted(data["data"], key=lambda e: e["index"])
    if n is not None and len(entries) != n:
        raise RemoteError(f"the server answered {what} with {len(entries)} embeddings for {n} inputs", status=None,
                          server_message=None)
    rows = []
    for entry in entries:
        embedding = entry["embedding"]
        if isinstance(embedding, str):
            rows.append(np.frombuffer(base64.b64decode(embedding), dtype="<f4"))
        else:
            rows.append(np.asarray(embedding, dtype=np.float32))
    vectors = np.stack(rows).astype(np.float32, copy=False) if rows else np.zeros((0, d), np.float32)
    if vectors.shape[1] != d:
        raise RemoteError(f"the server answered {what} with {vectors.shape[1]} dimensions, expected {d}",
                          status=None, server_message=None)
    return vectors


