"""The jinav3 command line end to end: real Qdrant local mode, Milvus Lite and the Pinecone SDK against
its test double, the tiny golden model, in-process through ``main([...])`` and as a real subprocess."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import bad_rows_corpus, skipped_rows

from jinav3.errors import InvalidArgumentError
from jinav3.integrations.cli import main
from jinav3.integrations.cli.errors import CLIError
from jinav3.integrations.cli.progress import IndexProgress
from jinav3.integrations.cli.search import parse_filters
from jinav3.integrations.corpus import CorpusError, read_corpus
from jinav3.integrations.stores.uri import parse_store

pytestmark = pytest.mark.slow  # full tier: the command line end to end, subprocesses included


REPO = Path(__file__).resolve().parent.parent
PASSAGES = REPO / "examples" / "data" / "passages.jsonl"
ARTICLES = REPO / "examples" / "data" / "articles"
QUERIES = ["how do I test a new cream on sensitive skin?", "Wie lagert man Kartoffeln?", "茶的历史"]
ROWS = [json.loads(line) for line in PASSAGES.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test in its own working directory (the default store is relative), no hub, no model env."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JINAV3_MODEL", raising=False)
    monkeypatch.delenv("JINAV3_DEBUG", raising=False)


@pytest.fixture(scope="module")
def passage_vectors(encoder) -> np.ndarray:
    return encoder.encode_passages([r["text"] for r in ROWS])


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def model_args(golden_dir) -> list[str]:
    return ["--model", str(golden_dir), "--device", "cpu"]


def store_uri(kind: str, tmp_path: Path) -> str:
    return {"qdrant": f"qdrant:{tmp_path / 'qdrant'}", "milvus": f"milvus:{tmp_path / 'milvus.db'}"}[kind]


def open_store(kind: str, tmp_path: Path, encoder, collection="jinav3", **kwargs):
    if kind == "qdrant":
        from jinav3.integrations.qdrant import QdrantStore

        return QdrantStore(encoder, collection=collection, path=str(tmp_path / "qdrant"), **kwargs)
    from jinav3.integrations.milvus import MilvusStore

    return MilvusStore(encoder, collection=collection, uri=str(tmp_path / "milvus.db"), **kwargs)


def count(kind, tmp_path, encoder, collection="jinav3", **kwargs) -> int:
    store = open_store(kind, tmp_path, encoder, collection, create=False, **kwargs)
    try:
        return store.count()
    finally:
        store.close()


def brute_force(encoder, query: str, vectors: np.ndarray, ids: list[str], top_k: int) -> list[tuple[str, float]]:
    scores = vectors @ encoder.encode_queries(query)
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [(ids[i], float(scores[i])) for i in order]


def assert_same_ranking(hits: list[dict], expected: list[tuple[str, float]]) -> None:
    """Same ids in the same order, same scores; ranks whose brute-force scores tie (within 1e-5) may swap."""
    assert len(hits) == len(expected)
    np.testing.assert_allclose([h["score"] for h in hits], [s for _, s in expected], atol=1e-4)
    scores = {i: s for i, s in expected}
    for rank, (hit, (want, score)) in enumerate(zip(hits, expected, strict=True)):
        if hit["id"] != want:
            assert hit["id"] in scores and abs(scores[hit["id"]] - score) < 1e-5, (rank, hit["id"], want)


# ============================================================================================ index + search
@pytest.mark.parametrize("kind", ["qdrant", "milvus"])
def test_index_twice_then_search_equals_brute_force(kind, tmp_path, capsys, golden_dir, encoder, passage_vectors):
    store = store_uri(kind, tmp_path)
    # the second run finds every document stored unchanged (nothing embedded); --reembed writes them again
    for flags, said in (([], "(300 chunks, "), ([], "(300 stored unchanged already, not embedded again; 0 chunks, "
                        "0 tokens embedded)"), (["--reembed"], "(300 chunks, ")):
        code, out, err = run(capsys, "index", PASSAGES, "--store", store, *model_args(golden_dir), "--batch-size", 50,
                             *flags)
        assert code == 0, err
        assert out.startswith(f"Indexed 300 documents {said}") and "holds 300 entries" in out, out
        assert ("documents/s" in out) == ("unchanged" not in said), out  # no rate when nothing was embedded
        assert count(kind, tmp_path, encoder) == 300

    ids = [r["id"] for r in ROWS]
    for query in QUERIES:
        code, out, err = run(capsys, "search", query, "--store", store, *model_args(golden_dir), "--top-k", 7, "--json")
        assert code == 0, err
        hits = json.loads(out)
        assert_same_ranking(hits, brute_force(encoder, query, passage_vectors, ids, 7))
        by_id = {r["id"]: r for r in ROWS}
        for hit in hits:
            row = by_id[hit["id"]]
            assert hit["text"] == row["text"]
            assert hit["metadata"] == {"lang": row["lang"], "topic": row["topic"], "source": row["source"]}

    # filters: one key twice = any-of; brute force over the rows that match
    code, out, err = run(capsys, "search", QUERIES[0], "--store", store, *model_args(golden_dir), "--top-k", 5,
                         "--filter", "lang=de", "--filter", "lang=fr", "--filter", "topic=skincare", "--json")
    assert code == 0, err
    keep = [i for i, r in enumerate(ROWS) if r["lang"] in ("de", "fr") and r["topic"] == "skincare"]
    expected = brute_force(encoder, QUERIES[0], passage_vectors[keep], [ROWS[i]["id"] for i in keep], 5)
    assert_same_ranking(json.loads(out), expected)


def test_interrupted_index_resumes(tmp_path, capsys, golden_dir, encoder, monkeypatch):
    step = IndexProgress._step

    def interrupt_after_two_batches(self, *args, **kwargs):
        step(self, *args, **kwargs)
        if self.documents >= 100:
            raise KeyboardInterrupt

    monkeypatch.setattr(IndexProgress, "_step", interrupt_after_two_batches)
    code, out, err = run(capsys, "index", PASSAGES, *model_args(golden_dir), "--batch-size", 50)
    assert code == 130 and out == ""
    assert "interrupted after embedding 100 of 300 documents; run the same command again to resume" in err
    assert count("qdrant", tmp_path / "jinav3-data", encoder) < 300
    monkeypatch.setattr(IndexProgress, "_step", step)
    code, out, err = run(capsys, "index", PASSAGES, *model_args(golden_dir), "--batch-size", 50)
    assert code == 0 and "holds 300 entries" in out, err
    assert count("qdrant", tmp_path / "jinav3-data", encoder) == 300


def test_search_table(tmp_path, capsys, golden_dir):
    assert run(capsys, "index", PASSAGES, *model_args(golden_dir), "-q")[0] == 0  # the default store
    assert (tmp_path / "jinav3-data" / "qdrant").is_dir()
    code, out, err = run(capsys, "search", QUERIES[0], *model_args(golden_dir), "--top-k", 3)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["#", "score", "id", "text"]
    assert lines[1].split()[0] == "1" and float(lines[1].split()[1]) > 0
    assert sum(1 for line in lines if "topic=" in line) == 3  # one metadata line per hit


@pytest.mark.parametrize("kind", ["qdrant", "milvus"])
def test_search_creates_nothing_and_says_what_exists(kind, tmp_path, capsys, golden_dir):
    store = store_uri(kind, tmp_path / "deep")
    path = Path(store.partition(":")[2])
    code, out, err = run(capsys, "search", "x", "--store", store, "--collection", "nothing_here",
                         *model_args(golden_dir))
    _one_error_line(code, err, f"store {store} does not exist; index a corpus into it first: jinav3 index CORPUS "
                               f"--store {store} --collection nothing_here")
    assert code == 1 and out == ""
    assert not (tmp_path / "deep").exists()  # neither the qdrant folder nor the Milvus Lite file, nor their folder

    corpus = tmp_path / "one.jsonl"
    corpus.write_text('{"id": "a", "text": "tea"}\n', encoding="utf-8")
    for collection in ("docs", "notes"):
        assert run(capsys, "index", corpus, "--store", store, "--collection", collection,
                   *model_args(golden_dir))[0] == 0
    code, out, err = run(capsys, "search", "x", "--store", store, "--collection", "nothing_here",
                         *model_args(golden_dir))
    _one_error_line(code, err, f"store {store}: collection 'nothing_here' does not exist (collections there: 'docs', "
                               "'notes'); index a corpus into it first")
    assert code == 1 and out == ""
    assert path.exists()


def test_search_the_default_store_before_any_index(tmp_path, capsys, golden_dir):
    code, out, err = run(capsys, "search", "x", *model_args(golden_dir))
    _one_error_line(code, err, "store qdrant:./jinav3-data/qdrant does not exist; index a corpus into it first")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["qdrant", "milvus"])
def test_search_takes_the_dimensions_of_the_collection(kind, tmp_path, capsys, golden_dir, encoder):
    # the tiny model has 64 dimensions: 16 is a Matryoshka cut of it
    store = store_uri(kind, tmp_path)
    code, _, err = run(capsys, "index", PASSAGES, "--store", store, *model_args(golden_dir), "--dimensions", 16,
                       "--collection", "small")
    assert code == 0, err
    small = encoder.encode_passages([r["text"] for r in ROWS], dimensions=16)
    query = encoder.encode_queries(QUERIES[1], dimensions=16)
    scores = small @ query
    expected = [(ROWS[i]["id"], float(scores[i])) for i in np.argsort(-scores, kind="stable")[:5]]
    for given in ([], ["--dimensions", 16]):  # without --dimensions, the collection's signature says 16
        code, out, err = run(capsys, "search", QUERIES[1], "--store", store, *model_args(golden_dir), *given,
                             "--collection", "small", "--json", "--top-k", 5)
        assert code == 0, err
        assert_same_ranking(json.loads(out), expected)
    # searching with another size given explicitly is refused with the store's one-line explanation
    code, out, err = run(capsys, "search", QUERIES[1], "--store", store, *model_args(golden_dir), "--dimensions", 32,
                         "--collection", "small")
    _one_error_line(code, err, "dimensions")
    assert code == 1 and out == ""


def test_late_chunking_articles(tmp_path, capsys, golden_dir, encoder):
    code, out, err = run(capsys, "index", ARTICLES, *model_args(golden_dir), "--late-chunking", "--collection",
                         "articles")
    assert code == 0, err
    files = sorted(ARTICLES.glob("*.md"))
    chunked = [encoder.late_chunk(f.read_text(encoding="utf-8")) for f in files]
    n_chunks = sum(len(c) for c in chunked)
    assert f"Indexed 3 documents ({n_chunks} chunks, " in out
    assert count("qdrant", tmp_path / "jinav3-data", encoder, "articles") == n_chunks

    query = "Who built the first printing press with movable type in Europe?"
    code, out, err = run(capsys, "search", query, *model_args(golden_dir), "--collection", "articles", "--json",
                         "--top-k", 8)
    assert code == 0, err
    ids = [f"{f.name}::chunk:{c.index}" for f, chunks in zip(files, chunked, strict=True) for c in chunks]
    vectors = np.stack([c.embedding for chunks in chunked for c in chunks])
    hits = json.loads(out)
    assert_same_ranking(hits, brute_force(encoder, query, vectors, ids, 8))
    texts = {i: c.text for i, c in zip(ids, (c for chunks in chunked for c in chunks), strict=True)}
    assert all(h["text"] == texts[h["id"]] for h in hits)

    code, out, err = run(capsys, "search", query, *model_args(golden_dir), "--collection", "articles", "--json",
                         "--group-by-document")
    assert code == 0, err
    assert sorted(h["id"] for h in json.loads(out)) == [f.name for f in files]


def test_late_chunking_token_chunker(tmp_path, capsys, golden_dir, encoder):
    article = ARTICLES / "printing-press-history.en.md"
    code, out, err = run(capsys, "index", article, *model_args(golden_dir), "--late-chunking", "--chunker", "tokens",
                         "--chunk-size", 100, "--collection", "tok")
    assert code == 0, err
    n = len(encoder.late_chunk(article.read_text(encoding="utf-8"), chunker="tokens", chunk_size=100))
    assert f"Indexed 1 documents ({n} chunks, " in out
    code, _, err = run(capsys, "index", article, *model_args(golden_dir), "--late-chunking", "--chunker", "tokens")
    assert code != 0 and "--chunk-size" in err


def test_convert_then_model_dst_gives_same_vectors(tmp_path, capsys, golden_dir, encoder, passage_vectors):
    dst = tmp_path / "models" / "tiny-native"
    code, out, err = run(capsys, "convert", golden_dir, dst)
    assert code == 0, err
    assert "original layout" in out
    assert (dst / "config.json").is_file() and (dst / "retrieval_passage" / "adapter_config.json").is_file()
    assert json.loads((dst / "config.json").read_text())["model_type"] == "jina_embeddings_v3"
    code, _, err = run(capsys, "convert", golden_dir, dst)  # never overwrites
    assert code != 0 and "already exists" in err and err.count("\n") == 1

    code, _, err = run(capsys, "index", PASSAGES, "--model", dst, "--device", "cpu", "-q")
    assert code == 0, err
    from jinav3.integrations.qdrant import QdrantStore

    # the converted copy keeps the model's name: the original model opens the collection it filled
    with QdrantStore(encoder, path="jinav3-data/qdrant", create=False) as store:
        stored = store.get([r["id"] for r in ROWS], with_vectors=True)
    assert [h.id for h in stored] == [r["id"] for r in ROWS]
    np.testing.assert_allclose(np.stack([h.vector for h in stored]), passage_vectors, atol=2e-5)
    code, out, err = run(capsys, "search", QUERIES[0], "--model", dst, "--device", "cpu", "--json")
    assert code == 0, err
    assert_same_ranking(json.loads(out), brute_force(encoder, QUERIES[0], passage_vectors, [r["id"] for r in ROWS], 10))


def test_pinecone_store_against_the_double(tmp_path, capsys, golden_dir, encoder, passage_vectors, monkeypatch):
    pytest.importorskip("pinecone")
    from doubles.pinecone_double import PineconeDouble

    with PineconeDouble(api_key="test-key") as double:
        monkeypatch.setenv("PINECONE_API_KEY", "test-key")
        monkeypatch.setenv("PINECONE_CONTROLLER_HOST", double.host)
        for _ in range(2):
            code, out, err = run(capsys, "index", PASSAGES, "--store", "pinecone:docs", *model_args(golden_dir))
            assert code == 0, err
            assert "into pinecone:docs namespace 'jinav3'; it now holds 300 entries" in out
        assert len(double.vectors("docs", "jinav3")) == 300
        code, out, err = run(capsys, "search", QUERIES[0], "--store", "pinecone:docs", *model_args(golden_dir),
                             "--json")
        assert code == 0, err
        ids = [r["id"] for r in ROWS]
        assert_same_ranking(json.loads(out), brute_force(encoder, QUERIES[0], passage_vectors, ids, 10))
        code, out, err = run(capsys, "search", QUERIES[0], "--store", "pinecone:docs", "--collection", "nothing_here",
                             *model_args(golden_dir))
        _one_error_line(code, err, "store pinecone:docs: namespace 'nothing_here' does not exist (namespaces there: "
                                   "'jinav3')")
        code, out, err = run(capsys, "search", QUERIES[0], "--store", "pinecone:nothing-here", *model_args(golden_dir))
        _one_error_line(code, err, "store pinecone:nothing-here: index 'nothing-here' does not exist (indexes there: "
                                   "'docs')")
        assert double.index_names() == ["docs"]
        monkeypatch.delenv("PINECONE_API_KEY")
        code, _, err = run(capsys, "search", "x", "--store", "pinecone:docs", *model_args(golden_dir))
        assert code == 2 and err == ("jinav3: error: store pinecone:docs: set PINECONE_API_KEY to your Pinecone "
                                     "API key (or name the variable that holds it with --api-key-env)\n")


# ============================================================================================ errors
def _one_error_line(code: int, err: str, *needles: str) -> None:
    assert code not in (0, None), err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jinav3: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, err)


@pytest.mark.parametrize("argv, needles", [
    (["index", "no-such-corpus.jsonl"], ["corpus", "does not exist"]),
    (["index", PASSAGES, "--store", "qdrant+http://127.0.0.1:9"], ["qdrant+http://127.0.0.1:9"]),
    (["search", "x", "--store", "milvus+http://127.0.0.1:9"], ["milvus+http://127.0.0.1:9"]),
    (["index", PASSAGES, "--model", "./no-such-model"], ["model", "no-such-model", "local folder"]),
])
def test_failures_of_the_work_are_one_line_and_exit_1(argv, needles, capsys, golden_dir):
    argv = [str(a) for a in argv]
    if "--model" not in argv:
        argv += model_args(golden_dir)
    code, out, err = run(capsys, *argv)
    _one_error_line(code, err, *needles)
    assert code == 1 and out == ""


@pytest.mark.parametrize("argv, needles", [
    (["index", PASSAGES, "--store", "redis:6379"], ["unknown scheme 'redis'", "qdrant:PATH"]),
    (["index", PASSAGES, "--store", "qdrant+ftp://x"], ["unknown scheme"]),
    (["index", PASSAGES, "--store", "milvus:./data/milvus"], [".db"]),
    (["search", "x", "--store", "qdrant"], ["not a store URI"]),
    (["search", "x", "--filter", "lang"], ["--filter", "key=value"]),
    (["search", "x", "--filter", "n:=nope"], ["--filter", "JSON"]),
    (["search", "x", "--top-k", "0"], ["--top-k", "positive"]),
    (["search", "x", "--top-k", "many"], ["--top-k"]),
    (["index", PASSAGES, "--chunk-size", "5"], ["--chunk-size", "--late-chunking"]),
    (["index", PASSAGES, "--late-chunking", "--chunker", "tokens"], ["--chunk-size"]),
    (["index", PASSAGES, "--late-chunking", "--chunker", "tokens", "--chunk-size", "0"], ["--chunk-size", "positive"]),
    (["index", PASSAGES, "--dtype", "float64"], ["dtype", "float64", "bfloat16"]),
    (["search", "x", "--dtype", "float64"], ["dtype", "float64"]),
    (["index", PASSAGES, "--dimensions", "5000"], ["dimensions", "5000"]),
    (["index", PASSAGES, "--store", "milvus:./new/m.db", "--dimensions", "5000"], ["dimensions", "5000"]),
    (["index", PASSAGES, "--dimensions", "0"], ["--dimensions", "positive"]),
    (["index", PASSAGES, "--collection", ""], ["collection"]),
    (["index", PASSAGES, "--device", "no-such-device"], ["device", "no-such-device"]),
    (["index"], ["CORPUS", "jinav3 index --help"]),
    (["frobnicate"], ["frobnicate"]),
    (["convert", "a", "b", "--dtype", "float64"], ["dtype"]),
])
def test_usage_errors_are_one_line_exit_2_and_make_nothing(argv, needles, tmp_path, capsys, golden_dir):
    argv = [str(a) for a in argv]
    if argv[0] in ("index", "search"):
        argv[1:1] = model_args(golden_dir)  # first, so that a --device of the case wins
    code, out, err = run(capsys, *argv)
    _one_error_line(code, err, *needles)
    assert code == 2 and out == ""
    assert list(tmp_path.iterdir()) == []  # no store folder, no Milvus Lite file: refused before any work


def test_row_without_text_warns_and_goes_on_or_stops_with_strict(tmp_path, capsys, golden_dir, encoder):
    corpus = tmp_path / "rows.jsonl"
    corpus.write_text('{"id": "a", "text": "first"}\n{"id": "b", "title": "no text"}\n\n{"id": "c", "text": "third"}\n'
                      '{"id": "d", "text": "   "}\n', encoding="utf-8")
    code, out, err = run(capsys, "index", corpus, *model_args(golden_dir))
    assert code == 0, err
    assert "rows.jsonl:2: no 'text' field; skipped" in err and "rows.jsonl:5: a blank 'text' field; skipped" in err
    assert out.startswith("Indexed 2 documents")
    code, out, err = run(capsys, "index", corpus, *model_args(golden_dir), "--strict", "--collection", "strict")
    _one_error_line(code, err, "rows.jsonl:2", "--strict")
    code, out, err = run(capsys, "search", "x", *model_args(golden_dir), "--collection", "strict")
    assert code != 0 and "does not exist" in err  # --strict stopped before anything was written


@pytest.mark.parametrize("kind", ["qdrant", "milvus"])
def test_bad_rows_are_skipped_by_file_line_and_strict_creates_nothing(kind, tmp_path, capsys, golden_dir, encoder,
                                                                      monkeypatch):
    """Issue 28: the rows every store refuses are skipped and named by file:line like a row without text (they
    aborted the run, named records[31], after creating the collection); --strict creates nothing."""
    from jinav3.integrations import corpus

    bad, good = bad_rows_corpus(tmp_path / "corpus")
    monkeypatch.setattr(corpus, "CSV_FIELD_LIMIT", 1000)  # as a field past 64 MiB, smaller
    (tmp_path / "corpus" / "d.csv").write_text(f"id,text\nd1,short\nd2,{'long ' * 300}\n", encoding="utf-8")
    bad, good = bad + ["d.csv:3"], good + ["d1"]
    code, out, err = run(capsys, "index", "corpus", "--store", store_uri(kind, tmp_path), *model_args(golden_dir))
    assert code == 0, err
    assert skipped_rows(err) == bad, err
    assert "b.jsonl:5: id 'a1' already used at corpus/a.jsonl:1; skipped" in err
    assert "a.jsonl:2.text: contains a lone surrogate (U+DFFF) at character 5" in err
    assert "c.jsonl:1: nested too deeply for the JSON parser" in err and "RecursionError" not in err
    assert out.startswith(f"Indexed {len(good)} documents") and f"holds {len(good)} entries" in out, out
    store = open_store(kind, tmp_path, encoder, create=False)
    try:
        assert sorted(h.id for h in store.get(good)) == sorted(good)
    finally:
        store.close()

    strict = {"qdrant": tmp_path / "strict-qdrant", "milvus": tmp_path / "strict" / "m.db"}[kind]
    code, out, err = run(capsys, "index", "corpus", "--store", f"{kind}:{strict}", "--strict", *model_args(golden_dir))
    _one_error_line(code, err, "corpus/a.jsonl:2.text: contains a lone surrogate",
                    f"(and {len(bad) - 1} more rows that cannot be indexed); nothing was written (stopped by --strict)")
    assert code == 1 and out == ""
    assert not strict.exists() and not (tmp_path / "strict").exists()  # no folder, no file, no empty collection


def test_truncated_documents_are_counted_as_embedded_and_named_once(tmp_path, capsys, golden_dir, encoder):
    """Issue 28: a text past the model's length is embedded truncated; the summary counted all its tokens."""
    long = "word " * (encoder.max_length + 500)
    rows = [{"id": "short", "text": "Tea is grown in Yunnan."}, {"id": "long1", "text": long},
            {"id": "long2", "text": long + "more"}]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tokens = [len(encoder.tokenizer(r["text"], add_special_tokens=False)["input_ids"]) for r in rows]
    prefix = encoder.instruction("retrieval.passage")
    overhead = len(encoder.tokenizer(prefix)["input_ids"])  # the instruction, <s> and </s>
    fed = [len(ids) - overhead for ids in encoder.tokenize([prefix + r["text"] for r in rows], encoder.max_length)]
    assert fed[0] == tokens[0] and fed[1] < tokens[1]  # what the model is fed: the long ones cut

    code, out, err = run(capsys, "index", "docs.jsonl", *model_args(golden_dir))
    assert code == 0, err
    assert out.startswith(f"Indexed 3 documents (3 chunks, {sum(fed):,} tokens embedded)"), (out, fed)
    assert err == (f"jinav3: warning: 2 documents past the model's length were truncated: only the first {fed[1]:,} "
                   "tokens of each were embedded (first: docs.jsonl:2); --late-chunking embeds all of a long "
                   "document\n")
    code, out, err = run(capsys, "index", "docs.jsonl", *model_args(golden_dir), "--late-chunking", "--collection",
                         "late")
    assert code == 0 and err == "", err  # late chunking embeds every token: nothing to warn about
    assert f" chunks, {sum(tokens):,} tokens embedded)" in out


def test_a_refused_server_key_is_named_by_its_variable(tmp_path, capsys, monkeypatch):
    from servers import StandIn

    monkeypatch.setenv("BADKEY", "wrong-key-4242")
    (tmp_path / "docs.jsonl").write_text('{"id": "a", "text": "tea"}\n', encoding="utf-8")
    with StandIn([], lambda body: (401, {"detail": "invalid API key"}, {})) as stand_in:
        code, out, err = run(capsys, "index", "docs.jsonl", "--server", stand_in.url, "--server-api-key-env", "BADKEY",
                             "--quiet")
    assert stand_in.headers and stand_in.headers[-1]["Authorization"] == "Bearer wrong-key-4242"  # the key was sent
    _one_error_line(code, err, "HTTP 401", "invalid API key", "$BADKEY")
    assert code == 1 and "given as api_key" not in err and "wrong-key-4242" not in err


def test_argparse_errors_return_2(capsys):
    assert main(["frobnicate"]) == 2
    assert main(["index"]) == 2
    first, second = capsys.readouterr().err.splitlines()  # one line each, argparse's message in ours
    assert first.startswith("jinav3: error: argument COMMAND: invalid choice: 'frobnicate'")
    assert first.endswith("(see jinav3 --help)")
    assert second == "jinav3: error: the following arguments are required: CORPUS (see jinav3 index --help)"
    assert main(["--help"]) == 0
    assert "index" in capsys.readouterr().out
    assert main(["search", "--help"]) == 0
    assert "--api-key-env NAME" in capsys.readouterr().out


def test_broken_milvus_lite_file_is_one_line(tmp_path, golden_dir):
    """Milvus Lite logs its failure to start with a traceback, pymilvus each failed call: the CLI says it once."""
    (tmp_path / "broken.db").write_text("not a Milvus Lite database", encoding="utf-8")
    done = _subprocess(["search", "x", "--store", "milvus:broken.db", "--device", "cpu"], tmp_path,
                       JINAV3_MODEL=str(golden_dir))
    _one_error_line(done.returncode, done.stderr, "store milvus:broken.db")
    assert done.returncode == 1 and done.stdout == ""


def test_a_missing_client_says_how_to_install_it(capsys, monkeypatch, golden_dir, tmp_path):
    from jinav3.errors import install_hint

    monkeypatch.setitem(sys.modules, "qdrant_client", None)  # import qdrant_client now fails
    monkeypatch.delitem(sys.modules, "jinav3.integrations.qdrant", raising=False)
    code, out, err = run(capsys, "index", PASSAGES, *model_args(golden_dir))
    _one_error_line(code, err, f"needs the qdrant client: {install_hint('qdrant')}")
    assert install_hint("qdrant") == ('pip install "jinav3[qdrant]" '
                                      '(from a clone of the repository: pip install -e ".[qdrant]")')


def test_info(capsys, golden_dir, monkeypatch):
    code, out, err = run(capsys, "info")
    assert code == 0, err
    for needle in ("jinav3", "torch", "transformers", "peft", "qdrant-client", "pymilvus", "device (auto)",
                   "dtype (auto)", "jinaai/jina-embeddings-v3", "hub cache", "HF_HUB_OFFLINE", "$JINAV3_MODEL",
                   "jinav3-data", "qdrant:./jinav3-data/qdrant"):
        assert needle in out, needle
    from importlib.metadata import PackageNotFoundError, version

    rows = dict(line.split(None, 1) for line in out.splitlines() if line.startswith("  ") and len(line.split()) > 1)
    for name in ("ray", "langchain-core", "fastapi", "uvicorn", "openai", "httpx"):  # issue 28: ray... were missing
        try:
            assert rows[name] == version(name), name
        except PackageNotFoundError:
            assert rows[name] == "not installed", name
    monkeypatch.setenv("JINAV3_MODEL", str(golden_dir))
    code, out, _ = run(capsys, "info")
    assert f"{golden_dir}  (from $JINAV3_MODEL)" in out and "(original layout)" in out


@pytest.mark.parametrize("kind", ["qdrant", "milvus"])
def test_info_describes_a_collection_without_a_model(kind, capsys, golden_dir, tmp_path, monkeypatch):
    """Issue 24/25: `jinav3 info --store` reads what a collection holds from its signature (a Collection, no model
    loaded): the model, size, tasks, dense or hybrid, the points."""
    store = store_uri(kind, tmp_path)
    corpus = tmp_path / "three.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i} about tea"}) + "\n" for i in range(3)),
                      encoding="utf-8")
    assert run(capsys, "index", corpus, "--store", store, "--collection", "lex", "--hybrid", "--dimensions", "32",
               *model_args(golden_dir))[0] == 0
    import jinav3.encoder

    monkeypatch.setattr(jinav3.encoder.Encoder, "from_pretrained", None)  # no model may load
    code, out, err = run(capsys, "info", "--store", store, "--collection", "lex", "--device", "cpu")
    assert code == 0, err
    section = out[out.index("collection ("):]
    assert f"{store} collection 'lex'" in section and "dimensions" in section and " 32" in section
    assert "retrieval.passage (index) / retrieval.query (search)" in section
    assert "hybrid: dense + lexical" in section and "points" in section and section.rstrip().endswith("3")
    code, out, err = run(capsys, "info", "--store", store, "--collection", "nothing_here", "--device", "cpu")
    _one_error_line(code, err, f"store {store}: collection 'nothing_here' does not exist (collections there: 'lex'); "
                               "index a corpus into it first")
    code, _, err = run(capsys, "info", "--store", "nosuch:x")
    assert code == 2 and "store: unknown scheme 'nosuch'" in err


# ============================================================================================ store URIs, filters
@pytest.mark.parametrize("uri, scheme, mode, target", [
    ("qdrant:./jinav3-data/qdrant", "qdrant", "local", "./jinav3-data/qdrant"),
    ("qdrant+http://localhost:6333", "qdrant", "server", "http://localhost:6333"),
    ("qdrant+https://x.cloud.qdrant.io:6333", "qdrant", "server", "https://x.cloud.qdrant.io:6333"),
    ("milvus:data/milvus.db", "milvus", "local", "data/milvus.db"),
    ("milvus+http://127.0.0.1:19530", "milvus", "server", "http://127.0.0.1:19530"),
    ("pinecone:my-index", "pinecone", "index", "my-index"),
])
def test_parse_store(uri, scheme, mode, target):
    parsed = parse_store(uri)
    assert (parsed.scheme, parsed.mode, parsed.target) == (scheme, mode, target)


@pytest.mark.parametrize("uri", ["qdrant", "qdrant:", "sqlite:x.db", "qdrant://host", "pinecone+http://x",
                                 "milvus:x.sqlite", "qdrant+grpc://h:1"])
def test_parse_store_rejects(uri):
    with pytest.raises(InvalidArgumentError, match="^store: "):
        parse_store(uri)


def test_parse_filters():
    assert parse_filters(["lang=de"]) == {"lang": "de"}
    assert parse_filters(["lang=de", "lang=fr", "topic=a=b"]) == {"lang": ["de", "fr"], "topic": "a=b"}
    assert parse_filters(["year:=2020", "ok:=true", "tags:=[\"a\", \"b\"]"]) == {"year": 2020, "ok": True,
                                                                                     "tags": ["a", "b"]}
    for bad in ("lang", "=x", "n:=nope"):
        with pytest.raises(CLIError):
            parse_filters([bad])


# ============================================================================================ corpus formats
def test_corpus_formats(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jsonl").write_text('{"id": 1, "text": "one", "lang": "en", "none": null}\n', encoding="utf-8")
    (folder / "b.json").write_text(json.dumps([{"id": "j1", "text": "two"}, {"text": "no id"}]), encoding="utf-8")
    (folder / "c.json").write_text(json.dumps({"documents": [{"id": "d1", "text": "three", "n": 3}]}), encoding="utf-8")
    with open(folder / "d.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "year"])
        writer.writerow(["c1", "multi\nline", "2020"])
        writer.writerow(["c2", "", "2021"])
    (folder / "sub" / "e.md").write_text("# Title\n\nBody.", encoding="utf-8")
    (folder / "f.txt").write_text("plain", encoding="utf-8")
    (folder / ".hidden.txt").write_text("skip me", encoding="utf-8")
    (folder / "notes.docx").write_text("not read", encoding="utf-8")
    (folder / "sub" / "data.xml").write_text("<not-read/>", encoding="utf-8")
    (folder / ".hidden.pdf").write_text("hidden: not even named", encoding="utf-8")
    warnings: list[str] = []
    records = read_corpus(folder, warn=warnings.append)
    assert [r["id"] for r in records] == ["1", "j1", "b.json:2", "d1", "c1", "f.txt", "sub/e.md"]
    assert records[0] == {"id": "1", "text": "one", "metadata": {"lang": "en"}}
    assert records[3]["metadata"] == {"n": 3}
    assert records[4] == {"id": "c1", "text": "multi\nline", "metadata": {"year": "2020"}}
    assert records[6] == {"id": "sub/e.md", "text": "# Title\n\nBody.", "metadata": {"path": "sub/e.md"}}
    assert warnings[0] == "skipped 2 files no reader handles: notes.docx, sub/data.xml"  # one warning for all
    assert len(warnings) == 2 and warnings[1].endswith("d.csv:4: a blank 'text' field; skipped")
    with pytest.raises(CorpusError, match=r"d\.csv:4"):
        read_corpus(folder, strict=True)
    # a single text file: its name is the id
    assert read_corpus(folder / "sub" / "e.md")[0]["id"] == "e.md"


def test_corpus_fields_duplicates_and_bad_json(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"key": "k1", "body": "b1", "id": "meta"}\n{"key": "k1", "body": "again"}\n', encoding="utf-8")
    warnings: list[str] = []
    records = read_corpus(path, id_field="key", text_field="body", warn=warnings.append)
    assert records == [{"id": "k1", "text": "b1", "metadata": {"id": "meta"}}]
    assert "x.jsonl:2: id 'k1' already used at" in warnings[0]
    path.write_text('{"id": "a", "text": "ok"}\n{broken\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"x\.jsonl:2: not valid JSON"):
        read_corpus(path)
    (tmp_path / "y.json").write_text('{"rows": []}', encoding="utf-8")
    with pytest.raises(CorpusError, match="documents"):
        read_corpus(tmp_path / "y.json")
    with pytest.raises(CorpusError, match="does not exist"):
        read_corpus(tmp_path / "no-such-folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="holds no"):
        read_corpus(tmp_path / "empty")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_corpus_non_finite_numbers_name_the_row(value, tmp_path, capsys, golden_dir):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "a", "text": "one", "score": 1.5}\n'
                    f'{{"id": "b", "text": "two", "score": {value}}}\n'
                    f'{{"id": "c", "text": "three", "nested": {{"xs": [1, {value}]}}}}\n'
                    '{"id": "d", "text": "four"}\n', encoding="utf-8")
    warnings: list[str] = []
    assert [r["id"] for r in read_corpus(path, warn=warnings.append)] == ["a", "d"]
    assert warnings[0].endswith("rows.jsonl:2: field 'score' is NaN or Infinity, which JSON and the stores cannot "
                                "hold; skipped")
    assert warnings[1].endswith("rows.jsonl:3: field 'nested.xs[1]' is NaN or Infinity, which JSON and the stores "
                                "cannot hold; skipped")
    with pytest.raises(CorpusError, match=r"rows\.jsonl:2: field 'score' is NaN"):
        read_corpus(path, strict=True)
    code, out, err = run(capsys, "index", path, *model_args(golden_dir), "--store", f"milvus:{tmp_path / 'm.db'}")
    assert code == 0 and out.startswith("Indexed 2 documents"), err
    assert "rows.jsonl:2: field 'score'" in err
    code, out, err = run(capsys, "index", path, *model_args(golden_dir), "--strict", "--store",
                         f"qdrant:{tmp_path / 'q'}")
    _one_error_line(code, err, "rows.jsonl:2", "--strict")
    assert code == 1 and not (tmp_path / "q").exists()


def test_corpus_csv_fields(tmp_path, monkeypatch):
    from jinav3.integrations import corpus

    path = tmp_path / "big.csv"
    long_text = "word " * 60_000  # 300 KB: past csv's default field limit of 128 KiB
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerow(["short", "multi\nline"])
        writer.writerow(["long", long_text])
    assert [len(r["text"]) for r in read_corpus(path)] == [10, len(long_text)]
    limit = csv.field_size_limit()
    monkeypatch.setattr(corpus, "CSV_FIELD_LIMIT", 100_000)  # the same as a field past 64 MiB, smaller
    with open(path, "a", newline="", encoding="utf-8") as handle:  # rows after it are read as they are
        csv.writer(handle).writerow(["after", "a row after the long one"])
        handle.write('unclosed,"a quote that never closes, ' + "x" * 200_000 + '\nswallowed,"row"\n')
    warnings: list[str] = []
    assert [r["id"] for r in read_corpus(path, warn=warnings.append)] == ["short", "after"]
    assert warnings == ["big.csv:4: a CSV row past 100,000 characters starts here (a field that long, or an "
                        "unclosed quote); skipped",
                        "big.csv:6: a CSV row past 100,000 characters starts here (a field that long, or an "
                        "unclosed quote); skipped"]
    with pytest.raises(CorpusError, match=r"big\.csv:4: a CSV row past 100,000 .*\(and 1 more row that cannot be "
                                          r"indexed\); nothing was written \(stopped by --strict\)"):
        read_corpus(path, strict=True)
    assert csv.field_size_limit() == limit  # the process-wide limit is put back


def test_index_names_the_files_no_reader_handles(tmp_path, capsys, golden_dir):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.pdf").write_bytes(b"%PDF-1.4")
    (folder / "b.xml").write_text("<x/>", encoding="utf-8")
    (folder / "c.md").write_text("Tea is grown in Yunnan.", encoding="utf-8")
    code, out, err = run(capsys, "index", folder, *model_args(golden_dir))
    assert code == 0 and out.startswith("Indexed 1 documents"), err
    assert err == "jinav3: warning: skipped 2 files no reader handles: a.pdf, b.xml\n"
    (folder / "c.md").unlink()
    code, out, err = run(capsys, "index", folder, *model_args(golden_dir))
    _one_error_line(code, err, "holds no", "(only a.pdf, b.xml)")


def test_corpus_parquet_needs_pyarrow(tmp_path, monkeypatch):
    from jinav3.errors import install_hint

    (tmp_path / "rows.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(CorpusError) as error:
        read_corpus(tmp_path / "rows.parquet")
    assert str(error.value).endswith(f"rows.parquet: reading .parquet needs pyarrow: {install_hint('parquet')}")


def test_corpus_parquet(tmp_path, capsys, golden_dir):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"id": ["p1", "p2", "p3"], "text": ["erste Zeile", None, "third row"], "score": [1.5, 2.0, 3.0]})
    pq.write_table(table, tmp_path / "rows.parquet")
    warnings: list[str] = []
    records = read_corpus(tmp_path / "rows.parquet", warn=warnings.append)
    assert records == [{"id": "p1", "text": "erste Zeile", "metadata": {"score": 1.5}},
                       {"id": "p3", "text": "third row", "metadata": {"score": 3.0}}]
    assert "rows.parquet:2: no 'text' field" in warnings[0]
    code, out, err = run(capsys, "index", tmp_path / "rows.parquet", *model_args(golden_dir))
    assert code == 0 and out.startswith("Indexed 2 documents"), err
    code, out, err = run(capsys, "search", "row", *model_args(golden_dir), "--filter", "score:=3.0", "--json")
    assert code == 0, err
    assert [h["id"] for h in json.loads(out)] == ["p3"]


def test_index_mixed_folder(tmp_path, capsys, golden_dir, encoder):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.csv").write_text("id,text,lang\nx1,Tea is grown in Yunnan.,en\n", encoding="utf-8")
    (folder / "b.md").write_text("Composting at home needs air and moisture.", encoding="utf-8")
    code, out, err = run(capsys, "index", folder, *model_args(golden_dir), "--store", f"milvus:{tmp_path / 'm.db'}")
    assert code == 0, err
    assert out.startswith("Indexed 2 documents (2 chunks, ")
    code, out, err = run(capsys, "search", "compost", *model_args(golden_dir), "--store", f"milvus:{tmp_path / 'm.db'}",
                         "--json", "--filter", "lang=en")
    assert code == 0, err
    assert [h["id"] for h in json.loads(out)] == ["x1"]


# ============================================================================================ subprocess
def _subprocess(argv, cwd, **env):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    environment.pop("JINAV3_MODEL", None)
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "jinav3.integrations.cli", *map(str, argv)], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=600)


def test_subprocess_milvus_lite_and_qdrant(tmp_path, golden_dir, encoder, passage_vectors):
    """The real thing: `python -m jinav3.integrations.cli` (what the `jinav3` console script runs)."""
    ids = [r["id"] for r in ROWS]
    for store in (f"milvus:{tmp_path / 'sub.db'}", "qdrant:./here"):
        for _ in range(2):
            done = _subprocess(["index", PASSAGES, "--store", store, "--device", "cpu"], tmp_path,
                               JINAV3_MODEL=str(golden_dir))
            assert done.returncode == 0, done.stderr
            assert "Indexed 300 documents" in done.stdout and "holds 300 entries" in done.stdout, done.stdout
            assert "Traceback" not in done.stderr
        done = _subprocess(["search", QUERIES[0], "--store", store, "--json", "--top-k", 5, "--device", "cpu"],
                           tmp_path,
                           JINAV3_MODEL=str(golden_dir))
        assert done.returncode == 0, done.stderr
        assert_same_ranking(json.loads(done.stdout), brute_force(encoder, QUERIES[0], passage_vectors, ids, 5))
    assert (tmp_path / "here").is_dir() and (tmp_path / "sub.db").exists()


def test_subprocess_missing_model_says_how_to_supply_one(tmp_path):
    done = _subprocess(["search", "x", "--model", "jinaai/no-such-model-for-jinav3-tests"], tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    _one_error_line(done.returncode, done.stderr, "jinaai/no-such-model-for-jinav3-tests", "JINAV3_MODEL",
                    "local folder", "HF_HUB_OFFLINE")


def test_console_script_when_installed(tmp_path):
    script = Path(sys.executable).with_name("jinav3")
    if not script.is_file() or "jinav3.integrations.cli" not in script.read_text(errors="replace"):
        pytest.skip("the jinav3 console script of this environment does not point at jinav3.integrations.cli")
    done = subprocess.run([str(script), "info"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("versions\n  jinav3 ")


def test_index_says_once_when_qdrant_local_mode_is_outgrown(tmp_path, capsys, golden_dir, monkeypatch):
    """Issue 29: past Qdrant local mode's comfortable size (20,000 points; 250 here) one note suggests a
    server or Milvus; below it, and on Milvus Lite, nothing."""
    from jinav3.integrations import qdrant

    monkeypatch.setattr(qdrant, "LOCAL_MODE_COMFORT", 250)
    for kind in ("qdrant", "milvus"):
        code, out, err = run(capsys, "index", PASSAGES, "--store", store_uri(kind, tmp_path), *model_args(golden_dir))
        assert code == 0, err
        notes = [line for line in err.splitlines() if line.startswith("jinav3: note:")]
        if kind == "qdrant":
            assert len(notes) == 1 and "300 points in Qdrant local mode" in notes[0] and "Milvus" in notes[0], err
            assert "qdrant+http://" in notes[0]
        else:
            assert notes == [], err
    code, out, err = run(capsys, "index", PASSAGES, "--store", store_uri("qdrant", tmp_path), *model_args(golden_dir),
                         "--collection", "other")  # its own collection: 300 points, still past 250
    assert err.count("jinav3: note:") == 1 and "Local mode is not recommended" not in err


def test_hybrid_index_and_search_modes(tmp_path, capsys, golden_dir):
    """Issue 25: jinav3 index --hybrid makes a hybrid collection (Qdrant), jinav3 search --mode picks the side;
    a dense collection refuses the lexical modes naming --mode; no option is read as a prefix of another."""
    store = store_uri("qdrant", tmp_path)
    code, out, err = run(capsys, "index", PASSAGES, "--store", store, *model_args(golden_dir), "--hybrid")
    assert code == 0, err
    word = ROWS[7]["text"].split()[2]
    results = {}
    for mode in ("dense", "sparse", "hybrid"):
        code, out, err = run(capsys, "search", word, "--store", store, *model_args(golden_dir), "--mode", mode,
                             "--json", "--top-k", "5")
        assert code == 0, err
        results[mode] = json.loads(out)
    code, out, err = run(capsys, "search", word, "--store", store, *model_args(golden_dir), "--json", "--top-k", "5")
    assert json.loads(out) == results["hybrid"]  # hybrid by default on a hybrid collection
    assert results["sparse"] and all(word.casefold() in h["text"].casefold() or h["score"] > 0
                                     for h in results["sparse"])
    code, out, err = run(capsys, "search", word, "--store", store, *model_args(golden_dir), "--rrf-k", "1", "--json")
    assert code == 0 and json.loads(out)[0]["score"] > results["hybrid"][0]["score"]  # 1/(1+0) > 1/(60+0)

    dense = store_uri("milvus", tmp_path)
    code, out, err = run(capsys, "index", PASSAGES, "--store", dense, *model_args(golden_dir))
    assert code == 0, err
    code, out, err = run(capsys, "search", word, "--store", dense, *model_args(golden_dir), "--mode", "sparse")
    assert code == 2 and err.startswith("jinav3: error: mode: 'sparse' needs a hybrid collection"), err
    code, out, err = run(capsys, "index", PASSAGES, "--store", dense, *model_args(golden_dir), "--hybrid")
    assert code == 1 and "hybrid: it has False, this store uses True" in err, err  # a dense collection stays dense
    code, out, err = run(capsys, "index", PASSAGES, "--store", dense, *model_args(golden_dir), "--hybrid",
                         "--collection", "other")  # Milvus Lite makes hybrid collections too
    assert code == 0, err
    code, out, err = run(capsys, "search", word, "--store", dense, *model_args(golden_dir), "--collection", "other",
                         "--mode", "sparse", "--json")
    assert code == 0 and json.loads(out), err
    code, out, err = run(capsys, "search", word, "--store", store, "--mod", "sparse")  # not --model, not --mode
    assert code == 2 and "unrecognized arguments: --mod" in err, err
