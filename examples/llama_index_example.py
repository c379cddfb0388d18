"""LlamaIndex with jina-embeddings-v3: a VectorStoreIndex and a late-chunking ingestion pipeline.

    pip install "jinav3[llamaindex]"
    python examples/llama_index_example.py
    JINAV3_MODEL=/path/to/jina-embeddings-v3 python examples/llama_index_example.py

Stored text is embedded with retrieval.passage and queries with retrieval.query, without being asked.
No LLM is involved: retrievers only. The model comes from $JINAV3_MODEL (hub id or local folder).
"""

import json
import os
from pathlib import Path

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter

from jinav3.integrations.llama_index import JinaV3Embedding, JinaV3LateChunkingTransform

MODEL = os.environ.get("JINAV3_MODEL", "jinaai/jina-embeddings-v3")
DATA = Path(__file__).resolve().parent / "data"


def load_passages(limit: int = 40) -> list[Document]:
    """The sample corpus: one JSON object per line with id, text, lang, topic, source."""
    with open(DATA / "passages.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()][:limit]
    return [Document(text=r["text"], id_=r["id"], metadata={"lang": r["lang"], "topic": r["topic"]}) for r in rows]


def show(title: str, results) -> None:
    print(title)
    for hit in results:
        print(f"  score {hit.score:.3f}  [{hit.node.ref_doc_id}]  {' '.join(hit.node.get_content().split())[:80]}")


def main() -> None:
    embed = JinaV3Embedding(model_name=MODEL)  # dimensions=256 for smaller (Matryoshka) vectors

    # 1. Passages, one node each, in the default in-memory vector store.
    index = VectorStoreIndex.from_documents(load_passages(), embed_model=embed)
    show("passages:", index.as_retriever(similarity_top_k=3).retrieve("How often should I put sunscreen on again?"))

    # 2. A long article: split into sentence-sized nodes, each embedded in the context of the whole article.
    article = Document(text=(DATA / "articles" / "printing-press-history.en.md").read_text(encoding="utf-8"),
                       id_="printing-press-history")
    pipeline = IngestionPipeline(transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0),
                                                  JinaV3LateChunkingTransform(embed_model=embed)])
    nodes = pipeline.run(documents=[article])
    late = VectorStoreIndex(nodes, embed_model=embed)  # keeps the late-chunked vectors
    show(f"late-chunked article ({len(nodes)} nodes):",
         late.as_retriever(similarity_top_k=3).retrieve("Who invented movable type printing in Europe?"))


if __name__ == "__main__":
    main()
