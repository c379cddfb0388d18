"""Progress bars on long work: off by default in the library, on in the command line (DESIGN.md)."""

from __future__ import annotations

from typing import Any


def progress_bar(total: int, show: bool, unit: str, desc: str) -> Any:
    """A tqdm bar when ``show``, else an object with the same ``update`` / ``close`` that does nothing."""
    if not show:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, desc=desc)


class _NoProgress:
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...
