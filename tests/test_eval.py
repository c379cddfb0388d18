"""jinav3 eval on a BEIR-format folder built here (issue 25, requirement 5): metrics per mode and size, from
ir-measures, equal to those of the runs computed from the store's own searches; bad folders named by file:line."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from helpers import GOLDEN

from jinav3.integrations.cli import main

pytestmark = pytest.mark.slow  # the command line end to end

TOPICS = {
    "akku": ["Der ZX-4410 Akku hält zehn Stunden.", "Ein Akku für Werkzeuge lädt schnell.",
             "Batterien und Akkus gehören nicht in den Müll."],
    "garden": ["The garden is full of roses.", "Bees pollinate the orchard in spring.",
               "Rain fills the old cistern behind the house."],
    "tea": ["茶道是日本的传统文化。", "The tea ceremony takes an hour.", "Green tea is grown on hills."],
}


def beir_folder(root: Path) -> Path:
    folder = root / "mini-beir"
    (folder / "qrels").mkdir(parents=True)
    corpus, qrels = [], ["query-id\tcorpus-id\tscore"]
    for topic, texts in TOPICS.items():
        for i, text in enumerate(texts):
            corpus.append({"_id": f"{topic}-{i}", "title": topic.title(), "text": text})
            qrels.append(f"q-{topic}\t{topic}-{i}\t{2 if i == 0 else 1}")
    for n in range(12):  # distractors
        corpus.append({"_id": f"noise-{n}", "title": "", "text": f"Unrelated sentence number {n} about trains."})
    queries = [{"_id": f"q-{t}", "text": q} for t, q in (("akku", "ZX-4410 Akku"), ("garden", "garden roses"),
                                                         ("tea", "tea ceremony"))]
    queries.append({"_id": "q-unjudged", "text": "never scored"})
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in corpus) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in queries) + "\n")
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return folder


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_reports_each_mode_and_size(tmp_path, capsys):
    import ir_measures

    folder = beir_folder(tmp_path)
    out_json = tmp_path / "eval.json"
    temporary = set(Path(tempfile.gettempdir()).glob("jinav3-eval-*"))
    code, out, err = run(capsys, "eval", folder, "--model", GOLDEN, "--device", "cpu", "--dimensions", "32,64",
                         "--json", out_json, "--quiet")
    assert code == 0, err
    results = json.loads(out_json.read_text())["results"]
    assert [(r["dimensions"], r["mode"]) for r in results] == [
        (d, m) for d in (32, 64) for m in ("dense", "sparse", "hybrid")]
    assert all(r["queries"] == 3 and r["documents"] == 21 for r in results)
    assert "mini-beir: 21 documents, 3 judged queries (test)" in out and "nDCG@10" in out
    for r in results:
        assert 0 < r["nDCG@10"] <= 1 and 0 < r["R@100"] <= 1 and 0 < r["RR@10"] <= 1, r
        assert f"{r['nDCG@10']:.4f}" in out
    # the numbers are ir-measures' own on the store's searches: recompute one configuration here
    from jinav3 import Encoder
    from jinav3.integrations.evaluation import read_beir
    from jinav3.integrations.qdrant import QdrantStore

    data = read_beir(folder)
    store = QdrantStore(Encoder.from_pretrained(GOLDEN, device="cpu"), "check", location=":memory:", dimensions=32,
                        hybrid=True)
    store.add([{"id": k, "text": t} for k, t in data.corpus.items()])
    run_sparse = [ir_measures.ScoredDoc(q, h.id, h.score) for q, text in data.queries.items()
                  for h in store.search(text, top_k=100, mode="sparse")]
    qrels = [ir_measures.Qrel(q, d, s) for q, docs in data.qrels.items() for d, s in docs.items()]
    expected = ir_measures.calc_aggregate([ir_measures.parse_measure("nDCG@10")], qrels, run_sparse)
    sparse = next(r for r in results if r["dimensions"] == 32 and r["mode"] == "sparse")
    assert sparse["nDCG@10"] == pytest.approx(float(next(iter(expected.values()))), abs=1e-9)
    assert set(Path(tempfile.gettempdir()).glob("jinav3-eval-*")) == temporary  # the temporary store is gone


def test_eval_names_bad_input(tmp_path, capsys):
    folder = beir_folder(tmp_path)
    code, out, err = run(capsys, "eval", folder, "--modes", "dense,lexical", "--model", GOLDEN)
    assert code == 2 and "modes: must be some of dense, sparse, hybrid, got dense, lexical" in err, err
    code, out, err = run(capsys, "eval", folder, "--dimensions", "32,x", "--model", GOLDEN)
    assert code == 2 and "--dimensions: must be comma-separated positive integers" in err, err
    qrels = folder / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text() + "q-tea\tmissing-doc\t1\n")
    code, out, err = run(capsys, "eval", folder, "--model", GOLDEN)
    lines = len(qrels.read_text().splitlines())
    assert code == 1 and f"test.tsv:{lines}: document 'missing-doc' is not in corpus.jsonl" in err, err
    (folder / "queries.jsonl").unlink()
    code, out, err = run(capsys, "eval", folder, "--model", GOLDEN)
    assert code == 1 and "queries.jsonl: not found" in err, err
