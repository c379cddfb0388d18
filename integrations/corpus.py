"""Read a corpus from disk into store records ``{"id", "text", "metadata"}``.

    records = read_corpus("examples/data/passages.jsonl")          # list of dicts
    records = read_corpus("docs/", strict=True)                    # a folder, recursively

Formats (by file extension):

* ``.jsonl`` -- one JSON object per line;
* ``.json``  -- a list of objects, or an object ``{"documents": [...]}``;
* ``.csv``   -- a header row, then one document per row (every value is a string);
* ``.parquet`` -- one document per row (needs ``pyarrow``);
* ``.txt`` / ``.md`` -- the whole file is one document; its id is the path relative to the corpus
  (the file name when the corpus is that one file);
* a folder -- every file of those kinds below it, sorted by relative path; hidden files are skipped
  silently, other files no reader handles (``notes.pdf``) are named in one warning.

In a row, ``id_field`` gives the id and ``text_field`` the text; every other field becomes metadata
(fields whose value is null are left out). A row without an id gets ``<relative path>:<line>``, so
ids stay the same from run to run. A row without text (field missing, null, blank or not a string),
a repeated id and a NaN or Infinity in a field (JSON has neither; Python's parser accepts them, a store
would fail on them) are reported as ``file:line`` through ``warn`` and skipped, or, with
``strict=True``, raise :class:`CorpusError` before anything is returned. A file that cannot be read
(bad JSON, an oversized CSV field, not UTF-8) raises :class:`CorpusError` naming ``file:line``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from jinav3.errors import CorpusError, install_hint  # CorpusError: raised here, defined with every other error

TABLE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
TEXT_SUFFIXES = (".txt", ".md")
SUFFIXES = TABLE_SUFFIXES + TEXT_SUFFIXES
# csv's default field limit (128 KiB) is below a long document; past this one a field is surely broken
# (an unclosed quote swallowing the rest of the file).
CSV_FIELD_LIMIT = 64 * 2**20

Record = dict[str, Any]


def _default_warn(message: str) -> None:
    print(f"jinav3: warning: {message}", file=sys.stderr)


def corpus_files(corpus: str | os.PathLike) -> tuple[Path, list[Path], list[str]]:
    """The folder ids are relative to, the files to read (sorted), and the relative paths of the files
    in a folder corpus that no reader handles; raise CorpusError if there is nothing to read."""
    path = Path(corpus).expanduser()
    if not path.exists():
        raise CorpusError(f"corpus: {str(corpus)!r} does not exist")
    if path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise CorpusError(f"corpus: {str(corpus)!r} is a {path.suffix or 'extensionless'} file; "
                              f"use one of {', '.join(SUFFIXES)} or a folder of them")
        return path.parent, [path], []
    visible = sorted(
        (p for p in path.rglob("*")
         if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)),
        key=lambda p: p.relative_to(path).as_posix(),
    )
    files = [p for p in visible if p.suffix.lower() in SUFFIXES]
    unread = [p.relative_to(path).as_posix() for p in visible if p.suffix.lower() not in SUFFIXES]
    if not files:
        found = f" (only {', '.join(unread)})" if unread else ""
        raise CorpusError(f"corpus: folder {str(corpus)!r} holds no {', '.join(SUFFIXES)} files{found}")
    return path, files, unread


def read_corpus(
    corpus: str | os.PathLike,
    *,
    id_field: str = "id",
    text_field: str = "text",
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
) -> list[Record]:
    """Every document of ``corpus`` as ``{"id": str, "text": str, "metadata": dict}``, in file order."""
    warn = warn or _default_warn
    root, files, unread = corpus_files(corpus)
    if unread:  # said once, so a folder of PDFs is not mistaken for an indexed one
        warn(f"skipped {len(unread)} file{'s' if len(unread) > 1 else ''} no reader handles: {', '.join(unread)}")
    records: list[Record] = []
    seen: dict[str, str] = {}  # id -> where it was first seen

    def problem(message: str) -> None:
        if strict:
            raise CorpusError(f"{message} (stopped by --strict)")
        warn(f"{message}; skipped")

    for file in files:
        shown = _shown(file)
        relative = file.relative_to(root).as_posix()
        for line, row in _rows(file, relative, id_field, text_field):
            where = f"{shown}:{line}"
            record, trouble = row_record(row, where, f"{relative}:{line}", id_field, text_field)
            if record is None:
                problem(trouble or f"{where}: unreadable row")
                continue
            doc_id = record["id"]
            if doc_id in seen:
                problem(f"{where}: id {doc_id!r} already used at {seen[doc_id]}")
                continue
            seen[doc_id] = where
            records.append(record)
    return records


def row_record(row: Any, where: str, default_id: str | None, id_field: str = "id",
               text_field: str = "text") -> tuple[Record | None, str | None]:
    """THE check of one corpus row (repeated ids aside): ``({"id", "text", "metadata"}, None)``, or
    ``(None, problem)`` naming ``where``. A row without an id gets ``default_id`` (None: no id, left to
    the store, which derives one from the text). ``read_corpus`` and the Ray indexing path both use it."""
    if not isinstance(row, dict):
        return None, f"{where}: expected an object with a {text_field!r} field, got {type(row).__name__}"
    text = row.get(text_field)
    if not isinstance(text, str) or not text.strip():
        what = ("no" if text is None else "a blank" if isinstance(text, str)
                else f"a non-text ({type(text).__name__})")
        return None, f"{where}: {what} {text_field!r} field"
    raw_id = row.get(id_field)
    doc_id: str | None
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        doc_id = default_id
    elif isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool):
        doc_id = str(raw_id)
    else:
        return None, f"{where}: the {id_field!r} field must be a string or an integer, got {type(raw_id).__name__}"
    metadata = {k: v for k, v in row.items() if k not in (id_field, text_field) and v is not None}
    field = _non_finite(metadata)
    if field is not None:
        return None, f"{where}: field {field!r} is NaN or Infinity, which JSON and the stores cannot hold"
    out: Record = {"text": text, "metadata": metadata}
    if doc_id is not None:
        out = {"id": doc_id, **out}
    return out, None


def _non_finite(value: Any, path: str = "") -> str | None:
    """The path (``score``, ``tags[2]``, ``a.b``) of the first NaN or infinite float in ``value``, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for where, item in items:
        found = _non_finite(item, where)
        if found is not None:
            return found
    return None


def _shown(file: Path) -> str:
    """The file as the user would recognise it: relative to the working directory when below it."""
    try:
        return os.path.relpath(file)
    except ValueError:  # another drive on Windows
        return str(file)


def _rows(file: Path, relative: str, id_field: str, text_field: str) -> Iterator[tuple[int, Any]]:
    """(line or row number, row) pairs of one file."""
    suffix = file.suffix.lower()
    shown = _shown(file)
    try:
        if suffix in TEXT_SUFFIXES:
            yield 1, {id_field: relative, text_field: file.read_text(encoding="utf-8-sig"), "path": relative}
        elif suffix == ".jsonl":
            yield from _jsonl_rows(file, shown)
        elif suffix == ".json":
            yield from _json_rows(file, shown)
        elif suffix == ".csv":
            yield from _csv_rows(file, shown)
        elif suffix == ".parquet":
            yield from _parquet_rows(file, shown)
    except UnicodeDecodeError as error:
        raise CorpusError(f"{shown}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    except OSError as error:
        raise CorpusError(f"{shown}: cannot read: {error.strerror or error}") from error


def _jsonl_rows(file: Path, shown: str) -> Iterator[tuple[int, Any]]:
    with open(file, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise CorpusError(f"{shown}:{number}: not valid JSON: {error.msg} (column {error.colno})") from error


def _json_rows(file: Path, shown: str) -> Iterator[tuple[int, Any]]:
    try:
        data = json.loads(file.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise CorpusError(f"{shown}:{error.lineno}: not valid JSON: {error.msg} (column {error.colno})") from error
    if isinstance(data, dict) and isinstance(data.get("documents"), list):
        data = data["documents"]
    if not isinstance(data, list):
        raise CorpusError(f"{shown}: a .json corpus must be a list of objects or an object with a \"documents\" list")
    # JSON has no row lines once parsed: number the items from 1 (reported as file:item).
    yield from enumerate(data, 1)


def _csv_rows(file: Path, shown: str) -> Iterator[tuple[int, Any]]:
    previous_limit = csv.field_size_limit(CSV_FIELD_LIMIT)  # a process-wide setting: put back when done
    try:
        with open(file, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            start = 1  # the line the row being read starts on (a quoted field may span lines)
            try:
                _ = reader.fieldnames  # the property reads the header row
                start = reader.line_num + 1
                for row in reader:
                    row.pop(None, None)  # cells past the header's columns
                    yield reader.line_num, row
                    start = reader.line_num + 1
            except csv.Error as error:
                raise CorpusError(f"{shown}:{start}: not valid CSV: {error}") from error
    finally:
        csv.field_size_limit(previous_limit)


def _parquet_rows(file: Path, shown: str) -> Iterator[tuple[int, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise CorpusError(f"{shown}: reading .parquet needs pyarrow: {install_hint('parquet')}") from error
    try:
        table = pq.ParquetFile(str(file))
    except Exception as error:  # pyarrow's own error types vary by version
        raise CorpusError(f"{shown}: not a readable parquet file: {error}") from error
    number = 0
    for batch in table.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            number += 1
            yield number, row
