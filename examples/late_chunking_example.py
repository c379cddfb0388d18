"""Late chunking with jinav3: every chunk vector is pooled from ONE pass over the whole document.

    python examples/late_chunking_example.py
    JINAV3_MODEL=/path/to/jina-embeddings-v3 python examples/late_chunking_example.py

A chunk like "It was made in Mainz." says little alone; embedded late, its vector also carries what
the rest of the document is about. The model comes from $JINAV3_MODEL (a hub id or a local folder),
default jinaai/jina-embeddings-v3.
"""

import os
from pathlib import Path

import numpy as np

from jinav3 import Encoder

ARTICLES = Path(__file__).resolve().parent / "data" / "articles"
QUERY = "Who invented movable type printing in Europe?"


def main() -> None:
    enc = Encoder.from_pretrained(os.environ.get("JINAV3_MODEL", "jinaai/jina-embeddings-v3"))
    query = enc.encode_queries(QUERY)  # (d,), L2-normalised

    # 1. One document, chunked by sentences and embedded in context (task retrieval.passage).
    for path in sorted(ARTICLES.glob("*.md")):
        chunks = enc.late_chunk(path.read_text(encoding="utf-8"), chunker="sentences")
        scores = np.stack([c.embedding for c in chunks]) @ query
        print(f"\n{path.name}: {len(chunks)} chunks; best matches for {QUERY!r}:")
        for i in np.argsort(-scores)[:3]:
            text = " ".join(chunks[i].text.split())
            print(f"  {scores[i]:+.3f}  chunk {chunks[i].index:>2} [{chunks[i].start}:{chunks[i].end}]  {text[:90]}")

    # 2. Fixed-size token chunks at a smaller Matryoshka size.
    article = (ARTICLES / "printing-press-history.en.md").read_text(encoding="utf-8")
    small = enc.late_chunk(article, chunker="tokens", chunk_size=64, dimensions=64)
    print(f"\n64-token chunks at 64 dimensions: {len(small)} chunks, vectors {small[0].embedding.shape}")

    # 3. The Jina API form: a list of pieces of ONE document, one vector per piece.
    pieces = [
        "Johannes Gutenberg was a goldsmith from Mainz.",
        "Around 1450 he built a press with movable metal type.",
        "His workshop printed the famous 42-line Bible.",
    ]
    late = enc.encode_passages(pieces, late_chunking=True)  # (3, d), each piece sees the other two
    alone = enc.encode_passages(pieces)                     # (3, d), each piece on its own
    print("\npiece                                                   late   alone")
    for piece, a, b in zip(pieces, late @ query, alone @ query, strict=True):  # one score of each per piece
        print(f"  {piece:<54} {a:+.3f}  {b:+.3f}")


if __name__ == "__main__":
    main()
