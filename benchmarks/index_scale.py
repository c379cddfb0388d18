"""Indexing cost as the collection grows, per store: does the store layer stay flat?

    python -m benchmarks.index_scale [--docs 10000,50000] [--stores qdrant,milvus-lite,milvus-server]
                                     [--model FOLDER_OR_HUB_ID] [--peer-docs 10000] [--json out.json]

Short synthetic documents (8-40 words of the tokenizer's own single-piece words, so the model is cheap and
the store layer shows: the tiny golden model by default) are indexed through ``VectorStore.add`` in five
calls of a fifth each (one store object, as ``jinav3 index`` holds one), then indexed again by a NEW store
object (a re-run of ``jinav3 index`` on an unchanged corpus: the stale-point lookups of issue 29 happen
there), then searched. Per store and size it reports:

* wall seconds of the first index and of the re-index, and their ratio (goal: re-index <= first);
* seconds in the store layer (the store's own requests: upserts, extent lookups, deletes, prunes) and in
  embedding, as shares of the wall time (goal: store layer < 15% at 50k documents with the tiny model;
  writes overlap with embedding, so the two shares can add up to more than 1), and the wall time beyond
  embedding (what the store layer cost that the overlap did not hide);
* seconds per 1,000 documents in each fifth, and last fifth / first fifth (goal <= 1.3);
* peak RSS of this process (Milvus Lite and the Milvus server run in processes of their own), disk bytes;
* search latency p50 / p90 over 50 queries: unfiltered, and with filters matching 1% and 0.1% of the
  documents (issue 30: a short filtered answer is completed by an exact search, whose cost shows here).

The peer, in the same run: the earlier way of removing stale points, a delete by condition on the parent id
after every batch (``tracks_extents`` off), at ``--peer-docs`` documents (it is quadratic in the embedded
stores: 23 minutes for 50k in Qdrant local mode). The Milvus server (2.3.5, from ``$JINAV3_MILVUS_SERVER_PYTHON``
or ``--milvus-uri``) is left out when neither is given.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
STORE_PRIMITIVES = ("_upsert", "_read_stamps", "_delete_keys", "_prune")
QUERIES = 50


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.index_scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", default="10000,50000", help="collection sizes, comma-separated (default: %(default)s)")
    p.add_argument("--stores", default="qdrant,milvus-lite,milvus-server",
                   help="qdrant (local mode), milvus-lite, milvus-server (default: %(default)s)")
    p.add_argument("--model", default=str(REPO / "tests" / "golden" / "tiny-v3"),
                   help="model folder or hub id (default: the tiny golden model)")
    p.add_argument("--peer-docs", type=int, default=10_000,
                   help="size at which the delete-by-condition peer runs too (0: never; default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="records per batch, as jinav3 index (default: %(default)s)")
    p.add_argument("--milvus-uri",
                   help="a running Milvus server (default: start one from $JINAV3_MILVUS_SERVER_PYTHON)")
    p.add_argument("--json", help="also write the results here")
    return p.parse_args(argv)


# ============================================================================================ corpus
def documents(tokenizer, n: int, seed: int = 0) -> list[dict]:
    from .corpus import single_piece_words

    words = single_piece_words(tokenizer)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, 41, n)
    picks = rng.integers(0, len(words), int(lengths.sum()))
    docs, at = [], 0
    for i, length in enumerate(lengths):
        text = " ".join(words[j] for j in picks[at:at + length]) + "."
        at += length
        metadata = {"cat": f"c{i % 100}", "rare": "yes" if i % 1000 == 3 else "no"}
        docs.append({"id": f"doc-{i}", "text": text, "metadata": metadata})
    return docs


# ============================================================================================ measuring
class Clock:
    """Seconds spent in the wrapped callables (summed across threads: the writer thread writes)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
                self.calls[name] = self.calls.get(name, 0) + 1
        return timed

    def total(self, names) -> float:
        return sum(self.seconds.get(n, 0.0) for n in names)


class TimedEncoder:
    """The encoder, with the seconds of its encode calls counted."""

    def __init__(self, encoder, clock: Clock) -> None:
        self._encoder, self._clock = encoder, clock
        self.encode = clock.wrap("embed", encoder.encode)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)


def open_store(kind: str, encoder, folder: Path, collection: str, milvus_uri: str | None, clock: Clock, peer: bool):
    if kind == "qdrant":
        from jinav3.integrations.qdrant import QdrantStore
        store = QdrantStore(encoder, collection, path=str(folder / "qdrant"))
    else:
        from jinav3.integrations.milvus import MilvusStore
        uri = str(folder / "milvus.db") if kind == "milvus-lite" else milvus_uri
        store = MilvusStore(encoder, collection, uri=uri)
    if peer:  # the earlier way: every batch's stale points deleted by condition on the parent id
        from jinav3.integrations.stores.pruning import Holdings
        store.tracks_extents = False
        store._holdings = Holdings(fresh=False)
    for name in STORE_PRIMITIVES:
        setattr(store, name, clock.wrap(name, getattr(store, name)))
    return store


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {"p50_ms": 1000 * statistics.median(ordered), "p90_ms": 1000 * ordered[int(0.9 * (len(ordered) - 1))]}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_one(kind: str, n: int, encoder, docs: list[dict], milvus_uri: str | None, batch_size: int,
            peer: bool) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"index-scale-{kind}-"))
    collection = f"scale_{n}_{'peer' if peer else 'keys'}_{os.getpid()}"
    clock = Clock()
    timed_encoder = TimedEncoder(encoder, clock)
    store = open_store(kind, timed_encoder, folder, collection, milvus_uri, clock, peer)
    fifths, start = [], time.perf_counter()
    for f in range(5):
        part = docs[f * n // 5:(f + 1) * n // 5]
        t = time.perf_counter()
        store.add(part, batch_size=batch_size)
        fifths.append(1000 * (time.perf_counter() - t) / len(part))
    wall = time.perf_counter() - start
    first = {"wall_s": wall, "store_s": clock.total(STORE_PRIMITIVES), "embed_s": clock.seconds.get("embed", 0.0),
             "calls": dict(clock.calls)}
    store.close()

    again_clock = Clock()
    again = open_store(kind, TimedEncoder(encoder, again_clock), folder, collection, milvus_uri, again_clock, peer)
    t = time.perf_counter()
    again.add(docs, batch_size=batch_size)
    reindex = {"wall_s": time.perf_counter() - t, "store_s": again_clock.total(STORE_PRIMITIVES),
               "calls": dict(again_clock.calls)}
    assert again.count() == n, (again.count(), n)

    queries = [d["text"] for d in docs[1::max(1, n // QUERIES)]][:QUERIES]
    search: dict[str, dict[str, float]] = {}
    for label, flt in (("unfiltered", None), ("1%", {"cat": "c7"}), ("0.1%", {"rare": "yes"})):
        (key, value), = (flt or {"all": None}).items()
        expected = min(10, n if flt is None else sum(d["metadata"][key] == value for d in docs))
        seconds = []
        for q in queries:
            t = time.perf_counter()
            hits = again.search(q, top_k=10, filter=flt)
            seconds.append(time.perf_counter() - t)
            assert len(hits) == expected, (label, len(hits), expected)  # issue 30
        search[label] = percentiles(seconds)
    if kind == "milvus-server":
        again.client.drop_collection(collection)
    again.close()
    return {
        "store": kind, "docs": n, "way": "delete-by-condition (peer)" if peer else "by key",
        "first": first, "reindex": reindex, "reindex_over_first": reindex["wall_s"] / wall,
        "store_share": first["store_s"] / wall, "embed_share": first["embed_s"] / wall,
        # what the store layer costs the wall: time not spent embedding (writes overlap the next batch's embedding)
        "beyond_embed_share": max(wall - first["embed_s"], 0.0) / wall,
        "ms_per_doc_by_fifth": fifths, "last_over_first_fifth": fifths[-1] / fifths[0],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "disk_mib": None if kind == "milvus-server" else folder_bytes(folder) / 2**20,
        "search": search,
    }


def report(row: dict) -> str:
    s = row["search"]
    fifths = " ".join(f"{x:.2f}" for x in row["ms_per_doc_by_fifth"])
    return (f"{row['store']:<13} {row['docs']:>7,} {row['way']:<26} wall {row['first']['wall_s']:7.1f} s  "
            f"store {100 * row['store_share']:5.1f}%  embed {100 * row['embed_share']:5.1f}%  "
            f"beyond embedding {100 * row['beyond_embed_share']:5.1f}%  "
            f"s/1k by fifth [{fifths}] last/first {row['last_over_first_fifth']:.2f}  "
            f"reindex {row['reindex']['wall_s']:7.1f} s ({row['reindex_over_first']:.2f}x)  "
            f"search p50/p90 ms: {s['unfiltered']['p50_ms']:.1f}/{s['unfiltered']['p90_ms']:.1f}, "
            f"1% {s['1%']['p50_ms']:.1f}/{s['1%']['p90_ms']:.1f}, "
            f"0.1% {s['0.1%']['p50_ms']:.1f}/{s['0.1%']['p90_ms']:.1f}  "
            f"rss {row['peak_rss_mib']:.0f} MiB  disk {row['disk_mib'] or 0:.0f} MiB")


def main(argv=None) -> list[dict]:
    args = parse(argv)
    from jinav3 import Encoder

    sizes = [int(x) for x in args.docs.split(",") if x.strip()]
    kinds = [k.strip() for k in args.stores.split(",") if k.strip()]
    unknown = set(kinds) - {"qdrant", "milvus-lite", "milvus-server"}
    if unknown:
        raise SystemExit(f"--stores: unknown {sorted(unknown)}; use qdrant, milvus-lite, milvus-server")
    server = None
    milvus_uri = args.milvus_uri
    if "milvus-server" in kinds and milvus_uri is None:
        python = os.environ.get("JINAV3_MILVUS_SERVER_PYTHON")
        if python:
            sys.path.insert(0, str(REPO / "tests"))
            from milvus_server import MilvusServerProcess
            server = MilvusServerProcess(python, tempfile.mkdtemp(prefix="index-scale-milvus-"))
            milvus_uri = server.uri
        else:
            print("milvus-server: skipped (no --milvus-uri and no $JINAV3_MILVUS_SERVER_PYTHON)")
            kinds.remove("milvus-server")
    encoder = Encoder.from_pretrained(args.model, device="cpu")
    docs = documents(encoder.tokenizer, max(sizes))
    rows = []
    try:
        for n in sizes:
            for kind in kinds:
                ways = [False] + ([True] if args.peer_docs and n <= args.peer_docs else [])
                for peer in ways:
                    row = run_one(kind, n, encoder, docs[:n], milvus_uri, args.batch_size, peer)
                    print(report(row), flush=True)
                    rows.append(row)
    finally:
        if server is not None:
            server.stop()
    print("\nGoals (issue 29): store layer < 15% of wall at 50k; last/first fifth <= 1.3; reindex <= first")
    for row in rows:
        if row["way"] == "by key":
            peer = next((r for r in rows if r["store"] == row["store"] and r["docs"] == row["docs"]
                         and r["way"] != "by key"), None)
            vs = f"; first index {peer['first']['wall_s'] / row['first']['wall_s']:.1f}x faster than the peer" \
                if peer else ""
            print(f"  {row['store']:<13} {row['docs']:>7,}: store {100 * row['store_share']:.1f}% (wall beyond "
                  f"embedding {100 * row['beyond_embed_share']:.1f}%), "
                  f"last/first {row['last_over_first_fifth']:.2f}, reindex/first {row['reindex_over_first']:.2f}{vs}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
