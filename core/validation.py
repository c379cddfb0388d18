"""The argument checks of core, one implementation each, so every argument is judged and worded alike.

Each check returns the value as a plain Python type (numpy integers and booleans are accepted, since
values computed with numpy are common) or raises ``InvalidArgumentError`` whose message starts with
the argument's name: ``batch_size: must be a positive integer or None, got 0``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np

from .errors import invalid
from .tasks import tasks_for


def is_integer(value: Any) -> bool:
    """An int or numpy integer, not a bool (``True`` is an int to Python, never a count to a caller)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@overload
def positive_int(value: Any, argument: str, *, allow_none: Literal[False] = False) -> int: ...
@overload
def positive_int(value: Any, argument: str, *, allow_none: bool) -> int | None: ...
def positive_int(value: Any, argument: str, *, allow_none: bool = False) -> int | None:
    """``value`` as an int >= 1 (None passes through when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if is_integer(value) and value >= 1:
        return int(value)
    raise invalid(argument, f"must be a positive integer{' or None' if allow_none else ''}, got {value!r}")


@overload
def int_in_range(
    value: Any, argument: str, low: int, high: int, *, allow_none: Literal[False] = False, note: str = ""
) -> int: ...
@overload
def int_in_range(value: Any, argument: str, low: int, high: int, *, allow_none: bool, note: str = "") -> int | None: ...
def int_in_range(
    value: Any, argument: str, low: int, high: int, *, allow_none: bool = False, note: str = ""
) -> int | None:
    """``value`` as an int with ``low <= value <= high``; ``note`` follows the bounds in the message
    (a unit such as "tokens", or where the bound comes from)."""
    if value is None and allow_none:
        return None
    if is_integer(value) and low <= value <= high:
        return int(value)
    bounds = f"from {low} to {high}" + (f" {note}" if note else "")
    raise invalid(argument, f"must be an integer {bounds}{' (or None)' if allow_none else ''}, got {value!r}")


def boolean(value: Any, argument: str) -> bool:
    """``value`` as a bool: True or False only (numpy booleans too), so 'no' or 0 is not taken for a choice."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise invalid(argument, f"must be True or False, got {value!r}")


def choice(value: Any, argument: str, allowed: Collection[str], *, alternative: str = "") -> str:
    """``value`` if it is one of ``allowed``; ``alternative`` names another accepted form for the message
    (the caller handles that form before asking)."""
    if isinstance(value, str) and value in allowed:
        return value
    options = ", ".join(repr(a) for a in allowed) + (f" or {alternative}" if alternative else "")
    raise invalid(argument, f"must be one of {options}, got {value!r}")


def valid_unicode(text: str, argument: str) -> str:
    """``text`` if it encodes as UTF-8: a lone surrogate (from bad decoding) is refused here, before a
    tokenizer or a store fails on it midway with an error of its own."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise invalid(argument, f"contains a lone surrogate (U+{ord(text[error.start]):04X}) at character "
                                f"{error.start}; text must be valid Unicode") from None
    return text


CHUNKERS = ("sentences", "tokens")


def chunker_arguments(chunker: Any, chunk_size: Any, documents: int) -> None:
    """How late chunking splits ``documents`` documents: "sentences"; "tokens" with a positive
    ``chunk_size``; or a list of (start, end) character spans, which describe ONE document (the spans
    themselves are checked against the document by ``late_chunking.check_char_spans``)."""
    if chunk_size is not None and chunker != "tokens":
        raise invalid("chunk_size", "only applies with chunker='tokens'")
    if isinstance(chunker, str):
        choice(chunker, "chunker", CHUNKERS, alternative="a list of (start, end) spans")
        if chunker == "tokens":
            if chunk_size is None:
                raise invalid("chunk_size", "chunker='tokens' needs a chunk_size (tokens per chunk)")
            positive_int(chunk_size, "chunk_size")
    elif documents != 1:
        raise invalid("chunker", f"(start, end) spans describe one document, got {documents} documents; "
                                 "chunk each with its own spans (Encoder.late_chunk) or use 'sentences'/'tokens'")


def text(value: Any, argument: str) -> str:
    """A str the tokenizer can take: a lone surrogate (from bad decoding) would fail it mid-batch with
    its own error, after other batches already ran."""
    if not isinstance(value, str):
        raise invalid(argument, f"must be a str, got {type(value).__name__}")
    return valid_unicode(value, argument)


def texts(value: Any, argument: str = "texts") -> list[str]:
    """One str or a sequence of them, as a list (``texts[3]`` names a bad entry)."""
    if isinstance(value, str):
        return [text(value, argument)]
    if isinstance(value, (bytes, dict)) or not isinstance(value, Sequence):
        raise invalid(argument, f"must be a str or a list of str, got {type(value).__name__}")
    return [text(item, f"{argument}[{i}]") for i, item in enumerate(value)]


@dataclass(frozen=True)
class EncodeArguments:
    """``encode``'s arguments once checked (``encode_arguments``)."""

    single: bool                # a str was given: the caller returns one vector, not a (1, d) array
    texts: list[str]
    tasks: list[str | None]     # one per text
    dimensions: int | None
    normalize: bool
    max_length: int | None      # None: the model's maximum
    batch_size: int | None
    late_chunking: bool


def encode_arguments(texts_: Any, task: Any, dimensions: Any, normalize: Any, max_length: Any, late_chunking: Any,
                     batch_size: Any, window: Any, overlap: Any, *, hidden_size: int,
                     model_max_length: int) -> EncodeArguments:
    """THE checks of ``encode`` that ``Encoder`` and ``RemoteEncoder`` share, before any work or request:
    the texts, one task per text, dimensions 1..hidden_size, max_length 2..model_max_length, and late
    chunking's own rules (one task, no blank piece; window/overlap only with it; their values are checked
    by ``late_chunking.check_window`` where the window is chosen)."""
    items = texts(texts_)
    tasks = tasks_for(task, len(items))
    checked = EncodeArguments(
        single=isinstance(texts_, str), texts=items, tasks=tasks,
        dimensions=int_in_range(dimensions, "dimensions", 1, hidden_size, allow_none=True),
        normalize=boolean(normalize, "normalize"),
        max_length=int_in_range(max_length, "max_length", 2, model_max_length, allow_none=True),
        batch_size=positive_int(batch_size, "batch_size", allow_none=True),
        late_chunking=boolean(late_chunking, "late_chunking"))
    if not checked.late_chunking:
        if window is not None or overlap is not None:
            raise invalid("window", "window and overlap only apply with late_chunking=True")
        return checked
    if len(set(tasks)) > 1:
        raise invalid("task", "late_chunking=True embeds one document: give one task, not one per text")
    for i, text_ in enumerate(items):
        if not text_.strip():
            raise invalid(f"texts[{i}]", "is blank; with late_chunking=True every piece needs text to pool")
    return checked
