"""Every check of an embeddings request, in one place: body -> ``EmbedPlan`` or ``ApiError``.

Runs before any work is queued, so a bad request costs no forward pass and never fails other
requests batched with it. Messages name the field and what is allowed, like the library's.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from jinav3.errors import InvalidArgumentError
from jinav3.tasks import TASKS
from jinav3.validation import int_in_range

from .errors import ApiError
from .schemas import FORMATS, OPENAI_FORMATS, EmbeddingsRequest, TokenizeRequest

TEXTS, LATE, IDS = "texts", "late", "ids"  # the three kinds of work ...
CHUNKS = "chunks"  # ... and a fourth, jinav3's extension: ONE document late-chunked by ``chunker``
ModelT = TypeVar("ModelT", bound=BaseModel)

# What each field must be, for type errors (pydantic's own wording names Python types, not JSON ones).
_EXPECTED = {
    "model": "a model name (string)", "input": "text or token ids", "task": f"one of {', '.join(TASKS)}, or null",
    "dimensions": "an integer", "late_chunking": "true or false", "normalized": "true or false",
    "truncate": "true or false", "embedding_type": f"one of {', '.join(FORMATS)}, or a list of them",
    "encoding_type": f"one of {', '.join(FORMATS)}, or a list of them",
    "encoding_format": f"one of {', '.join(OPENAI_FORMATS)}", "user": "a string",
    "inputs": "a string or a list of strings", "add_special_tokens": "true or false",
    "chunker": "'sentences', 'tokens', or a list of [start, end] character spans", "chunk_size": "an integer",
    "window": "an integer", "overlap": "an integer", "max_length": "an integer",
    "normalize": "true or false", "truncation_direction": "'right' or 'left'", "prompt_name": "a string or null",
}


@dataclass(frozen=True)
class ServedModel:
    """What validation needs to know of the model being served."""

    names: tuple[str, ...]  # accepted in ``model``; the first is the one answered with
    hidden_size: int
    vocab_size: int


@dataclass(frozen=True)
class EmbedPlan:
    """A valid embeddings request: what to run and how to answer."""

    kind: str                    # TEXTS, LATE (one document of pieces), CHUNKS (one document, chunker) or IDS
    items: list                  # texts, or lists of token ids
    task: str | None
    dimensions: int | None
    normalize: bool
    truncate: bool
    formats: tuple[str, ...]     # output encodings
    keyed: bool                  # embedding_type was a list: each embedding is {format: value}
    model: str                   # the name to answer with
    # jinav3's extensions (schemas.JinaV3Fields), those sent: chunker, chunk_size, window, overlap, max_length;
    # all_tokens (text-embeddings-inference's /embed_all): every token's state, not their mean
    options: dict = dataclasses.field(default_factory=dict)
    truncation_direction: str = "right"  # with truncate: which end of an over-long input is cut (TEI's field)
    field: str = "input"                 # what the request calls its inputs, for messages


def parse_json(model_class: type[ModelT], raw: bytes) -> ModelT:
    """``raw`` parsed into ``model_class``: 400 for malformed JSON, 422 naming the field otherwise."""
    try:
        return model_class.model_validate_json(raw)
    except ValidationError as error:
        raise _type_error(error) from None


def _type_error(error: ValidationError) -> ApiError:
    first = error.errors(include_url=False)[0]
    kind, loc = first["type"], first["loc"]
    if kind == "json_invalid":
        problem = _surrogate_side(first["input"], first["msg"].removeprefix("Invalid JSON: "))
        return ApiError(400, f"body: malformed JSON ({problem})", code="invalid_json")
    if not loc:
        return ApiError.invalid("body", "must be a JSON object")
    field = str(loc[0])
    if kind == "missing":
        return ApiError.invalid(field, "is required", code="missing")
    return ApiError.invalid(field, f"must be {_EXPECTED.get(field, 'of another type')}, got {_shown(first['input'])}")


_ESCAPE = re.compile(rb"\\u([0-9a-fA-F]{4})")
_AT = re.compile(r"at line (\d+) column (\d+)$")


def _surrogate_side(raw: Any, problem: str) -> str:
    """The JSON parser's ``problem``, with a lone surrogate escape named for its side: jiter (pydantic's parser)
    calls a lone trailing one ``\\udc00``-``\\udfff`` "leading", and a lone leading one "unexpected end of hex
    escape". Other problems pass unchanged."""
    at = _AT.search(problem)
    if at is None or "hex escape" not in problem or not isinstance(raw, (bytes, str)):
        return problem
    line, column = int(at[1]), int(at[2])
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    lines = data.split(b"\n")
    seen = lines[line - 1][:column] if line <= len(lines) else b""  # up to the column reported (1-based)
    surrogates = [m for m in _ESCAPE.finditer(seen) if 0xD800 <= int(m[1], 16) < 0xE000]
    if not surrogates:
        return problem
    escape = surrogates[-1]
    side = "leading (high)" if int(escape[1], 16) < 0xDC00 else "trailing (low)"
    return (f"lone {side} surrogate {escape[0].decode()} at line {line} column {column}; a leading surrogate escape "
            "must be followed by a trailing one, and text must be valid Unicode")


def plan_embeddings(raw: bytes, served: ServedModel, max_inputs: int) -> EmbedPlan:
    request = parse_json(EmbeddingsRequest, raw)
    model = _check_model(request.model, served.names)
    task = _check_task(request.task)
    dimensions = check_dimensions(request.dimensions, served.hidden_size)
    formats, keyed = _output_formats(request)
    kind, items = parse_input(request.input, served.vocab_size)
    check_count(len(items), max_inputs)
    if request.late_chunking:
        kind = _check_late_chunking(kind, items)
    options = _jinav3_options(request, kind, items)
    if "chunker" in options:
        kind = CHUNKS
    return EmbedPlan(kind, items, task, dimensions, True if request.normalized is None else request.normalized,
                     bool(request.truncate) or "max_length" in options, formats, keyed, model, options)


def check_count(n: int, max_inputs: int, field: str = "input") -> None:
    if n > max_inputs:
        raise ApiError(413, f"{field}: {n} inputs, more than this server takes per request "
                            f"(--max-client-batch-size {max_inputs}); split the request", param=field,
                       code="too_many_inputs")


def _jinav3_options(request: EmbeddingsRequest, kind: str, items: list) -> dict:
    """jinav3's extension fields, checked for where they apply; their ranges need the model (tokens.py)."""
    options = {name: getattr(request, name) for name in ("chunker", "chunk_size", "window", "overlap", "max_length")
               if getattr(request, name) is not None}
    late = kind == LATE
    if "chunker" in options and not (late and len(items) == 1):
        raise ApiError.invalid("chunker", "applies with late_chunking=true and ONE text input (the whole document)")
    if options.get("chunker") == []:
        raise ApiError.invalid("chunker", "is an empty list; send [start, end] spans, 'sentences' or 'tokens'")
    if "chunk_size" in options and "chunker" not in options:
        raise ApiError.invalid("chunk_size", "only applies with chunker='tokens'")
    for name in ("window", "overlap"):
        if name in options and not late:
            raise ApiError.invalid(name, "only applies with late_chunking=true")
    if "max_length" in options and late:
        raise ApiError.invalid("max_length", "does not apply with late_chunking=true (windows handle any length)")
    return options


def plan_tokenize(raw: bytes, max_inputs: int) -> tuple[list[str], bool, bool]:
    """(texts, add_special_tokens, single) of a /tokenize request."""
    request = parse_json(TokenizeRequest, raw)
    single = isinstance(request.inputs, str)
    texts = [request.inputs] if isinstance(request.inputs, str) else list(request.inputs)
    if not texts:
        raise ApiError.invalid("inputs", "is empty; send a string or a list of strings")
    if len(texts) > max_inputs:
        raise ApiError(413, f"inputs: {len(texts)} inputs, more than --max-client-batch-size {max_inputs}",
                       param="inputs", code="too_many_inputs")
    for i, text in enumerate(texts):
        _check_text(text, f"inputs[{i}]" if not single else "inputs")
    return texts, request.add_special_tokens, single


# ----------------------------------------------------------------------------- fields
def _check_model(name: str | None, names: tuple[str, ...]) -> str:
    if name is None:
        return names[0]
    if name not in names:
        listed = ", ".join(repr(n) for n in names)
        raise ApiError(422, f"model: {name!r} is not served here; use one of {listed} (or leave it out)",
                       param="model", code="model_not_found")
    return name


def _check_task(task: str | None) -> str | None:
    if task is not None and task not in TASKS:
        raise ApiError.invalid("task", f"unknown task {task!r}; use one of {', '.join(TASKS)}, or null for no adapter")
    return task


def check_dimensions(dimensions: int | None, hidden_size: int) -> int | None:
    try:
        return None if dimensions is None else int_in_range(dimensions, "dimensions", 1, hidden_size,
                            note="(the model's full size)")
    except InvalidArgumentError as error:
        raise ApiError.from_library(error, "dimensions") from None


def _output_formats(request: EmbeddingsRequest) -> tuple[tuple[str, ...], bool]:
    """The output encodings: embedding_type (or its alias encoding_type) and encoding_format must agree."""
    chosen: dict[str, tuple[tuple[str, ...], bool]] = {}
    fields = (("embedding_type", FORMATS), ("encoding_type", FORMATS), ("encoding_format", OPENAI_FORMATS))
    for field, allowed in fields:
        value = getattr(request, field)
        if value is None:
            continue
        values = [value] if isinstance(value, str) else value
        if not values:
            raise ApiError.invalid(field, f"is an empty list; use one or more of {', '.join(allowed)}")
        for v in values:
            if v not in allowed:
                raise ApiError.invalid(field, f"must be one of {', '.join(allowed)}, got {v!r}")
        chosen[field] = (tuple(dict.fromkeys(values)), not isinstance(value, str))
    if len(set(chosen.values())) > 1:
        (a, va), (b, vb) = list(chosen.items())[:2]
        raise ApiError.invalid(a, f"{_formats(va)} conflicts with {b} {_formats(vb)}; send one of them")
    return next(iter(chosen.values()), (("float",), False))


def _formats(value: tuple[tuple[str, ...], bool]) -> str:
    formats, keyed = value
    return repr(list(formats)) if keyed else repr(formats[0])


# ----------------------------------------------------------------------------- input
def parse_input(value: Any, vocab_size: int, field: str = "input") -> tuple[str, list]:
    """(TEXTS, [str]) or (IDS, [[int]]) from every form ``input`` (TEI: ``inputs``, ``field``) may take."""
    if isinstance(value, str):
        return TEXTS, [_check_text(value, field)]
    if isinstance(value, dict):
        return TEXTS, [_text_of(value, field)]
    if not isinstance(value, list):
        raise ApiError.invalid(field, "must be a string, a {\"text\": ...} object, a list of them, or token ids "
                                      f"(a list of int, or a list of lists of int); got {_shown(value)}")
    if not value:
        raise ApiError.invalid(field, "is an empty list; send at least one text")
    if all(_is_int(v) for v in value):
        return IDS, [_check_ids(value, field, vocab_size)]
    if all(isinstance(v, list) for v in value):
        return IDS, [_check_ids(v, f"{field}[{i}]", vocab_size) for i, v in enumerate(value)]
    texts = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            texts.append(_check_text(item, f"{field}[{i}]"))
        elif isinstance(item, dict):
            texts.append(_text_of(item, f"{field}[{i}]"))
        else:
            raise ApiError.invalid(f"{field}[{i}]", "must be a string or a {\"text\": ...} object (token ids "
                                                    f"cannot be mixed with text); got {_shown(item)}")
    return TEXTS, texts


def _text_of(item: dict, field: str) -> str:
    if "text" not in item:
        raise ApiError.invalid(field, f"an object needs a \"text\" field (only text is embedded here); "
                                      f"got keys {sorted(item)}")
    if not isinstance(item["text"], str):
        raise ApiError.invalid(f"{field}.text", f"must be a string, got {_shown(item['text'])}")
    return _check_text(item["text"], f"{field}.text")


def _check_text(text: str, field: str) -> str:
    """Text the tokenizer can take: a lone surrogate (a \\ud800 escape) would fail it inside a batch."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ApiError.invalid(field, f"contains a lone surrogate (U+{ord(text[error.start]):04X}) at character "
                                      f"{error.start}; text must be valid Unicode") from None
    return text


def _check_ids(ids: list, field: str, vocab_size: int) -> list[int]:
    if not ids:
        raise ApiError.invalid(field, "is an empty list of token ids")
    for k, token in enumerate(ids):
        if not _is_int(token):
            raise ApiError.invalid(f"{field}[{k}]", f"must be a token id (integer), got {_shown(token)}")
        if not 0 <= token < vocab_size:
            raise ApiError.invalid(f"{field}[{k}]",
                                   f"token id {token} is outside the vocabulary (0 to {vocab_size - 1})")
    return ids


def _check_late_chunking(kind: str, items: list) -> str:
    if kind == IDS:
        raise ApiError.invalid("late_chunking", "needs text inputs (the pieces of one document), not token ids")
    for i, text in enumerate(items):
        if not text.strip():
            raise ApiError.invalid(f"input[{i}]", "is blank; with late_chunking every piece needs text to pool")
    return LATE


def _is_int(value: Any) -> bool:
    return type(value) is int  # JSON true/false arrive as bool, which is an int to Python


def _shown(value: Any, limit: int = 80) -> str:
    if value is None:
        return "null"
    text = repr(value) if isinstance(value, (str, int, float, bool)) else type(value).__name__
    text = {"True": "true", "False": "false", "dict": "an object", "list": "a list"}.get(text, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
