"""Every error jinav3 raises on purpose, in one place.

They subclass the built-in type a caller would already catch (``ValueError`` for bad arguments,
``FileNotFoundError`` for a model that is not there), so plain ``except ValueError`` keeps working.
"""

from __future__ import annotations


class JinaV3Error(Exception):
    """Base class of every jinav3 error."""


class InvalidArgumentError(JinaV3Error, ValueError):
    """An argument has a value jinav3 cannot use; the message names the argument and what is allowed."""


class ModelNotFoundError(JinaV3Error, FileNotFoundError):
    """The model could not be found locally or fetched from the hub."""


class CheckpointFormatError(JinaV3Error, ValueError):
    """A folder holds something that is not a jina-embeddings-v3 checkpoint in a layout we know."""


class CorpusError(InvalidArgumentError):
    """A corpus to index is missing, unreadable, or (with ``strict``) holds a row that cannot be indexed."""


class StoreError(JinaV3Error, RuntimeError):
    """A vector store refused or failed an operation."""


class CollectionNotFoundError(StoreError):
    """A search (or an open with ``create=False``) names a collection, namespace, index or local store that is
    not there; the message names the ones there are when they can be read. ``store``: the store as shown
    (secrets redacted); ``collection``: the name asked for."""

    def __init__(self, message: str, store: str | None = None, collection: str | None = None):
        super().__init__(message)
        self.store = store
        self.collection = collection


class SignatureMismatchError(StoreError, ValueError):
    """A collection or index was made with another embedding size or model than the one in use."""


class PartialWriteError(StoreError):
    """A write failed for good after some points were sent. ``written_ids``: records whose every point
    is stored; ``failed_ids``: the others; ``unpruned_ids``: written records whose stale points from an
    earlier write (old chunks) may still be there because removing them failed. Running the same
    ``add()`` again finishes all three."""

    def __init__(self, message: str, written_ids: list[str], failed_ids: list[str],
                 unpruned_ids: list[str] | None = None):
        super().__init__(message)
        self.written_ids = list(written_ids)
        self.failed_ids = list(failed_ids)
        self.unpruned_ids = list(unpruned_ids or [])


class RemoteError(JinaV3Error, RuntimeError):
    """An embedding server (``jinav3 serve``, the Jina API) refused a request, failed it after retries, or
    could not be reached. ``status``: the HTTP status (None when no answer came); ``server_message``:
    the server's own words. Never carries the API key."""

    def __init__(self, message: str, status: int | None = None, server_message: str | None = None):
        super().__init__(message)
        self.status = status
        self.server_message = server_message


def invalid(argument: str, problem: str) -> InvalidArgumentError:
    """Build the error for a bad argument: ``invalid("top_k", "must be >= 1, got 0")``."""
    return InvalidArgumentError(f"{argument}: {problem}")


def install_hint(extra: str) -> str:
    """How to install an optional part, for an installed package and for a clone of the repository."""
    return f'pip install "jinav3[{extra}]" (from a clone of the repository: pip install -e ".[{extra}]")'
