"""Haystack with jina-embeddings-v3: an indexing pipeline and a query pipeline, one import changed.

    pip install "jinav3[haystack]"
    python examples/haystack_example.py
    JINAV3_MODEL=/path/to/jina-embeddings-v3 python examples/haystack_example.py

Documents are embedded with retrieval.passage and the query with retrieval.query, without being asked.
``late_chunking=True`` embeds the splits of each passage together, so each split's vector knows its
whole passage. The model comes from $JINAV3_MODEL (hub id or local folder).
"""

import json
import os
from pathlib import Path

from haystack import Document, Pipeline
from haystack.components.preprocessors import DocumentSplitter
from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
from haystack.components.writers import DocumentWriter
from haystack.document_stores.in_memory import InMemoryDocumentStore

from jinav3.integrations.haystack import JinaV3DocumentEmbedder, JinaV3TextEmbedder

MODEL = os.environ.get("JINAV3_MODEL", "jinaai/jina-embeddings-v3")
PASSAGES = Path(__file__).resolve().parent / "data" / "passages.jsonl"
QUERY = "How often should I put sunscreen on again?"


def load_passages(limit: int = 40) -> list[Document]:
    """The sample corpus: one JSON object per line with id, text, lang, topic, source."""
    with open(PASSAGES, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()][:limit]
    return [Document(content=r["text"], meta={"passage_id": r["id"], "lang": r["lang"], "topic": r["topic"]})
            for r in rows]


def main() -> None:
    store = InMemoryDocumentStore(embedding_similarity_function="cosine")

    indexing = Pipeline()
    indexing.add_component("split", DocumentSplitter(split_by="word", split_length=15))
    indexing.add_component("embed", JinaV3DocumentEmbedder(model=MODEL, late_chunking=True, progress_bar=False))
    indexing.add_component("write", DocumentWriter(document_store=store))
    indexing.connect("split", "embed")
    indexing.connect("embed", "write")
    written = indexing.run({"split": {"documents": load_passages()}})["write"]["documents_written"]
    print(f"indexed {written} splits")

    query = Pipeline()
    query.add_component("embed", JinaV3TextEmbedder(model=MODEL))  # loads nothing new: the model is shared
    query.add_component("retrieve", InMemoryEmbeddingRetriever(document_store=store, top_k=3))
    query.connect("embed.embedding", "retrieve.query_embedding")
    for doc in query.run({"embed": {"text": QUERY}})["retrieve"]["documents"]:
        print(f"score {doc.score:.3f}  [{doc.meta['passage_id']}]  {doc.content.strip()[:90]}")


if __name__ == "__main__":
    main()
