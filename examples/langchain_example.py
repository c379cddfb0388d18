"""LangChain with jina-embeddings-v3: a Qdrant vector store, and late chunking of split documents.

    pip install "jinav3[langchain]"
    python examples/langchain_example.py
    JINAV3_MODEL=/path/to/jina-embeddings-v3 python examples/langchain_example.py

Stored documents are embedded with retrieval.passage and queries with retrieval.query, without being
asked. No LLM is involved: vector search only. Qdrant runs in local mode (in memory), so nothing else
needs to be running. The model comes from $JINAV3_MODEL (hub id or local folder).
"""

import json
import os
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_qdrant import QdrantVectorStore
from langchain_text_splitters import RecursiveCharacterTextSplitter

from jinav3.integrations.langchain import JinaV3Embeddings

MODEL = os.environ.get("JINAV3_MODEL", "jinaai/jina-embeddings-v3")
DATA = Path(__file__).resolve().parent / "data"


def load_passages(limit: int = 40) -> list[Document]:
    """The sample corpus: one JSON object per line with id, text, lang, topic, source."""
    with open(DATA / "passages.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()][:limit]
    # The corpus id goes into metadata: Qdrant point ids must be UUIDs or integers.
    return [Document(page_content=r["text"], metadata={"id": r["id"], "lang": r["lang"], "topic": r["topic"]})
            for r in rows]


def show(title: str, hits: list[tuple[Document, float]]) -> None:
    print(title)
    for doc, score in hits:
        where = doc.metadata.get("source") or doc.metadata.get("id")
        print(f"  score {score:.3f}  [{where}]  {' '.join(doc.page_content.split())[:80]}")


def main() -> None:
    emb = JinaV3Embeddings(model=MODEL)  # dimensions=512 for smaller (Matryoshka) vectors

    # 1. Passages in Qdrant (local mode): documents embedded as passages, the question as a query.
    store = QdrantVectorStore.from_documents(load_passages(), emb, location=":memory:", collection_name="docs")
    show("passages:", store.similarity_search_with_score("How often should I put sunscreen on again?", k=3))

    # 2. Long articles split into chunks, each chunk embedded in the context of its whole article.
    # chunk_overlap=0: late chunking gives every chunk its context; overlap would repeat text.
    splitter = RecursiveCharacterTextSplitter(chunk_size=400, chunk_overlap=0, add_start_index=True)
    articles = [Document(page_content=p.read_text(encoding="utf-8"), metadata={"source": p.name})
                for p in sorted((DATA / "articles").glob("*.md"))]
    chunks = splitter.split_documents(articles)  # every chunk keeps metadata["source"], gains "start_index"
    late = InMemoryVectorStore.from_documents(chunks, emb.with_late_chunks(chunks))
    show(f"late-chunked articles ({len(chunks)} chunks of {len(articles)} articles):",
         late.similarity_search_with_score("Who invented movable type printing in Europe?", k=3))

    # The same vectors for stores that take precomputed embeddings (e.g. Milvus.add_embeddings):
    vectors = emb.embed_late_chunks(chunks)
    print(f"\n{len(vectors)} late-chunked vectors of {len(vectors[0])} dimensions, one per chunk")


if __name__ == "__main__":
    main()
