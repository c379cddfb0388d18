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


def test_benchmark_peers_bf16_and_cleanup(tmp_path):
    """fastembed (when installed) on the ONNX export and jinav3 in bf16 agree with the card way; a
    missing optional peer is a one-line skip, not an error; --clean leaves nothing in the workdir."""
    from benchmarks.ways import optional_peer

    work = tmp_path / "work"
    report = run.main(["--size", "tiny", "--device", "cpu", "--tokens", "1500", "--rounds", "1",
                       "--ways", "card,jinav3-packed,jinav3-bf16,fastembed,fastembed-sorted,sentence-transformers",
                       "--long-docs", "0", "--late-tokens", "0", "--workdir", str(work), "--clean"])
    assert report.get("errors") is None, report.get("errors")
    expected = {"card", "jinav3-packed", "jinav3-bf16"}
    if optional_peer("onnxruntime", "onnx", "fastembed") is None:
        expected |= {"fastembed", "fastembed-sorted"}
    if optional_peer("sentence_transformers") is None:
        expected.add("sentence-transformers")
    assert set(report["ways"]) == expected
    assert set(report.get("skipped", {})) == {"fastembed", "fastembed-sorted", "sentence-transformers"} - expected
    for name, way in report["ways"].items():
        assert way["agrees"] and way["min_cosine_vs_card"] > 0.999, name
    assert report["goals"]["jinav3_bf16_vs_fp32"]["ratio"] > 0
    assert report["matmul_peak"]["float32"]["peak_tflops"] > 0
    assert not work.exists()  # --clean: the checkpoints and the export are gone


def test_index_scale_runs_on_the_embedded_stores(tmp_path, capsys):
    """benchmarks.index_scale end to end at a small size (Qdrant local, Milvus Lite), its peer included."""
    from benchmarks import index_scale

    out = tmp_path / "scale.json"
    rows = index_scale.main(["--docs", "500", "--stores", "qdrant,milvus-lite", "--peer-docs", "500",
                             "--json", str(out)])
    assert [(r["store"], r["way"]) for r in rows] == [
        ("qdrant", "by key"), ("qdrant", "delete-by-condition (peer)"),
        ("milvus-lite", "by key"), ("milvus-lite", "delete-by-condition (peer)")]
    for row in rows:
        assert row["docs"] == 500 and len(row["ms_per_doc_by_fifth"]) == 5 and row["first"]["wall_s"] > 0
        assert set(row["search"]) == {"unfiltered", "1%", "0.1%"}
        if row["way"] == "by key":  # a fresh collection: no lookups; the re-run: lookups, no prune by condition
            assert "_read_stamps" not in row["first"]["calls"] and "_prune" not in row["first"]["calls"]
            assert row["reindex"]["calls"]["_read_stamps"] > 0 and "_prune" not in row["reindex"]["calls"]
        else:
            assert row["first"]["calls"]["_prune"] > 0
    assert json.loads(out.read_text()) == rows
    assert "Goals (issue 29)" in capsys.readouterr().out


def test_hybrid_bench_runs_small(tmp_path):
    """benchmarks.hybrid_bench end to end at a small size: lexical share, search latency per mode, disk."""
    from benchmarks import hybrid_bench

    result = hybrid_bench.main(["--size", "tiny", "--tokens", "3000", "--points", "300",
                                "--workdir", str(tmp_path / "work"), "--json", str(tmp_path / "h.json")])
    assert 0 < result["encoding"]["lexical_share"] and result["encoding"]["texts"] > 0
    assert [r["store"] for r in result["search"]] == ["qdrant", "milvus-lite"]
    for row in result["search"]:
        assert {"dense", "sparse", "hybrid", "dense_in_hybrid"} <= set(row) and row["disk_mib_hybrid"] > 0
    assert json.loads((tmp_path / "h.json").read_text()) == result
