"""The distribution: a built wheel carries `jinav3` (from core/) and `jinav3.integrations`, and
importing jinav3 pulls in no store or framework."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # full tier: builds and installs a wheel


ROOT = Path(__file__).resolve().parents[1]


def test_built_wheel_imports(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--quiet", "-w", str(tmp_path)],
                   check=True, cwd=tmp_path)
    wheel = next(tmp_path.glob("jinav3-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "jinav3/__init__.py" in names and "jinav3/encoder.py" in names
    assert "jinav3/integrations/__init__.py" in names
    assert not any(n.startswith(("core/", "integrations/", "tests/")) for n in names)
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    code = "import jinav3, jinav3.integrations; print(jinav3.__file__); print(jinav3.integrations.__file__)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin:/bin"}).stdout
    assert all(line.startswith(str(unpacked)) for line in out.split())


def test_importing_jinav3_imports_no_store_or_framework():
    code = (
        "import sys, jinav3\n"
        "heavy = [m for m in ('qdrant_client', 'pymilvus', 'pinecone', 'haystack', 'llama_index')\n"
        "         if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
