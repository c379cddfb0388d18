"""What the host must do per corpus, next to the device: tokenising and packing, timed alone.

    python -m benchmarks.host_work                  # the 905k-token passage corpus, golden tokenizer

The GPU goal (700k tokens/s) leaves ~1.3 s for this corpus; whatever share of it tokenising and
packing take is what the encode pipeline (core/pipeline.py) must hide behind the device's work.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import corpus

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "tiny-v3"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.host_work", description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=905291)
    p.add_argument("--budget", type=int, default=65536, help="tokens per packed batch (the CUDA default)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    from jinav3 import Encoder, packing
    from jinav3.batching import token_budget_batches

    encoder = Encoder.from_pretrained(GOLDEN, device="cpu")
    texts = corpus.passages(encoder.tokenizer, args.tokens)
    prefix = encoder.instruction("retrieval.passage")
    prefixed = [prefix + t for t in texts]
    for _ in range(args.rounds):
        t = time.perf_counter()
        ids = encoder.tokenize(prefixed, encoder.max_length)
        seconds = time.perf_counter() - t
        n = sum(map(len, ids))
        print(f"tokenise {len(texts)} passages, {n:,} tokens: {seconds:.3f} s ({n / seconds:,.0f} tok/s)", flush=True)
    batches = list(token_budget_batches([len(row) for row in ids], args.budget, packed=True))
    for _ in range(args.rounds):
        t = time.perf_counter()
        for batch in batches:
            packing.pack([ids[i] for i in batch], "cpu")
        seconds = time.perf_counter() - t
        print(f"pack {len(batches)} batches of <= {args.budget:,} tokens: {seconds * 1e3 / len(batches):.1f} ms each",
              flush=True)


if __name__ == "__main__":
    main()
