"""The portable filter ``{"key": value, "key2": [v1, v2]}``: equality and any-of on metadata, the same
on every store (each store translates it into its own kind)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from jinav3.errors import invalid

_SCALARS = (str, int, float, bool)


def parse_filter(filter: Any) -> list[tuple[str, list[Any]]] | None:
    """The portable filter ``{"key": value, "key2": [v1, v2]}`` as ``[(key, [values]), ...]``.

    Returns None when ``filter`` is not portable (a store may take it as its native filter). A value
    is a str, int, float or bool; a list means any-of. All conditions must hold. A key missing from
    a record's metadata never matches.
    """
    if not isinstance(filter, Mapping) or not filter:
        return None
    out = []
    for key, value in filter.items():
        if not isinstance(key, str) or not key or key.startswith("$"):
            return None
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values or not all(isinstance(v, _SCALARS) for v in values):
            return None
        out.append((key, values))
    return out


def check_portable_filter(filter: Any, native_hint: str) -> list[tuple[str, list[Any]]]:
    """:func:`parse_filter` or a clear error naming what is allowed."""
    parsed = parse_filter(filter)
    if parsed is None:
        raise invalid("filter", f"must be a portable filter {{'key': value, 'key2': [v1, v2]}} (values str, int, "
                                f"float or bool; a non-empty list means any-of) or {native_hint}, got {filter!r}")
    for key, values in parsed:
        if any(c in key for c in '."[]\\'):
            raise invalid("filter", f"portable filter keys may not contain . \" [ ] or \\, got {key!r}; "
                                    f"use {native_hint} for nested metadata")
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise invalid("filter", f"{key!r}: {v} cannot be matched")
    return parsed
