"""jinav3 vs the model-card way (and sentence-transformers), same process, same checkpoint, same texts.

    python -m benchmarks.run --size medium                        # CPU, fp32, ~20k tokens, 5-10 min
    python -m benchmarks.run --size real --device cuda --dtype bfloat16 --tokens 905291 --json out.json

Steps: build (or reuse) a random checkpoint of the chosen size in the ORIGINAL layout and convert it
to the native layout with ``Encoder.save_pretrained``; build the lognormal passage corpus (synthetic
text, see corpus.py); load every way; then, in rounds that interleave the ways (so that a noisy,
shared machine hurts them alike), encode the corpus with ``retrieval.passage``. Reports per way:
tokens/s (wall clock, best and median round), tokens per CPU-second (CPU only: robust when other
processes share the cores), useful TFLOP/s (formula in measure.py), peak memory, the lowest cosine
against the model-card way's vectors (must be > 0.999), and the ratios to the model-card way. Then:
time to the first vector of one short query (search path), 8192-token documents (batch 1), and late
chunking of a long document when the Encoder has it. Every section fails soft: an error is recorded
and the run goes on. ``--json PATH`` writes everything.

On the CPU the run also measures jinav3 in bfloat16 (``jinav3-bf16``), fastembed on the same checkpoint
exported to ONNX (``fastembed``: its default call, ``fastembed-sorted``: length-sorted batches of 32),
and the best fp32/bf16 matrix-product rate of this process (``matmul_peak``), and prints the issue-18
goals as ratios from this one run. Optional peers that are not installed (sentence-transformers,
fastembed/onnxruntime) are skipped with a one-line note: ``pip install 'jinav3[bench]'``.

Files: the checkpoints (original + native layout, ~860 MB for medium) and the ONNX export (~430 MB)
are written under ``--workdir`` (default ``$JINAV3_BENCH_DIR``, else ``~/.cache/jinav3/bench``), reused
by the next run with the same size and seed, and reported at the end with their size; ``--clean``
deletes what this run created when it ends. Nothing else is left behind (fastembed's cache lives there
too; an interrupted export or build is removed, not reused).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import shutil
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from . import corpus
from .checkpoint import SIZES, build
from .measure import PeakMemory, folder_bytes, machine, matmul_peak, timed, useful_flops, versions
from .ways import CardWay, EncoderWay, FastembedWay, SentenceTransformersWay, optional_peer

TASK = "retrieval.passage"
QUERY = "what helps sensitive skin"
DEFAULT_WAYS = ("card,jinav3-padded,jinav3-packed,jinav3-packed-mkl,jinav3-bf16,sentence-transformers,fastembed,"
                "fastembed-sorted")
DEFAULT_WORKDIR = os.environ.get("JINAV3_BENCH_DIR") or str(
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jinav3" / "bench")
DEFAULT_TOKENS = {("cpu", "tiny"): 20000, ("cpu", "medium"): 16000, ("cpu", "real"): 4000,
                  ("cuda", "tiny"): 200000, ("cuda", "medium"): 400000, ("cuda", "real"): 905291}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="medium")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 elsewhere), float32, bfloat16, float16")
    p.add_argument("--tokens", type=int, default=None,
                   help="corpus size in tokens (default depends on device and size)")
    p.add_argument("--rounds", type=int, default=2, help="timed rounds per way, interleaved (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--budget", type=int, default=None,
                   help="jinav3 (padded) tokens per forward pass (default: the Encoder's)")
    p.add_argument("--packed-budget", type=int, default=None,
                   help="jinav3-packed tokens per pass (default: jinav3.devices.default_token_budget)")
    p.add_argument("--packed-budgets", default="", help="extra jinav3-packed ways at these budgets, e.g. 32768,131072")
    p.add_argument("--compile", action="store_true",
                   help="load the Encoder with torch_compile=True (its layers torch.compile'd; task switches re-merge)")
    p.add_argument("--ways", default=DEFAULT_WAYS,
                   help="comma list of card, jinav3-padded, jinav3-packed (the default), jinav3-packed-inline / "
                        "jinav3-packed-background (tokenising forced in line / in a background thread), "
                        "jinav3-packed-mkl (fp32 linear layers on MKL, torch's default, where jinav3 picks oneDNN), "
                        "jinav3-bf16 (packed, bfloat16: CPU fp32 runs only), sentence-transformers, "
                        "fastembed, fastembed-sorted (default: %(default)s)")
    p.add_argument("--long-docs", type=int, default=None,
                   help="8192-token documents to embed (default 1 on CPU, 8 on CUDA; 0 skips)")
    p.add_argument("--long-length", type=int, default=8192,
                   help="tokens per long document, instruction and specials included")
    p.add_argument("--late-tokens", type=int, default=None,
                   help="late chunking: document length (default 8192 on CPU, 100000 on CUDA; 0 skips)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=DEFAULT_WORKDIR,
                   help="where checkpoints and the ONNX export are built and reused (default: $JINAV3_BENCH_DIR, "
                        "else ~/.cache/jinav3/bench; now %(default)s)")
    p.add_argument("--clean", action="store_true",
                   help="delete the checkpoints and exports this run created when it ends (default: keep for reuse)")
    p.add_argument("--no-peak", action="store_true", help="skip the matrix-product peak measurement")
    p.add_argument("--json", dest="json_path", default=None, help="write the numbers here")
    return p.parse_args(argv)


def log(*parts) -> None:
    print(*parts, flush=True)


def section(report: dict, name: str):
    """Decorator-free fail-soft block: ``with section(report, "x"):`` records an error and goes on."""

    class _Section:
        def __enter__(self):
            return self

        def __exit__(self, kind, error, tb):
            if error is not None and not isinstance(error, KeyboardInterrupt):
                report.setdefault("errors", {})[name] = f"{kind.__name__}: {error}"
                log(f"!! {name} failed: {kind.__name__}: {error}")
                traceback.print_exception(kind, error, tb, limit=6, file=sys.stderr)
                return True
            return False

    return _Section()


def main(argv=None) -> dict:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from jinav3 import Encoder
    from jinav3.devices import default_token_budget, pick_device, pick_dtype
    from jinav3.packing import packing_supported, varlen_backend

    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    size = SIZES[args.size]
    tokens = args.tokens or DEFAULT_TOKENS[(device.type if device.type == "cuda" else "cpu", args.size)]
    long_docs = args.long_docs if args.long_docs is not None else (8 if device.type == "cuda" else 1)
    late_tokens = args.late_tokens if args.late_tokens is not None else (100000 if device.type == "cuda" else 8192)
    wanted = [w.strip() for w in args.ways.split(",") if w.strip()]
    report: dict = {
        "command": "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(device), "versions": versions(),
        "setup": {"size": args.size, "shape": size.__dict__, "device": str(device),
                  "dtype": str(dtype).removeprefix("torch."), "rounds": args.rounds,
                  "varlen_backend": varlen_backend(device, dtype),
                  "packing_supported": packing_supported(device, dtype)},
        "ways": {}, "ttfv": {}, "long_documents": {}, "late_chunking": {},
    }
    log(f"# jinav3 benchmark: size {args.size} {size}, {device} {report['setup']['dtype']}, "
        f"{torch.get_num_threads()} threads, load {report['machine']['load_average']}")
    log(f"# versions: {report['versions']}")

    # ------------------------------------------------------------------ checkpoint and ways
    t = time.perf_counter()
    build_dtype = dtype if device.type == "cuda" else torch.float32
    workdir = Path(args.workdir)
    before = set(workdir.iterdir()) if workdir.exists() else set()
    report["setup"]["workdir"] = str(workdir)
    args.created = lambda: sorted(set(workdir.iterdir()) - before) if workdir.exists() else []
    original, native = build(workdir, args.size, seed=args.seed, dtype=build_dtype)
    report["setup"]["checkpoint"] = {"original": str(original), "native": str(native),
                                     "seconds": time.perf_counter() - t}
    log(f"checkpoint: {original} (+ native) in {time.perf_counter() - t:.1f}s")

    ways: dict = {}
    suffix = "-compiled" if args.compile else ""
    with section(report, "load jinav3"):
        t = time.perf_counter()
        # torch_compile through the Encoder, not compile_layers afterwards: the Encoder must know, so that
        # small groups of another task re-merge instead of taking the correction path past the compiled graphs
        encoder = Encoder.from_pretrained(original, device=device, dtype=dtype, max_tokens_per_batch=args.budget,
                                          torch_compile=args.compile)
        report["setup"]["jinav3_load_seconds"] = time.perf_counter() - t
        report["setup"]["jinav3_budget"] = encoder.max_tokens_per_batch
        packed_budget = args.packed_budget or default_token_budget(device)
        report["setup"]["jinav3_packed_budget"] = packed_budget
        report["setup"]["compiled"] = encoder.torch_compile
        if "jinav3-padded" in wanted:
            ways["jinav3-padded" + suffix] = EncoderWay(encoder, packed=False, name="jinav3-padded" + suffix)
        if "jinav3-packed" in wanted:
            ways["jinav3-packed" + suffix] = EncoderWay(encoder, packed=True, budget=packed_budget,
                                                        name="jinav3-packed" + suffix)
        for name, overlap in (("jinav3-packed-inline", False), ("jinav3-packed-background", True)):
            if name in wanted:  # the pipeline's background tokenisation forced off / on (default: on)
                ways[name + suffix] = EncoderWay(encoder, packed=True, budget=packed_budget, overlap=overlap,
                                                 name=name + suffix)
        for extra in filter(None, (b.strip() for b in args.packed_budgets.split(","))):
            name = f"jinav3-packed-{int(extra) // 1024}k{suffix}"
            ways[name] = EncoderWay(encoder, packed=True, budget=int(extra), name=name)
    if "card" in wanted:
        with section(report, "load card"):
            t = time.perf_counter()
            ways["card"] = CardWay(native, device, dtype)
            report["setup"]["card_load_seconds"] = time.perf_counter() - t
    if "jinav3-bf16" in wanted:
        if device.type != "cpu" or dtype != torch.float32:
            skip(report, "jinav3-bf16", "measured on CPU float32 runs only (it compares bf16 with fp32 there)")
        else:
            with section(report, "load jinav3-bf16"):
                t = time.perf_counter()
                bf16 = Encoder.from_pretrained(original, device=device, dtype=torch.bfloat16)
                ways["jinav3-bf16"] = EncoderWay(bf16, packed=True, budget=packed_budget, name="jinav3-bf16")
                report["setup"]["jinav3_bf16_load_seconds"] = time.perf_counter() - t
    if "jinav3-packed-mkl" in wanted and getattr(ways.get("jinav3-packed"), "encoder", None) is not None:
        if not ways["jinav3-packed"].encoder.onednn_linears:
            skip(report, "jinav3-packed-mkl", "jinav3-packed already runs its linear layers on torch's default (MKL)")
        else:  # routing is a property of the loaded model: a second copy, on MKL (core/onednn.py)
            with section(report, "load jinav3-packed-mkl"):
                mkl = Encoder.from_pretrained(original, device=device, dtype=dtype, onednn_linears=False)
                ways["jinav3-packed-mkl"] = EncoderWay(mkl, packed=True, budget=packed_budget, name="jinav3-packed-mkl")
    if "sentence-transformers" in wanted:
        missing = optional_peer("sentence_transformers")
        if missing:
            skip(report, "sentence-transformers", missing + "; pip install 'jinav3[bench]'")
        else:
            with section(report, "load sentence-transformers"):
                t = time.perf_counter()
                ways["sentence-transformers"] = SentenceTransformersWay(native, device, dtype)
                report["setup"]["st_load_seconds"] = time.perf_counter() - t
    fastembed_ways = [w for w in ("fastembed", "fastembed-sorted") if w in wanted]
    if fastembed_ways:
        missing = optional_peer("onnxruntime", "onnx", "fastembed")
        if missing:
            for name in fastembed_ways:
                skip(report, name, missing + "; pip install 'jinav3[bench]'")
        elif device.type != "cpu" or dtype != torch.float32:
            for name in fastembed_ways:
                skip(report, name, "fastembed runs the fp32 ONNX export on the CPU: measured on CPU float32 runs only")
        else:
            with section(report, "load fastembed"):
                from .onnx_export import export_passage_onnx

                folder, seconds = export_passage_onnx(native, workdir / f"{native.name}-onnx-passage")
                report["setup"]["onnx"] = {"folder": str(folder), "export_seconds": seconds,
                                           "reused": seconds == 0.0, "bytes": folder_bytes(folder)}
                log(f"onnx export (passage adapter merged): {folder} "
                    f"({'reused' if seconds == 0.0 else f'{seconds:.1f}s'}, {folder_bytes(folder) / 2**20:.0f} MiB)")
                t = time.perf_counter()
                first = None
                for name in fastembed_ways:
                    first = FastembedWay(folder, native, workdir / "fastembed-cache", threads=args.threads,
                                         sorted_batch=32 if name == "fastembed-sorted" else None, shared=first)
                    ways[name] = first
                report["setup"]["fastembed_load_seconds"] = time.perf_counter() - t
    order = (["card"] if "card" in ways else []) + [w for w in ways if w.startswith("jinav3")] + [
        w for w in ("sentence-transformers", "fastembed", "fastembed-sorted") if w in ways]
    if "load jinav3" in report.get("errors", {}) or not order:
        return finish(report, args)
    tokenizer = encoder.tokenizer

    # ------------------------------------------------------------------ corpus
    texts = corpus.passages(tokenizer, tokens, seed=args.seed)
    prefix = encoder.instruction(TASK)
    started = time.perf_counter()
    lengths = [len(ids) for ids in tokenizer([prefix + text for text in texts])["input_ids"]]
    # host work every way pays; jinav3 overlaps it with the device's
    tokenize_seconds = time.perf_counter() - started
    n_tokens = int(sum(lengths))
    flops = useful_flops(lengths, size.layers, size.hidden, size.ffn)
    padded32 = sum(max(lengths[i : i + 32]) * len(lengths[i : i + 32]) for i in range(0, len(lengths), 32))
    prefix_tokens = len(tokenizer(prefix)["input_ids"]) - 2
    report["corpus"] = {"kind": "synthetic text, lognormal token lengths (median 120, sigma 0.7, clipped 8..512)"
                                " + instruction",
                        "passages": len(texts), "tokens": n_tokens, "instruction_tokens_each": prefix_tokens,
                        "median_tokens": float(np.median(lengths)), "max_tokens": int(max(lengths)),
                        "card_padding_overhead": padded32 / n_tokens, "useful_tflop": flops / 1e12,
                        "tokenize_seconds": tokenize_seconds}
    log(f"corpus: {len(texts)} passages, {n_tokens} tokens (median {np.median(lengths):.0f}, max {max(lengths)}); "
        f"input-order batches of 32 would pad to {padded32 / n_tokens:.2f}x; {flops / 1e12:.3f} useful TFLOP; "
        f"tokenising it all takes {tokenize_seconds:.2f}s ({n_tokens / tokenize_seconds:,.0f} tok/s)")

    # ------------------------------------------------------------------ throughput, interleaved rounds
    warm = texts[: min(len(texts), 48)]
    for name in order:
        with section(report, f"warm-up {name}"):
            ways[name].encode(warm, TASK)
    vectors: dict = {}
    runs: dict = {name: [] for name in order}
    for r in range(args.rounds):
        for name in order:
            if name in report.get("errors", {}):
                continue
            with section(report, f"{name} round {r}"):
                gc.collect()
                with PeakMemory(device) as memory:
                    out, wall, cpu = timed(functools.partial(ways[name].encode, texts, TASK), device)
                vectors.setdefault(name, out)
                runs[name].append({"wall_s": wall, "cpu_s": cpu, "memory": memory.as_dict()})
                log(f"  round {r} {name:33s} {n_tokens / wall:10.0f} tok/s  "
                    f"({wall:.2f}s wall, {n_tokens / cpu:.0f} tok/cpu-s)")
    if "card" in vectors:
        reference = "card"
    else:
        reference = "jinav3-padded" if "jinav3-padded" in vectors else next(iter(vectors), None)
    for name, rs in runs.items():
        if not rs:
            continue
        walls = [x["wall_s"] for x in rs]
        best = min(walls)
        entry = {
            "tokens_per_s": n_tokens / best, "tokens_per_s_median": n_tokens / statistics.median(walls),
            "tokens_per_cpu_s": n_tokens / min(x["cpu_s"] for x in rs),
            "useful_tflops": flops / best / 1e12, "rounds": rs,
            "peak_memory": max((x["memory"] for x in rs), key=lambda m: m["peak_gib"]),
        }
        if reference and name in vectors and reference in vectors:
            cos = (vectors[name] * vectors[reference]).sum(1) / (
                np.linalg.norm(vectors[name], axis=1) * np.linalg.norm(vectors[reference], axis=1))
            entry["min_cosine_vs_" + reference] = float(cos.min())
            entry["agrees"] = bool(cos.min() > 0.999)
        report["ways"][name] = entry
    base = report["ways"].get("card")
    if base:
        for entry in report["ways"].values():
            entry["ratio_vs_card"] = entry["tokens_per_s"] / base["tokens_per_s"]
            entry["ratio_vs_card_median"] = entry["tokens_per_s_median"] / base["tokens_per_s_median"]
            entry["ratio_vs_card_cpu_time"] = entry["tokens_per_cpu_s"] / base["tokens_per_cpu_s"]
    if not args.no_peak:
        with section(report, "matmul peak"):
            report["matmul_peak"] = peaks(device, dtype, size, packed_budget)
            for e in report["matmul_peak"].values():
                log(f"matmul peak {e['dtype']:9s} {e['peak_tflops']:.3f} TFLOP/s  torch.mm "
                    + "  ".join(f"{k} {v:.3f}" for k, v in e["shapes"].items())
                    + ("" if "onednn_shapes" not in e else "  oneDNN "
                       + "  ".join(f"{k} {v:.3f}" for k, v in e["onednn_shapes"].items())))
            if device.type == "cpu" and "bfloat16" not in report["matmul_peak"]:
                log("matmul peak bfloat16  not measured: this CPU has no amx_bf16 / avx512_bf16 (bf16 is emulated)")
    goals(report)
    print_table(report, device)
    print_goals(report)
    save(report, args)  # numbers so far, in case a later section is cut off by a time limit

    main_ways = [n for n in order
                 if n in ("card", "sentence-transformers", "jinav3-padded" + suffix, "jinav3-packed" + suffix)]

    # ------------------------------------------------------------------ time to first vector (search path)
    with section(report, "ttfv"):
        for name in main_ways:
            if name not in report["ways"]:
                continue
            way = ways[name]
            # after passages: a task switch
            first, wall, _ = timed(functools.partial(way.encode, [QUERY], "retrieval.query"), device)
            again = []
            for _ in range(5):
                _, w, _ = timed(functools.partial(way.encode, [QUERY + " now"], "retrieval.query"), device)
                again.append(w)
            way.encode(warm[:2], TASK)  # leave the passage adapter active again
            report["ttfv"][name] = {"first_after_passages_ms": wall * 1e3,
                                    "warm_median_ms": statistics.median(again) * 1e3}
            log(f"ttfv {name:22s} first query after passages {wall * 1e3:9.1f} ms, "
                f"then {statistics.median(again) * 1e3:8.1f} ms")

    save(report, args)

    # ------------------------------------------------------------------ long documents, batch 1
    if long_docs > 0:
        with section(report, "long documents"):
            doc_len = min(args.long_length, encoder.max_length)
            body = doc_len - prefix_tokens
            docs = [corpus.document(tokenizer, body, seed=args.seed + i) for i in range(long_docs)]
            doc_lengths = [len(x) for x in tokenizer([prefix + d for d in docs])["input_ids"]]
            doc_flops = useful_flops(doc_lengths, size.layers, size.hidden, size.ffn)
            report["long_documents"]["setup"] = {"documents": long_docs, "tokens_each": doc_lengths[0]}
            long_vectors = {}
            for name in main_ways:
                if name not in report["ways"]:
                    continue
                with section(report, f"long documents {name}"):
                    if device.type == "cuda":
                        ways[name].encode(docs[:1], TASK, batch_size=1)  # warm-up at this shape
                    gc.collect()
                    with PeakMemory(device) as memory:
                        out, wall, cpu = timed(functools.partial(ways[name].encode, docs, TASK, batch_size=1), device)
                    long_vectors[name] = out
                    entry = {"tokens_per_s": sum(doc_lengths) / wall, "useful_tflops": doc_flops / wall / 1e12,
                             "seconds": wall, "peak_memory": memory.as_dict()}
                    weights = model_bytes(ways[name], device)
                    if weights is not None:  # this way's own share: its weights on the device + what the pass added
                        entry["own_peak_gib"] = (weights + memory.added) / 2**30
                    if "card" in long_vectors and name != "card":
                        entry["min_cosine_vs_card"] = float((out * long_vectors["card"]).sum(1).min())
                    report["long_documents"][name] = entry
                    log(f"long {name:22s} {entry['tokens_per_s']:10.0f} tok/s {entry['useful_tflops']:8.3f} TFLOP/s "
                        f"peak {memory.peak / 2**30:.2f} GiB (+{memory.added / 2**30:.2f}; own weights + added "
                        f"{entry.get('own_peak_gib', float('nan')):.2f} GiB)")

    save(report, args)

    # ------------------------------------------------------------------ late chunking of one long document
    if late_tokens > 0:
        for name in main_ways:
            if name.startswith("jinav3") and name in report["ways"]:
                with section(report, f"late chunking {name}"):
                    log(f"late chunking, {name}:")
                    report["late_chunking"][name] = late_chunking(ways[name].encoder, tokenizer, late_tokens, device,
                                                                  args.seed)

    return finish(report, args)


def skip(report: dict, name: str, why: str) -> None:
    """A way left out on purpose (an optional peer not installed, a dtype it does not apply to): one line."""
    report.setdefault("skipped", {})[name] = why
    log(f"-- {name} skipped: {why}")


def peaks(device: torch.device, dtype: torch.dtype, size, budget: int) -> dict:
    """fp32 (and on a CPU with bf16 units, bf16) matrix-product peaks: a 2048^3 square product and the
    model's own FFN shapes at the packed token budget (fc1: tokens x hidden x FFN, fc2: tokens x FFN x
    hidden). Without bf16 units torch emulates bf16 products (one 2048^3 took ~40 s on an AVX2 EPYC):
    no peak to speak of, so none is measured."""
    from jinav3.devices import cpu_bf16_support

    shapes = [(2048, 2048, 2048), (budget, size.hidden, size.ffn), (budget, size.ffn, size.hidden)]
    dtypes = [dtype]
    if device.type == "cpu":
        dtypes = [torch.float32] + ([torch.bfloat16] if cpu_bf16_support()["native"] else [])
    return {str(d).removeprefix("torch."): matmul_peak(d, device, shapes) for d in dtypes}


def goals(report: dict) -> None:
    """Issue 18's CPU goals as ratios from this run (best round of each way), where the ways ran."""
    ways, out = report["ways"], {}

    def ratio(a: str, b: str) -> float | None:
        return ways[a]["tokens_per_s"] / ways[b]["tokens_per_s"] if a in ways and b in ways else None

    fp32 = "jinav3-packed" if "jinav3-packed" in ways else None
    if fp32:
        for peer, goal in (("fastembed-sorted", 2.5), ("fastembed", 10.0)):
            r = ratio(fp32, peer)
            if r is not None:
                out[f"jinav3_fp32_vs_{peer}"] = {"ratio": r, "goal": goal, "met": r >= goal}
        r = ratio(fp32, "jinav3-packed-mkl")
        if r is not None:
            out["jinav3_fp32_onednn_vs_mkl"] = {"ratio": r}
        r = ratio("jinav3-bf16", fp32)
        if r is not None:
            out["jinav3_bf16_vs_fp32"] = {"ratio": r, "goal": 3.5, "met": r >= 3.5,
                                          "note": "the goal is for a CPU with AMX"}
        peak = report.get("matmul_peak", {}).get("float32", {}).get("peak_tflops")
        if peak and report["setup"]["dtype"] == "float32":
            share = ways[fp32]["useful_tflops"] / peak
            out["jinav3_fp32_share_of_fp32_matmul_peak"] = {"ratio": share, "goal": 0.65, "met": share >= 0.65}
        bf16_peak = report.get("matmul_peak", {}).get("bfloat16", {}).get("peak_tflops")
        if bf16_peak and "jinav3-bf16" in ways:
            out["jinav3_bf16_share_of_bf16_matmul_peak"] = {"ratio": ways["jinav3-bf16"]["useful_tflops"] / bf16_peak}
    report["goals"] = out


def print_goals(report: dict) -> None:
    for name, g in report.get("goals", {}).items():
        verdict = "" if "goal" not in g else f"  (goal {g['goal']:g}: {'met' if g['met'] else 'NOT met'})"
        log(f"goal {name:42s} {g['ratio']:7.3f}{verdict}")
    for name, why in report.get("skipped", {}).items():
        log(f"skipped {name}: {why}")
    log("")


def model_bytes(way, device: torch.device) -> int | None:
    """Bytes of the way's parameters and buffers that live on ``device`` (None when unknown)."""
    module = getattr(getattr(way, "encoder", None), "model", None) or getattr(way, "model", None)
    if not isinstance(module, torch.nn.Module):
        return None
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors if t.device.type == device.type)


def late_chunking(encoder, tokenizer, n_tokens: int, device: torch.device, seed: int) -> dict:
    """Late chunking of one document of ``n_tokens`` tokens in 256-token chunks, through whichever API
    the Encoder has: ``late_chunk(document, chunker="tokens", chunk_size=256)`` or
    ``encode(pieces, late_chunking=True)``. Returns 'pending' when it has neither yet."""
    document = corpus.document(tokenizer, n_tokens, seed=seed + 99)
    words = document.split(" ")
    pieces = [" ".join(words[i : i + 256]) for i in range(0, len(words), 256)]
    attempts = []
    if hasattr(encoder, "late_chunk"):
        attempts.append(("late_chunk(document, chunker='tokens', chunk_size=256)",
                         lambda: encoder.late_chunk(document, chunker="tokens", chunk_size=256, task=TASK)))
        attempts.append(("late_chunk(document, chunker='tokens', chunk_size=256)",
                         lambda: encoder.late_chunk(document, chunker="tokens", chunk_size=256)))
    attempts.append(("encode(pieces, late_chunking=True)",
                     lambda: encoder.encode(pieces, task=TASK, late_chunking=True)))
    last = None
    for how, fn in attempts:
        try:
            gc.collect()
            with PeakMemory(device) as memory:
                out, wall, cpu = timed(fn, device)
        except NotImplementedError as error:
            last = f"pending: {error}"
            continue
        except TypeError as error:  # another signature: try the next form
            last = f"TypeError: {error}"
            continue
        shape = list(np.asarray(out).shape) if not isinstance(out, list) else [len(out)]
        result = {"api": how, "document_tokens": n_tokens, "pieces": len(pieces), "output_shape": shape,
                  "seconds": wall, "tokens_per_s": n_tokens / wall, "peak_memory": memory.as_dict()}
        log(f"late chunking {n_tokens} tokens via {how}: {wall:.2f}s, {n_tokens / wall:.0f} tok/s, "
            f"peak {memory.peak / 2**30:.2f} GiB (+{memory.added / 2**30:.2f}), output {shape}")
        return result
    log(f"late chunking: {last}")
    return {"status": last or "pending"}


def print_table(report: dict, device: torch.device) -> None:
    log("")
    log(f"{'way':33s} {'tok/s best':>11s} {'tok/s med':>10s} {'tok/cpu-s':>10s} {'TFLOP/s':>8s} {'peak GiB':>9s} "
        f"{'+GiB':>6s} {'x card':>7s} {'x card cpu':>10s} {'min cos':>9s}")
    for name, e in report["ways"].items():
        cos = next((v for k, v in e.items() if k.startswith("min_cosine")), float("nan"))
        log(f"{name:33s} {e['tokens_per_s']:11.0f} {e['tokens_per_s_median']:10.0f} {e['tokens_per_cpu_s']:10.0f} "
            f"{e['useful_tflops']:8.3f} {e['peak_memory']['peak_gib']:9.2f} {e['peak_memory']['added_gib']:6.2f} "
            f"{e.get('ratio_vs_card', float('nan')):7.2f} {e.get('ratio_vs_card_cpu_time', float('nan')):10.2f} "
            f"{cos:9.6f}")
    log("")


def save(report: dict, args) -> None:
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(report, indent=2, default=str))


def finish(report: dict, args) -> dict:
    report["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report["complete"] = True
    files(report, args)
    save(report, args)
    if args.json_path:
        log(f"wrote {args.json_path}")
    return report


def files(report: dict, args) -> None:
    """Say where the run's files are and how to reuse them, or (``--clean``) delete what it created."""
    workdir = Path(args.workdir)
    created = args.created() if hasattr(args, "created") else []
    if args.clean:
        for path in created:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        if workdir.exists() and not any(workdir.iterdir()):
            workdir.rmdir()
        report["files"] = {"workdir": str(workdir), "deleted": [str(p) for p in created]}
        log(f"--clean: deleted {len(created)} item(s) this run created under {workdir}")
        return
    size = folder_bytes(workdir)
    report["files"] = {"workdir": str(workdir), "bytes": size, "created": [str(p) for p in created]}
    log(f"files: {workdir} holds {size / 2**20:,.0f} MiB (checkpoints, ONNX export, fastembed cache); the next run "
        f"with the same --size/--seed reuses them; delete with --clean, or rm -r {workdir}")


if __name__ == "__main__":
    main()
