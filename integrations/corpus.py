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
ids stay the same from run to run. Every row goes through :func:`check_row`, the one row check of
``jinav3 index`` with and without ``--ray``: a row without text (field missing, null, blank or not a
string), a NaN or Infinity in a field (JSON has neither; Python's parser accepts them, a store would fail
on them), what every store refuses (a lone surrogate, an id holding ``::chunk:`` or a control character,
an integer beyond 64 bits: ``records.normalize_record``), the target store's own limits (``rules``),
a row nested too deeply to parse, a CSV row past :data:`CSV_FIELD_LIMIT` characters, and a repeated
id are reported as ``file:line`` through ``warn`` and skipped, or, with ``strict=True``, raise
:class:`CorpusError` (naming the first and counting the rest) before anything is returned. A file that
cannot be read (bad JSON, not UTF-8) raises :class:`CorpusError` naming ``file:line``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinav3.errors import CorpusError, InvalidArgumentError, install_hint  # CorpusError: raised here

from .stores import records as _records

if TYPE_CHECKING:
    from .stores.limits import RecordLimits

log = logging.getLogger("jinav3.integrations")
TABLE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
TEXT_SUFFIXES = (".txt", ".md")
SUFFIXES = TABLE_SUFFIXES + TEXT_SUFFIXES
# csv's default field limit (128 KiB) is below a long document; a row past this one is surely broken
# (an unclosed quote swallowing the rest of the file): it is skipped as a bad row.
CSV_FIELD_LIMIT = 64 * 2**20
_CSV_PARSER_LIMIT = 2**31 - 1  # csv's own limit, out of the way: _csv_rows measures rows itself (a C long)

Record = dict[str, Any]
TOO_DEEP = "nested too deeply for the JSON parser (more levels than Python can walk)"


@dataclass(frozen=True)
class BadRow:
    """What a reader yields for a row it could not turn into an object (nested too deeply, a CSV field past
    the limit): why, for :func:`check_row` to report and skip like any other bad row."""

    problem: str


def log_warning(message: str) -> None:
    """How reading a corpus warns when the caller does not say (the command line: one ``jinav3: warning:`` line)."""
    log.warning("%s", message)


def skipped(problem: str) -> str:
    """THE warning text of a bad row that is skipped (both paths of ``jinav3 index``)."""
    return f"{problem}; skipped"


def stopped_by_strict(first: str, count: int) -> CorpusError:
    """THE failure of ``strict`` (``--strict``) on ``count`` bad rows, ``first`` the first one's problem in
    corpus order: one line, raised before anything is created or written (both paths)."""
    more = f" (and {count - 1} more row{'s' if count > 2 else ''} that cannot be indexed)" if count > 1 else ""
    return CorpusError(f"{first}{more}; nothing was written (stopped by --strict)")


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
    rules: RecordLimits | None = None,
    late_chunking: bool = False,
) -> list[Record]:
    """Every document of ``corpus`` as ``{"id": str, "text": str, "metadata": dict}``, in file order.
    ``rules``: the target store's limits (``StoreClass.record_limits()``), so that a row the store would
    refuse is skipped here, by ``file:line``, before the store is even opened."""
    return [record for _, record in read_located(corpus, id_field=id_field, text_field=text_field, strict=strict,
                                                 warn=warn, rules=rules, late_chunking=late_chunking)]


def read_located(
    corpus: str | os.PathLike,
    *,
    id_field: str = "id",
    text_field: str = "text",
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
    rules: RecordLimits | None = None,
    late_chunking: bool = False,
) -> list[tuple[str, Record]]:
    """:func:`read_corpus` with each record's ``file:line``, for messages about it later (truncation)."""
    warn = warn or log_warning
    root, files, unread = corpus_files(corpus)
    if unread:  # said once, so a folder of PDFs is not mistaken for an indexed one
        warn(f"skipped {len(unread)} file{'s' if len(unread) > 1 else ''} no reader handles: {', '.join(unread)}")
    located: list[tuple[str, Record]] = []
    seen: dict[str, str] = {}  # id -> where it was first seen
    first: str | None = None  # with strict: the first problem, for the one error at the end
    count = 0

    def problem(message: str) -> None:
        nonlocal count, first
        count += 1
        if strict:  # read on, to count them, then stop before anything is returned
            first = first or message
        else:
            warn(skipped(message))

    for file in files:
        shown = _shown(file)
        relative = file.relative_to(root).as_posix()
        for line, row in _rows(file, relative, id_field, text_field):
            where = f"{shown}:{line}"
            record, trouble = check_row(row, where, f"{relative}:{line}", id_field=id_field, text_field=text_field,
                                        rules=rules, late_chunking=late_chunking)
            if record is None:
                problem(trouble or f"{where}: unreadable row")
                continue
            if record.id in seen:
                problem(f"{where}: id {record.id!r} already used at {seen[record.id]}")
                continue
            seen[record.id] = where
            located.append((where, {"id": record.id, "text": record.text, "metadata": record.metadata}))
    if first is not None:
        raise stopped_by_strict(first, count)
    return located


Checked = tuple[_records.Record | None, str | None]  # (record, None) or (None, problem)


def check_row(row: Any, where: str, default_id: str | None, *, id_field: str = "id", text_field: str = "text",
              rules: RecordLimits | None = None, late_chunking: bool = False) -> Checked:
    """THE row check of ``jinav3 index``, with and without ``--ray`` (repeated ids aside, which need every
    row): ``(record, None)``, or ``(None, problem)`` naming ``where`` (``file:line``). The corpus's rules
    (:func:`row_record`), then what any store refuses (:func:`~jinav3.integrations.stores.records.normalize_record`)
    and, given ``rules``, the target store's own limits (``RecordLimits.check_record``)."""
    try:
        item, problem = row_record(row, where, default_id, id_field, text_field)
        return (None, problem) if item is None else check_item(item, where, rules, late_chunking)
    except RecursionError:  # metadata nested deeper than the checks (and the stores) can walk
        return None, f"{where}: {TOO_DEEP}"


def check_item(item: Record, where: str, rules: RecordLimits | None = None,
               late_chunking: bool = False) -> Checked:
    """The second half of :func:`check_row`, for a row already through :func:`row_record` (the Ray path
    checks those on the workers): what any store refuses, and the target store's limits."""
    try:
        record = rules.check_record(item, where, late_chunking) if rules is not None \
            else _records.normalize_record(item, where)
    except InvalidArgumentError as error:
        return None, str(error)
    except RecursionError:
        return None, f"{where}: {TOO_DEEP}"
    return record, None


def row_record(row: Any, where: str, default_id: str | None, id_field: str = "id",
               text_field: str = "text") -> tuple[Record | None, str | None]:
    """The corpus's own rules for one row, :func:`check_row`'s first half: ``({"id", "text", "metadata"},
    None)``, or ``(None, problem)`` naming ``where``. A row without an id gets ``default_id`` (None: no id,
    left to the store, which derives one from the text)."""
    if isinstance(row, BadRow):
        return None, f"{where}: {row.problem}"
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
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise CorpusError(f"{shown}:{number}: not valid JSON: {error.msg} (column {error.colno})") from error
            except RecursionError:  # one row too deep for the parser: a bad row, the next lines are fine
                row = BadRow(TOO_DEEP)
            yield number, row


def _json_rows(file: Path, shown: str) -> Iterator[tuple[int, Any]]:
    try:
        data = json.loads(file.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise CorpusError(f"{shown}:{error.lineno}: not valid JSON: {error.msg} (column {error.colno})") from error
    except RecursionError:  # one parse for the whole file: no row can be told from the others
        raise CorpusError(f"{shown}: {TOO_DEEP}, so the file cannot be read (a .jsonl file would lose "
                          "only that row)") from None
    if isinstance(data, dict) and isinstance(data.get("documents"), list):
        data = data["documents"]
    if not isinstance(data, list):
        raise CorpusError(f"{shown}: a .json corpus must be a list of objects or an object with a \"documents\" list")
    # JSON has no row lines once parsed: number the items from 1 (reported as file:item).
    yield from enumerate(data, 1)


def _csv_rows(file: Path, shown: str) -> Iterator[tuple[int, Any]]:
    previous_limit = csv.field_size_limit(_CSV_PARSER_LIMIT)  # a process-wide setting: put back when done
    try:
        with open(file, encoding="utf-8-sig", newline="") as handle:
            lines = _CSVLines(handle, CSV_FIELD_LIMIT)
            reader = csv.DictReader(lines)
            start = 1  # the line the row being read starts on (a quoted field may span lines)
            try:
                _ = reader.fieldnames  # the property reads the header row
                lines.next_row()
                start = reader.line_num + 1
                for row in reader:
                    if lines.overflowed:  # only the row's shape was parsed: its cells are not its text
                        yield start, BadRow(f"a CSV row past {CSV_FIELD_LIMIT:,} characters starts here (a field "
                                            "that long, or an unclosed quote)")
                    else:
                        row.pop(None, None)  # cells past the header's columns
                        yield reader.line_num, row
                    lines.next_row()
                    start = reader.line_num + 1
            except csv.Error as error:
                raise CorpusError(f"{shown}:{start}: not valid CSV: {error}") from error
    finally:
        csv.field_size_limit(previous_limit)


class _CSVLines:
    """The lines of a CSV file for ``csv.reader``, counting the characters of the row being read. Past
    ``limit`` the rest of that row is handed over shrunk: every run of characters other than quotes,
    commas and line ends becomes one ``x``. The parser goes through the same states on it (it tells
    those characters apart only), so it finds the row's true end, without holding a field of a
    gigabyte (an unclosed quote) in memory, and the rows after it are read as they are."""

    _OTHER = re.compile(r'[^",\r\n]+')

    def __init__(self, lines: Iterable[str], limit: int) -> None:
        self._lines, self._limit = iter(lines), limit
        self._size = 0
        self.overflowed = False

    def __iter__(self) -> _CSVLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._size += len(line)
        if self._size > self._limit:
            self.overflowed = True
        return self._OTHER.sub("x", line) if self.overflowed else line

    def next_row(self) -> None:
        self._size, self.overflowed = 0, False


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
