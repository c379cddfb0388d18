"""What a task switch costs: a query right after passages, with and without re-merging the weights.

    python -m benchmarks.task_switch --size real --device cpu      # the issue's case: 24 x 1024, fp32
    python -m benchmarks.task_switch --size medium                  # quicker

One Encoder on a random checkpoint of the chosen size (benchmarks/checkpoint.py). Measured, each the
median of ``--repeats`` rounds, each round leaving the passage adapter merged first:

  warm query          a query with the query adapter already merged (no switch at all)
  switch, corrected   the first query after passages as jinav3 runs it: low-rank corrections on the
                      resident passage weights (MergedTaskLoRA.corrected), no re-merge
  switch, re-merged   the same query after re-merging the weights for it (the old way, and what the
                      model card's code pays per task change): merge time + the warm query
  merge alone         MergedTaskLoRA.activate for the other task

and the price of corrections on a batch as large as ``encoder.CORRECTION_TOKENS``: that batch
corrected vs with its task merged. Goal (issue 18): a switch costs less than one warm query.
Ratios, not absolute times, are what carries between machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks import checkpoint, corpus
from benchmarks.measure import machine, sync
from benchmarks.run import DEFAULT_WORKDIR

QUERY = "what helps sensitive skin in winter, and how often should it be applied?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=sorted(checkpoint.SIZES), default="medium")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--workdir", type=Path, default=Path(DEFAULT_WORKDIR),
                   help="where the random checkpoint is written and reused, as benchmarks.run (default: %(default)s)")
    p.add_argument("--json", type=Path, help="write the report here")
    return p.parse_args(argv)


def median_ms(fn, device: torch.device, repeats: int, before=None) -> float:
    """Median wall time of ``fn`` in ms; ``before`` runs untimed ahead of each round."""
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    from jinav3 import Encoder
    from jinav3 import encoder as encoder_module
    from jinav3.devices import pick_device, pick_dtype

    args = parse_args(argv)
    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    # on CUDA the checkpoint in the run's dtype (the one benchmarks.run builds and gpu_check.sh reuses)
    _, native = checkpoint.build(args.workdir, args.size, dtype=dtype if device.type == "cuda" else torch.float32)
    enc = Encoder.from_pretrained(native, device=device, dtype=dtype)
    passage, query = "retrieval_passage", "retrieval_query"
    passages = corpus.passages(enc.tokenizer, 2048, seed=1)

    def passages_resident() -> None:
        enc.lora.activate(passage)

    def query_resident() -> None:
        enc.lora.activate(query)

    def encode_query() -> None:
        enc.encode([QUERY], task="retrieval.query")

    enc.encode(passages[:8], task="retrieval.passage")  # warm-up at both shapes
    encode_query()
    report: dict = {"machine": machine(device), "size": args.size, "dtype": args.dtype,
                    "correction_tokens": encoder_module.CORRECTION_TOKENS}
    report["warm_query_ms"] = median_ms(encode_query, device, args.repeats, before=query_resident)
    remerged = []

    def first_query_after_passages() -> None:
        merges = enc.lora.merges
        encode_query()
        remerged.append(enc.lora.merges - merges)

    report["switch_corrected_ms"] = median_ms(first_query_after_passages, device, args.repeats,
                                              before=passages_resident)
    report["corrected_switch_merged"] = sum(remerged)  # 0: no switch rewrote the weights
    report["merge_ms"] = median_ms(query_resident, device, args.repeats, before=passages_resident)
    report["switch_remerged_ms"] = report["merge_ms"] + report["warm_query_ms"]

    # a batch as large as corrections go: corrected (passages resident) vs its task merged
    texts, tokens = [], 0
    for text in corpus.passages(enc.tokenizer, 4 * encoder_module.CORRECTION_TOKENS, seed=2):
        n = len(enc.tokenize([enc.instruction("retrieval.query") + text], enc.max_length)[0])
        if tokens + n > encoder_module.CORRECTION_TOKENS:
            break
        texts.append(text)
        tokens += n

    def encode_batch() -> None:
        enc.encode(texts, task="retrieval.query")

    report["batch_tokens"] = tokens
    report["batch_corrected_ms"] = median_ms(encode_batch, device, args.repeats, before=passages_resident)
    report["batch_merged_ms"] = median_ms(encode_batch, device, args.repeats, before=query_resident)

    report["ratios"] = {
        "switch_corrected_over_warm_query": report["switch_corrected_ms"] / report["warm_query_ms"],
        "switch_remerged_over_warm_query": report["switch_remerged_ms"] / report["warm_query_ms"],
        "merge_over_warm_query": report["merge_ms"] / report["warm_query_ms"],
        "batch_corrected_over_merged": report["batch_corrected_ms"] / report["batch_merged_ms"],
    }
    print(f"{args.size} on {report['machine'].get('cpu') or device}, {args.dtype}:")
    for key in ("warm_query_ms", "switch_corrected_ms", "merge_ms", "switch_remerged_ms",
                "batch_corrected_ms", "batch_merged_ms"):
        print(f"  {key:22s} {report[key]:9.1f}")
    print(f"  batch of {tokens} tokens; corrected switches that re-merged: {report['corrected_switch_merged']}")
    for key, value in report["ratios"].items():
        print(f"  {key:36s} {value:6.2f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
