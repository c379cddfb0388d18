"""The corpus ``jinav3 index`` reads, as a Ray Dataset: one read task per file, THE readers and row check."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import ray
import ray.data

from jinav3.errors import CorpusError
from jinav3.integrations.corpus import SUFFIXES, TOO_DEEP, _rows, corpus_files, row_record

from .plan import _LINE_BITS, METADATA_JSON, POSITION, PROBLEM, WHERE

if TYPE_CHECKING:
    from ray.data import Dataset

log = logging.getLogger("jinav3.integrations")


def read_files(corpus: str, *, id_field: str = "id", text_field: str = "text") -> Dataset:
    """A Ray Dataset of the corpus ``jinav3 index`` reads (a file, a folder of them, or a glob): one read task
    per file, each through the CLI's own readers and row check, so ids (``path:line`` for rows without one),
    texts and metadata are exactly those of single-process indexing. The files must be visible from every
    node (a shared file system) on a multi-node cluster."""
    return files_dataset(list_files(corpus), id_field=id_field, text_field=text_field)


def list_files(corpus: str, warn: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The files :func:`read_files` reads (without Ray: a missing corpus is found before a cluster starts).
    ``warn`` hears about files no reader handles (default: a logged warning)."""
    import glob

    if "://" in corpus:  # s3://, gs://, hdfs://...: Ray's own readers list and read those
        raise CorpusError(f"corpus: {corpus!r} is a remote URI; the command line reads local files (a shared file "
                          "system on a cluster). For object stores, read them with Ray and index the Dataset: "
                          "index_dataset(ray.data.read_parquet('s3://...'), ...) (jinav3.integrations.ray)")
    matches = sorted(glob.glob(os.path.expanduser(corpus), recursive=True)) if glob.has_magic(corpus) else []
    if glob.has_magic(corpus):
        files = [Path(m) for m in matches if Path(m).is_file() and Path(m).suffix.lower() in SUFFIXES]
        if not files:
            raise CorpusError(f"corpus: {corpus!r} matches no {', '.join(SUFFIXES)} files")
        root = Path(os.path.commonpath([str(f.parent) for f in files]))
    else:
        root, files, unread = corpus_files(corpus)
        if unread:
            (warn or log.warning)(f"skipped {len(unread)} file{'s' if len(unread) > 1 else ''} no reader handles: "
                                  f"{', '.join(unread)}")
    return [{"number": n, "file": str(f.resolve()), "relative": f.relative_to(root).as_posix(), "shown": _shown(f)}
            for n, f in enumerate(files)]


def files_dataset(items: list[dict[str, Any]], *, id_field: str = "id", text_field: str = "text") -> Dataset:
    """The Dataset of the rows of :func:`list_files`' files: one read task per file."""
    return ray.data.from_items(items, override_num_blocks=max(1, len(items))).flat_map(
        cast(Any, _file_rows), fn_kwargs={"id_field": id_field, "text_field": text_field})


def _shown(file: Path) -> str:
    try:
        return os.path.relpath(file)
    except ValueError:
        return str(file)


def _file_rows(item: dict[str, Any], id_field: str, text_field: str) -> Iterator[dict[str, Any]]:
    for line, row in _rows(Path(item["file"]), item["relative"], id_field, text_field):
        where = f"{item['shown']}:{line}"
        record, problem = row_record(row, where, f"{item['relative']}:{line}", id_field, text_field)
        try:
            metadata = json.dumps(record["metadata"], ensure_ascii=False) if record else "{}"
        except RecursionError:
            record, problem, metadata = None, f"{where}: {TOO_DEEP}", "{}"
        yield {"id": record["id"] if record else "", "text": record["text"] if record else "", METADATA_JSON: metadata,
               POSITION: (int(item["number"]) << _LINE_BITS) | int(line), WHERE: where, PROBLEM: problem}
