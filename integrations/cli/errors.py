"""How the command line fails: one line on stderr (``jinav3: error: ...``), exit status 2 for a usage error
(a bad option value, found before any work), 1 for a failure of the work.

The library raises its own errors (``jinav3.errors``); the command line maps them here, at its edge:
an InvalidArgumentError raised while the model loads and the store opens names an option's value (a usage
error); a missing collection gets the command that makes it.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jinav3.errors import CollectionNotFoundError, CorpusError, InvalidArgumentError


class CLIError(Exception):
    """A failure of the work, reported as one line without a traceback (exit status 1)."""


class UsageError(CLIError):
    """A bad command line: an option value found wrong before any work started (exit status 2)."""


def exit_status(error: BaseException) -> int:
    """THE exit status of a failed run: 2 for a usage error, 1 for a failure of the work."""
    return 2 if isinstance(error, (UsageError, InvalidArgumentError)) and not isinstance(error, CorpusError) else 1


@contextmanager
def setting_up() -> Iterator[None]:
    """While the model loads and the store opens, nothing has been done yet: a library InvalidArgumentError then
    names an option's value (--dimensions, --dtype, --device, --collection), which makes it a usage error."""
    try:
        yield
    except CorpusError:  # bad rows (--strict): a failure of the work, exit 1, even though it subclasses ValueError
        raise
    except InvalidArgumentError as error:
        raise UsageError(str(error)) from error


def index_hint(store: str, collection: str) -> str:
    """The command that makes a collection (``store`` as shown: secrets redacted)."""
    return shlex.join(["jinav3", "index", "CORPUS", "--store", store, "--collection", collection])


def explained(error: BaseException) -> str:
    """The one-line message of a failure, with the next step where there is one."""
    message = str(error)
    if isinstance(error, CollectionNotFoundError) and error.store is not None and error.collection is not None:
        message += f"; index a corpus into it first: {index_hint(error.store, error.collection)}"
    return message


def one_line(text: str, limit: int = 600) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def close_quietly(target: Any) -> None:
    try:
        target.close()
    except Exception:  # closing must not turn a success into a failure
        pass


def warn(message: str) -> None:
    """How the command line warns: one ``jinav3: warning:`` line on stderr."""
    print(f"jinav3: warning: {message}", file=sys.stderr)


__all__ = ["CLIError", "UsageError", "exit_status", "setting_up", "index_hint", "explained", "one_line",
           "close_quietly", "warn"]
