"""Every script in examples/ runs to the end with the tiny golden model ($JINAV3_MODEL), as a user would
run it: a fresh interpreter, the working directory a scratch folder (so stores land there), no hub."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # full tier: the example scripts run as subprocesses


REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))  # _sample.py is shared code
# One runnable script per integration and one for late chunking (issue 6).
REQUIRED = {"late_chunking_example.py", "qdrant_example.py", "milvus_example.py", "pinecone_example.py",
            "haystack_example.py", "llama_index_example.py", "langchain_example.py"}
# Arguments a script needs to run offline: pinecone_example.py --double runs the real SDK against the
# repository's PineconeDouble (tests/doubles), never a Pinecone account.
ARGS = {"pinecone_example.py": ["--double"]}
# What an import of jinav3.integrations.<module> needs installed.
CLIENTS = {"qdrant": "qdrant_client", "milvus": "pymilvus", "pinecone": "pinecone", "haystack": "haystack",
           "llama_index": "llama_index.core", "langchain": "langchain_core"}


def needed_modules(script: Path) -> list[str]:
    """Third-party modules the script imports, directly or through a jinav3 integration."""
    names = set()
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "jinav3.integrations":
                names.update(f"jinav3.integrations.{alias.name}" for alias in node.names)
    out = set()
    for name in names:
        parts = name.split(".")
        if parts[:2] == ["jinav3", "integrations"] and len(parts) > 2 and parts[2] in CLIENTS:
            out.add(CLIENTS[parts[2]])
        elif parts[0] != "jinav3" and not (EXAMPLES / f"{parts[0]}.py").exists():  # not examples/_sample.py
            out.add(parts[0])
    return sorted(out)


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # a parent package is missing
        return True


def test_every_integration_has_an_example():
    assert REQUIRED <= {s.name for s in SCRIPTS}, f"missing: {sorted(REQUIRED - {s.name for s in SCRIPTS})}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path, golden_dir: Path):
    missing = [m for m in needed_modules(script) if _missing(m)]
    if missing:
        pytest.skip(f"{script.name} needs {', '.join(missing)} (pip install \"jinav3[all]\")")
    env = {**os.environ, "JINAV3_MODEL": str(golden_dir), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("PINECONE_API_KEY", "PINECONE_CONTROLLER_HOST", "JINAV3_QDRANT_URL", "JINAV3_QDRANT_PATH",
                 "JINAV3_MILVUS_URI"):  # examples run embedded / against the double here, never a live service
        env.pop(name, None)
    before = sorted(p.relative_to(EXAMPLES) for p in EXAMPLES.rglob("*") if "__pycache__" not in p.parts)
    done = subprocess.run([sys.executable, str(script), *ARGS.get(script.name, [])], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    report = f"exit {done.returncode}\n--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}"
    assert done.returncode == 0, report
    assert "Traceback" not in done.stderr, report
    assert done.stdout.strip() and "nothing to do" not in done.stdout, f"{script.name} did not run its demo\n{report}"
    after = sorted(p.relative_to(EXAMPLES) for p in EXAMPLES.rglob("*") if "__pycache__" not in p.parts)
    assert after == before, f"{script.name} wrote into examples/ instead of its working directory"
