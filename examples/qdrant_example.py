"""Qdrant with jina-embeddings-v3: passages in with retrieval.passage, queries out with retrieval.query.

    pip install "jinav3[qdrant]"
    python examples/qdrant_example.py                                   # Qdrant local mode, in memory
    JINAV3_QDRANT_PATH=./qdrant-data python examples/qdrant_example.py  # local mode, kept in a folder
    JINAV3_QDRANT_URL=http://localhost:6333 python examples/qdrant_example.py   # a Qdrant server
    JINAV3_MODEL=tests/golden/tiny-v3 python examples/qdrant_example.py # the tiny test model (offline)

Indexes the sample corpus (examples/data/passages.jsonl) with its lang/topic as metadata, searches
across languages with and without a filter, late-chunks three long articles (one point per chunk,
grouped back by document at search time), then deletes one document. Running it again overwrites the
same points: ids are deterministic. The model comes from $JINAV3_MODEL (hub id or local folder).
"""

import os

from _sample import MODEL, load_articles, load_passages, show  # examples/_sample.py

from jinav3 import Encoder
from jinav3.integrations.qdrant import QdrantStore


def main() -> None:
    encoder = Encoder.from_pretrained(MODEL)
    dimensions = min(512, encoder.hidden_size)  # Matryoshka: 512 of 1024 dimensions keeps most of the quality
    if os.environ.get("JINAV3_QDRANT_URL"):
        where = {"url": os.environ["JINAV3_QDRANT_URL"], "api_key": os.environ.get("JINAV3_QDRANT_API_KEY")}
    elif os.environ.get("JINAV3_QDRANT_PATH"):
        where = {"path": os.environ["JINAV3_QDRANT_PATH"]}
    else:
        where = {"location": ":memory:"}

    with QdrantStore(encoder, "jinav3_passages", dimensions=dimensions, **where) as passages:
        passages.add(load_passages())
        print(f"{passages.count()} passages in {passages.where} ({dimensions} dimensions)")
        show("sensitive skin, any language:", passages.search("wie pflege ich empfindliche Haut?", top_k=5))
        show("the same, German only:",
             passages.search("wie pflege ich empfindliche Haut?", top_k=3, filter={"lang": "de"}))
        show("cooking or travel, in Spanish or French:",
             passages.search("a quick dinner idea", top_k=3,
                             filter={"topic": ["cooking", "travel"], "lang": ["es", "fr"]}))

    with QdrantStore(encoder, "jinav3_articles", dimensions=dimensions, **where) as articles:
        articles.add(load_articles(), late_chunking=True, chunker="sentences")
        print(f"\n{articles.count()} chunks of {len(load_articles())} articles, each embedded in its article's context")
        show("chunks about movable type:", articles.search("who invented movable type?", top_k=3))
        show("articles, grouped by document:", articles.search("how to make compost", top_k=3, group_by_document=True))
        articles.delete(["tea-culture.zh"])
        print(f"\nafter deleting one article: {articles.count()} chunks")


if __name__ == "__main__":
    main()
