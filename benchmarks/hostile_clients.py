"""``jinav3 serve`` against hostile clients (issue 28), on the tiny golden model:

    python -m benchmarks.hostile_clients [--json out.json]

  1. stalled uploads: ``--stalled`` sockets (default 8, = ``--max-concurrent-requests``) send their
     headers and part of the body, then nothing; the time until a normal request is served, and its
     status (429 before the fix, for as long as the sockets stayed open).
  2. a 1 MB ``late_chunking`` document: a one-word query's latency idle, while the document runs, and
     after its client has left (it gives up after ``--late-client-s``), next to one window's work (a
     forward pass of the model's full length, in this process: "one slice").

The server is a subprocess with the default ``--body-timeout`` (30 s); the clients are plain sockets and
httpx in this process. Timings are wall-clock on whatever else the machine runs: the load average is
reported with them.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "tiny-v3"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hostile_clients", description=__doc__.split("\n\n")[0])
    p.add_argument("--stalled", type=int, default=8, help="stalled uploads, also --max-concurrent-requests")
    p.add_argument("--document-bytes", type=int, default=1_000_000)
    p.add_argument("--late-client-s", type=float, default=5.0, help="when the late-chunking client gives up")
    p.add_argument("--queries", type=int, default=5, help="one-word queries per phase")
    p.add_argument("--json", type=Path)
    p.add_argument("--server-pythonpath", default=str(ROOT),
                   help="where the server subprocess imports jinav3 from (default: this checkout): a folder holding "
                        "`jinav3` as a package, to measure another commit")
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, stalled: int, pythonpath: str) -> subprocess.Popen:
    import httpx

    command = [sys.executable, "-m", "jinav3.integrations.cli", "serve", "--model", str(GOLDEN), "--device", "cpu",
               "--port", str(port), "--max-concurrent-requests", str(stalled), "--log-level", "warning"]
    process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": pythonpath, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not come up")


def query_ms(url: str) -> tuple[float, int]:
    import httpx

    started = time.perf_counter()
    status = httpx.post(f"{url}/v1/embeddings", json={"input": ["tea"], "task": "retrieval.query"}, timeout=300)
    return (time.perf_counter() - started) * 1e3, status.status_code


def stalled_uploads(url: str, port: int, n: int) -> dict:
    sockets = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"input\": [\"sta")
        sockets.append(sock)
    try:
        time.sleep(0.5)  # the server has read every stalled request's headers
        served = [query_ms(url) for _ in range(5)]  # before the fix: 429 at once, as long as they stall
    finally:
        for sock in sockets:
            sock.close()
    return {"stalled": n, "normal_request_ms": [round(ms, 1) for ms, _ in served],
            "statuses": sorted({status for _, status in served})}


def late_chunking(url: str, args: argparse.Namespace) -> dict:
    import httpx

    sentence = "Tea came to Japan from China, and its masters wrote the rules of a ceremony for it. "
    document = (sentence * (args.document_bytes // len(sentence) + 1))[: args.document_bytes]
    idle = [query_ms(url)[0] for _ in range(args.queries)]
    left = threading.Event()

    def client() -> None:
        try:
            httpx.post(f"{url}/v1/embeddings", json={"input": [document], "late_chunking": True},
                       timeout=args.late_client_s)
        except httpx.TimeoutException:
            pass
        left.set()

    started = time.perf_counter()
    threading.Thread(target=client, daemon=True).start()
    time.sleep(1.0)  # body sent, document being planned or run
    during, sent_at = [], []
    while not left.is_set() and len(during) < 4 * args.queries:
        sent_at.append(time.perf_counter() - started)
        during.append(query_ms(url)[0])
    left.wait()
    after = [query_ms(url)[0] for _ in range(args.queries)]
    return {"document_bytes": args.document_bytes, "client_left_after_s": args.late_client_s,
            "query_ms_idle": _summary(idle), "query_ms_while_it_runs": _summary(during),
            "query_ms_after_client_left": _summary(after),
            "queries_while_it_runs": [f"{at:.1f}s: {ms:.0f} ms" for at, ms in zip(sent_at, during, strict=True)]}


def one_window_ms() -> float:
    """One forward pass of the model's full length (a late-chunking window), in this process."""
    from jinav3 import Encoder

    encoder = Encoder.from_pretrained(str(GOLDEN), device="cpu")
    ids = [0] + [100 + i % 1000 for i in range(int(encoder.max_length) - 2)] + [2]
    encoder.token_states(ids, task="retrieval.passage")  # warm-up
    times = []
    for _ in range(3):
        started = time.perf_counter()
        encoder.token_states(ids, task="retrieval.passage")
        times.append((time.perf_counter() - started) * 1e3)
    return round(statistics.median(times), 1)


def _summary(values: list[float]) -> dict:
    return {"n": len(values), "p50": round(statistics.median(values), 1), "max": round(max(values), 1)}


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    report: dict = {"load_average_before": os.getloadavg(), "one_window_ms": one_window_ms()}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(port, args.stalled, args.server_pythonpath)
    try:
        report["stalled_uploads"] = stalled_uploads(url, port, args.stalled)
        report["late_chunking"] = late_chunking(url, args)
    finally:
        process.terminate()
        process.wait(60)
    report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
