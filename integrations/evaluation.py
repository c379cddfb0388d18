"""Retrieval quality on a BEIR-format data set, per search mode and Matryoshka size: what ``jinav3 eval`` runs.

    from jinav3.integrations.evaluation import read_beir, evaluate
    data = read_beir("scifact/")                       # corpus.jsonl, queries.jsonl, qrels/test.tsv
    results = evaluate(data, open_store=lambda d: QdrantStore(enc, f"scifact_{d}", path="./q", dimensions=d,
                                                              hybrid=True), modes=["dense", "sparse", "hybrid"])

A folder in BEIR's format: ``corpus.jsonl`` (``{"_id", "title", "text"}`` per line), ``queries.jsonl``
(``{"_id", "text"}``) and ``qrels/<split>.tsv`` (a header line, then ``query-id  corpus-id  score``). Each
document is indexed as ``title + " " + text`` (BEIR's convention), each judged query searched for its top 100
in every mode, and the runs scored by ir-measures (nDCG@10, R@100, RR@10 = MRR@10): the metrics come from a
well-kept library, not from here.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinav3.errors import CorpusError, install_hint, invalid
from jinav3.integrations.stores.hybrid import MODES
from jinav3.progress import progress_bar

METRICS = ("nDCG@10", "R@100", "RR@10")
DEPTH = 100  # hits per query: recall@100 needs them


@dataclass(frozen=True)
class BeirData:
    corpus: dict[str, str]                    # document id -> text (title and body)
    queries: dict[str, str]                   # judged query id -> text
    qrels: dict[str, dict[str, int]]          # query id -> document id -> relevance


def read_beir(folder: str | Path, split: str = "test") -> BeirData:
    """The corpus, the judged queries and the judgements of a BEIR folder; a missing file, a bad line or a
    judgement naming an unknown document or query raises CorpusError naming ``file:line``."""
    root = Path(folder).expanduser()
    paths = {"corpus": root / "corpus.jsonl", "queries": root / "queries.jsonl",
             "qrels": root / "qrels" / f"{split}.tsv"}
    for path in paths.values():
        if not path.is_file():
            raise CorpusError(f"{path}: not found; a BEIR folder holds corpus.jsonl, queries.jsonl and "
                              f"qrels/{split}.tsv")
    corpus = {key: " ".join(p for p in (row.get("title") or "", row.get("text") or "") if p).strip()
              for key, row in _jsonl(paths["corpus"])}
    queries = {key: str(row.get("text") or "") for key, row in _jsonl(paths["queries"])}
    qrels: dict[str, dict[str, int]] = {}
    with paths["qrels"].open(encoding="utf-8", newline="") as f:
        for line, row in enumerate(csv.reader(f, delimiter="\t"), start=1):
            if line == 1 and row and not row[-1].strip().lstrip("-").isdigit():
                continue  # the header
            where = f"{paths['qrels']}:{line}"
            if len(row) < 3 or not row[-1].strip().lstrip("-").isdigit():
                raise CorpusError(f"{where}: expected 'query-id<TAB>corpus-id<TAB>score', got {row!r}")
            query, doc, score = row[0], row[-2], int(row[-1])
            if query not in queries:
                raise CorpusError(f"{where}: query {query!r} is not in queries.jsonl")
            if doc not in corpus:
                raise CorpusError(f"{where}: document {doc!r} is not in corpus.jsonl")
            qrels.setdefault(query, {})[doc] = score
    if not qrels:
        raise CorpusError(f"{paths['qrels']}: no judgements")
    empty = [key for key, text in corpus.items() if not text]
    if empty:
        raise CorpusError(f"{paths['corpus']}: document {empty[0]!r} has no title or text")
    return BeirData(corpus, {q: queries[q] for q in qrels}, qrels)


def _jsonl(path: Path) -> list[tuple[str, dict]]:
    rows: list[tuple[str, dict]] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{path}:{line}: not JSON ({e.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("_id"), (str, int)):
                raise CorpusError(f"{path}:{line}: expected an object with an '_id'")
            key = str(row["_id"])
            if key in seen:
                raise CorpusError(f"{path}:{line}: '_id' {key!r} appears twice")
            seen.add(key)
            rows.append((key, row))
    return rows


def check_modes(modes: Sequence[str]) -> list[str]:
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise invalid("modes", f"must be some of {', '.join(MODES)}, got {', '.join(modes) or 'none'}")
    return list(dict.fromkeys(modes))


def evaluate(data: BeirData, open_store: Callable[[int | None], Any], modes: Sequence[str],
             dimensions: Sequence[int | None] = (None,), show_progress: bool = False) -> list[dict[str, Any]]:
    """Per Matryoshka size (None: the model's full size) and mode: the metrics of searching ``data``'s judged
    queries in a store ``open_store(size)`` gives (it must be hybrid for the sparse and hybrid modes)."""
    try:
        import ir_measures
    except ImportError as e:
        raise ImportError("jinav3 eval needs ir-measures: " + install_hint("eval")) from e
    modes = check_modes(modes)
    measures = [ir_measures.parse_measure(m) for m in METRICS]
    qrels = [ir_measures.Qrel(q, d, rel) for q, docs in data.qrels.items() for d, rel in docs.items()]
    results = []
    for size in dimensions:
        store = open_store(size)
        try:
            store.add([{"id": key, "text": text} for key, text in data.corpus.items()], show_progress=show_progress)
            for mode in modes:
                run = []
                bar = progress_bar(len(data.queries), show_progress, unit="query",
                                   desc=f"Searching ({mode}, {store.dimensions} dimensions)")
                for key, text in data.queries.items():
                    for hit in store.search(text, top_k=DEPTH, mode=mode):
                        run.append(ir_measures.ScoredDoc(key, hit.id, float(hit.score or 0.0)))
                    bar.update(1)
                bar.close()
                scores = ir_measures.calc_aggregate(measures, qrels, run)
                results.append({"dimensions": store.dimensions, "mode": mode, "queries": len(data.queries),
                                "documents": len(data.corpus),
                                **{m: float(scores.get(measure, 0.0)) for m, measure in zip(METRICS, measures,
                                                                                            strict=True)}})
        finally:
            store.close()
    return results


def table(results: Sequence[dict[str, Any]]) -> str:
    lines = [f"{'dimensions':>10}  {'mode':<7}" + "".join(f"{m:>9}" for m in METRICS)]
    for r in results:
        lines.append(f"{r['dimensions']:>10}  {r['mode']:<7}" + "".join(f"{r[m]:>9.4f}" for m in METRICS))
    return "\n".join(lines)
