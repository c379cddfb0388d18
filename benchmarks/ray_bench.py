"""Bulk indexing on Ray Data against in-process ``store.add``: tokens/s and scaling efficiency.

    python -m benchmarks.ray_bench [--size medium] [--tokens 40000] [--json out.json]

The same synthetic passages (benchmarks/corpus.py) are indexed into the Pinecone test double
(tests/doubles/pinecone_double.py, the real SDK over HTTP on loopback; the same store for every way) by:

* ``in-process, T threads``: ``PineconeStore.add`` with the Encoder in this process (torch on T threads);
* ``ray, W x C``: ``index_dataset`` on a local Ray cluster, W embedding actors of C CPUs each.

Two rates per way: ``wall`` (tokens / seconds end to end: for Ray the read-only check pass, the actors'
start and model load, embedding and writing) and ``embed`` (tokens / seconds the workers spent embedding:
what adding workers scales). Printed as ratios: ``ray 1x1 / in-process 1 thread`` (the goal: >= 0.85),
``ray 1x2 / in-process 2 threads``, and the scaling efficiency ``rate(2x1) / (2 * rate(1x1))`` (goal >= 0.8
where the machine has the cores; on a 2-core machine the two workers share it with the driver and the store).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

import torch

from .checkpoint import build
from .measure import machine
from .run import DEFAULT_WORKDIR

REPO = Path(__file__).resolve().parent.parent
KEY = "bench-key"


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ray_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="medium", choices=("tiny", "medium", "real"))
    p.add_argument("--tokens", type=int, default=40_000, help="corpus size in tokens (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="records per batch, both ways (default: %(default)s)")
    p.add_argument("--workdir", default=DEFAULT_WORKDIR,
                   help="where the random checkpoint is built and reused, as benchmarks.run (default: %(default)s)")
    p.add_argument("--ways", default="1,2,1x1,2x1,1x2",
                   help="in-process thread counts (1, 2) and Ray WORKERSxCPUS to run (default: %(default)s); the "
                        "ratios need 1, 2, 1x1, 2x1 and 1x2")
    p.add_argument("--json", help="also write the results here")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    wanted = {w.strip() for w in args.ways.split(",")}
    sys.path.insert(0, str(REPO / "tests"))
    import ray
    from doubles.pinecone_double import PineconeDouble

    from jinav3 import Encoder
    from jinav3.integrations.pinecone import PineconeStore
    from jinav3.integrations.ray import index_dataset

    from .corpus import passages

    original, _ = build(Path(args.workdir), args.size)
    model = str(original)
    encoder = Encoder.from_pretrained(model, device="cpu")
    texts = passages(encoder.tokenizer, args.tokens)
    records = [{"id": f"p{i}", "text": t, "metadata": {"n": i}} for i, t in enumerate(texts)]
    tokens = sum(len(ids) for ids in encoder.tokenizer(texts, add_special_tokens=False)["input_ids"])
    results: dict = {"machine": machine(torch.device("cpu")), "size": args.size, "documents": len(records),
                     "tokens": tokens, "batch_size": args.batch_size, "ways": {}}
    print(f"{len(records)} passages, {tokens:,} tokens, {args.size} model, batch {args.batch_size}", flush=True)

    with PineconeDouble(api_key=KEY) as double:
        os.environ.update(PINECONE_CONTROLLER_HOST=double.host, PINECONE_API_KEY=KEY)
        index = f"bench-{uuid.uuid4().hex[:6]}"
        threads = torch.get_num_threads()
        encoder.encode(texts[:8], task="retrieval.passage")  # warm up
        for n in (n for n in (1, 2) if str(n) in wanted):
            torch.set_num_threads(n)
            store = PineconeStore(encoder, index, namespace=f"inproc{n}", api_key=KEY)
            started = time.perf_counter()
            store.add(records, batch_size=args.batch_size)
            seconds = time.perf_counter() - started
            results["ways"][f"in-process, {n} thread{'s' if n > 1 else ''}"] = {
                "wall_tokens_per_s": tokens / seconds, "embed_tokens_per_s": tokens / seconds, "seconds": seconds}
            print(f"in-process {n} thread(s): {tokens / seconds:,.0f} tokens/s ({seconds:.1f} s)", flush=True)
        torch.set_num_threads(threads)

        ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PINECONE_CONTROLLER_HOST": double.host, "PINECONE_API_KEY": KEY}})
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            for workers, cpus in ((w, c) for w, c in ((1, 1), (2, 1), (1, 2)) if f"{w}x{c}" in wanted):
                report = index_dataset(ray.data.from_items(records), store=f"pinecone:{index}",
                                       collection=f"ray{workers}x{cpus}", model=model, device="cpu",
                                       workers=workers, cpus_per_worker=cpus, batch_size=args.batch_size)
                embed = sum(w.tokens_per_second for w in report.workers.values())
                results["ways"][f"ray, {workers}x{cpus}"] = {
                    "wall_tokens_per_s": report.tokens / report.seconds, "embed_tokens_per_s": embed,
                    "seconds": report.seconds,
                    "workers": {k: v.tokens_per_second for k, v in report.workers.items()}}
                assert report.tokens == tokens and report.documents == len(records), report
                print(f"ray {workers} worker(s) x {cpus} CPU: {report.tokens / report.seconds:,.0f} tokens/s wall "
                      f"({report.seconds:.1f} s), {embed:,.0f} tokens/s embedding", flush=True)
        finally:
            ray.shutdown()

    ways = results["ways"]

    def ratio(a: str, b: str, key: str) -> float:
        return ways[a][key] / ways[b][key]

    pairs = {
        "ray 1x1 / in-process 1 thread (wall)": ("ray, 1x1", "in-process, 1 thread", "wall_tokens_per_s", 1),
        "ray 1x1 / in-process 1 thread (embed)": ("ray, 1x1", "in-process, 1 thread", "embed_tokens_per_s", 1),
        "ray 1x2 / in-process 2 threads (wall)": ("ray, 1x2", "in-process, 2 threads", "wall_tokens_per_s", 1),
        "scaling efficiency 2x1 vs 1x1 (wall)": ("ray, 2x1", "ray, 1x1", "wall_tokens_per_s", 2),
        "scaling efficiency 2x1 vs 1x1 (embed)": ("ray, 2x1", "ray, 1x1", "embed_tokens_per_s", 2),
    }
    results["ratios"] = {name: ratio(a, b, key) / per for name, (a, b, key, per) in pairs.items()
                         if a in ways and b in ways}
    for name, value in results["ratios"].items():
        print(f"{name}: {value:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
