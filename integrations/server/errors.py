"""The one error shape of the server, read by both kinds of client.

Jina clients (jina-haystack, LlamaIndex, LangChain's JinaEmbeddings) raise ``body["detail"]``; the
openai client reads ``body.get("error", body)["message"]``. So every error carries both:

    {"detail": "dimensions: must be ...", "error": {"message": "dimensions: must be ...",
     "type": "invalid_request_error", "param": "dimensions", "code": "invalid_value"}}

422 bodies also list ``errors: [{field, message, type}]`` as the Jina API's validation errors do.

text-embeddings-inference's routes (``TEI_PATHS``: /embed, /embed_all, /) answer TEI's shape instead,
``{"error": "...", "error_type": "Validation"}``, which huggingface_hub's client reads (``tei_error_body``).
"""

from __future__ import annotations

import json
from typing import Any

from jinav3.errors import InvalidArgumentError

# OpenAI's error "type" per status (what its SDK and users match on).
_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
    405: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error",
    429: "rate_limit_error", 499: "client_closed_request", 500: "server_error", 503: "service_unavailable",
}


class ApiError(Exception):
    """An HTTP error answered in the shape above. ``param``: the request field at fault, if any."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    @classmethod
    def invalid(cls, param: str, problem: str, *, code: str = "invalid_value", status: int = 422) -> "ApiError":
        """A bad request field, worded like the library's errors: ``param: problem``."""
        return cls(status, f"{param}: {problem}", param=param, code=code)

    @classmethod
    def from_library(cls, error: InvalidArgumentError, param: str | None = None) -> "ApiError":
        """A library argument error (``"dimensions: must be ..."``) as a 422 naming the same field."""
        message = str(error)
        field = param or message.partition(":")[0].strip() or None
        return cls(422, message, param=field, code="invalid_value")


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    body: dict[str, Any] = {"detail": message,
            "error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"), "param": param,
                      "code": code}}
    if status == 422:
        body["errors"] = [{"field": param, "message": message, "type": code}]
    return body


# text-embeddings-inference's routes and its ErrorType values (serde's spelling) per status. 401 is not one of
# TEI's types (its auth layer answers an empty 401): "Unauthorized" says what it is.
TEI_PATHS = frozenset({"/embed", "/embed_all", "/"})
_TEI_TYPES = {401: "Unauthorized", 429: "Overloaded", 500: "Backend", 503: "Unhealthy"}


def tei_error_body(status: int, message: str, code: str | None = None) -> dict:
    error_type = "Empty" if code == "empty" else _TEI_TYPES.get(status, "Validation")
    return {"error": message, "error_type": error_type}


def body_for(path: str, status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    """The error body a client of ``path`` reads: TEI's on TEI's routes, else the Jina/OpenAI one."""
    return tei_error_body(status, message, code) if path in TEI_PATHS else error_body(status, message, param, code)


def error_bytes(error: ApiError, path: str = "") -> bytes:
    return json.dumps(body_for(path, error.status, error.message, error.param, error.code)).encode()


async def send_error(send: Any, error: ApiError, path: str = "") -> None:
    """Answer ``error`` straight from ASGI middleware (before any route runs), in the shape ``path``'s clients read."""
    body = error_bytes(error, path)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
