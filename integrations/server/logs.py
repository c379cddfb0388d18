"""What the server writes to logs: uvicorn's access log, without secrets.

A client may put its key in the URL (``POST /v1/embeddings?api_key=...``): refused with 401, but
uvicorn's access log writes the request target as received. A filter on that logger rewrites the
target before any handler formats it: token-like query values become ``***`` (``jinav3.secrets``
decides what is a secret) and this server's own key is scrubbed wherever it appears.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from jinav3.secrets import redact_target, scrub

ACCESS_LOGGER = "uvicorn.access"


class AccessLogRedactor(logging.Filter):
    """uvicorn's access record is ``'%s - "%s %s HTTP/%s" %d'`` with the target as its third argument."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            args = list(record.args)
            args[2] = scrub(redact_target(str(args[2])), self.keys)
            record.args = tuple(args)
        else:  # another shape (a later uvicorn): scrub the whole line
            record.msg, record.args = scrub(redact_target(record.getMessage()), self.keys), None
        return True


_REDACTOR = AccessLogRedactor()


def redact_access_log(api_key: str | None) -> None:
    """Put the redactor on uvicorn's access logger (once per process; uvicorn's logging setup keeps a logger's
    filters) and teach it this server's key, as sent and percent-encoded."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if _REDACTOR not in logger.filters:
        logger.addFilter(_REDACTOR)
    if api_key:
        _REDACTOR.keys.update({api_key, quote(api_key, safe="")})
