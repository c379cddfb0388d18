"""Bulk indexing on Ray Data (jinav3.integrations.ray, ``jinav3 index --ray``) on a local Ray cluster of 2 CPUs
started here, with the golden tiny model: into the real Milvus server (tests/milvus_server.py) and the Pinecone
test double; the result equals single-process indexing; a worker killed mid-run is retried by Ray and leaves
exactly one copy of every point; an interrupted job is resumed by running it again; embedded stores are refused.
A Qdrant server runs the same equality check when $JINAV3_QDRANT_URL is set."""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from helpers import bad_rows_corpus, skipped_rows

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from jinav3.errors import CorpusError, InvalidArgumentError  # noqa: E402 - after importorskip
from jinav3.integrations.cli import main  # noqa: E402 - after importorskip
from jinav3.integrations.ray import index_dataset  # noqa: E402 - after importorskip

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
SAMPLE_PASSAGES = TESTS.parent / "examples" / "data" / "passages.jsonl"
KEY = "test-key"
N = 120  # passages used (of the 300 in examples/data/passages.jsonl): enough for several batches per worker


def passages(n: int = N) -> list[dict]:
    with open(SAMPLE_PASSAGES, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()][:n]
    return [{"id": r["id"], "text": r["text"], "metadata": {k: v for k, v in r.items() if k not in ("id", "text")}}
            for r in rows]


# ============================================================================================ fixtures
@pytest.fixture(scope="module")
def double():
    pytest.importorskip("pinecone")
    from doubles.pinecone_double import PineconeDouble

    with PineconeDouble(api_key=KEY) as d:
        yield d
        assert d.internal_errors == []


@pytest.fixture(scope="module")
def cluster(double, milvus_server):
    """A local Ray cluster of 2 CPUs; its workers import the test modules and reach the Pinecone double.
    After the suite's Milvus server (conftest), when there is one: Ray's worker ports span 10002-19999,
    which holds Milvus's 19530."""
    os.environ["PINECONE_CONTROLLER_HOST"] = double.host  # the driver's Pinecone clients too
    os.environ["PINECONE_API_KEY"] = KEY
    options = dict(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
                   runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)]),
                                             "PINECONE_CONTROLLER_HOST": double.host, "PINECONE_API_KEY": KEY}})
    try:
        ray.init(**options)
    except Exception as first:  # seen once in the full suite: "The current node timed out during startup"
        if "timed out during startup" not in str(first):
            raise
        ray.shutdown()
        ray.init(**options)  # a second start, on fresh ports
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    # Batches go out once the whole actor pool is up: with the tiny model one actor can otherwise embed a
    # small corpus before the other has loaded, and the tests that check both workers' reports would flake.
    context.wait_for_min_actors_s = 120
    yield
    ray.shutdown()
    for name in ("PINECONE_CONTROLLER_HOST", "PINECONE_API_KEY"):
        os.environ.pop(name, None)


def milvus_store(encoder, uri, collection):
    from jinav3.integrations.milvus import MilvusStore

    return MilvusStore(encoder, collection, uri=uri.removeprefix("milvus+"), create=False, adopt_signature=True)


def pinecone_store(encoder, index, namespace, **kwargs):
    from jinav3.integrations.pinecone import PineconeStore

    return PineconeStore(encoder, index, namespace=namespace, api_key=KEY, **kwargs)


def keys_of(encoder, records, late_chunking=False):
    if not late_chunking:
        return [r["id"] for r in records]
    spans = encoder.chunk_spans([r["text"] for r in records], task="retrieval.passage")
    return [f"{r['id']}::chunk:{n}" for r, s in zip(records, spans, strict=True) for n in range(len(s))]


def assert_same_points(got_store, want_store, keys):
    """Exactly ``keys`` in both, once each (count), with the same payloads and vectors within 1e-5."""
    assert got_store.count() == len(keys) == want_store.count()
    got, want = got_store.get(keys), want_store.get(keys)
    assert [h.id for h in got] == [h.id for h in want] == keys
    for a, b in zip(got, want, strict=True):
        assert (a.text, a.metadata, a.parent_id, a.chunk, a.start, a.end) == \
               (b.text, b.metadata, b.parent_id, b.chunk, b.start, b.end), a.id
        np.testing.assert_allclose(a.vector, b.vector, atol=1e-5, rtol=0)


class Flaky:
    """An encoder factory for the actors: the golden model, whose ``on_call``-th encode in an actor fails
    once across restarts (a marker file): ``how="exit"`` kills the worker process, ``"raise"`` fails the job."""

    def __init__(self, model: str, marker: str, on_call: int, how: str):
        self.model, self.marker, self.on_call, self.how = model, marker, on_call, how

    def __call__(self):
        from jinav3 import Encoder

        return _Failing(Encoder.from_pretrained(self.model, device="cpu"), self)


class _Failing:
    def __init__(self, encoder, plan: Flaky):
        self._encoder, self._plan, self._calls = encoder, plan, 0

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def encode(self, *args, **kwargs):
        self._calls += 1
        marker = Path(self._plan.marker)
        if self._calls == self._plan.on_call and not marker.exists():
            marker.write_text(str(os.getpid()))
            if self._plan.how == "exit":
                os._exit(1)
            raise RuntimeError("injected failure of an embedding worker")
        return self._encoder.encode(*args, **kwargs)


# ============================================================================================ Milvus server
def test_cli_ray_into_milvus_equals_single_process(cluster, milvus_uri, golden_dir, encoder, tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    with open(SAMPLE_PASSAGES, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()][:N]
    rows = [json.loads(line) for line in lines]
    rows[3].pop("id")  # an id from its place in the corpus, path:line, as without --ray
    rows.insert(10, {"id": "blank", "text": "  "})  # a bad row: reported and skipped
    rows.insert(20, dict(rows[5], text="another text"))  # a repeated id: the first one wins
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    store = f"milvus+{milvus_uri}"
    common = [str(corpus), "--store", store, "--model", str(golden_dir), "--device", "cpu", "--dimensions", "48"]
    assert main(["index", *common, "--collection", "single", "--quiet"]) == 0
    single_err = capsys.readouterr().err
    for _ in range(2):  # running it again overwrites: one copy of every point
        code = main(["index", *common, "--collection", "on_ray", "--ray", "--workers", "2", "--batch-size", "16",
                     "--quiet"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert out.startswith(f"Indexed {N} documents ({N} chunks, "), out
        assert "with 2 Ray workers" in out and out.count("  worker ") == 2, out
        assert "skipped 2 rows" in out
        assert "corpus.jsonl:11: a blank 'text' field; skipped" in err and "already used at" in err
        assert "corpus.jsonl:11: a blank 'text' field; skipped" in single_err
    ids = [r.get("id", f"corpus.jsonl:{i + 1}") for i, r in enumerate(rows) if r["text"].strip()]
    ids = list(dict.fromkeys(ids))
    got, want = milvus_store(encoder, store, "on_ray"), milvus_store(encoder, store, "single")
    assert "corpus.jsonl:4" in ids
    assert_same_points(got, want, ids)


def test_a_killed_worker_is_retried_and_leaves_one_copy(cluster, milvus_uri, golden_dir, encoder, tmp_path):
    records = passages()
    store = f"milvus+{milvus_uri}"
    marker = tmp_path / "killed"
    report = index_dataset(ray.data.from_items(records), store=store, collection="killed", dimensions=32,
                           model=Flaky(str(golden_dir), str(marker), on_call=2, how="exit"), workers=2,
                           batch_size=10)
    assert marker.exists(), "no worker was killed"
    assert (report.documents, report.chunks) == (N, N)
    from jinav3.integrations.milvus import MilvusStore

    reference = MilvusStore(encoder, "killed_reference", uri=milvus_uri, dimensions=32)
    reference.add(records)
    assert_same_points(milvus_store(encoder, store, "killed"), reference, [r["id"] for r in records])


def test_an_interrupted_job_resumes_by_running_it_again(cluster, milvus_uri, golden_dir, encoder, tmp_path):
    records = passages()
    store = f"milvus+{milvus_uri}"
    ds = ray.data.from_items(records)
    # index_dataset ends the failed job's embedding actors (JobActors): before, a map task left running on
    # one kept it and its CPU alive, and the job below waited for it forever (CI hung there once). With the
    # garbage collector off, nothing else can free them here.
    gc.disable()
    try:
        with pytest.raises(Exception, match="injected failure"):
            index_dataset(ds, store=store, collection="resumed", dimensions=32, workers=2, batch_size=10,
                          model=Flaky(str(golden_dir), str(tmp_path / "failed"), on_call=3, how="raise"))
        partial = milvus_store(encoder, store, "resumed").count()
        assert partial < N
        deadline = time.monotonic() + 60
        while ray.available_resources().get("CPU", 0) < 2:
            assert time.monotonic() < deadline, f"the failed job's actors hold CPUs: {ray.available_resources()}"
            time.sleep(0.5)
    finally:
        gc.enable()
    report = index_dataset(ds, store=store, collection="resumed", dimensions=32, workers=2, batch_size=10,
                           model=str(golden_dir), device="cpu")
    assert report.documents == N
    from jinav3.integrations.milvus import MilvusStore

    reference = MilvusStore(encoder, "resumed_reference", uri=milvus_uri, dimensions=32)
    reference.add(records)
    assert_same_points(milvus_store(encoder, store, "resumed"), reference, [r["id"] for r in records])


# ============================================================================================ Pinecone double
def test_late_chunking_into_pinecone_equals_add(cluster, double, golden_dir, encoder):
    records = passages(60)
    index = f"ray-{uuid.uuid4().hex[:8]}"
    report = index_dataset(ray.data.from_items(records), store=f"pinecone:{index}", collection="ray",
                           model=str(golden_dir), device="cpu", dimensions=24, workers=2, batch_size=8,
                           late_chunking=True)
    reference = pinecone_store(encoder, index, "single", dimensions=24)
    reference.add(records, late_chunking=True)
    keys = keys_of(encoder, records, late_chunking=True)
    assert (report.documents, report.chunks) == (60, len(keys)) and len(keys) > 60
    assert report.tokens > 0 and all(w.tokens_per_second > 0 for w in report.workers.values())
    double_vectors = double.vectors(index, "ray")
    assert len(double_vectors) == len(keys)  # exactly one copy of every chunk
    on_ray = pinecone_store(encoder, index, "ray", create=False, adopt_signature=True)
    assert_same_points(on_ray, reference, keys)
    on_ray.add(records, late_chunking=True)  # the points Ray wrote carry the fingerprints add() writes
    assert on_ray.unchanged_in_last_add == 60


def test_bad_rows_are_reported_and_strict_stops_before_any_write(cluster, double, golden_dir, encoder):
    records = passages(20)
    bad = [{"id": "empty", "text": " ", "metadata": {}}, {"id": "a::chunk:1", "text": "reserved id", "metadata": {}},
           dict(records[0], text="the same id, another text")]
    ds = ray.data.from_items(records + bad + [dict(records[1])])  # an identical repeat: one document
    index = f"bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(CorpusError, match=r"\(and 3 more rows that cannot be indexed\); nothing was written "
                                          r"\(stopped by --strict\)$"):
        index_dataset(ds, store=f"pinecone:{index}", model=str(golden_dir), device="cpu", strict=True)
    assert index not in double.index_names()  # not even created
    report = index_dataset(ds, store=f"pinecone:{index}", model=str(golden_dir), device="cpu", workers=2)
    # a conflicting repeat of an id has no order to pick a winner by: both copies are skipped
    assert report.skipped == 4 and report.documents == 19
    assert any("'empty'" in p or "blank 'text'" in p for p in report.problems)
    assert any("reserved for chunk ids" in p for p in report.problems)
    assert len(double.vectors(index, "jinav3")) == 19


def test_cli_bad_rows_the_same_with_and_without_ray(cluster, double, golden_dir, encoder, tmp_path, capsys,
                                                    monkeypatch):
    """Issue 28: one row check for both paths. The same rows skipped and named by the same file:line warnings, the
    same --strict error and exit status 1 with nothing created; --quiet prints nothing of Ray's; a document past
    the model's length counted as embedded (truncated) and named by the same warning."""
    bad, good = bad_rows_corpus(tmp_path / "corpus")
    long = "7 " * (encoder.max_length // 2 + 300)  # past the model's length, within Pinecone's metadata limit
    (tmp_path / "corpus" / "d.jsonl").write_text(json.dumps({"id": "long", "text": long}) + "\n", encoding="utf-8")
    good.append("long")
    common = [str(tmp_path / "corpus"), "--model", str(golden_dir), "--device", "cpu", "--quiet"]
    suffix = uuid.uuid4().hex[:8]
    monkeypatch.setattr(ray.data.DataContext.get_current(), "enable_progress_bars", True)  # --quiet must hide them
    ray_console = io.StringIO()  # Ray Data's console handler keeps the stderr of its start: capsys misses it
    for handler in logging.getLogger("ray.data").handlers:
        if type(handler).__name__ == "PlainRayHandler":  # not pytest's own capturing handlers
            monkeypatch.setattr(handler, "stream", ray_console)

    runs, summaries = {}, {}
    for path in ("plain", "ray"):
        flags = ["--ray", "--workers", "1"] if path == "ray" else []
        code = main(["index", *common, "--store", f"pinecone:{path}-{suffix}", *flags])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert out.startswith(f"Indexed {len(good)} documents ({len(good)} chunks, "), out
        assert all(line.startswith("jinav3: warning: ") for line in err.splitlines()), err  # nothing of Ray's
        runs[path] = err
        summaries[path] = out.split(" in ")[0]  # "Indexed N documents (N chunks, T tokens)"
    assert skipped_rows(runs["ray"]) == skipped_rows(runs["plain"]) == bad
    assert runs["ray"] == runs["plain"]  # the same words, in the same order
    assert ray_console.getvalue() == ""  # without --quiet's settings: ~90 lines of progress and execution plans
    assert runs["plain"].splitlines()[-1].startswith("jinav3: warning: 1 document past the model's length was "
                                                     "truncated") and "(first: " in runs["plain"]
    assert summaries["ray"] == summaries["plain"]  # the same tokens: those embedded
    assert len(double.vectors(f"ray-{suffix}", "jinav3")) == len(good)
    assert ray.data.DataContext.get_current().enable_progress_bars  # --quiet's settings put back

    errors = {}
    for path in ("plain", "ray"):
        flags = ["--ray", "--workers", "1"] if path == "ray" else []
        code = main(["index", *common, "--store", f"pinecone:strict-{path}-{suffix}", "--strict", *flags])
        out, err = capsys.readouterr()
        assert code == 1 and out == "" and len(err.splitlines()) == 1, err  # was 2 with --ray
        errors[path] = err
        assert f"strict-{path}-{suffix}" not in double.index_names()  # not even created
    assert errors["ray"] == errors["plain"]
    assert errors["plain"].startswith("jinav3: error: ")
    assert "a.jsonl:2.text: contains a lone surrogate" in errors["plain"]
    assert f"(and {len(bad) - 1} more rows that cannot be indexed); nothing was written" in errors["plain"]


# ============================================================================================ refusals
@pytest.mark.parametrize("uri, hint", [("qdrant:{tmp}/q", "qdrant+http://HOST:6333"),
                                       ("milvus:{tmp}/m.db", "milvus+http://HOST:19530")])
def test_embedded_stores_are_refused(cluster, golden_dir, tmp_path, capsys, uri, hint):
    store = uri.format(tmp=tmp_path)
    with pytest.raises(InvalidArgumentError, match=f"^store: .*{hint.replace('+', '[+]')}"):
        index_dataset(ray.data.from_items(passages(3)), store=store, model=str(golden_dir))
    code = main(["index", str(SAMPLE_PASSAGES), "--ray", "--store", store, "--model", str(golden_dir)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("jinav3: error: --ray: ") and hint in err, err
    assert not any(tmp_path.iterdir())  # nothing made


def test_hybrid_on_a_milvus_server_without_bm25_is_refused_before_any_embedding(cluster, milvus_uri, golden_dir,
                                                                             capsys):
    """`--ray --hybrid` opens the collection as `add` does (a Collection, no model): the 2.3.5 server is refused."""
    with pytest.raises(InvalidArgumentError, match=r"^hybrid: this Milvus server is v?2\.3\.5"):
        index_dataset(ray.data.from_items(passages(3)), store=f"milvus+{milvus_uri}", collection="ray_hybrid",
                      model=str(golden_dir), device="cpu", hybrid=True)
    code = main(["index", str(SAMPLE_PASSAGES), "--ray", "--hybrid", "--store", f"milvus+{milvus_uri}",
                 "--collection", "ray_hybrid", "--model", str(golden_dir), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "hybrid: this Milvus server is" in err and "Milvus 2.5" in err, err
    from pymilvus import MilvusClient

    assert not MilvusClient(uri=milvus_uri).has_collection("ray_hybrid")


def test_a_remote_corpus_uri_points_to_index_dataset(golden_dir, capsys):
    code = main(["index", "s3://bucket/corpus/*.parquet", "--ray", "--store", "milvus+http://127.0.0.1:9",
                 "--model", str(golden_dir)])
    err = capsys.readouterr().err
    assert code == 1 and "is a remote URI" in err and "index_dataset(ray.data.read_parquet" in err, err


# ============================================================================================ Qdrant server
@pytest.mark.skipif(not os.environ.get("JINAV3_QDRANT_URL"), reason="set JINAV3_QDRANT_URL to a Qdrant server")
def test_into_a_qdrant_server_equals_add(cluster, golden_dir, encoder):
    from jinav3.integrations.qdrant import QdrantStore

    url = os.environ["JINAV3_QDRANT_URL"]
    records = passages()
    name = f"ray_{uuid.uuid4().hex[:8]}"
    index_dataset(ray.data.from_items(records), store=f"qdrant+{url}", collection=name, model=str(golden_dir),
                  device="cpu", dimensions=32, workers=2, batch_size=16)
    reference = QdrantStore(encoder, name + "_reference", url=url, dimensions=32)
    reference.add(records)
    assert_same_points(QdrantStore(encoder, name, url=url, create=False), reference, [r["id"] for r in records])


@pytest.mark.skipif(not os.environ.get("JINAV3_QDRANT_URL"), reason="set JINAV3_QDRANT_URL to a Qdrant server")
def test_hybrid_into_a_qdrant_server_equals_add(cluster, golden_dir, encoder):
    """The write tasks give each point its lexical vector (Collection.write_points): sparse and hybrid searches
    of a Ray-written collection equal those of `add`'s."""
    from jinav3.integrations.qdrant import QdrantStore

    url = os.environ["JINAV3_QDRANT_URL"]
    records = passages()
    name = f"ray_hybrid_{uuid.uuid4().hex[:8]}"
    index_dataset(ray.data.from_items(records), store=f"qdrant+{url}", collection=name, model=str(golden_dir),
                  device="cpu", dimensions=32, workers=2, batch_size=16, hybrid=True)
    reference = QdrantStore(encoder, name + "_reference", url=url, dimensions=32, hybrid=True)
    reference.add(records)
    on_ray = QdrantStore(encoder, name, url=url, create=False)
    assert on_ray.hybrid
    assert_same_points(on_ray, reference, [r["id"] for r in records])
    for mode in ("sparse", "hybrid"):
        got, want = on_ray.search(records[3]["text"], mode=mode), reference.search(records[3]["text"], mode=mode)
        assert [h.id for h in got] == [h.id for h in want]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-5)
