"""Secrets in text: find them in URIs, redact them for printing, scrub them from messages.

One implementation for the command line (store URIs, API keys) and for ``jinav3.RemoteEncoder``
(a server URL's user info, its API key), so what counts as a secret is decided in one place.
Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, unquote_plus

# What in a URI is secret: the user info (the PASSWORD of user:PASSWORD@, all of TOKEN@) and the value of
# every token-like query parameter (?token=, ?api_key=, ?key=, ?password=, ?secret=, ...).
USER_INFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/?#]*)@")
_SECRET_NAME = r"token|key|pass|pwd|secret|auth|credential"  # in a parameter's name: its value is a secret
_SECRET_PARAMETER = re.compile(rf"[?&][^=&#]*(?:{_SECRET_NAME})[^=&#]*=(?P<value>[^&#]*)", re.IGNORECASE)


def _secret_spans(uri: str) -> list[tuple[int, int]]:
    """(start, end) of each secret in ``uri``: the one definition that redact() and uri_secrets() share."""
    spans = []
    user = USER_INFO.match(uri)
    if user:
        start, end = user.span("info")
        colon = user["info"].find(":")
        spans.append((start + colon + 1 if colon >= 0 else start, end))
    if "://" in uri and "?" in uri:
        spans += [m.span("value") for m in _SECRET_PARAMETER.finditer(uri, uri.index("?"))]
    return [(start, end) for start, end in spans if end > start]


def redact(uri: str) -> str:
    """``uri`` fit to print: ``milvus+http://root:***@host:19530``, ``qdrant+https://***@host``, ``...?token=***``."""
    for start, end in sorted(_secret_spans(uri), reverse=True):
        uri = uri[:start] + "***" + uri[end:]
    return uri


def redact_target(target: str) -> str:
    """An HTTP request target (``/path?query``) fit to log: the value of every token-like query parameter is
    ``***`` (``/v1/embeddings?api_key=***&x=1``). Names are matched percent-decoded, so ``?api%5Fkey=`` counts."""
    path, mark, query = target.partition("?")
    if not mark:
        return target
    parts = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        secret = equals and re.search(_SECRET_NAME, unquote_plus(name), re.IGNORECASE)
        parts.append(f"{name}=***" if secret else part)
    return f"{path}?{'&'.join(parts)}"


def uri_secrets(uri: str) -> list[str]:
    """The secrets in ``uri``, as written and percent-decoded (a client may echo either)."""
    found = [uri[start:end] for start, end in _secret_spans(uri)]
    return found + [unquote(secret) for secret in found if unquote(secret) != secret]


def scrub(text: str, secrets: Iterable[str]) -> str:
    """THE scrubber: ``text`` with every known secret replaced by ``***`` (longest first, so none is left in part)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
