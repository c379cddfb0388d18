"""``jinav3 serve --ray`` (issue 27): the server as replicas on Ray Serve, on a local Ray cluster with 2 CPUs.

One module-scoped application (2 replicas of the tiny model): the golden vectors through both replicas, then one
replica's process killed during traffic: every request is answered (200, or 503 with Retry-After for one caught
on the dead replica), none hangs, and once Serve has replaced it every request is a 200 again. Then the command
line: ``jinav3 serve --ray`` answers, and SIGTERM stops the application and the cluster it started, exit 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from helpers import GOLDEN, NORMALIZED, golden
from servers import ROOT, free_port

pytestmark = pytest.mark.slow  # full tier: a Ray cluster

httpx = pytest.importorskip("httpx")
ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

from jinav3.integrations.server.ray_serve import build_app  # noqa: E402

REPLICA = "x-jinav3-replica"


@pytest.fixture(scope="module")
def url():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(str(GOLDEN), replicas=2, device="cpu", dtype="float32"), name="jinav3", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def texts(golden_inputs) -> list[str]:
    return golden_inputs["texts"]


def embed(url: str, texts: list[str], timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{url}/embed", json={"inputs": texts, "prompt_name": "query"}, timeout=timeout)


def replicas_answering(url: str, texts: list[str], tries: int = 40) -> set[str]:
    seen = set()
    for _ in range(tries):
        response = embed(url, texts)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json(), golden("encode_retrieval.query.npy"), **NORMALIZED)
        seen.add(response.headers[REPLICA])
        if len(seen) == 2:
            break
    return seen


def test_golden_vectors_through_both_replicas(url, texts):
    assert len(replicas_answering(url, texts)) == 2
    openai = httpx.post(f"{url}/v1/embeddings", json={"input": texts, "task": "retrieval.passage"}, timeout=30)
    got = np.array([d["embedding"] for d in openai.json()["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, golden("encode_retrieval.passage.npy"), **NORMALIZED)
    assert httpx.get(f"{url}/info", timeout=30).json()["model_type"] == {"embedding": {"pooling": "mean"}}
    empty = httpx.post(f"{url}/embed", json={"inputs": []}, timeout=30)
    assert empty.status_code == 400 and empty.json()["error_type"] == "Empty"


def test_a_replica_killed_during_traffic_costs_503s_then_serve_replaces_it(url, texts):
    victim = int(embed(url, texts).headers[REPLICA])
    document = " ".join(f"word{i % 997}" for i in range(2_000))  # ~10k tokens, a second or two: always in flight
    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            response = httpx.post(f"{url}/v1/embeddings", json={"input": [document], "late_chunking": True},
                                  timeout=60)  # a hang would raise ReadTimeout here and fail the test
            answers.append((response.status_code, response.headers.get("retry-after")))

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    time.sleep(3)
    os.kill(victim, signal.SIGKILL)
    time.sleep(3)
    stop.set()
    for thread in clients:
        thread.join(90)
        assert not thread.is_alive(), "a request hung"
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert all(retry == "1" for status, retry in answers if status == 503)
    assert 503 in statuses and 200 in statuses, statuses  # one caught on the dead replica; the other kept serving
    deadline = time.monotonic() + 90
    while True:  # Serve restarts the replica: two answer again, and every request is a 200
        seen = replicas_answering(url, texts, tries=10)
        if len(seen) == 2 and str(victim) not in seen:
            break
        assert time.monotonic() < deadline, f"Serve did not replace the killed replica: {seen}"
        time.sleep(1)
    assert all(embed(url, [t]).status_code == 200 for t in texts)


def test_jinav3_serve_ray_command_and_sigterm(tmp_path):
    psutil = pytest.importorskip("psutil")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": ""}
    command = [sys.executable, "-m", "jinav3.integrations.cli", "serve", "--ray", "--replicas", "1", "--model",
               str(GOLDEN), "--device", "cpu", "--port", str(port), "--log-level", "warning"]
    with open(tmp_path / "log", "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "log").read_text()
            try:
                if httpx.post(f"http://127.0.0.1:{port}/embed", json={"inputs": "tea"}, timeout=30).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "jinav3 serve --ray did not come up"
            time.sleep(1)
        cluster = psutil.Process(process.pid).children(recursive=True)
        assert cluster, "a local Ray cluster runs under the command"
        process.send_signal(signal.SIGTERM)
        assert process.wait(90) == 0, (tmp_path / "log").read_text()
        gone, alive = psutil.wait_procs(cluster, timeout=30)
        assert not alive, f"left running: {[p.name() for p in alive]}"
    finally:
        if process.poll() is None:
            process.kill()
    assert "serving on http://127.0.0.1" in (tmp_path / "log").read_text()
