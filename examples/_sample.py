"""What the store examples share: the model to load and the sample corpus in examples/data/."""

from __future__ import annotations

import json
import os
from pathlib import Path

MODEL = os.environ.get("JINAV3_MODEL", "jinaai/jina-embeddings-v3")
DATA = Path(__file__).resolve().parent / "data"


def load_passages() -> list[dict]:
    """The sample corpus as store records: one JSON object per line with id, text, lang, topic, source."""
    with open(DATA / "passages.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{"id": r["id"], "text": r["text"],
             "metadata": {"lang": r["lang"], "topic": r["topic"], "source": r["source"]}}
            for r in rows]


def load_articles() -> list[dict]:
    """The three long articles, for late chunking."""
    return [{"id": p.stem, "text": p.read_text(encoding="utf-8"), "metadata": {"lang": p.stem.rsplit(".", 1)[-1]}}
            for p in sorted((DATA / "articles").glob("*.md"))]


def show(title: str, hits) -> None:
    print(f"\n{title}")
    for h in hits:
        where = f" chunk {h.chunk} [{h.start}:{h.end}]" if h.chunk is not None else ""
        print(f"  {h.score:.3f}  {h.id}{where}  {h.metadata.get('lang', '')}  {h.text.strip()[:70]!r}")
