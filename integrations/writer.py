"""The batch writer of ``VectorStore.add``: one batch written while the next is embedded, and an exact
account of what landed when a write fails."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass
class WriteReport:
    """What an add() has written so far, filled in by the writer thread."""

    attempted: bool = False  # some points were sent to the store
    written: list[str] = field(default_factory=list)  # record ids whose every point is stored
    unpruned: list[str] = field(default_factory=list)  # written, but stale points may remain


class BatchFailure(Exception):
    """A batch's write failed for good: ``step`` says what (for the message), ``cause`` why."""

    def __init__(self, step: str, cause: BaseException):
        super().__init__(f"{step}: {cause}")
        self.step, self.cause = step, cause


class BatchWriter:
    """Runs ``write(points, batch)`` for one batch while the caller embeds the next (a one-worker
    executor); with ``overlap=False`` each write runs at once in the caller's thread. At most one
    write is in flight: :meth:`submit` first waits for the previous one and raises its error."""

    def __init__(self, write: Callable[..., None], overlap: bool):
        self._write = write
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jinav3-write") if overlap else None
        self._pending: Future | None = None

    def submit(self, *args: Any, **kwargs: Any) -> None:
        self.wait()
        if self._executor is None:
            self._write(*args, **kwargs)
        else:
            self._pending = self._executor.submit(self._write, *args, **kwargs)

    def wait(self) -> None:
        """Wait for the write in flight, if any; raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
