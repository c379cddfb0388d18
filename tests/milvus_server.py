"""Start a real Milvus server for the tests: the PyPI package ``milvus`` (2.3.5), which bundles a
standalone server binary (with embedded etcd and local storage) that starts on loopback in ~7-15 s.

Its pins clash with the project's, so it lives in its own virtual environment, found through
``$JINAV3_MILVUS_SERVER_PYTHON`` (that venv's python)::

    python3 -m venv /tmp/venv-milvus-server
    /tmp/venv-milvus-server/bin/pip install "milvus==2.3.5"
    export JINAV3_MILVUS_SERVER_PYTHON=/tmp/venv-milvus-server/bin/python

``MilvusServerProcess(python, data_dir)`` runs THIS file with that python (so it must stay
standard-library only); the child starts ``milvus.MilvusServer`` with ``data_dir`` as its base folder
(the binary is unpacked there, logs in ``data_dir/logs``), lets it pick free ports (proxy from 19530
up, etcd from 2379 up, ...), prints ``{"port": N}`` once the server answers its health check, and stops
the server on SIGTERM. The child runs in its own process group, which :meth:`stop` ends as a whole.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

ENV = "JINAV3_MILVUS_SERVER_PYTHON"
PORT_TAKEN = 3  # the child's exit status when the server died at start because a port it needs was taken


class PortTaken(RuntimeError):
    """The server died at start: a port it needs was taken."""


def _wait_for_free_ports(ports: tuple[int, ...], timeout: float) -> None:
    """Until nothing listens on ``ports`` of 127.0.0.1 (Milvus 2.3.5 binds fixed ports for its embedded
    etcd, so one server must be gone before the next starts), at most ``timeout`` seconds."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = []
        for port in ports:
            with socket.socket() as probe:
                probe.settimeout(0.2)
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    busy.append(port)
        if not busy:
            return
        time.sleep(0.5)


def stop_process_group(pgid: int, timeout: float = 20.0) -> None:
    """SIGTERM a server's process group, SIGKILL what is left after ``timeout`` seconds (for a server this process
    did not start: the controller of a parallel test run stops the server one of its workers started)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.killpg(pgid, 0)  # ProcessLookupError once the group is gone
            time.sleep(0.2)
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class MilvusServerProcess:
    """A Milvus server run from another python's ``milvus`` package; ``uri`` once started."""

    def __init__(self, python: str, data_dir: str | os.PathLike, timeout: float = 240.0, attempts: int = 3):
        # A start whose embedded etcd finds a port taken (its peer port 2380 is fixed; seen when the suite runs
        # in parallel, some other process holding it for a moment) ends at once: start again, on a fresh folder.
        for attempt in range(attempts):
            folder = Path(data_dir) / f"attempt-{attempt}" if attempt else Path(data_dir)
            try:
                self._start(python, folder, timeout)
                return
            except PortTaken:
                if attempt == attempts - 1:
                    raise
                time.sleep(2.0)

    def _start(self, python: str, data_dir: Path, timeout: float) -> None:
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.data_dir / "launcher.log"
        _wait_for_free_ports((19530, 2379, 2380), 90.0)  # a server stopped just before may still hold them
        self._log_file = open(self.log, "w")
        self.proc = subprocess.Popen([python, __file__, str(self.data_dir)], stdout=subprocess.PIPE,
                                     stderr=self._log_file, start_new_session=True, text=True)
        self.port = None
        deadline = time.monotonic() + timeout
        try:
            while self.port is None:
                if self.proc.poll() is not None:
                    if self.proc.returncode == PORT_TAKEN:
                        raise PortTaken(f"the Milvus server found a port taken; see {self.data_dir / 'logs'}")
                    raise RuntimeError(f"the Milvus server exited with {self.proc.returncode}; see {self.log} and "
                                       f"{self.data_dir / 'logs'}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"the Milvus server did not start in {timeout:.0f} s; see {self.data_dir / 'logs'}"
                    )
                ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 1.0))
                if ready:
                    line = self.proc.stdout.readline()
                    if line.startswith("{"):
                        self.port = int(json.loads(line)["port"])
        except BaseException:
            self.stop()
            raise

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log_file.close()


def _serve(data_dir: str, timeout: float = 200.0) -> None:  # runs in the server's venv
    from milvus import MilvusServer

    server = MilvusServer(wait_for_started=False)
    server.set_base_dir(data_dir)

    def stop(*_):
        server.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.start()
    deadline = time.monotonic() + timeout
    while True:  # the health check, one second at a time, watching the binary: a crash ends the wait at once
        if server.server_proc.poll() is not None:
            logs = Path(data_dir) / "logs" / "milvus-stdout.log"
            taken = logs.exists() and "address already in use" in logs.read_text(errors="replace")
            server.stop()
            sys.exit(PORT_TAKEN if taken else 1)
        try:
            server.wait_started(timeout=1000)
            break
        except TimeoutError:
            if time.monotonic() > deadline:
                server.stop()
                raise
    print(json.dumps({"port": server.listen_port}), flush=True)
    server.wait()


if __name__ == "__main__":
    _serve(sys.argv[1])
