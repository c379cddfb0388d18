"""Pinecone with jina-embeddings-v3: passages in with retrieval.passage, queries out with retrieval.query.

    pip install "jinav3[pinecone]"
    PINECONE_API_KEY=... python examples/pinecone_example.py     # real Pinecone (creates a serverless index)
    python examples/pinecone_example.py --double                 # offline: the repository's PineconeDouble
    JINAV3_MODEL=tests/golden/tiny-v3 python examples/pinecone_example.py --double   # tiny model, no network

With PINECONE_API_KEY set it uses (and creates when missing) the index $JINAV3_PINECONE_INDEX (default
"jinav3-example") in $JINAV3_PINECONE_CLOUD / $JINAV3_PINECONE_REGION (default aws / us-east-1),
namespace "example"; the index stays so a second run overwrites the same vectors (delete it in the
console when done). ``--double`` runs the real pinecone SDK against PineconeDouble, the local test
double of Pinecone's REST API in tests/doubles (a repository checkout is needed; it is not Pinecone).
Without either it explains itself and exits 0. The model comes from $JINAV3_MODEL.
"""

import os
import sys
import time
from pathlib import Path

from _sample import MODEL, load_articles, load_passages, show  # examples/_sample.py
from pinecone import Pinecone

from jinav3 import Encoder
from jinav3.integrations.pinecone import PineconeStore


def wait_for(store: PineconeStore, count: int, timeout: float = 60.0) -> None:
    """Pinecone is eventually consistent: wait until the namespace shows what was written."""
    deadline = time.monotonic() + timeout
    while store.count() < count and time.monotonic() < deadline:
        time.sleep(1)


def run(client: Pinecone, index: str, cloud: str, region: str) -> None:
    encoder = Encoder.from_pretrained(MODEL)
    dimensions = min(512, encoder.hidden_size)
    store = PineconeStore(encoder, index, client=client, namespace="example", cloud=cloud, region=region,
                          dimensions=dimensions)
    passages = load_passages()
    store.add(passages)
    wait_for(store, len(passages))
    print(f"{store.count()} vectors in {store.where} ({dimensions} dimensions)")
    show("sensitive skin, any language:", store.search("wie pflege ich empfindliche Haut?", top_k=5))
    show("German only (portable filter):",
         store.search("wie pflege ich empfindliche Haut?", top_k=3, filter={"lang": "de"}))
    show("a native Pinecone filter:",
         store.search("saving for retirement", top_k=3,
                      filter={"topic": {"$in": ["finance", "health"]}, "lang": {"$ne": "en"}}))
    articles = load_articles()
    store.add(articles, late_chunking=True)
    store.delete([p["id"] for p in passages])  # leave only the article chunks
    time.sleep(2 if os.environ.get("PINECONE_API_KEY") else 0)
    show("articles, grouped by document:", store.search("how to make compost", top_k=3, group_by_document=True))


def main() -> None:
    cloud = os.environ.get("JINAV3_PINECONE_CLOUD", "aws")
    region = os.environ.get("JINAV3_PINECONE_REGION", "us-east-1")
    if os.environ.get("PINECONE_API_KEY"):
        run(Pinecone(api_key=os.environ["PINECONE_API_KEY"]), os.environ.get("JINAV3_PINECONE_INDEX", "jinav3-example"),
            cloud, region)
    elif "--double" in sys.argv[1:]:
        tests = Path(__file__).resolve().parents[1] / "tests"
        if not (tests / "doubles" / "pinecone_double.py").is_file():
            sys.exit("--double needs a repository checkout: tests/doubles/pinecone_double.py is not there")
        sys.path.insert(0, str(tests))
        from doubles.pinecone_double import PineconeDouble

        with PineconeDouble(api_key="local-double") as double:
            print(f"running against {double!r}")
            run(Pinecone(api_key="local-double", host=double.host), "jinav3-example", cloud, region)
    else:
        print(__doc__.strip())
        print("\nNeither PINECONE_API_KEY nor --double given: nothing to do.")


if __name__ == "__main__":
    main()
