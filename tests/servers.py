"""Real servers on 127.0.0.1 for the tests: ``jinav3 serve`` as a subprocess, and tiny HTTP stand-ins.

Shared by tests/test_remote.py and any test that needs a server it can kill. (The in-process uvicorn
helper of tests/test_server.py stays there: it serves an Encoder object the test holds.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def serve_app(app: object, **config: object) -> Iterator[str]:
    """An ASGI ``app`` on uvicorn in a background thread, on a free port of 127.0.0.1; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,  # type: ignore[arg-type]
                                           log_level=str(config.pop("log_level", "warning")), **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A running ``jinav3 serve`` subprocess: its ``url``, its ``process``, and ``kill()`` / ``restart()``. With a
    ``log`` file, its stdout (uvicorn's access log) and stderr (everything else) go there, unbuffered."""

    def __init__(self, model: Path, port: int, args: tuple[str, ...], env: dict[str, str], log: Path | None = None):
        self.model, self.port, self.args, self.env = model, port, args, env
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        self.log = log

    def start(self, timeout: float = 120) -> None:
        command = [sys.executable, "-m", "jinav3.integrations.cli", "serve", "--model", str(self.model),
                   "--device", "cpu", "--dtype", "float32", "--host", "127.0.0.1", "--port", str(self.port),
                   "--log-level", "warning", *self.args]
        if self.log is None:
            self.process = subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                            text=True)
        else:
            with open(self.log, "a") as log:  # the child keeps its own descriptor
                self.process = subprocess.Popen(command, env={**self.env, "PYTHONUNBUFFERED": "1"}, stdout=log,
                                                stderr=subprocess.STDOUT, text=True)
        wait_healthy(self.url, self.process, timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log is not None else ""

    def kill(self) -> None:
        """SIGKILL: the server dies at once, mid-request if one is in flight."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)


def wait_healthy(url: str, process: subprocess.Popen, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}: "
                                 f"{process.stderr.read() if process.stderr else ''}")
        assert time.monotonic() < deadline, "the server did not come up"
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


@contextmanager
def jinav3_serve(model: Path, *args: str, log: Path | None = None, **env: str) -> Iterator[Served]:
    """``jinav3 serve --model MODEL`` on a free port of 127.0.0.1 (CPU, float32), until the block ends; its output
    in ``log`` if given."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **env}
    served = Served(model, free_port(), args, environment, log)
    served.start()
    try:
        yield served
    finally:
        served.stop()


class StandIn:
    """A stand-in for an embeddings server (NOT jinav3 serve): a real HTTP server on 127.0.0.1 whose answers
    the test scripts. ``script`` is a list of (status, body, headers) answered in turn to POST requests,
    after which ``then(request_body)`` answers; every request is recorded in ``requests``."""

    def __init__(self, script: list[tuple[int, dict, dict]], then: Callable[[dict], tuple[int, dict, dict]]):
        self.script = list(script)
        self.then = then
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.times: list[float] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # no /info: not jinav3 serve
                self._answer(404, {"detail": "not found"}, {})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                with lock:
                    stand_in.requests.append(body)
                    stand_in.headers.append(dict(self.headers))
                    stand_in.times.append(time.monotonic())
                    answer = stand_in.script.pop(0) if stand_in.script else None
                status, payload, headers = answer if answer is not None else stand_in.then(body)
                self._answer(status, payload, headers)

            def _answer(self, status: int, payload: dict, headers: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "StandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def jina_answer(body: dict, dimensions: int = 8) -> tuple[int, dict, dict]:
    """A Jina-shaped 200 answer: one vector per input, its first value the input's index + 1."""
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    d = body.get("dimensions") or dimensions
    data = [{"object": "embedding", "index": i, "embedding": [float(i + 1)] + [0.0] * (d - 1)}
            for i in range(len(inputs))]
    return 200, {"object": "list", "model": "jina-embeddings-v3", "data": data,
                 "usage": {"total_tokens": len(inputs), "prompt_tokens": len(inputs)}}, {}
