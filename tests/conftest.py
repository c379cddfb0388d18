"""Shared fixtures (the tiny golden checkpoint and encoders built from it) and the test tiers.

``pytest`` runs the fast tier: the core and the store contract. ``pytest --full`` (what .ci/run runs)
adds the tests marked ``slow``: real servers, subprocesses, the example scripts, framework pipelines,
200k-token documents, torch.compile.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import GOLDEN
from milvus_server import ENV as MILVUS_SERVER_ENV
from milvus_server import MilvusServerProcess, stop_process_group


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true",
                     help="run the whole suite, the tests marked slow included (what CI runs)")


# Run in parallel (.ci/run: pytest-xdist, -n 2), the modules that start local Ray clusters (each wants both CPUs)
# are one unit of work, on one worker, one after another; so are the modules that use the Milvus server most.
# The two units are the largest and start first, one per worker. The Milvus server is one for the whole run
# (its embedded etcd binds fixed ports): the first worker to ask starts it, the controller stops it at the end.
SHARED_UNITS = {"test_ray": "ray", "test_server_ray": "ray", "test_filtered_search": "milvus server",
                "test_milvus_store": "milvus server", "test_secrets": "milvus server"}
SHARED_DIR_ENV = "JINAV3_TESTS_SHARED_DIR"  # set by the controller for its workers: the shared server's record


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's scheduler: each test module is a unit of work (its module fixtures start once, its tests
    run in order), and the modules of each SHARED_UNITS entry are one unit together (the largest units start
    first). xdist's `--dist loadgroup` would group with markers, but it renames node ids in a way pytest 9.2 no
    longer reads."""
    from xdist.scheduler import LoadScopeScheduling

    class SharedServersFirst(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return SHARED_UNITS.get(path.rpartition("/")[2].removesuffix(".py"), path)

    return SharedServersFirst(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without --full, leave out the slow tier (deselected and counted, not skipped)."""
    if config.getoption("--full") or config.option.markexpr:  # an explicit -m expression decides itself
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


def pytest_configure(config: pytest.Config) -> None:
    """A pytest-xdist worker shares the CPUs with the other: one torch thread each, not two per core. The
    controller of a parallel run makes the folder its workers share (before they start: they inherit it)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
    elif getattr(config.option, "numprocesses", None):
        os.environ[SHARED_DIR_ENV] = tempfile.mkdtemp(prefix="jinav3-tests-")


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller of a parallel run stops the shared Milvus server, after every worker has finished."""
    shared = os.environ.get(SHARED_DIR_ENV)
    if os.environ.get("PYTEST_XDIST_WORKER") or not shared:
        return
    record = Path(shared) / "milvus-server.json"
    if record.exists():
        stop_process_group(json.loads(record.read_text())["pgid"])
    shutil.rmtree(shared, ignore_errors=True)
    del os.environ[SHARED_DIR_ENV]


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN


@pytest.fixture(scope="session")
def golden_inputs() -> dict:
    return json.loads((GOLDEN / "inputs.json").read_text())


@pytest.fixture(scope="session")
def encoder():
    """The golden tiny model loaded from its original layout, on the CPU (shared: do not mutate)."""
    from jinav3 import Encoder

    return Encoder.from_pretrained(GOLDEN, device="cpu")


@pytest.fixture(scope="session")
def native_dir(encoder, tmp_path_factory) -> Path:
    """The golden model written in the transformers-native layout by save_pretrained."""
    return Path(encoder.save_pretrained(tmp_path_factory.mktemp("native") / "tiny-v3-native"))


@pytest.fixture(scope="session")
def native_encoder(native_dir):
    from jinav3 import Encoder

    return Encoder.from_pretrained(native_dir, device="cpu")


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """The suite's one real Milvus server (tests/milvus_server.py), started on first use and stopped when
    the session ends: Milvus 2.3.5 binds fixed etcd ports (2379/2380) that a server stopped moments
    before can still hold, so the modules share one server instead of starting their own. None without
    $JINAV3_MILVUS_SERVER_PYTHON (tests that need it ask for ``milvus_uri``, which skips then)."""
    python = os.environ.get(MILVUS_SERVER_ENV)
    if not python:
        yield None
        return
    shared = os.environ.get(SHARED_DIR_ENV) if os.environ.get("PYTEST_XDIST_WORKER") else None
    if shared is None:
        server = MilvusServerProcess(python, tmp_path_factory.mktemp("milvus-server"))
        yield server
        server.stop()
        return
    from filelock import FileLock

    record = Path(shared) / "milvus-server.json"
    with FileLock(str(Path(shared) / "milvus-server.lock")):  # one worker starts it; the others find its record
        if not record.exists():
            started = MilvusServerProcess(python, Path(shared) / "milvus-server")
            record.write_text(json.dumps({"uri": started.uri, "pgid": started.proc.pid}))
    yield SimpleNamespace(uri=json.loads(record.read_text())["uri"])  # stopped by the controller (unconfigure)


@pytest.fixture(scope="session")
def milvus_uri(milvus_server) -> str:
    """The shared Milvus server's URI (http://127.0.0.1:PORT); skips without the server's python."""
    if milvus_server is None:
        pytest.skip(f"set {MILVUS_SERVER_ENV} to the python of a venv with the PyPI package milvus==2.3.5 to run "
                    "the tests on a real Milvus server (see tests/milvus_server.py)")
    return milvus_server.uri
