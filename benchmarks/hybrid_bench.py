"""Hybrid search's costs: lexical encoding next to dense encoding, hybrid search latency next to dense, and
the lexical field's share of the index.

    python -m benchmarks.hybrid_bench [--size medium] [--tokens 100000] [--points 10000,100000]
                                      [--stores qdrant,milvus-lite] [--json out.json]

1. Encoding: the same synthetic passages (benchmarks/corpus.py) through ``Encoder.encode_passages`` (a random
   checkpoint of ``--size``: medium by default, "real" is the real model's shape) and through
   ``SparseEncoder.encode_documents`` (the model's tokenizer); the lexical time as a share of the dense time
   (goal: under 2%).
2. Search: ``--points`` points per store written through ``write_points`` (random unit vectors of 1024
   dimensions, the real model's size, and texts of 8-40 words, so the lexical side has real statistics),
   into a dense and a hybrid collection of the same points; 50 queries each, p50/p90 of ``search`` in each
   mode, and hybrid / dense as a ratio.
3. Size: bytes on disk of the dense and the hybrid collection (the embedded stores' folders and files).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from .checkpoint import build
from .corpus import passages, single_piece_words
from .index_scale import folder_bytes
from .run import DEFAULT_WORKDIR

QUERIES = 50
DIMENSIONS = 1024


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hybrid_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="medium", choices=("tiny", "medium", "real"))
    p.add_argument("--tokens", type=int, default=100_000,
                   help="corpus size for the encoding part (default: %(default)s)")
    p.add_argument("--points", default="10000", help="collection sizes for the search part (default: %(default)s)")
    p.add_argument("--stores", default="qdrant,milvus-lite", help="qdrant and/or milvus-lite (default: %(default)s)")
    p.add_argument("--workdir", default=DEFAULT_WORKDIR, help="where the random checkpoint is built and reused")
    p.add_argument("--json", help="also write the results here")
    return p.parse_args(argv)


def encoding(size: str, tokens: int, workdir: str) -> dict:
    from jinav3 import Encoder, SparseEncoder

    original, _ = build(Path(workdir), size)
    encoder = Encoder.from_pretrained(original, device="cpu")
    sparse = SparseEncoder(encoder.tokenizer.backend_tokenizer)
    texts = passages(encoder.tokenizer, tokens)
    encoder.encode_passages(texts[:8])  # warm up
    start = time.perf_counter()
    encoder.encode_passages(texts)
    dense = time.perf_counter() - start
    lexical = min(_timed(lambda: sparse.encode_documents(texts)) for _ in range(3))
    return {"size": size, "texts": len(texts), "dense_s": dense, "lexical_s": lexical, "lexical_share": lexical / dense}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class VectorsOnly:
    """An encoder for the search part: random query vectors of the real size (the store layer is measured)."""

    name = "hybrid-bench"

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._rng = np.random.default_rng(1)

    def output_size(self, dimensions=None) -> int:
        return DIMENSIONS if dimensions is None else dimensions

    def encode(self, texts, task=None, dimensions=None, **kwargs) -> np.ndarray:
        v = self._rng.standard_normal((len(texts), DIMENSIONS)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def search(kind: str, n: int, tokenizer) -> dict:
    from jinav3.integrations.stores.records import WHOLE, Point

    words = single_piece_words(tokenizer)
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, rng.integers(8, 41))) for _ in range(n)]
    vectors = rng.standard_normal((n, DIMENSIONS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    encoder = VectorsOnly(tokenizer)
    out: dict = {"store": kind, "points": n}
    for hybrid in (False, True):
        folder = Path(tempfile.mkdtemp(prefix=f"hybrid-bench-{kind}-"))
        store = _open(kind, encoder, folder, hybrid)
        start = time.perf_counter()
        for i in range(0, n, 1024):
            store.write_points([Point(f"p{j}", f"p{j}", WHOLE, vectors[j], texts[j], {"cat": f"c{j % 100}"})
                                for j in range(i, min(i + 1024, n))])
        out[f"write_s_{'hybrid' if hybrid else 'dense'}"] = time.perf_counter() - start
        queries = [" ".join(texts[j].split()[:3]) for j in range(1, n, max(1, n // QUERIES))][:QUERIES]
        for mode in (("dense", "sparse", "hybrid") if hybrid else ("dense",)):
            seconds = [_timed(lambda q=q, m=mode, s=store: s.search(q, top_k=10, mode=m)) for q in queries]
            key = f"{mode}{'_in_hybrid' if hybrid and mode == 'dense' else ''}"
            out[key] = {"p50_ms": 1000 * statistics.median(seconds),
                        "p90_ms": 1000 * sorted(seconds)[int(0.9 * (len(seconds) - 1))]}
        store.close()
        out[f"disk_mib_{'hybrid' if hybrid else 'dense'}"] = folder_bytes(folder) / 2**20
    out["hybrid_over_dense_p50"] = out["hybrid"]["p50_ms"] / out["dense"]["p50_ms"]
    out["disk_hybrid_over_dense"] = out["disk_mib_hybrid"] / max(out["disk_mib_dense"], 1e-9)
    return out


def _open(kind: str, encoder, folder: Path, hybrid: bool):
    from jinav3 import SparseEncoder

    sparse = SparseEncoder(encoder.tokenizer.backend_tokenizer) if hybrid else None
    if kind == "qdrant":
        from jinav3.integrations.qdrant import QdrantStore
        return QdrantStore(encoder, "bench", path=str(folder), hybrid=hybrid, sparse_encoder=sparse)
    from jinav3.integrations.milvus import MilvusStore
    return MilvusStore(encoder, "bench", uri=str(folder / "m.db"), hybrid=hybrid, sparse_encoder=sparse)


def main(argv=None) -> dict:
    args = parse(argv)
    from jinav3 import Encoder

    result: dict = {"encoding": encoding(args.size, args.tokens, args.workdir), "search": []}
    e = result["encoding"]
    print(f"encoding ({e['size']}, {e['texts']} passages): dense {e['dense_s']:.2f} s, lexical {e['lexical_s']:.3f} s "
          f"= {100 * e['lexical_share']:.2f}% of dense (goal < 2%)", flush=True)
    # the golden tokenizer (the vocabulary the texts are built from), as the Encoder loads it (no remote code)
    golden = Path(__file__).resolve().parent.parent / "tests" / "golden" / "tiny-v3"
    tokenizer = Encoder.from_pretrained(golden, device="cpu").tokenizer
    for n in [int(x) for x in args.points.split(",") if x.strip()]:
        for kind in [k.strip() for k in args.stores.split(",") if k.strip()]:
            row = search(kind, n, tokenizer)
            result["search"].append(row)
            print(f"{kind:<12} {n:>7,} points: p50 ms dense {row['dense']['p50_ms']:.1f}, "
                  f"sparse {row['sparse']['p50_ms']:.1f}, hybrid {row['hybrid']['p50_ms']:.1f} "
                  f"(hybrid/dense {row['hybrid_over_dense_p50']:.2f}x); write s dense {row['write_s_dense']:.1f}, "
                  f"hybrid {row['write_s_hybrid']:.1f}; disk MiB dense {row['disk_mib_dense']:.1f}, "
                  f"hybrid {row['disk_mib_hybrid']:.1f} ({row['disk_hybrid_over_dense']:.2f}x)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
