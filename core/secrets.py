"""Secrets: a type that holds one without showing it, and finding them in URIs, redacting them for printing,
scrubbing them from messages.

One implementation for the command line (store URIs, API keys) and for ``jinav3.RemoteEncoder``
(a server URL's user info, its API key), so what counts as a secret is decided in one place.
Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from typing import Any
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


class Secret:
    """A credential held so that nothing prints, copies out or pickles its value (as Haystack's ``Secret`` and
    pydantic's ``SecretStr``): ``repr``/``str`` show ``Secret('***')``, the instance has no ``__dict__`` for
    ``vars`` to list, ``copy``/``deepcopy`` return the same object, and a pickle carries only the names of the
    environment variables it may be read from again (an unpickled Secret reads them in its new process).

    ``reveal()`` is the one way to the value: call it where the value is sent (an Authorization header).
    """

    __slots__ = ("_value", "env")
    _value: str | None
    env: tuple[str, ...]

    def __init__(self, value: str | None, env: tuple[str, ...] = ()) -> None:
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "env", tuple(env))  # where an unpickled copy looks for the value

    @classmethod
    def from_env(cls, env: Iterable[str]) -> Secret:
        """The first set, non-empty variable of ``env`` (a Secret of None when none is set)."""
        names = tuple(env)
        return cls(next((os.environ[n] for n in names if os.environ.get(n)), None), names)

    def reveal(self) -> str | None:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    @property
    def fingerprint(self) -> str | None:
        """sha256 of the value, 16 hex digits: tells secrets apart (cache keys) without revealing one."""
        return None if self._value is None else hashlib.sha256(self._value.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return "Secret('***')" if self._value is not None else "Secret(None)"

    __str__ = __repr__

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a Secret is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret.from_env, (self.env,))  # never the value: the new process reads its own environment

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and (self._value, self.env) == (other._value, other.env)

    def __hash__(self) -> int:
        return hash((self.fingerprint, self.env))
