"""Milvus with jina-embeddings-v3: passages in with retrieval.passage, queries out with retrieval.query.

    pip install "jinav3[milvus]"
    python examples/milvus_example.py                                        # Milvus Lite, a temporary file
    JINAV3_MILVUS_URI=./milvus.db python examples/milvus_example.py           # Milvus Lite, a file you keep
    JINAV3_MILVUS_URI=http://localhost:19530 python examples/milvus_example.py   # a Milvus server
    JINAV3_MODEL=tests/golden/tiny-v3 python examples/milvus_example.py      # the tiny test model (offline)

Indexes the sample corpus (examples/data/passages.jsonl) with its lang/topic as JSON metadata,
searches with a portable filter and with a native Milvus filter expression, late-chunks three long
articles (one row per chunk with parent id and character offsets) and groups them back by document.
Running it again overwrites the same rows. The model comes from $JINAV3_MODEL (hub id or local folder).
"""

import os
import tempfile
from pathlib import Path

from _sample import MODEL, load_articles, load_passages, show  # examples/_sample.py

from jinav3 import Encoder
from jinav3.integrations.milvus import MilvusStore


def run(uri: str) -> None:
    encoder = Encoder.from_pretrained(MODEL)
    dimensions = min(512, encoder.hidden_size)  # Matryoshka: 512 of 1024 dimensions keeps most of the quality
    with MilvusStore(encoder, "jinav3_passages", uri=uri, dimensions=dimensions) as passages:
        passages.add(load_passages())
        print(f"{passages.count()} passages in {passages.where} at {uri} ({dimensions} dimensions)")
        show("sensitive skin, any language:", passages.search("wie pflege ich empfindliche Haut?", top_k=5))
        show("the same, German or French (portable filter):",
             passages.search("wie pflege ich empfindliche Haut?", top_k=3, filter={"lang": ["de", "fr"]}))
        show("a native Milvus expression:",
             passages.search("saving for retirement", top_k=3, filter='metadata["topic"] == "finance"'))

    with MilvusStore(encoder, "jinav3_articles", uri=uri, dimensions=dimensions) as articles:
        articles.add(load_articles(), late_chunking=True, chunker="sentences")
        print(f"\n{articles.count()} chunks of 3 articles, each embedded in its article's context")
        show("articles, grouped by document:", articles.search("how to make compost", top_k=3, group_by_document=True))
        articles.delete(["tea-culture.zh"])
        print(f"\nafter deleting one article: {articles.count()} chunks")


def main() -> None:
    uri = os.environ.get("JINAV3_MILVUS_URI")
    if uri:
        run(uri)
    else:
        with tempfile.TemporaryDirectory() as folder:
            run(str(Path(folder) / "milvus.db"))


if __name__ == "__main__":
    main()
