"""The benchmark command runs end to end on a tiny random checkpoint and its ways agree."""

import json

import pytest

from benchmarks import host_work, run

pytestmark = pytest.mark.slow  # full tier: the benchmarks run end to end


def test_benchmark_run_tiny(tmp_path):
    out = tmp_path / "bench.json"
    report = run.main(["--size", "tiny", "--device", "cpu", "--tokens", "2000", "--rounds", "1",
                       "--ways", "card,jinav3-packed,jinav3-packed-background",
                       "--long-docs", "1", "--long-length", "600",
                       "--late-tokens", "900", "--workdir", str(tmp_path / "work"), "--json", str(out)])
    assert report.get("errors") is None, report.get("errors")
    saved = json.loads(out.read_text())
    assert set(saved["ways"]) == {"card", "jinav3-packed", "jinav3-packed-background"}
    for name, way in saved["ways"].items():
        assert way["tokens_per_s"] > 0 and way["useful_tflops"] > 0, name
        if name != "card":
            assert way["agrees"] and way["min_cosine_vs_card"] > 0.999, name
            assert way["ratio_vs_card"] > 0
    assert saved["corpus"]["tokens"] >= 2000 and saved["corpus"]["tokenize_seconds"] > 0
    assert saved["ttfv"] and saved["long_documents"] and saved["late_chunking"]


def test_host_work_runs(capsys):
    host_work.main(["--tokens", "5000", "--budget", "2048", "--rounds", "1"])
    printed = capsys.readouterr().out
    assert "tokenise" in printed and "pack" in printed
