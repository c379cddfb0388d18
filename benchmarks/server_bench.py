"""``jinav3 serve`` under load, next to the same model in process.

    python -m benchmarks.server_bench --size medium                    # CPU, fp32, ~2 min
    python -m benchmarks.server_bench --size real --device cuda --json out.json

Builds (or reuses) the random checkpoint of ``benchmarks/checkpoint.py``, starts the real server as a
subprocess (``python -m jinav3.integrations.server``, so its event loop and worker do not share this
process's GIL with the clients), and measures:

  1. single-query requests (``retrieval.query``, one text each) at 1, 8 and 64 concurrent clients:
     requests/s, p50/p99 latency, forward passes per request (from /metrics). Baselines, in process: ONE
     ``encode`` call of the same 64 queries (the model's own batching ceiling), and one call per query.
     Goal on the CPU: 64 clients reach >= 0.8 of the one-call rate. GPU goal (the device run): 64 clients
     get >= 5x the requests/s of one forward pass per query.
  2. passages (``retrieval.passage``, 32 per request, base64 as the openai client asks) through the
     server, tokens/s, next to ``encode`` of the same passages in process. Goal: >= 80%.
  3. mixed traffic: queries alone (idle), then while the passage load runs, back to back from one
     client and at random moments (open loop, ``--query-rate``); p50/p99 next to idle, task switches,
     bulk tokens/s meanwhile. GPU goal: the open-loop p50 within 2x of idle.
  4. Ray Serve (``jinav3 serve --ray``'s application, a local cluster; ``--replicas 1,2``, ``--replicas ""``
     skips it): single queries at 1 and 64 clients through 1 and 2 replicas, the CPUs (or the GPU) split
     between them. Reported: 2 vs 1 replicas at 64 clients, and Serve's proxy against plain ``jinav3 serve``
     (1 replica: the 1-client p50 in ms added, the 64-client requests/s ratio).

Then SIGTERM, and the server's exit status (0 after a graceful stop). ``--json PATH`` writes it all.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from . import corpus
from .checkpoint import SIZES, build
from .measure import machine, versions
from .run import DEFAULT_WORKDIR

QUERY_TASK, PASSAGE_TASK = "retrieval.query", "retrieval.passage"
QUERIES = ["how often should sunscreen be reapplied", "wie kompostiert man zu hause", "tea ceremony history",
           "what helps sensitive skin", "best way to store coffee beans", "why do cats purr",
           "symptoms of vitamin d deficiency", "how to repot an orchid"]


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.server_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="medium")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto ...")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--concurrency", default="1,8,64", help="client counts for the single-query runs")
    p.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp",
                   help="the single-query clients' HTTP library (default: %(default)s, the lighter on this CPU)")
    p.add_argument("--requests", type=int, default=256, help="single-query requests per concurrency level (at least "
                                                              "4 per client)")
    p.add_argument("--passage-tokens", type=int, default=40000, help="bulk corpus size in tokens")
    p.add_argument("--batch", type=int, default=32, help="passages per bulk request")
    p.add_argument("--bulk-clients", type=int, default=2, help="concurrent bulk clients")
    p.add_argument("--mixed-queries", type=int, default=40, help="queries of each kind in step 3")
    p.add_argument("--query-rate", type=float, default=10.0, help="open-loop queries per second in step 3")
    p.add_argument("--max-batch-tokens", type=int, default=None, help="the server's --max-batch-tokens")
    p.add_argument("--latency-batch-tokens", type=int, default=None, help="the server's --latency-batch-tokens")
    p.add_argument("--rounds", type=int, default=2,
                   help="passage rounds, in process and through the server interleaved (the best of each counts: "
                        "a shared machine is noisy)")
    p.add_argument("--workdir", default=DEFAULT_WORKDIR,
                   help="where the random checkpoint is built and reused, as benchmarks.run (default: %(default)s)")
    p.add_argument("--replicas", default="1,2", help="Ray Serve replica counts for step 4 (empty: skip it)")
    p.add_argument("--startup-timeout", type=float, default=600)
    p.add_argument("--json", dest="json_path", default=None)
    return p.parse_args(argv)


def log(*parts) -> None:
    print(*parts, flush=True)


def main(argv=None) -> dict:
    args = parse(argv)
    import torch

    from jinav3 import Encoder
    from jinav3.devices import pick_device, pick_dtype

    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    original, _ = build(Path(args.workdir), args.size, dtype=dtype if device.type == "cuda" else torch.float32)
    report: dict = {"command": "python -m benchmarks.server_bench " + " ".join(sys.argv[1:] if argv is None else argv),
                    "machine": machine(device), "versions": versions(),
                    "setup": {"size": args.size, "shape": SIZES[args.size].__dict__, "device": str(device),
                              "dtype": str(dtype).removeprefix("torch.")}}
    server = Server(original, args)
    try:
        encoder = Encoder.from_pretrained(original, device=device, dtype=dtype,
                                          max_tokens_per_batch=args.max_batch_tokens)
        texts = corpus.passages(encoder.tokenizer, args.passage_tokens)
        server.wait_ready(args.startup_timeout)
        report["server"] = server.info()
        log(f"# server bench: {args.size} {SIZES[args.size]}, {device} {report['setup']['dtype']}, "
            f"server batch budget {report['server']['max_batch_tokens']} tokens "
            f"(long requests {report['server'].get('latency_batch_tokens')} while short ones arrive), "
            f"load {report['machine']['load_average']}")
        report["in_process"] = {**in_process_queries(encoder), **in_process_batch(encoder)}
        report["single_query"] = {str(c): asyncio.run(single_queries(server, c, max(args.requests, 4 * c),
                                                                     args.client))
                                  for c in levels(args.concurrency)}
        report["in_process"].update(in_process_passages(encoder, texts, args.rounds))
        report["bulk"] = asyncio.run(bulk(server, texts, args, encoder))
        report["mixed"] = asyncio.run(mixed(server, texts, args))
    finally:
        report["shutdown"] = server.stop()
    if levels(args.replicas):
        report["ray_serve"] = ray_serve_runs(original, args, device)
    report["goals"] = goals(report)
    report["ray_ratios"] = ray_ratios(report)
    print_summary(report)
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(report, indent=2, default=str))
        log(f"wrote {args.json_path}")
    return report


def levels(spec: str) -> list[int]:
    return [int(c) for c in spec.split(",") if c.strip()]


# ============================================================================================ the server
class Server:
    """``python -m jinav3.integrations.server`` on a free port of 127.0.0.1."""

    def __init__(self, model: Path, args):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "jinav3.integrations.server", "--model", str(model), "--device", args.device,
                   "--dtype", args.dtype, "--port", str(self.port), "--log-level", "warning"]
        for flag in ("max_batch_tokens", "latency_batch_tokens"):
            if getattr(args, flag):
                command += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
        self.process = subprocess.Popen(command)

    def wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.process.returncode} before it was ready")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the server was not ready after {timeout:.0f}s")

    def info(self) -> dict:
        import httpx

        return httpx.get(f"{self.url}/info", timeout=10).json()

    def counters(self) -> dict[str, float]:
        """Forward passes, task switches, tokens embedded (totals so far)."""
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        wanted = {"jinav3_forward_passes": "forward_passes", "jinav3_task_switches": "task_switches",
                  "jinav3_tokens_embedded": "tokens"}
        out = dict.fromkeys(wanted.values(), 0.0)
        for family in text_string_to_metric_families(httpx.get(f"{self.url}/metrics", timeout=10).text):
            if family.name in wanted:
                out[wanted[family.name]] += sum(s.value for s in family.samples if s.name.endswith("_total"))
        return out

    def stop(self) -> dict:
        """SIGTERM, then the exit status (0 after a graceful stop)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return {"exit_status": self.process.returncode}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ============================================================================================ measurements
def in_process_queries(encoder) -> dict:
    """The baseline of step 1: one ``encode`` call (one forward pass) per query; the median call."""
    for q in QUERIES:  # warm-up
        encoder.encode([q], task=QUERY_TASK)
    calls, started = [], time.perf_counter()
    while len(calls) < 64 or time.perf_counter() - started < 1.0:
        t = time.perf_counter()
        encoder.encode([QUERIES[len(calls) % len(QUERIES)]], task=QUERY_TASK)
        calls.append(time.perf_counter() - t)
    per_query = statistics.median(calls)
    log(f"in process: one query per encode call {per_query * 1e3:.1f} ms (median of {len(calls)}): "
        f"{1 / per_query:.0f} queries/s")
    return {"query_ms": per_query * 1e3, "queries_per_s": 1 / per_query}


def in_process_batch(encoder, n: int = 64) -> dict:
    """The CPU ceiling of step 1: ONE ``encode`` call of the same ``n`` queries (the best of 3)."""
    texts = [QUERIES[i % len(QUERIES)] + f" {i}" for i in range(n)]
    encoder.encode(texts, task=QUERY_TASK)
    seconds = min(timed(lambda: encoder.encode(texts, task=QUERY_TASK)) for _ in range(3))
    log(f"in process: {n} queries in one encode call {seconds * 1e3:.1f} ms: {n / seconds:.0f} queries/s")
    return {"batch_queries": n, "batch_seconds": seconds, "batch_queries_per_s": n / seconds}


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def in_process_passages(encoder, texts: list[str], rounds: int) -> dict:
    """The baseline of step 2: ``encode`` of all passages in process (the best of ``rounds``)."""
    encoder.encode(texts[:16], task=PASSAGE_TASK)
    tokens = passage_tokens(encoder, texts)
    seconds = min(timed_encode(encoder, texts) for _ in range(rounds))
    log(f"in process: passages {tokens / seconds:,.0f} tok/s ({len(texts)} passages, {tokens} tokens, {seconds:.2f}s)")
    return {"passages": len(texts), "passage_tokens": tokens, "passage_seconds": seconds,
            "passage_tokens_per_s": tokens / seconds}


def timed_encode(encoder, texts: list[str]) -> float:
    started = time.perf_counter()
    encoder.encode(texts, task=PASSAGE_TASK)
    return time.perf_counter() - started


def passage_tokens(encoder, texts: list[str]) -> int:
    """Tokens as the server counts them in ``usage``: instruction and <s>, </s> included."""
    prefix = encoder.instruction(PASSAGE_TASK)
    return sum(len(ids) for ids in encoder.tokenizer([prefix + t for t in texts])["input_ids"])


async def single_queries(server: Server, clients: int, total: int, client: str = "aiohttp") -> dict:
    before = server.counters() if hasattr(server, "counters") else None  # behind Serve: per replica, left out
    latencies: list[float] = []
    counter = iter(range(total))
    async with query_client(server.url, clients, client) as post:
        await post(QUERIES[0])  # warm connection

        async def one_client() -> None:
            for i in counter:
                started = time.perf_counter()
                await post(QUERIES[i % len(QUERIES)] + f" {i}")
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.perf_counter() - started
    result = {"clients": clients, "requests": total, "seconds": wall, "requests_per_s": total / wall,
              "client": client, **percentiles(latencies)}
    passes = None
    if before is not None:
        passes = server.counters()["forward_passes"] - before["forward_passes"] - 1  # less the warm-up request
        result.update(forward_passes=passes, requests_per_forward_pass=total / max(passes, 1))
    log(f"queries x{clients:<3d} {result['requests_per_s']:8.1f} req/s  p50 {result['p50_ms']:7.1f} ms  "
        f"p99 {result['p99_ms']:7.1f} ms" + (f"  {passes:.0f} forward passes for {total} requests" if passes else ""))
    return result


@contextlib.asynccontextmanager
async def query_client(url: str, clients: int, client: str):
    """``post(text)``: one single-query request (``retrieval.query``) over ``clients`` kept-alive connections.
    aiohttp by default: the clients share this machine's cores with the server, and aiohttp spends about a tenth
    of httpx's CPU per request (measured: 0.4 s against 4.6 s for 1,024 requests), so the server is measured
    rather than its clients; ``--client httpx`` for the earlier numbers."""
    body = {"task": QUERY_TASK}
    if client == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
            async def post(text: str) -> None:
                (await http.post("/v1/embeddings", json={**body, "input": [text]})).raise_for_status()
            yield post
        return
    import aiohttp

    async with aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(limit=clients),
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def post(text: str) -> None:
            async with session.post("/v1/embeddings", json={**body, "input": [text]}) as response:
                response.raise_for_status()
                await response.read()
        yield post


async def query(http, text: str) -> float:
    started = time.perf_counter()
    response = await http.post("/v1/embeddings", json={"input": [text], "task": QUERY_TASK})
    response.raise_for_status()
    return time.perf_counter() - started


async def bulk(server: Server, texts: list[str], args, encoder) -> dict:
    """Step 2 through the server: every passage once per round, ``bulk_clients`` clients; the best round.
    An in-process round runs between server rounds, so that both meet the same machine."""
    import httpx

    chunks = [texts[i: i + args.batch] for i in range(0, len(texts), args.batch)]
    walls, tokens = [], 0
    async with httpx.AsyncClient(base_url=server.url, timeout=600) as http:
        await post_passages(http, chunks[0])  # warm-up: the passage adapter, the connection
        for r in range(args.rounds):
            if r:
                timed_encode(encoder, texts)
            started = time.perf_counter()
            tokens = await passage_load(http, chunks, args.bulk_clients)
            walls.append(time.perf_counter() - started)
    wall = min(walls)
    result = {"clients": args.bulk_clients, "passages_per_request": args.batch, "requests": len(chunks),
              "tokens": tokens, "seconds": wall, "rounds_seconds": walls, "tokens_per_s": tokens / wall}
    log(f"passages through the server: {tokens / wall:,.0f} tok/s ({len(chunks)} requests of {args.batch}, "
        f"{args.bulk_clients} clients, best of {len(walls)}: {wall:.2f}s)")
    return result


async def passage_load(http, chunks: list[list[str]], clients: int, stop: asyncio.Event | None = None) -> int:
    """Send every chunk once (or, with ``stop``, round and round until it is set); the tokens embedded."""
    tokens = 0
    order = iter(range(len(chunks) if stop is None else 1 << 30))

    async def client() -> None:
        nonlocal tokens
        for i in order:
            if stop is not None and stop.is_set():
                return
            got = await post_passages(http, chunks[i % len(chunks)])
            tokens += got  # not `tokens += await ...`: that reads `tokens` before the await and loses updates

    await asyncio.gather(*(client() for _ in range(clients)))
    return tokens


async def post_passages(http, chunk: list[str]) -> int:
    body = {"input": chunk, "task": PASSAGE_TASK, "embedding_type": "base64"}
    response = await http.post("/v1/embeddings", json=body)
    response.raise_for_status()
    body = response.json()
    base64.b64decode(body["data"][-1]["embedding"])  # what a client does with it
    return int(body["usage"]["total_tokens"])


async def mixed(server: Server, texts: list[str], args) -> dict:
    """Step 3. Queries first alone (idle), then during the passage load: back to back from one client
    (closed loop: it sends the next query the moment the last is answered, which lines it up with the
    start of the next passage batch, the worst case), and at random moments (open loop: Poisson
    arrivals at ``--query-rate``, as independent users send them)."""
    import httpx

    chunks = [texts[i: i + args.batch] for i in range(0, len(texts), args.batch)]
    rng = np.random.default_rng(0)
    async with httpx.AsyncClient(base_url=server.url, timeout=600) as http:
        idle = [await query(http, QUERIES[i % len(QUERIES)] + f" idle {i}") for i in range(args.mixed_queries)]
        before = server.counters()
        stop = asyncio.Event()
        load = asyncio.ensure_future(passage_load(http, chunks, args.bulk_clients, stop))
        await asyncio.sleep(0.5)  # the load is running
        started = time.perf_counter()
        closed = [await query(http, QUERIES[i % len(QUERIES)] + f" closed {i}") for i in range(args.mixed_queries)]
        arrivals = []
        for i in range(args.mixed_queries):
            await asyncio.sleep(rng.exponential(1 / args.query_rate))
            arrivals.append(asyncio.ensure_future(query(http, QUERIES[i % len(QUERIES)] + f" open {i}")))
        opened = list(await asyncio.gather(*arrivals))
        wall = time.perf_counter() - started
        stop.set()
        tokens = await load
    after = server.counters()
    result = {"queries": args.mixed_queries, "idle": percentiles(idle), "closed_loop": percentiles(closed),
              "open_loop": {**percentiles(opened), "rate_per_s": args.query_rate}, "seconds": wall,
              "bulk_tokens": tokens, "bulk_tokens_per_s": tokens / wall,
              "task_switches": after["task_switches"] - before["task_switches"],
              "forward_passes": after["forward_passes"] - before["forward_passes"]}
    log(f"queries under bulk load: open loop ({args.query_rate:g}/s) p50 {result['open_loop']['p50_ms']:.1f} ms "
        f"p99 {result['open_loop']['p99_ms']:.1f} ms; back to back p50 {result['closed_loop']['p50_ms']:.1f} ms "
        f"p99 {result['closed_loop']['p99_ms']:.1f} ms; idle p50 {result['idle']['p50_ms']:.1f} ms; "
        f"{result['task_switches']:.0f} task switches, {result['forward_passes']:.0f} forward passes, "
        f"bulk meanwhile {tokens / wall:,.0f} tok/s")
    return result


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(statistics.fmean(ms))}


# ============================================================================================ report
def ray_serve_runs(model: Path, args, device) -> dict:
    """Step 4: the Ray Serve application on a local cluster, 1 and 64 single-query clients per replica count."""
    import os
    from types import SimpleNamespace

    import ray
    from ray import serve

    from jinav3.integrations.server.ray_serve import build_app

    cpus = os.cpu_count() or 1
    gpus = 1 if device.type == "cuda" else 0
    ray.init(address="local", num_cpus=cpus, num_gpus=gpus, include_dashboard=False, log_to_driver=False,
             logging_level="warning")
    port = free_port()
    runs = {}
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for n in levels(args.replicas):  # the machine split between the replicas: Ray sets each one's threads
            serve.run(build_app(str(model), replicas=n, device=args.device, dtype=args.dtype,
                                num_cpus_per_replica=cpus / n, num_gpus_per_replica=gpus / n,
                                max_batch_tokens=args.max_batch_tokens), name="bench", route_prefix="/")
            target = SimpleNamespace(url=f"http://127.0.0.1:{port}")
            log(f"ray serve, {n} replica(s):")
            runs[str(n)] = {str(c): asyncio.run(single_queries(target, c, max(args.requests, 4 * c), args.client))
                            for c in (1, 64)}
            serve.delete("bench")  # the next count's replicas need the CPUs (GPUs) these hold: no rolling update
    finally:
        serve.shutdown()
        ray.shutdown()
    return runs


def goals(report: dict) -> dict:
    """Each goal with ``where`` it is judged: ``cpu`` (this machine's run), ``gpu`` (the device run), ``any``."""
    single = report["single_query"]
    top = single[str(max(int(c) for c in single))]
    out = {
        "many_clients_vs_one_batch": {"ratio": top["requests_per_s"] / report["in_process"]["batch_queries_per_s"],
                                      "goal": 0.8, "clients": top["clients"], "where": "cpu"},
        "many_clients_vs_one_pass_each": {"ratio": top["requests_per_s"] / report["in_process"]["queries_per_s"],
                                          "goal": 5.0, "clients": top["clients"], "where": "gpu"},
        "bulk_vs_in_process": {"ratio": report["bulk"]["tokens_per_s"] / report["in_process"]["passage_tokens_per_s"],
                               "goal": 0.8, "where": "any"},
        "query_p50_under_load_vs_idle": {"ratio": report["mixed"]["open_loop"]["p50_ms"]
                                         / report["mixed"]["idle"]["p50_ms"], "goal": 2.0, "traffic": "open loop",
                                         "lower_is_better": True, "where": "gpu"},
    }
    for entry in out.values():
        lower = entry.get("lower_is_better")
        entry["met"] = entry["ratio"] <= entry["goal"] if lower else entry["ratio"] >= entry["goal"]
    return out


def ray_ratios(report: dict) -> dict:
    """2 vs 1 replicas at 64 clients; Serve (1 replica) against plain jinav3 serve."""
    runs, plain = report.get("ray_serve") or {}, report["single_query"]
    out: dict = {}
    if "1" in runs and "2" in runs:
        out["two_vs_one_replica_64_clients"] = runs["2"]["64"]["requests_per_s"] / runs["1"]["64"]["requests_per_s"]
    if "1" in runs and "64" in plain:
        out["serve_vs_plain_64_clients"] = runs["1"]["64"]["requests_per_s"] / plain["64"]["requests_per_s"]
    if "1" in runs and "1" in plain:
        out["serve_proxy_added_p50_ms"] = runs["1"]["1"]["p50_ms"] - plain["1"]["p50_ms"]
    return out


def print_summary(report: dict) -> None:
    log("")
    log(f"{'clients':>7s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'req/forward':>12s}")
    for entry in report["single_query"].values():
        log(f"{entry['clients']:7d} {entry['requests_per_s']:9.1f} {entry['p50_ms']:8.1f} {entry['p99_ms']:8.1f} "
            f"{entry['requests_per_forward_pass']:12.1f}")
    on_gpu = report["setup"]["device"].startswith("cuda")
    for name, goal in report["goals"].items():
        sign = "<=" if goal.get("lower_is_better") else ">="
        verdict = "met" if goal["met"] else "NOT met"
        if goal["where"] == ("cpu" if on_gpu else "gpu"):
            verdict += f" (a {goal['where'].upper()} goal: judged on the {goal['where'].upper()} run)"
        log(f"{name:32s} {goal['ratio']:7.2f}  (goal {sign} {goal['goal']})  {verdict}")
    for name, value in report["ray_ratios"].items():
        log(f"{name:32s} {value:7.2f}")
    log(f"server exit status after SIGTERM: {report['shutdown']['exit_status']}")


if __name__ == "__main__":
    main()
